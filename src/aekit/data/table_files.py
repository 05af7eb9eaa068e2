"""The table files behind `open_table`: Parquet, Arrow IPC / Feather and CSV, read by pyarrow.

Each reads its file as Arrow record batches of the columns asked for and converts them to
float64 rows one batch at a time; pyarrow is imported only when a file is opened.
"""

from __future__ import annotations

import contextlib
import os
import re
from abc import abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from aekit.data.csv_file import _check_label_argument, _csv_header, _fields, _label_index
from aekit.data.csv_file import _named_label as _label_named
from aekit.data.tables import (
    SUFFIXES,
    Part,
    TableSource,
    arrow,
    check_finite,
    checked_count,
    parquet_row_groups,
    reading_table,
)
from aekit.errors import InputError

__all__ = ["ArrowTable", "CsvTable", "FileTable", "ParquetTable", "arrow", "open_table"]

_PARQUET_ROWS = 8192
"""Rows per record batch read from Parquet. Measured on 400,000 rows of 20 float columns in
row groups of 50,000: the reader peaked 100 MB above the start at 65,536 rows a batch and a
1 MiB read buffer, 47 MB at 8,192 rows, 30 MB with a 64 KiB buffer."""
_PARQUET_BUFFER = 1 << 16  # bytes read at a time per column
_CSV_BLOCK = 1 << 22  # bytes of CSV text parsed at a time


class FileTable(TableSource):
    """A table file: its columns, which is the labels, and its rows a record batch at a time."""

    kind = "a table"
    missing = "missing values"
    integer_columns = False  # whether every feature column holds integers (pixels, perhaps)
    _schema: Any = None  # the file's Arrow schema (CSV has none: its fields parse as floats)

    def __init__(self, path: Path, label_column: int | str | bool | None) -> None:
        _check_label_argument(label_column)
        self.path, self.name = path, str(path)
        names = self._column_names()
        self.column_names = tuple(names)
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise InputError(f"{path}: the column name {repeated[0]!r} is used twice; rename one")
        if label_column is False:
            index: int | bool = False
        elif label_column is None:
            index = _label_named(self._header(names), path)
        else:
            index = _label_index(label_column, self._header(names), len(names), path)
        self.label_name = None if index is False else names[int(index)]
        self.feature_names = tuple(n for n in names if n != self.label_name)
        if not self.feature_names:
            raise InputError(f"{path}: no columns left besides the labels; add feature columns")
        self._check_types()
        self._rows: int | None = None

    @abstractmethod
    def _column_names(self) -> list[str]:
        """Every column's name, in the file's order."""

    @abstractmethod
    def _record_batches(self, columns: list[str]) -> Iterator[Any]:
        """The file's rows in order as Arrow record batches of `columns`."""

    def _header(self, names: list[str]) -> list[str] | None:
        """The names a label column may be given by (None: the file has no header)."""
        return names

    @property
    def n_rows(self) -> int:
        if self._rows is None:
            self._rows = self._count_rows()
        return self._rows

    def _count_rows(self) -> int:
        return sum(b.num_rows for b in self._record_batches([self.feature_names[0]]))

    def _pieces(self) -> Iterator[np.ndarray]:
        start = 0
        for batch in self._record_batches(list(self.feature_names)):
            yield self._matrix(batch, start)
            start += batch.num_rows

    def _fill(self, ordered: np.ndarray, order: np.ndarray, out: np.ndarray) -> None:
        pa = arrow()
        start = 0
        for batch in self._record_batches(list(self.feature_names)):
            stop = start + batch.num_rows
            lo, hi = np.searchsorted(ordered, [start, stop])
            if hi > lo:  # only the rows asked for are converted
                chosen = batch.take(pa.array(ordered[lo:hi] - start))
                out[order[lo:hi]] = self._matrix(chosen, None)
            if hi == len(ordered):
                return
            start = stop

    def _matrix(self, batch: Any, first_row: int | None) -> np.ndarray:
        """A record batch's feature columns as float64 rows, checked."""
        out = np.empty((batch.num_rows, self.n_features))
        with np.errstate(invalid="ignore"):  # a signalling NaN warns as it widens: refused next
            for j, name in enumerate(self.feature_names):
                out[:, j] = self._values(batch.column(name), name, first_row)
        check_finite(out, first_row, self)
        return out

    def _values(self, column: Any, name: str, first_row: int | None) -> np.ndarray:
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            where = f" (row {first_row + row})" if first_row is not None else ""
            raise InputError(
                f"{self.name}: column {name!r} has {self.missing}{where}; fill or drop them first"
            )
        values: np.ndarray = column.to_numpy(zero_copy_only=False)
        return values

    def labels(self) -> np.ndarray | None:
        """The label column as int64: its values must be whole numbers."""
        if self.label_name is None:
            return None
        name = self.label_name
        parts = [self._values(b.column(name), name, None) for b in self._record_batches([name])]
        return self._whole(np.concatenate(parts) if parts else np.empty(0))

    def _whole(self, values: np.ndarray) -> np.ndarray:
        """Label values as int64, refused unless they are whole numbers."""
        if values.dtype.kind not in "biuf" or not np.all(values == np.round(values)):
            raise InputError(
                f"{self.path}: label column {self.label_name!r} holds values other than whole "
                f"numbers; give integer class labels, or label_column=False if that column is data"
            )
        return values.astype(np.int64)

    def read_rows(self, labels: bool = False) -> Iterator[Part]:
        # The labels come from the same record batches as the rows: one pass, not two.
        yield from self._parts(self._record_batches(self._columns(labels)), 0, labels)

    def _columns(self, labels: bool) -> list[str]:
        extra = [self.label_name] if labels and self.label_name is not None else []
        return [*self.feature_names, *extra]

    def _parts(self, batches: Iterator[Any], first_row: int, labels: bool) -> Iterator[Part]:
        """Record batches as (rows, labels) parts, checked; rows numbered from `first_row`."""
        name = self.label_name
        for batch in batches:
            y = None
            if labels and name is not None:
                y = self._whole(self._values(batch.column(name), name, first_row))
            yield self._matrix(batch, first_row), y
            first_row += batch.num_rows

    def _check_types(self) -> None:
        """Refuse a feature column that does not hold numbers, naming it (CSV: as parsed)."""
        if self._schema is None:
            return
        pa = arrow()
        numeric = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean)
        kinds = [self._schema.field(name).type for name in self.feature_names]
        self.integer_columns = all(pa.types.is_integer(kind) for kind in kinds)
        for name, kind in zip(self.feature_names, kinds, strict=True):
            if not any(test(kind) for test in numeric):
                raise InputError(
                    f"{self.path}: column {name!r} holds {kind} values, not numbers; encode "
                    f"it as numbers or drop it (or name it as the label column)"
                )


class ParquetTable(FileTable):
    """A Parquet file, read a few thousand rows at a time (not a row group at a time).

    Its footer's row counts are checked against the file's bytes when it is opened, and
    against the rows its pages actually hold as they are read (`n_rows` counts them).
    """

    kind = "Parquet"

    _metadata: Any = None

    def _file(self) -> Any:
        pq = arrow("pyarrow.parquet")
        with reading_table(self.path, self.kind):
            # The footer read once: reading it again for every row group would read the
            # file's metadata once per row group, a cost that grows with their square.
            return pq.ParquetFile(
                self.path,
                metadata=self._metadata,
                pre_buffer=False,
                buffer_size=_PARQUET_BUFFER,
            )

    def _column_names(self) -> list[str]:
        with self._file() as f:
            self._schema = f.schema_arrow
            meta = self._metadata = f.metadata
        with reading_table(self.path, self.kind):
            self._groups = parquet_row_groups(meta, self.path)
        return list(self._schema.names)

    def piece_sizes(self) -> tuple[int, ...]:
        """The row groups' row counts as the footer declares them (checked as each is read)."""
        return self._groups

    def read_piece(self, index: int, labels: bool = False) -> Iterator[Part]:
        first_row = sum(self._groups[:index])
        try:
            with self._file() as f, reading_table(self.path, self.kind):
                batches = f.iter_batches(
                    batch_size=_PARQUET_ROWS,
                    row_groups=[index],
                    columns=self._columns(labels),
                    use_threads=False,
                )
                counted = checked_count(
                    batches, self._groups[index], f"{self.path}: row group {index}"
                )
                yield from self._parts(counted, first_row, labels)
        finally:
            arrow().default_memory_pool().release_unused()

    def _count_rows(self) -> int:
        # Counted from the pages of the narrowest column, not taken from the footer: callers
        # allocate by this count (8 bytes a row to shuffle, more to load).
        widths = {n: self._schema.field(n).type.bit_width for n in self.feature_names}
        narrowest = min(widths, key=widths.__getitem__)  # numbers, checked: fixed widths
        return sum(b.num_rows for b in self._record_batches([narrowest]))

    def _record_batches(self, columns: list[str]) -> Iterator[Any]:
        try:
            with self._file() as f, reading_table(self.path, self.kind):
                batches = f.iter_batches(
                    batch_size=_PARQUET_ROWS, columns=columns, use_threads=False
                )
                yield from checked_count(batches, sum(self._groups), f"{self.path}: its footer")
        finally:  # Arrow's allocator keeps what a pass freed unless told otherwise
            arrow().default_memory_pool().release_unused()


class ArrowTable(FileTable):
    """An Arrow IPC file (Feather V2) or stream, memory-mapped, one record batch at a time."""

    kind = "Arrow IPC / Feather V2"

    @contextlib.contextmanager
    def _reader(self) -> Iterator[Any]:
        pa, ipc = arrow(), arrow("pyarrow.ipc")
        with reading_table(self.path, self.kind), pa.memory_map(str(self.path), "r") as source:
            # The format by its magic: a damaged file is refused in its own format's words.
            is_file = source.read(6) == b"ARROW1"
            source.seek(0)
            yield ipc.open_file(source) if is_file else ipc.open_stream(source)

    def _batches(self, reader: Any) -> Iterator[Any]:
        """The reader's record batches in order, each checked against its buffers."""
        if hasattr(reader, "get_batch"):
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        else:
            batches = iter(reader)
        for index, batch in enumerate(batches):
            yield self._valid(batch, index)

    def _valid(self, batch: Any, index: int) -> Any:
        # pyarrow takes a batch's declared length as it is: converting a batch whose buffers
        # are shorter would read past them, so its rows are checked against its bytes first.
        try:
            batch.validate()
        except arrow().ArrowException as exc:
            reason = (str(exc).strip() or "invalid").splitlines()[0]
            raise InputError(
                f"{self.path}: record batch {index} declares {batch.num_rows} rows but its "
                f"data does not hold them ({reason}); the file is damaged: write it again"
            ) from None
        return batch

    def _column_names(self) -> list[str]:
        with self._reader() as reader:
            self._schema = reader.schema
        self._sizes: tuple[int, ...] | None = None
        return list(self._schema.names)

    def piece_sizes(self) -> tuple[int, ...] | None:
        """The record batches' row counts in the file format; None for a stream (in order)."""
        if self._sizes is None:
            with self._reader() as reader:
                if not hasattr(reader, "get_batch"):
                    return None
                self._sizes = tuple(batch.num_rows for batch in self._batches(reader))
        return self._sizes

    def read_piece(self, index: int, labels: bool = False) -> Iterator[Part]:
        sizes = self.piece_sizes()
        if sizes is None:
            yield from super().read_piece(index, labels)
            return
        with self._reader() as reader:
            batch = self._valid(reader.get_batch(index), index).select(self._columns(labels))
            yield from self._parts(iter([batch]), sum(sizes[:index]), labels)

    def _record_batches(self, columns: list[str]) -> Iterator[Any]:
        with self._reader() as reader:
            for batch in self._batches(reader):
                yield batch.select(columns)


class CsvTable(FileTable):
    """A CSV file, parsed in blocks by pyarrow, with `aekit.data.csv_file`'s rules.

    The first non-blank line is a header when any of its fields is not a number; without
    one the columns are called "0", "1", ... and the label column is given by index. Empty,
    NA and NaN fields count as missing values.
    """

    kind = "CSV"
    missing = "missing or NaN values"

    def _column_names(self) -> list[str]:
        self._named = _csv_header(self.path)
        if self._named is not None:
            return [name.strip() for name in self._named]
        with open(self.path, encoding="utf-8-sig") as f:
            first = next((line for line in f if line.strip()), None)
        if first is None:
            raise InputError(f"{self.path}: no data rows; give a CSV file with one row per line")
        self.named = False
        return [str(i) for i in range(len(_fields(first)))]

    def _header(self, names: list[str]) -> list[str] | None:
        return names if self._named is not None else None

    def _record_batches(self, columns: list[str]) -> Iterator[Any]:
        pa, csv = arrow(), arrow("pyarrow.csv")
        order = list(self.column_names)
        read = csv.ReadOptions(
            column_names=order, skip_rows=int(self._named is not None), block_size=_CSV_BLOCK
        )
        convert = csv.ConvertOptions(
            column_types={n: pa.float64() for n in order}, include_columns=columns
        )
        try:
            with reading_table(self.path, self.kind):
                yield from csv.open_csv(self.path, read_options=read, convert_options=convert)
        except InputError as exc:
            found = re.search(r"column #(\d+)", str(exc))
            if found is None or int(found.group(1)) >= len(order):
                raise
            value = re.search(r"invalid value ('.*')", str(exc))
            raise InputError(
                f"{self.path}: column {order[int(found.group(1))]!r} holds "
                f"{value.group(1) if value else 'a value'}, not a number; CSV rows must hold "
                f"numbers only (a header is allowed on the first line)"
            ) from None


def open_table(
    path: str | os.PathLike[str], label_column: int | str | bool | None = None
) -> TableSource:
    """A table file read in pieces, by its ending: .parquet/.pq, .feather/.arrow/.ipc, .csv.

    `label_column` names the labels column (or gives its index); None takes a column named
    label, labels, class, target or y if there is one, False none. The labels are left out
    of the features.
    """
    checked = Path(os.fspath(path))
    table = _KINDS.get(checked.suffix.lower(), FileTable)
    # A folder on the way that cannot be searched, a footer that cannot be read: one line.
    with reading_table(checked, table.kind):
        if not checked.exists():
            raise InputError(f"{checked}: no such file; give the path of a table file")
        if checked.is_dir():
            raise InputError(f"{checked}: a folder, not a table file; give the file's path")
        if not checked.is_file():  # a FIFO would block the reader for ever, a device not end
            raise InputError(f"{checked}: not a regular file; give the path of a table file")
        if table is FileTable:
            raise InputError(
                f"{checked}: cannot tell the table format from "
                f"{checked.suffix or 'no ending'!r}; give a file ending in {', '.join(SUFFIXES)}"
            )
        return table(checked, label_column)


_KINDS: dict[str, type[FileTable]] = {  # the table classes by file ending, lower case
    **dict.fromkeys((".parquet", ".pq"), ParquetTable),
    **dict.fromkeys((".feather", ".arrow", ".ipc", ".arrows"), ArrowTable),
    ".csv": CsvTable,
}
