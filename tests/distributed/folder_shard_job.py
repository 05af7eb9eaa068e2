"""Streams one process's share of a folder of images: run it with torchrun (2 processes).

    torchrun --standalone --nproc-per-node 2 folder_shard_job.py FOLDER OUT_DIR

Streams one epoch of `image_folder_input_fn(FOLDER)` (unseeded, in this process) with the
input context the Estimator gives a training input under torchrun: this process's rank of
WORLD_SIZE, equal shares, and a shuffle generator in the same state on every process (the
Estimator's shared one). Writes OUT_DIR/rank-R.json: the ids of the images it got (each
image's pixels are all id + 1), the files it decoded (counted by wrapping the decoder) and
how far its peak resident memory rose above where it stood before streaming (VmHWM, reset
first).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from PIL import Image

import aekit.data.image_folder as image_folder
from aekit.data import image_folder_input_fn
from aekit.data.context import InputContext
from aekit.estimator.inputs import iterate_batches

BATCH_SIZE = 2


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def main() -> None:
    folder, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    decoded: list[str] = []
    decode = image_folder._decode

    def counting_decode(file: Path, mode: str) -> Image.Image:
        decoded.append(file.name)
        return decode(file, mode)

    # Decoding runs in this process (no workers), so every file it opens passes here.
    image_folder._decode = counting_decode
    input_fn = image_folder_input_fn(folder, batch_size=BATCH_SIZE, num_epochs=1)
    shared = torch.Generator().manual_seed(0)  # the same state on both processes
    context = InputContext(None, world, rank, equal_shards=True, shuffle_generator=shared)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here on: the streaming alone
    start_rss = status_kib("VmRSS")
    ids: list[int] = []
    constant = True
    for features, _ in iterate_batches(input_fn, context):
        assert isinstance(features, torch.Tensor)
        flat = features.flatten(1)
        constant &= bool((flat.amin(1) == flat.amax(1)).all())
        ids += (flat[:, 0] * 255).round().long().sub(1).tolist()
    peak = status_kib("VmHWM")
    report = {
        "ids": ids,
        "decoded": decoded,
        "constant": constant,
        "peak_growth": (peak - start_rss) * 1024,
    }
    (out_dir / f"rank-{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
