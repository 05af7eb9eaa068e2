"""Streaming a folder of images: the in-memory pipeline's batches, shares, resume and memory."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import aekit
from aekit.data import (
    MaskingNoise,
    image_folder_input_fn,
    list_image_folder,
    load_dataset,
    load_image_folder,
    numpy_input_fn,
    split_image_folder,
)
from aekit.data.context import InputContext
from aekit.errors import ConfigError, InputError
from aekit.estimator import checkpoint as ckpt
from aekit.estimator.inputs import iterate_batches
from tiny import tiny_autoencoder_fn

Batches = list[tuple[Any, Any]]


def make_folder(root: Path, n: int, side: int = 8, classes: int = 2) -> Path:
    """`n` grey images in class folders; pixel (0, 0) of image i is i (its id), the rest noise."""
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 256, (side, side), dtype=np.uint8)
        pixels[0, 0] = i
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    return root


def batches(input_fn: Callable[[], Iterable[Any]], context: InputContext | None = None) -> Batches:
    return list(iterate_batches(input_fn, context))


def ids(features: Any) -> list[int]:
    """The images' ids (pixel (0, 0)) from float features in [0, 1]."""
    return [round(float(v) * 255) for v in features[:, 0, 0]]


def assert_same(expected: Batches, got: Batches) -> None:
    assert len(got) == len(expected) > 0
    for (x0, y0), (x1, y1) in zip(expected, got, strict=True):
        assert x1.dtype == x0.dtype and torch.equal(x1, x0)
        assert (y0 is None and y1 is None) or torch.equal(y1, y0)


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_equal_the_in_memory_pipelines(tmp_path: Path, workers: int) -> None:
    folder = make_folder(tmp_path / "images", 37)
    x, y = load_image_folder(folder)
    memory = numpy_input_fn(x, y, batch_size=5, num_epochs=3, seed=11)
    stream = image_folder_input_fn(
        folder, batch_size=5, num_epochs=3, seed=11, num_workers=workers, labels=True
    )
    assert_same(batches(memory), batches(stream))

    # load_dataset's split, and noise drawn from torch's generator: the same draws.
    (x_train, _), (x_test, _) = load_dataset(folder)
    train, test = split_image_folder(list_image_folder(folder))
    assert (len(train), len(test)) == (len(x_train), len(x_test)) == (30, 7)
    made: list[Batches] = []
    for input_fn in (
        numpy_input_fn(x_train, batch_size=4, num_epochs=2, seed=3, noise=MaskingNoise(0.5)),
        image_folder_input_fn(
            train, batch_size=4, num_epochs=2, seed=3, noise=MaskingNoise(0.5), num_workers=workers
        ),
    ):
        torch.manual_seed(0)
        made.append(batches(input_fn))
    assert_same(*made)
    in_order = image_folder_input_fn(test, batch_size=3, shuffle=False, num_workers=workers)
    assert_same(batches(numpy_input_fn(x_test, batch_size=3, shuffle=False)), batches(in_order))


def test_each_rank_takes_an_equal_share_of_every_epoch(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "images", 40)
    x, _ = load_image_folder(folder)
    for seed in (5, None):  # given, or drawn from the generator every rank shares
        shares = []
        for rank in range(2):
            generator = torch.Generator().manual_seed(9)
            context = InputContext(None, 2, rank, equal_shards=True, shuffle_generator=generator)
            stream = image_folder_input_fn(folder, batch_size=6, num_epochs=2, seed=seed)
            got = batches(stream, context)
            if seed is not None:
                memory = numpy_input_fn(x, batch_size=6, num_epochs=2, seed=seed)
                assert_same(batches(memory, context), got)
            shares.append([i for features, _ in got for i in ids(features)])
        assert len(shares[0]) == len(shares[1]) == 40
        for epoch in range(2):  # each epoch: disjoint halves that together hold every image
            halves = [set(share[epoch * 20 : (epoch + 1) * 20]) for share in shares]
            assert len(halves[0]) == len(halves[1]) == 20
            assert not halves[0] & halves[1] and halves[0] | halves[1] == set(range(40))
        assert shares[0][:20] != shares[0][20:]  # a new order each epoch

    # An odd number: cut to equal shares, as numpy_input_fn cuts it.
    odd = make_folder(tmp_path / "odd", 41)
    sizes = [
        sum(len(f) for f, _ in batches(image_folder_input_fn(odd, 4, seed=1), context))
        for context in (InputContext(None, 2, r, equal_shards=True) for r in range(2))
    ]
    assert sizes == [20, 20]


class Recorder:
    """A model_fn recording the ids of every training batch it sees."""

    def __init__(self) -> None:
        self.seen: list[list[int]] = []

    def __call__(
        self,
        network: nn.Sequential,
        features: torch.Tensor,
        labels: torch.Tensor | None,
        mode: aekit.ModeKeys,
        params: Mapping[str, Any],
    ) -> aekit.EstimatorSpec:
        if mode is aekit.ModeKeys.TRAIN:
            self.seen.append(ids(features))
        return tiny_autoencoder_fn(network, features, labels, mode, params)


def image_estimator(model_dir: Path, model_fn: Recorder) -> aekit.Estimator:
    torch.manual_seed(0)
    network = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 4), nn.ReLU(), nn.Linear(4, 64), nn.Unflatten(1, (8, 8))
    )
    config = aekit.RunConfig(
        random_seed=3, save_checkpoints_steps=3, log_step_count_steps=0, save_summary_steps=0
    )
    return aekit.Estimator(model_fn, network, model_dir=model_dir, config=config)


def test_a_resumed_run_continues_at_the_same_example(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "images", 30)
    stream = image_folder_input_fn(folder, batch_size=4, num_epochs=None, seed=7, resume=True)
    straight = Recorder()
    image_estimator(tmp_path / "a", straight).train(stream, max_steps=14, verbose=0)

    first = Recorder()
    image_estimator(tmp_path / "b", first).train(stream, max_steps=8, verbose=0)
    # As if killed after step 8 before its checkpoint: the run resumes from step 6.
    (tmp_path / "b" / "ckpt-8.pt").unlink()
    assert ckpt.step_of(ckpt.latest_checkpoint(tmp_path / "b")) == 6  # type: ignore[arg-type]
    resumed = Recorder()
    image_estimator(tmp_path / "b", resumed).train(stream, max_steps=14, verbose=0)

    assert first.seen == straight.seen[:8]
    assert resumed.seen == straight.seen[6:]  # steps 7..14: mid-epoch, then the next epoch
    flat = [i for batch in straight.seen for i in batch]
    assert sorted(flat[:30]) == list(range(30))  # each epoch every image once


def test_a_finished_stream_or_another_input_starts_afresh(tmp_path: Path) -> None:
    """Without resume each call starts afresh, as numpy_input_fn's."""
    folder = make_folder(tmp_path / "images", 30)
    once = image_folder_input_fn(folder, batch_size=4)
    recorder = Recorder()
    est = image_estimator(tmp_path / "model", recorder)
    est.train(once, verbose=0)
    est.train(once, verbose=0)  # ended last time: another epoch, in another order
    assert est.global_step == 16 and recorder.seen[:8] != recorder.seen[8:]
    other = image_folder_input_fn(folder, batch_size=4, num_epochs=None, seed=1)
    est.train(other, steps=3, verbose=0)
    fresh = iterate_batches(image_folder_input_fn(folder, batch_size=4, num_epochs=1, seed=1))
    assert recorder.seen[16:] == [ids(features) for features, _ in itertools.islice(fresh, 3)]


def one_line(error: pytest.ExceptionInfo[Exception], *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_unreadable_files_are_one_line_errors_naming_them(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "images", 6, side=32)
    noise = np.random.default_rng(1).integers(0, 256, (32, 32), dtype=np.uint8)
    damaged = folder / "class1" / "0003.png"
    Image.fromarray(noise).save(damaged)
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 2])  # the header reads; the pixels are cut off
    for workers in (0, 2):
        stream = image_folder_input_fn(folder, batch_size=2, shuffle=False, num_workers=workers)
        with pytest.raises(InputError) as error:
            batches(stream)
        one_line(error, str(damaged), "cannot read this image", "remove or replace it")

    (folder / "class0" / "0000.png").write_bytes(b"not an image")
    with pytest.raises(InputError) as error:  # unreadable when listed: before any training
        image_folder_input_fn(folder)
    one_line(error, str(folder / "class0" / "0000.png"), "cannot read this image")


def test_a_file_replaced_after_listing_and_bad_arguments(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "images", 4)
    stream = image_folder_input_fn(folder, batch_size=4)
    Image.new("L", (5, 5)).save(folder / "class0" / "0002.png")
    with pytest.raises(InputError) as error:
        batches(stream)
    one_line(error, "0002.png is 5x5", "changed after the folder was listed")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("L", (3, 3)).save(flat / "a.png")
    with pytest.raises(ConfigError, match="flat folder has no labels"):
        image_folder_input_fn(flat, labels=True)
    with pytest.raises(ConfigError, match="binarize='dynamic'"):
        image_folder_input_fn(flat, binarize="fixed")
    with pytest.raises(ConfigError, match="num_workers"):
        image_folder_input_fn(flat, num_workers=-1)
    with pytest.raises(ConfigError, match="give them to list_image_folder"):
        image_folder_input_fn(list_image_folder(flat), mode="RGB")


# Trains an epoch over each folder in turn, printing each run's peak memory over its start
# (KiB): the process's (the peak reset before each run) and its decoding workers'.
MEASURE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch
    from torch import nn
    import aekit
    from aekit.data import image_folder_input_fn, load_image_folder, numpy_input_fn
    from aekit.hooks import Hook
    from tiny import tiny_autoencoder_fn

    def status(pid="self"):
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        return {k: int(v.split()[0]) for k, v in (l.split(":", 1) for l in lines) if "kB" in v}

    class WorkerPeak(Hook):
        peak = 0
        def after_run(self, context, result):
            for tasks in Path("/proc/self/task").glob("*/children"):
                for pid in tasks.read_text().split():
                    self.peak = max(self.peak, status(pid)["VmHWM"])

    torch.manual_seed(0)
    network = nn.Sequential(nn.Flatten(), nn.Linear(64 * 64 * 3, 8), nn.ReLU(),
                            nn.Linear(8, 64 * 64 * 3), nn.Unflatten(1, (64, 64, 3)))
    config = aekit.RunConfig(log_step_count_steps=0, save_summary_steps=0, random_seed=0)
    est = aekit.Estimator(tiny_autoencoder_fn, network, model_dir=sys.argv[1], config=config)
    for folder, how in zip(sys.argv[2::2], sys.argv[3::2]):
        Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again here
        base, workers = status()["VmRSS"], WorkerPeak()
        if how == "stream":
            data = image_folder_input_fn(folder, 50, mode="RGB", num_workers=2)
        else:
            data = numpy_input_fn(load_image_folder(folder, mode="RGB")[0], batch_size=50)
        step = est.global_step
        est.train(data, hooks=[workers], verbose=0)
        steps, growth = est.global_step - step, status()["VmHWM"] - base
        print(json.dumps({"growth": growth, "workers": workers.peak, "steps": steps}))
    """
)


@pytest.mark.slow
def test_memory_does_not_grow_with_the_folder(tmp_path: Path) -> None:
    """Peak memory over the start while training an epoch: 3,000 vs 1,000 colour 64x64 PNGs.

    Held in memory, the 3,000 images take 3,000 x 64 x 64 x 3 bytes = 35.2 MiB (the control
    run sees them), 2,000 of them 23.4 MiB. Streamed, only the list of files grows (about
    100 bytes a file while listing, 50 kept: 0.2 MiB for 2,000), and the batches in flight
    (2 workers x 2 batches ahead) are the same for both: 4 MiB leaves room for noise and is
    a sixth of what the images would take. The larger folder runs before the smaller, so
    what it leaves in the allocator's pools can only flatter the smaller.
    """
    big, small, warm = tmp_path / "3000", tmp_path / "1000", tmp_path / "100"
    for folder in (big, small, warm):
        folder.mkdir()
    for i in range(3000):
        name = f"{i:04d}.png"
        # Plain colours: quick to write and read; decoded, every image takes 12 KiB all the same.
        Image.new("RGB", (64, 64), (i % 256, i // 256, 7)).save(big / name)
        for folder in (small, warm)[: (i < 1000) + (i < 100)]:
            os.link(big / name, folder / name)
    script = tmp_path / "measure.py"
    script.write_text(MEASURE)
    tests_dir = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tests_dir), os.environ.get("PYTHONPATH", "")]),
        # glibc raises its mmap threshold each time a large block is freed, then keeps freed
        # batches in its heap (up to some 100 MiB, by step count, not data size); a fixed
        # threshold returns them at once, so what is measured is what the pipeline holds.
        "MALLOC_MMAP_THRESHOLD_": str(128 * 1024),
    }
    # The first run pays for what is set up once (imports, the first step, the first workers).
    runs = [str(warm), "stream", str(big), "stream", str(small), "stream", str(big), "memory"]
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "model"), *runs],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    _, many, few, held = (json.loads(line) for line in done.stdout.strip().splitlines()[-4:])
    assert (many["steps"], few["steps"], held["steps"]) == (60, 20, 60)
    mib = 1024  # /proc gives KiB
    print(f"peak over the start: streamed {few['growth'] / mib:.1f} -> {many['growth'] / mib:.1f}"
          f" MiB, its workers {few['workers'] / mib:.1f} -> {many['workers'] / mib:.1f} MiB; "
          f"held in memory {held['growth'] / mib:.1f} MiB")  # fmt: skip
    assert held["growth"] - many["growth"] > 30 * mib  # the measure sees the images held
    assert many["growth"] - few["growth"] < 4 * mib
    assert few["workers"] > 0 and many["workers"] - few["workers"] < 4 * mib
