"""A .npy data set bigger than its memory: memory-mapped, checked in chunks, read by rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aekit.cli import data
from aekit.data import rows
from aekit.data.rows import Rows
from aekit.errors import InputError

# Runs the command given as a child and prints its peak resident memory (KiB): this fresh
# process has no other children, so RUSAGE_CHILDREN's maximum is that command's alone.
_PEAK = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
    "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def settings(path: Path, **more: Any) -> dict[str, Any]:
    return {"dataset": str(path), "data_dir": None, **more}


def write_images(path: Path, count: int, seed: int = 0) -> int:
    """`count` random 28x28 uint8 images in a .npy file, written in parts; its size in bytes."""
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(count, 28, 28))
    rng = np.random.default_rng(seed)
    for start in range(0, count, 50_000):
        part = images[start : start + 50_000]
        part[:] = rng.integers(0, 256, part.shape, dtype=np.uint8)
    images.flush()
    del images
    return path.stat().st_size


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of two 4x4 float32 rows, so that a small file is checked in many of them."""
    monkeypatch.setattr(rows, "CHUNK_BYTES", 2 * 16 * 4)


@pytest.mark.parametrize(
    ("value", "found"),
    [
        (np.nan, "the training set holds NaN or infinite values in 1 example(s), the first "
         "example 39"),
        (np.inf, "the training set holds NaN or infinite values"),
        (1.5, "the training set's pixels run from 0 to 1.5 (example 39 is the first outside"),
    ],
)  # fmt: skip
def test_a_bad_value_in_the_last_chunk_is_found_and_named(
    tmp_path: Path, small_chunks: None, value: float, found: str
) -> None:
    x = np.zeros((49, 4, 4), np.float32)  # row 48 is the last training example, its 40th
    x[48, 3, 2] = value
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(InputError) as error:
        data.load_images(settings(tmp_path / "x.npy"))
    assert found in str(error.value) and "\n" not in str(error.value)


def test_loading_checking_and_channels_first_read_nothing_whole(
    tmp_path: Path, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = np.random.default_rng(0).random((30, 8, 8, 3), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)

    def whole(*_: object, **__: object) -> None:
        raise AssertionError("a split was read whole")

    monkeypatch.setattr(Rows, "__array__", whole)
    (x_train, _), (x_test, _) = data.load_images(settings(tmp_path / "x.npy"))
    assert isinstance(x_train, Rows) and isinstance(x_test, Rows)
    assert x_train.shape == (24, 3, 8, 8)  # channels first, as a view of the map
    line = data.describe(settings(tmp_path / "x.npy"), [(x_train, None), (x_test, None)])
    assert "24 training and 6 test examples of shape [3, 8, 8], float32" in line
    monkeypatch.undo()
    np.testing.assert_array_equal(x_test[:], x[4::5].transpose(0, 3, 1, 2))


def test_left_out_classes_are_indices_into_the_data(tmp_path: Path) -> None:
    x = np.arange(20 * 4, dtype=np.uint8).reshape(20, 2, 2)
    y = np.arange(20) % 3
    np.savez(tmp_path / "d.npz", x=x, y=y)
    (x_train, y_train), (x_test, y_test) = data.load_images(
        settings(tmp_path / "d.npz", exclude_classes=[1])
    )
    assert isinstance(x_train, Rows) and isinstance(x_test, Rows)
    assert y_train is not None and y_test is not None
    assert 1 not in y_train and 1 not in y_test
    train = np.array([i for i in range(20) if i % 5 != 4 and i % 3 != 1])
    np.testing.assert_array_equal(np.asarray(x_train), x[train])
    np.testing.assert_array_equal(y_train, y[train])


def peak_kib(*runs: list[str]) -> list[int]:
    """The peak resident memory of each `aekit ARGS`, run side by side in child processes (KiB).

    glibc's allocator keeps freed batch buffers for reuse once it has seen a few (its mmap
    threshold rises to their size), some 50 MiB however large the data: a fixed threshold
    leaves what the data themselves cost.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": str(128 << 10)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _PEAK, sys.executable, "-m", "aekit.cli.main", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for args in runs
    ]
    peaks = []
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-2000:]
        peaks.append(int(out.split()[-1]))
    return peaks


@pytest.mark.slow
def test_training_on_a_large_npy_file_keeps_it_out_of_memory(tmp_path: Path) -> None:
    # 64 MiB of pixels: twice the bound below, so that reading it whole, or through pages kept
    # mapped, fails by a wide margin; what training grows by stays near 20 MiB at any size.
    size = write_images(tmp_path / "big.npy", 85_000)
    write_images(tmp_path / "tiny.npy", 2_000)
    big, tiny = peak_kib(
        *(
            ["train", "fully_connected", "--dataset", str(tmp_path / f"{name}.npy"),
             "--model-dir", str(tmp_path / name), "--epochs", "1", "--batch-size", "1024"]
            for name in ("big", "tiny")
        )
    )  # fmt: skip
    grown = (big - tiny) * 1024
    # Loading the file whole took 1.2 times its size over the small run (the split's copy on
    # top of the loaded array), and pages read through the map would count once more. What
    # grows now is a few batches in flight and index arrays (8 bytes an example): ~20 MiB.
    assert grown < size / 2, f"{grown / 2**20:.0f} MiB over the small run for {size / 2**20:.0f}"
