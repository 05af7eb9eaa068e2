"""Two real processes training on a memory-mapped .npy file: each reads its share, none loads it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

# Runs the command given as a child and prints the largest peak resident memory (KiB) among
# it and its descendants (torchrun and its workers): this fresh process has no other children.
_PEAK = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
    "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def write_images(path: Path, count: int) -> int:
    """`count` random 28x28 uint8 images in a .npy file, written in parts; its size in bytes."""
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(count, 28, 28))
    rng = np.random.default_rng(0)
    for start in range(0, count, 50_000):
        part = images[start : start + 50_000]
        part[:] = rng.integers(0, 256, part.shape, dtype=np.uint8)
    images.flush()
    del images
    return path.stat().st_size


def test_each_process_peaks_well_below_the_data(tmp_path: Path) -> None:
    # 82 MiB: twice the bound below, so that a process loading it whole fails by a wide margin;
    # what each process grows by otherwise stays near 30 MiB.
    size = write_images(tmp_path / "big.npy", 110_000)
    write_images(tmp_path / "tiny.npy", 2_000)
    # A fixed mmap threshold: glibc's cache of freed batches is not what is measured here
    # (tests/cli/test_mapped_data.py says more).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": str(128 << 10),
           "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}  # fmt: skip
    peaks = []
    for name in ("big", "tiny"):  # one after the other: four workers at once crowd 2 cores
        command = [sys.executable, "-c", _PEAK, sys.executable, "-m", "aekit.cli.main", "train",
                   "fully_connected", "--nproc-per-node", "2", "--dataset",
                   str(tmp_path / f"{name}.npy"), "--model-dir", str(tmp_path / name),
                   "--epochs", "1", "--batch-size", "512"]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        peaks.append(int(done.stdout.split()[-1]) * 1024)
        # 88,000 training examples: 44,000 a process, in batches of 512.
        assert (tmp_path / name / "ckpt-86.pt").exists() or name == "tiny"
    grown = peaks[0] - peaks[1]
    # Every process loaded the whole file before (and copied 80% of it for its split): each
    # grew by more than the file. Now each reads the rows of its own batches only.
    assert grown < size / 2, f"{grown / 2**20:.0f} MiB over the small job for {size / 2**20:.0f}"
