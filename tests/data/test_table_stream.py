"""table_input_fn: every row once an epoch, seeded order, labels, shares, bounded mixing, errors."""

from __future__ import annotations

import contextlib
import csv
import itertools
import signal
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.feather as feather  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
import torch

import aekit
from aekit.data import table_input_fn
from aekit.data.context import EpochEnd, EpochStream, InputContext, calling
from aekit.data.table_files import open_table
from aekit.data.tables import ArrayTable
from aekit.errors import AekitError, ConfigError, InputError
from aekit.estimator.inputs import iterate_batches

N = 1_003  # row groups of 100 and a short last one


def columns(n: int = N) -> dict[str, np.ndarray]:
    """An id column (the row's number), two noise columns and labels: the id mod 3."""
    rng = np.random.default_rng(0)
    return {"id": np.arange(n, dtype=np.float64), "a": rng.normal(size=n),
            "b": rng.normal(size=n), "label": np.arange(n) % 3}  # fmt: skip


def write_parquet(path: Path, n: int = N, group: int = 100) -> Path:
    pq.write_table(pa.table(columns(n)), path, row_group_size=group)
    return path


def write_feather(path: Path) -> Path:
    feather.write_feather(pa.table(columns()), path, chunksize=128)
    return path


def write_csv(path: Path) -> Path:
    data = columns()
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(list(data))
        out.writerows(zip(*(v.tolist() for v in data.values()), strict=True))
    return path


WRITERS: dict[str, Callable[[Path], Path]] = {
    "parquet": lambda d: write_parquet(d / "t.parquet"),
    "feather": lambda d: write_feather(d / "t.feather"),
    "csv": lambda d: write_csv(d / "t.csv"),
}


Batches = list[tuple[torch.Tensor, torch.Tensor | None]]


def stream(input_fn: Callable[[], Iterable[Any]], context: InputContext | None = None) -> Batches:
    """The input's batches as an Estimator reads them (its context given to the input_fn)."""
    batches: Batches = []
    for features, labels in iterate_batches(input_fn, context):
        assert isinstance(features, torch.Tensor)
        assert labels is None or isinstance(labels, torch.Tensor)
        batches.append((features, labels))
    return batches


def ids(input_fn: Callable[[], Iterable[Any]], context: InputContext | None = None) -> np.ndarray:
    """The id column of every row the input gives, in order."""
    batches = [f[:, 0].numpy() for f, _ in stream(input_fn, context)]
    return np.concatenate(batches).astype(np.int64)


@pytest.mark.parametrize("kind", list(WRITERS))
def test_every_row_comes_once_an_epoch_in_a_new_order(kind: str, tmp_path: Path) -> None:
    path = WRITERS[kind](tmp_path)
    batches = stream(table_input_fn(path, batch_size=64, num_epochs=2, seed=1))
    per_epoch = -(-N // 64)  # each epoch ends with its own smaller batch
    assert [len(f) for f, _ in batches] == ([64] * (per_epoch - 1) + [N % 64]) * 2
    assert all(f.dtype == torch.float32 and f.shape[1] == 3 and y is None for f, y in batches)
    seen = np.concatenate([f[:, 0].numpy() for f, _ in batches]).astype(np.int64)
    first, second = seen[:N], seen[N:]
    assert sorted(first) == sorted(second) == list(range(N))
    assert not np.array_equal(first, second) and not np.array_equal(first, np.arange(N))


def test_the_same_seed_gives_the_same_order_and_no_shuffle_the_files(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "t.parquet")
    assert np.array_equal(ids(table_input_fn(path, seed=5)), ids(table_input_fn(path, seed=5)))
    assert not np.array_equal(ids(table_input_fn(path, seed=5)), ids(table_input_fn(path, seed=6)))
    assert np.array_equal(ids(table_input_fn(path, shuffle=False)), np.arange(N))
    # Unseeded: the order comes from the generator the Estimator hands every process.
    drawn = [
        ids(table_input_fn(path), InputContext(shuffle_generator=torch.Generator().manual_seed(3)))
        for _ in range(2)
    ]
    assert np.array_equal(drawn[0], drawn[1])


@pytest.mark.parametrize("kind", list(WRITERS))
def test_labels_stay_with_their_rows(kind: str, tmp_path: Path) -> None:
    path = WRITERS[kind](tmp_path)
    for features, labels in stream(table_input_fn(path, batch_size=50, labels=True)):
        assert labels is not None and labels.dtype == torch.int64
        assert torch.equal(labels, features[:, 0].long() % 3)
    float64 = table_input_fn(path, dtype=torch.float64, label_column=False, shuffle=False)
    first, _ = stream(float64)[0]
    assert first.dtype == torch.float64 and first.shape[1] == 4  # the label column is data
    assert first[:, 3].tolist() == [i % 3 for i in range(128)]


@pytest.mark.parametrize(("group", "equal"), [(100, False), (100, True), (2_000, True)])
def test_two_shares_are_disjoint_and_cover_the_table(
    group: int, equal: bool, tmp_path: Path
) -> None:
    # Row groups of 100 are dealt to the processes; one row group of them all is read in
    # blocks, each process keeping every other one.
    path = write_parquet(tmp_path / "t.parquet", group=group)
    shares = [ids(table_input_fn(path, seed=2, batch_size=32), InputContext(None, 2, k, equal))
              for k in range(2)]  # fmt: skip
    assert not set(shares[0]) & set(shares[1])
    together = sorted(np.concatenate(shares))
    if equal:  # the same number of rows (and batches); the shorter share's count
        assert len(shares[0]) == len(shares[1]) >= N // 2 - 3
        assert set(together) <= set(range(N))
    else:
        assert together == list(range(N))


def test_rows_mix_within_the_pieces_read_together(tmp_path: Path) -> None:
    x = np.arange(1_000, dtype=np.float64)[:, None]
    table = ArrayTable(x, piece_rows=100)
    order = ids(table_input_fn(table, batch_size=100, shuffle_pieces=1, seed=0))
    pieces = [set(order[k : k + 100] // 100) for k in range(0, 1_000, 100)]
    assert all(len(p) == 1 for p in pieces)  # one piece at a time: a buffer of 100 rows
    assert sorted(p.pop() for p in pieces) == list(range(10))  # the pieces' order drawn
    wider = ids(table_input_fn(table, batch_size=100, shuffle_pieces=4, seed=0))
    assert len(set(wider[:100] // 100)) > 1


def test_an_estimator_trains_on_a_table_file(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "t.parquet")
    est = aekit.AutoEncoder([4], input_shape=(3,), model_dir=tmp_path / "run",
                            config=aekit.RunConfig(log_step_count_steps=0))  # fmt: skip
    est.train(table_input_fn(path, batch_size=100, num_epochs=2))
    assert est.global_step == 22  # 1,003 rows an epoch: 11 batches, the last of 3 rows


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "t.parquet")
    unlabelled = tmp_path / "u.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0]}), unlabelled)
    empty = tmp_path / "e.parquet"
    pq.write_table(pa.table({"a": pa.array([], pa.float64())}), empty)
    table = open_table(path)
    cases: list[tuple[Callable[[], object], type[AekitError], str]] = [
        (lambda: table_input_fn(path, batch_size=0), ConfigError, "batch_size"),
        (lambda: table_input_fn(path, shuffle_pieces=0), ConfigError, "shuffle_pieces"),
        (lambda: table_input_fn(path, num_epochs=0), ConfigError, "num_epochs"),
        (lambda: table_input_fn(path, dtype=torch.int64), ConfigError, "dtype"),
        (lambda: table_input_fn(np.zeros((3, 2))), ConfigError, "numpy_input_fn"),  # type: ignore[arg-type]
        (lambda: table_input_fn(table, label_column="id"), ConfigError, "open_table"),
        (lambda: table_input_fn(unlabelled, labels=True), ConfigError, "label_column"),
        (lambda: table_input_fn(empty), InputError, "no rows"),
        (lambda: table_input_fn(tmp_path / "none.parquet"), InputError, "no such file"),
    ]
    for call, kind, phrase in cases:
        with pytest.raises(kind) as caught:
            call()
        message = str(caught.value)
        assert phrase in message and "\n" not in message, message
    one_row = tmp_path / "one.parquet"
    pq.write_table(pa.table({"a": [1.0]}), one_row)
    with pytest.raises(InputError, match="cannot give each of 2 processes"):
        ids(table_input_fn(one_row), InputContext(None, 2, 0))


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """Fail the block, rather than hang the tests, when it runs longer than `seconds`."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s: it would run for ever")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def write_groups(path: Path, groups: list[int]) -> Path:
    """A Parquet file with row groups of these sizes (0: an empty row group), ids from 0."""
    data = pa.table(columns(sum(groups)))
    with pq.ParquetWriter(path, data.schema) as writer:
        start = 0
        for size in groups:
            writer.write_table(data.slice(start, size))
            start += size
    assert pq.ParquetFile(path).metadata.num_row_groups == len(groups)
    return path


def epochs(
    input_fn: Callable[[], Iterable[Any]], context: InputContext, count: int
) -> list[np.ndarray]:
    """The ids of the rows of the first `count` epochs one process gets, an array an epoch."""
    stream = calling(input_fn, context)
    assert isinstance(stream, EpochStream)
    found: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    for item in itertools.islice(stream.with_epoch_ends(), 10_000):
        if isinstance(item, EpochEnd):
            assert rows, f"epoch {item.index} gave process {context.shard_index} no rows"
            found.append(np.concatenate(rows).astype(np.int64))
            rows = []
            if len(found) == count:
                return found
        else:
            rows.append(item[0][:, 0].numpy())
    raise AssertionError(f"{len(found)} epochs in 10,000 items")


def test_empty_row_groups_neither_hang_nor_end_an_endless_input(tmp_path: Path) -> None:
    for groups in ([5, 0], [0, 5, 0], [0, 3, 0, 0, 4], [0, 2, 2, 0], [4, 0, 0, 0]):
        path = write_groups(tmp_path / f"{len(groups)}-{groups[0]}.parquet", groups)
        input_fn = table_input_fn(path, batch_size=2, num_epochs=None, seed=0)
        n = sum(groups)
        for shards in (1, 2):
            with within(10):
                shares = [epochs(input_fn, InputContext(None, shards, k, True), 4)
                          for k in range(shards)]  # fmt: skip
            for epoch in zip(*shares, strict=True):  # equal, disjoint shares of rows
                assert len({len(share) for share in epoch}) == 1, (groups, shards)
                assert len(epoch[0]) >= n // shards - 1, (groups, shards)
                together = np.concatenate(epoch)
                assert len(set(together)) == len(together) and set(together) <= set(range(n))


@pytest.mark.parametrize(
    ("groups", "shards", "batch", "says"),
    [
        ([1, 0], 2, 2, "1 row(s) cannot give each of 2 processes a share"),
        ([0, 1, 0, 0], 2, 2, "1 row(s) cannot give each of 2 processes a share"),
        (
            [3, 3],
            2,
            4,
            "rows split [3, 3] among 2 process(es) give one 3 rows, fewer than batch_size=4",
        ),
        ([3, 0], 1, 4, "rows split [3] among 1 process(es) give one 3 rows"),
    ],
)
def test_a_share_that_would_give_no_batch_is_refused_by_every_process_alike(
    tmp_path: Path, groups: list[int], shards: int, batch: int, says: str
) -> None:
    # Endless, every process the same number of batches (training): a process left without
    # a batch would loop through empty epochs for ever, and the others wait for it.
    path = write_groups(tmp_path / "t.parquet", groups)
    input_fn = table_input_fn(path, batch_size=batch, num_epochs=None, drop_remainder=True)
    messages = set()
    for k in range(shards):
        with within(10), pytest.raises(InputError) as caught:
            ids(input_fn, InputContext(None, shards, k, True))
        messages.add(str(caught.value))
    assert len(messages) == 1  # the same decision, from the same counts
    message = messages.pop()
    assert says in message and message.startswith(str(path)) and "\n" not in message, message


class Hollow(ArrayTable):
    """An array table whose pieces hold none of the rows they declare: a source that lies."""

    def read_piece(self, index: int, labels: bool = False) -> Iterator[tuple[np.ndarray, None]]:
        yield from ()


def test_an_epoch_without_a_batch_ends_an_endless_input_with_an_error() -> None:
    input_fn = table_input_fn(Hollow(np.zeros((10, 2)), piece_rows=5), num_epochs=None)
    with within(10), pytest.raises(InputError, match="epoch 0 gave process 0 no batch"):
        ids(input_fn)
