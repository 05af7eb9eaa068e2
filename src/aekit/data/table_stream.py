"""Tables streamed as training input: pieces read as needed, shuffled in a bounded buffer.

`table_input_fn(source)` batches the rows of a `TableSource` (or of a table file, opened
with `open_table`) for an Estimator without holding the table: it reads the table's pieces
(a Parquet file's row groups, an Arrow file's record batches, an array's slices) when the
batches reach them.

Order: each epoch draws a permutation of the pieces (from `seed`, else from the Estimator's
shared generator, the same on every process), reads them `shuffle_pieces` at a time and
permutes the rows of those pieces together. Every row comes once an epoch; a row mixes
with the rows of the pieces read with it, not with the whole table (a bounded buffer, as
tf.data's shuffle): memory holds about twice `shuffle_pieces` pieces and a batch.

Shards: under torchrun the epoch's pieces are dealt in order, each to the process with the
fewest rows so far, and each process reads only its own. In training (equal shares) each
takes as many rows as the smallest share holds, leaving the rest of its own for that epoch
(the next epoch deals the pieces anew). A table that can only be read in order (CSV, an
Arrow stream, a Parquet file with fewer row groups than processes) is dealt in blocks of
rows in file order instead: each process reads past the others' blocks, keeping its own.
Empty pieces are left out of the deal. An epoch that would leave a process without a
batch is refused before anything is read, by every process alike (the same counts on
each), so that none of them loops through empty epochs or waits for another for ever.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import numpy as np
import torch

from aekit.checks import check_bool, check_int, shown
from aekit.data.batching import rebatch
from aekit.data.context import EpochEnd, EpochStream, InputContext, input_context
from aekit.data.sampler import order_seed
from aekit.data.table_files import open_table
from aekit.data.tables import Part, TableSource
from aekit.errors import ConfigError, InputError

__all__ = ["BLOCK_ROWS", "table_input_fn"]

Batch = tuple[torch.Tensor, torch.Tensor | None]
T = TypeVar("T")

BLOCK_ROWS = 8192
"""Rows per block when a table read in order is dealt among processes."""

_DTYPES = (torch.float32, torch.float64, torch.bfloat16)


def table_input_fn(
    source: TableSource | str | os.PathLike[str],
    batch_size: int = 128,
    num_epochs: int | None = 1,
    shuffle: bool = True,
    seed: int | None = None,
    labels: bool = False,
    shuffle_pieces: int = 4,
    label_column: int | str | bool | None = None,
    drop_remainder: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Callable[[], Iterable[Batch]]:
    """An input_fn streaming a table's rows as (features, labels) batches of `dtype`.

    `source` is a `TableSource` or a table file's path (.parquet/.pq, .feather/.arrow/.ipc,
    .csv; `label_column` as `open_table` takes it). `num_epochs` None repeats forever;
    `shuffle` permutes the pieces each epoch and the rows of every `shuffle_pieces` pieces
    together (a bounded buffer: see the module's docstring). `labels` gives the label
    column as int64 labels; otherwise the labels are None (reconstruct the features).
    """
    table = _opened(source, label_column)
    if dtype not in _DTYPES:
        raise ConfigError(
            f"dtype must be one of {', '.join(map(str, _DTYPES))}, got {shown(dtype)}"
        )
    settings = _Settings(
        batch_size=check_int("batch_size", batch_size, low=1),
        num_epochs=None if num_epochs is None else check_int("num_epochs", num_epochs, low=1),
        shuffle=check_bool("shuffle", shuffle),
        seed=None if seed is None else check_int("seed", seed, low=0, high=2**63 - 1),
        labels=check_bool("labels", labels),
        shuffle_pieces=check_int("shuffle_pieces", shuffle_pieces, low=1),
        drop_remainder=check_bool("drop_remainder", drop_remainder),
        dtype=dtype,
    )
    if settings.labels and table.label_name is None:
        raise ConfigError(
            f"{table.name}: the table has no label column; name it with label_column=..., "
            f"or give labels=False"
        )
    if _total_rows(table) == 0:
        raise InputError(f"{table.name}: the table has no rows; give at least one")

    def input_fn() -> Iterable[Batch]:
        # Read now: the stream is iterated after the Estimator's context is gone.
        return _Stream(table, settings, input_context())

    return input_fn


def _opened(
    source: TableSource | str | os.PathLike[str], label_column: int | str | bool | None
) -> TableSource:
    """`source` as a TableSource: a table file opened, a TableSource as it is."""
    if isinstance(source, str | os.PathLike):
        return open_table(source, label_column)
    if not isinstance(source, TableSource):
        raise ConfigError(
            f"source must be a TableSource or a table file's path, got {shown(source)}; "
            f"open arrays with aekit.data.numpy_input_fn"
        )
    if label_column is not None:
        raise ConfigError("label_column applies when opening a table file; give it to open_table")
    return source


@dataclasses.dataclass(frozen=True)
class _Settings:
    batch_size: int
    num_epochs: int | None
    shuffle: bool
    seed: int | None
    labels: bool
    shuffle_pieces: int
    drop_remainder: bool
    dtype: torch.dtype


class _Stream(EpochStream):
    """One process's batches: its share of every epoch, one epoch after another."""

    def __init__(self, table: TableSource, settings: _Settings, context: InputContext) -> None:
        self.table, self.settings, self.context = table, settings, context

    def with_epoch_ends(self) -> Iterator[Batch | EpochEnd]:
        settings = self.settings
        seed = order_seed(settings.seed, False, self.context.shuffle_generator)
        count = settings.num_epochs
        for epoch in range(count) if count is not None else itertools.count():
            # Each epoch ends with its own smaller batch, as numpy_input_fn's do.
            parts = self._epoch(seed, epoch)
            batches = 0
            for x, y in _rebatched(parts, settings.batch_size, settings.drop_remainder):
                features = torch.from_numpy(x).to(settings.dtype)
                yield features, None if y is None else torch.from_numpy(y)
                batches += 1
            if not batches:  # else an endless input would loop for ever, yielding nothing
                raise InputError(
                    f"{self.table.name}: epoch {epoch} gave process {self.context.shard_index} "
                    f"no batch, though its pieces declare rows for it; the table's pieces "
                    f"hold fewer rows than they declare"
                )
            yield EpochEnd(epoch, count)

    def _epoch(self, seed: int, epoch: int) -> Iterator[Part]:
        """This process's rows of one epoch, mixed `shuffle_pieces` pieces at a time."""
        table, settings = self.table, self.settings
        shards, shard = self.context.num_shards, self.context.shard_index
        sizes = table.piece_sizes()
        # Empty pieces are left out: dealt to a process, one would be its whole share.
        pieces = np.flatnonzero(sizes) if sizes is not None else np.empty(0, np.int64)
        if sizes is not None and len(pieces) >= shards:
            if settings.shuffle:  # the same permutation on every process: disjoint shares
                pieces = pieces[np.random.default_rng([seed, epoch]).permutation(len(pieces))]
            shares, rows = _deal(pieces, sizes, shards)
            groups: Iterator[list[Part]] = (
                [part for i in group for part in table.read_piece(i, settings.labels)]
                for group in _chunked(iter(shares[shard]), settings.shuffle_pieces)
            )
        else:
            n = _total_rows(table)
            if n < shards:
                raise InputError(
                    f"{table.name}: {n} row(s) cannot give each of {shards} processes a share; "
                    f"add rows or start fewer processes"
                )
            block = min(BLOCK_ROWS, n // shards)  # every process gets at least one block
            rows = _block_rows(n, block, shards)
            blocks = _rebatched(table.read_rows(settings.labels), block, False)
            mine = (part for k, part in enumerate(blocks) if k % shards == shard)
            groups = (list(group) for group in _chunked(mine, settings.shuffle_pieces))
        _check_shares(table.name, rows, settings)
        rng = np.random.default_rng([seed, epoch, shard])
        mixed = (part for group in groups for part in self._mixed(group, rng))
        if self.context.equal_shards and shards > 1:
            yield from _first(mixed, min(rows))  # every process the same number of batches
        else:
            yield from mixed

    def _mixed(self, group: list[Part], rng: np.random.Generator) -> Iterator[Part]:
        """A group's rows, permuted together when shuffling, a batch's worth at a time."""
        if not self.settings.shuffle or not group:
            yield from group
            return
        x = np.concatenate([p[0] for p in group])
        labels = [p[1] for p in group if p[1] is not None]
        y = np.concatenate(labels) if labels else None
        group.clear()  # the concatenated copy is the buffer now
        order = rng.permutation(len(x))
        step = self.settings.batch_size
        for start in range(0, len(x), step):
            chosen = order[start : start + step]
            yield x[chosen], None if y is None else y[chosen]


def _rebatched(parts: Iterable[Part], rows: int, drop_remainder: bool) -> Iterator[Part]:
    """(rows, labels) parts as parts of exactly `rows` rows, both through the shared batcher."""
    stream = iter(parts)
    first = next(stream, None)
    if first is None:
        return
    stream = itertools.chain([first], stream)
    if first[1] is None:
        for x in rebatch((x for x, _ in stream), rows, drop_remainder):
            yield x, None
        return
    # Two batchers in step: the copy tee keeps is the parts between them, about a batch.
    xs, ys = itertools.tee(stream)
    x_batches = rebatch((x for x, _ in xs), rows, drop_remainder)
    y_batches = rebatch((y for _, y in ys if y is not None), rows, drop_remainder)
    yield from zip(x_batches, y_batches, strict=True)


def _total_rows(table: TableSource) -> int:
    """The table's rows by its pieces' declared sizes where it has them (each piece is
    checked as it is read): counting a Parquet file's rows would read a column of every
    row group, where each process reads its own row groups only."""
    sizes = table.piece_sizes()
    return sum(sizes) if sizes is not None else table.n_rows


def _block_rows(n: int, block: int, shards: int) -> list[int]:
    """The rows of each process when `n` rows are dealt in blocks, block k to process
    k % shards: counted, not summed block by block (a footer may declare billions)."""
    count = -(-n // block)
    rows = [len(range(k, count, shards)) * block for k in range(shards)]
    rows[(count - 1) % shards] -= count * block - n  # the last block is short
    return rows


def _check_shares(name: str, rows: list[int], settings: _Settings) -> None:
    """Refuse an epoch that would give a process no batch, before any is read.

    Every process decides alike, from the same declared counts (`rows`: each process's),
    so that all refuse together and none waits for one that has stopped; a process left
    without batches would otherwise loop through empty epochs for ever.
    """
    least = min(rows)
    if least == 0:
        raise InputError(
            f"{name}: an epoch's rows split {rows} among {len(rows)} processes leave one "
            f"without rows; add rows or start fewer processes"
        )
    if settings.drop_remainder and least < settings.batch_size:
        raise InputError(
            f"{name}: an epoch's rows split {rows} among {len(rows)} process(es) give one "
            f"{least} rows, fewer than batch_size={settings.batch_size}, which "
            f"drop_remainder=True drops; lower batch_size, add rows or keep the remainder"
        )


def _deal(
    pieces: np.ndarray, sizes: tuple[int, ...], shards: int
) -> tuple[list[list[int]], list[int]]:
    """The pieces dealt in order, each to the share with the fewest rows: shares and rows.

    Balanced shares lose fewer rows to the equal cut than every num_shards-th piece would
    when the pieces differ in size (a short last row group).
    """
    shares: list[list[int]] = [[] for _ in range(shards)]
    rows = [0] * shards
    for piece in pieces.tolist():
        least = rows.index(min(rows))
        shares[least].append(piece)
        rows[least] += sizes[piece]
    return shares, rows


def _chunked(items: Iterator[T], size: int) -> Iterator[list[T]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def _first(parts: Iterator[Part], count: int) -> Iterator[Part]:
    """The first `count` rows of `parts`, the last part cut to fit."""
    for x, y in parts:
        if count <= 0:
            return
        if len(x) > count:
            x, y = x[:count], None if y is None else y[:count]
        count -= len(x)
        yield x, y
