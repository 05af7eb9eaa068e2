"""Batches of a fixed number of rows from pieces of any length (shared by the pipelines)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import overload

import numpy as np

from aekit.data.context import EpochEnd


@overload
def rebatch(
    pieces: Iterable[np.ndarray], rows: int, drop_remainder: bool = False
) -> Iterator[np.ndarray]: ...


@overload
def rebatch(
    pieces: Iterable[np.ndarray | EpochEnd], rows: int, drop_remainder: bool = False
) -> Iterator[np.ndarray | EpochEnd]: ...


def rebatch(
    pieces: Iterable[np.ndarray | EpochEnd], rows: int, drop_remainder: bool = False
) -> Iterator[np.ndarray | EpochEnd]:
    """Pieces of any length as batches of exactly `rows` rows (the last one fewer, or none
    with `drop_remainder`): index chunks into batches of indices, table pieces into batches.

    An `EpochEnd` among the pieces ends the batch being filled (a batch never mixes two
    epochs) and passes on after it. A batch made of several pieces is filled in place,
    never concatenated: one batch's memory, not two.
    """
    batch: np.ndarray | None = None
    count = 0
    for piece in pieces:
        if isinstance(piece, EpochEnd):
            if batch is not None and count and not drop_remainder:
                yield batch[:count]
            batch, count = None, 0
            yield piece
            continue
        if batch is None and count == 0 and len(piece) == rows:
            yield piece  # a piece the size of a batch passes as it is
            continue
        while len(piece):
            if batch is None:
                batch = np.empty((rows, *piece.shape[1:]), dtype=piece.dtype)
            take = min(rows - count, len(piece))
            batch[count : count + take] = piece[:take]
            count += take
            piece = piece[take:]
            if count == rows:
                yield batch
                batch, count = None, 0
    if batch is not None and count and not drop_remainder:
        yield batch[:count]
