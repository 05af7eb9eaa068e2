"""Tables read in pieces: Parquet, Arrow IPC / Feather and CSV files, and arrays, alike.

`open_table(path, label_column)` gives a `TableSource`: its number of rows, its feature
names, float64 batches of its rows in order (`batches`), the labels column when there is
one (`labels`) and rows by index (`take`, to draw a uniform sample). Nothing holds the
whole table: a Parquet file is read a few thousand rows at a time, an Arrow file through a
memory map, record batch by record batch, a CSV file parsed in blocks. `ArrayTable` gives
an in-memory array or a memory map the same interface, converting a batch at a time.

Every feature column must hold numbers (integers, floats or booleans) with no missing, NaN
or infinite value; the error names the column. The label column follows the CSV rule of
`aekit.data.csv_file`: a column named label, labels, class, target or y (any case) unless
`label_column` names another (or an index), and none at all with `label_column=False`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from aekit.data.batching import rebatch
from aekit.errors import AekitError, ConfigError, InputError
from aekit.files import os_reason

__all__ = ["SUFFIXES", "ArrayTable", "TableSource"]

SUFFIXES = (".parquet", ".pq", ".feather", ".arrow", ".ipc", ".arrows", ".csv")
"""File names `open_table` reads, by their ending (any case)."""

BATCH_ROWS = 65_536
"""Rows per batch when the caller does not say."""

Part = tuple[np.ndarray, np.ndarray | None]
"""Rows (float64) and their int64 labels, or None when not asked for or the table has none."""


class TableSource(ABC):
    """Rows of numbers read in pieces, in a fixed order: the interface every table gives.

    Subclasses give `n_rows` and `_pieces`, the table's feature rows in order as float64
    arrays of any length, already checked.
    """

    name: str  # what error messages call the table: its path, or "X"
    feature_names: tuple[str, ...]
    label_name: str | None = None
    named = True  # whether the feature names come from the data (False: their positions)

    @property
    @abstractmethod
    def n_rows(self) -> int:
        """The number of rows."""

    @property
    def n_features(self) -> int:
        """The number of feature columns (the label column not counted)."""
        return len(self.feature_names)

    def __len__(self) -> int:
        return self.n_rows

    def __repr__(self) -> str:
        labels = f", labels {self.label_name!r}" if self.label_name else ""
        return f"{type(self).__name__}({self.name}: {self.n_features} features{labels})"

    @abstractmethod
    def _pieces(self) -> Iterator[np.ndarray]:
        """The feature rows in order, float64 (rows, n_features), in pieces of any size."""

    def batches(self, rows_per_batch: int = BATCH_ROWS) -> Iterator[np.ndarray]:
        """The feature rows in order, float64, `rows_per_batch` a batch (the last one fewer)."""
        if isinstance(rows_per_batch, bool) or not isinstance(rows_per_batch, int | np.integer):
            raise ConfigError(f"rows_per_batch must be an int >= 1, got {rows_per_batch!r}")
        if rows_per_batch < 1:
            raise ConfigError(f"rows_per_batch must be an int >= 1, got {rows_per_batch}")
        yield from rebatch(self._pieces(), int(rows_per_batch))

    def to_numpy(self) -> np.ndarray:
        """Every row, float64 (n_rows, n_features): only for a table known to fit in memory."""
        pieces = list(self._pieces())
        if not pieces:
            return np.empty((0, self.n_features))
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def take(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """The rows at `indices` (any order, repeats allowed), float64, in that order.

        Files are read once from the start to the last index asked for, converting only the
        rows asked for.
        """
        wanted = np.asarray(indices)
        if wanted.ndim != 1 or (wanted.size and wanted.dtype.kind not in "iu"):
            raise ConfigError(f"take needs a 1-D array of integer row indices, got {wanted!r}")
        wanted = wanted.astype(np.int64, copy=False)
        out = np.empty((len(wanted), self.n_features))
        if not len(wanted):
            return out
        if wanted.min() < 0 or wanted.max() >= self.n_rows:
            raise ConfigError(
                f"{self.name}: row indices must be in 0..{self.n_rows - 1}, got "
                f"{int(wanted.min())}..{int(wanted.max())}"
            )
        order = np.argsort(wanted, kind="stable")
        ordered = wanted[order]
        self._fill(ordered, order, out)
        return out

    def _fill(self, ordered: np.ndarray, order: np.ndarray, out: np.ndarray) -> None:
        """Put the rows at sorted indices `ordered` into out[order], reading in order."""
        start = 0
        for piece in self._pieces():
            stop = start + len(piece)
            lo, hi = np.searchsorted(ordered, [start, stop])
            if hi > lo:
                out[order[lo:hi]] = piece[ordered[lo:hi] - start]
            if hi == len(ordered):
                return
            start = stop

    def labels(self) -> np.ndarray | None:
        """The label column as int64 (n_rows,), or None when the table has none."""
        return None

    def piece_sizes(self) -> tuple[int, ...] | None:
        """The row counts of the pieces `read_piece` reads on their own; None: only in order."""
        return None

    def read_piece(self, index: int, labels: bool = False) -> Iterator[Part]:
        """Piece `index`'s rows (float64) and, with `labels`, their labels, in a few parts."""
        raise InputError(f"{self.name}: this table can only be read in order; use read_rows")

    def read_rows(self, labels: bool = False) -> Iterator[Part]:
        """Every row in order, in parts, with its labels (or None) beside each part."""
        y = self.labels() if labels else None
        start = 0
        for piece in self._pieces():
            yield piece, None if y is None else y[start : start + len(piece)]
            start += len(piece)


class ArrayTable(TableSource):
    """An array (or a read-only memory map) of rows, converted to float64 a batch at a time.

    `x` must already be a 2-D array of real numbers (the detector validates it first); the
    check for NaN and infinite values happens batch by batch, naming the column by position.
    """

    named = False

    def __init__(self, x: np.ndarray, name: str = "X", piece_rows: int = BATCH_ROWS) -> None:
        if x.ndim != 2:
            raise InputError(f"{name} must be 2-D (rows, features), got shape {x.shape}")
        self.x, self.name, self.piece_rows = x, name, piece_rows
        self.feature_names = tuple(str(i) for i in range(x.shape[1]))

    @property
    def n_rows(self) -> int:
        return len(self.x)

    def _pieces(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self.x), self.piece_rows):
            yield self._checked(self.x[start : start + self.piece_rows], start)

    def to_numpy(self) -> np.ndarray:
        if self.x.dtype == np.float64:  # no copy: the array itself, checked in pieces
            for start in range(0, len(self.x), self.piece_rows):
                check_finite(self.x[start : start + self.piece_rows], start, self)
            return np.asarray(self.x)
        return super().to_numpy()

    def _fill(self, ordered: np.ndarray, order: np.ndarray, out: np.ndarray) -> None:
        out[order] = self._checked(self.x[ordered], None)

    def piece_sizes(self) -> tuple[int, ...]:
        n, step = len(self.x), self.piece_rows
        return tuple(min(step, n - start) for start in range(0, n, step))

    def read_piece(self, index: int, labels: bool = False) -> Iterator[Part]:
        start = index * self.piece_rows
        yield self._checked(self.x[start : start + self.piece_rows], start), None

    def _checked(self, rows: np.ndarray, first_row: int | None) -> np.ndarray:
        with np.errstate(invalid="ignore"):  # a signalling NaN warns as it widens: refused next
            converted = np.asarray(rows, dtype=np.float64)
        check_finite(converted, first_row, self)
        return converted


def is_table_path(value: Any) -> bool:
    """Whether `value` is a path (str or PathLike), which `open_table` would read."""
    return isinstance(value, str | os.PathLike)


def check_finite(rows: np.ndarray, first_row: int | None, table: TableSource) -> None:
    """Raise an InputError naming the first column (and row) with NaN or an infinite value."""
    finite = np.isfinite(rows)
    if finite.all():
        return
    row, column = np.argwhere(~finite)[0]
    where = f" (row {first_row + int(row)})" if first_row is not None else ""
    raise InputError(
        f"{table.name}: column {table.feature_names[column]!r} holds NaN or infinite values"
        f"{where}; fill or drop them first"
    )


# --- reading files: pyarrow on demand, its errors as InputErrors, declared sizes checked ---


def arrow(module: str = "pyarrow") -> Any:
    """pyarrow (or one of its modules), or a ConfigError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            "reading Parquet, Arrow/Feather and CSV tables needs pyarrow; install it with "
            "pip install pyarrow"
        ) from None


@contextlib.contextmanager
def reading_table(path: Path, kind: str) -> Iterator[None]:
    """pyarrow's and the system's errors while reading `path` as one-line InputErrors.

    A damaged file fails in pyarrow's words (ArrowInvalid, or an OSError such as "Couldn't
    deserialize thrift" for a bad page), an unreadable or vanished one with the system's:
    either is the file's fault, not a bug, at its first read or only at its last row group.
    """
    pa = arrow()
    try:
        yield
    except AekitError:
        raise
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        text = (os_reason(exc) if isinstance(exc, OSError) else str(exc)).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        fix = (  # an errno: the system refused; none: pyarrow found the bytes wrong
            "check that the file is there and readable"
            if isinstance(exc, OSError) and exc.errno is not None
            else f"the file is damaged, truncated or not {kind}: write it again"
        )
        raise InputError(f"{path}: cannot read as {kind} ({first}); {fix}") from None


def checked_count(batches: Iterator[Any], declared: int, what: str) -> Iterator[Any]:
    """Record `batches`, refused once they hold more rows than `what` declares, or at their
    end fewer: the declared counts plan the reading, so a count that lies must not pass."""
    seen = 0
    for batch in batches:
        seen += batch.num_rows
        if seen > declared:
            break
        yield batch
    if seen != declared:
        held = f"more than {declared}" if seen > declared else str(seen)
        raise InputError(
            f"{what} declares {declared} rows but holds {held}; the file is damaged or "
            f"truncated: write it again"
        )


_PAGE_HEADER = 17
"""The fewest bytes a Parquet data page takes: its Thrift header alone (page type, both sizes
and a data page header of four fields) is 17 bytes at the least."""
_PAGE_VALUES = 2**31 - 1  # a page header's num_values is an i32


def parquet_row_groups(meta: Any, path: Path) -> tuple[int, ...]:
    """A Parquet footer's row counts per row group, refused unless the file's bytes can hold
    them: a row group's column chunks lie in the file, in pages of fewer than 2**31 values.

    The bound is sound, not tight: a page of one repeated value holds thousands of rows in
    a few bytes (pyarrow writes 256 rows of zeros a byte), so fewer bytes than rows is no
    lie. Rows declared but absent are caught as they are read (see `checked_count`). The
    column chunks' own sizes are not read here: pyarrow aborts the whole process, past any
    `except`, when a damaged footer's column chunk metadata is opened that way.
    """
    size = path.stat().st_size
    room = size // _PAGE_HEADER * _PAGE_VALUES
    groups = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    for i, rows in enumerate(groups):
        if not 0 <= rows <= room:
            raise InputError(
                f"{path}: row group {i} declares {rows} rows but holds at most {size} bytes "
                f"of data, room for {room} rows at most; the footer is damaged: write the "
                f"file again"
            )
    if meta.num_rows != sum(groups):
        raise InputError(
            f"{path}: the footer declares {meta.num_rows} rows but its row groups "
            f"{sum(groups)}; the footer is damaged: write the file again"
        )
    return groups
