"""Splits without copies: `Rows` of the loaded array, a .npy file memory-mapped and read by rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aekit.data import numpy_input_fn
from aekit.data.context import InputContext
from aekit.data.dataset import Dataset
from aekit.data.input_fn import shard_for_estimator
from aekit.data.rows import Rows, concat_rows, first_rows, read_rows, row_chunks, take_rows
from aekit.data.sources import TEST_EVERY, _split, load_dataset, split_positions
from aekit.estimator.inputs import iterate_batches


def old_split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The split as it was made before (boolean masks, copies): the figures to keep."""
    is_test = np.arange(len(x)) % TEST_EVERY == TEST_EVERY - 1
    if not is_test.any():
        is_test[-1] = True
    return x[~is_test], x[is_test]


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 9, 10, 11, 23])
def test_the_split_holds_the_same_examples_in_the_same_order(n: int) -> None:
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n) * 10
    (x_train, y_train), (x_test, y_test) = _split(x, y, "x")
    assert isinstance(x_train, Rows) and isinstance(x_test, Rows)
    assert x_train.base is x and x_test.base is x  # no copy: indices into the array
    want_train, want_test = old_split(x)
    np.testing.assert_array_equal(np.asarray(x_train), want_train)
    np.testing.assert_array_equal(np.asarray(x_test), want_test)
    assert y_train is not None and y_test is not None
    np.testing.assert_array_equal(y_train, old_split(y)[0])
    np.testing.assert_array_equal(y_test, old_split(y)[1])
    train, test = split_positions(n)
    assert sorted([*train, *test]) == list(range(n))


def test_a_npy_file_is_memory_mapped_and_split_by_index(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, (101, 4, 5), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    (x_train, y_train), (x_test, y_test) = load_dataset(tmp_path / "x.npy")
    assert y_train is None and y_test is None
    assert isinstance(x_train, Rows) and isinstance(x_train.base, np.memmap)
    assert x_test.base is x_train.base  # one map for both splits
    assert x_train.shape == (81, 4, 5) and x_test.shape == (20, 4, 5) and x_train.dtype == np.uint8
    want_train, want_test = old_split(x)
    np.testing.assert_array_equal(np.asarray(x_train), want_train)
    np.testing.assert_array_equal(x_test[:], want_test)
    np.testing.assert_array_equal(x_train[7], want_train[7])
    np.testing.assert_array_equal(x_train[[3, 0, 3], 1], want_train[[3, 0, 3], 1])
    np.testing.assert_array_equal(x_test.astype(np.float64) / 255, want_test / 255)
    assert x_train.min() == want_train.min() and x_train.max() == want_train.max()


def test_rows_read_from_views_of_a_memory_map(tmp_path: Path) -> None:
    x = np.random.default_rng(1).integers(0, 256, (50, 6, 5, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    index = np.array([49, 0, 7, 8, 9, 3, 3])
    # Channels first, a row read backwards, every 5th row: each a view, read from the file.
    for view, same in (
        (mapped.transpose(0, 3, 1, 2), x.transpose(0, 3, 1, 2)),
        (mapped[:, ::-1, :, ::2], x[:, ::-1, :, ::2]),
        (mapped[4::5], x[4::5]),
    ):
        got = read_rows(view, index % len(view))
        np.testing.assert_array_equal(got, same[index % len(same)])
        assert got.flags.c_contiguous
    with pytest.raises(IndexError):
        read_rows(mapped, np.array([50]))


def test_take_concat_and_first_rows_compose_indices() -> None:
    x = np.arange(20).reshape(10, 2)
    rows = take_rows(x, [9, 1, 4, 6])
    picked = rows.take([0, 2])
    assert isinstance(picked, Rows) and picked.base is x
    np.testing.assert_array_equal(np.asarray(picked), x[[9, 4]])
    both = concat_rows(rows, take_rows(x, [0]))
    assert isinstance(both, Rows) and list(both.index) == [9, 1, 4, 6, 0]
    head = first_rows(rows, 3)
    assert isinstance(head, Rows) and list(head.index) == [9, 1, 4]
    assert len(first_rows(rows, None)) == 4 and first_rows(x, 2).shape == (2, 2)
    np.testing.assert_array_equal(concat_rows(x[:2], x[2:3]), x[:3])  # arrays: concatenated
    assert [len(part) for _, part in row_chunks(rows, chunk_bytes=x.itemsize * 2 * 3)] == [3, 1]


def test_training_batches_over_rows_match_those_over_the_copy(tmp_path: Path) -> None:
    x = np.random.default_rng(2).integers(0, 256, (37, 3, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    (x_train, _), _ = load_dataset(tmp_path / "x.npy")
    copy = old_split(x)[0]
    y = np.arange(len(copy))
    lazy = numpy_input_fn(x_train, y, batch_size=8, num_epochs=2, seed=5)
    eager = numpy_input_fn(copy, y, batch_size=8, num_epochs=2, seed=5)
    for (a, ya), (b, yb) in zip(lazy(), eager(), strict=True):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(ya, yb)


class _Recording:
    """An array-like base that notes which rows are read."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.read: list[int] = []
        self.shape, self.dtype = x.shape, x.dtype

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        self.read.extend(np.atleast_1d(index).tolist())
        rows: np.ndarray = self.x[index]
        return rows


def test_each_process_of_a_job_reads_only_its_share_of_an_epoch() -> None:
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    shares = []
    for rank in (0, 1):
        base = _Recording(x)
        rows = Rows(base, np.arange(20))

        def input_fn(rows: Rows = rows) -> Dataset:
            data = Dataset.from_tensor_slices(rows).shuffle(20, seed=1)
            return shard_for_estimator(data).batch(4)

        context = InputContext(num_shards=2, shard_index=rank, equal_shards=True)
        list(iterate_batches(input_fn, context))
        shares.append(set(base.read))
        assert len(base.read) == 10  # its half of the epoch, each row once
    assert shares[0].isdisjoint(shares[1]) and shares[0] | shares[1] == set(range(20))
