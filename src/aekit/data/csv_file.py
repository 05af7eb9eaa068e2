"""CSV files of pixel rows, with an optional header naming the columns.

The text is read as UTF-8 with or without a byte-order mark (Excel writes one). The first
line is a header when any of its fields is not a number; a header column named label,
class, target or y is the label column unless told otherwise (Kaggle's MNIST CSVs start
``label,pixel0,...``), so the labels are never trained as a pixel.
"""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from aekit.checks import check_int, shown
from aekit.data.arrays import MAX_BYTES_ENV, check_size, existing_path, format_bytes, max_load_bytes
from aekit.errors import ConfigError, InputError

__all__ = ["LABEL_NAMES", "load_csv"]

LABEL_NAMES = ("label", "labels", "class", "target", "y")
"""Header names (any case) that make a column the labels when `label_column` is None."""

_ENCODING = "utf-8-sig"  # UTF-8, dropping a leading byte-order mark if there is one
_FLOAT_BYTES = 8  # np.loadtxt parses into float64
_LINE_BYTES_PER_CHAR = 32  # a line's text plus the csv module's string per field, per character

Array = npt.NDArray[Any]


def load_csv(
    path: str | os.PathLike[str],
    label_column: int | str | bool | None = None,
    *,
    image_shape: tuple[int, ...] | None = None,
) -> tuple[Array, Array | None]:
    """Load rows of comma-separated pixel values, with an optional header line.

    `label_column` (an index, negative from the end, or a header name) holds integer labels
    and is removed from x. None (the default) takes the header's column named label, class,
    target or y (any case) if it has one, else no labels; False means no label column at
    all. x has shape (N, columns), or ``(N, *image_shape)`` when `image_shape` is given: uint8
    when every value is a whole number in 0..255, else float32.
    """
    _check_label_argument(label_column)
    path = existing_path(path, "file")
    rows = _check_lines(path)  # before any line is read as text
    header = _csv_header(path)
    if label_column is None:
        label_column = _named_label(header, path)
    data = _read_numbers(path, header, rows)
    if header is not None and data.shape[1] != len(header):
        raise InputError(
            f"{path}: the header has {len(header)} fields but the rows {data.shape[1]}; make the "
            f"header match the data"
        )
    if not np.isfinite(data).all():
        raise InputError(
            f"{path}: holds {int((~np.isfinite(data)).sum())} NaN, infinite or out-of-range "
            f"values; fix or remove them"
        )
    y: Array | None = None
    if label_column is not False:
        column = _label_index(label_column, header, data.shape[1], path)
        labels = data[:, column]
        if not np.all(labels == np.round(labels)):
            named = header[column].strip() if header is not None else column
            raise InputError(
                f"{path}: label column {shown(named)} holds non-integer values; give "
                f"integer class labels, or label_column=False if that column is data"
            )
        y = labels.astype(np.int64)
        data = np.delete(data, column, axis=1)
        if data.shape[1] == 0:
            raise InputError(f"{path}: no columns left besides the labels; add pixel columns")
    # Text has no dtype: whole numbers in 0..255 are 8-bit pixels, anything else stays float.
    if np.all(data == np.round(data)) and data.min() >= 0 and data.max() <= 255:
        x = data.astype(np.uint8)
    else:
        x = data.astype(np.float32)
    if image_shape is not None:
        x = _reshape(x, image_shape, path)
    return x, y


def _check_label_argument(label_column: Any) -> None:
    if label_column is None or label_column is False or isinstance(label_column, str):
        return
    if isinstance(label_column, bool) or not isinstance(label_column, int | np.integer):
        raise ConfigError(
            f"label_column must be a column index, a header name, None (the column named "
            f"label/class/target, if any) or False (no labels), got {shown(label_column)}"
        )


def _named_label(header: list[str] | None, path: Path) -> int | bool:
    """The index of the header's label-named column, or False when it has none."""
    if header is None:
        return False
    found = [i for i, name in enumerate(header) if name.strip().lower() in LABEL_NAMES]
    if len(found) > 1:
        names = ", ".join(repr(header[i].strip()) for i in found)
        raise ConfigError(
            f"{path}: several columns could be the labels ({names}); pass label_column= one "
            f"of them, or label_column=False for none"
        )
    return found[0] if found else False


def _read_numbers(path: Path, header: list[str] | None, rows: int) -> Array:
    """The data rows as float64 (N, columns), the size checked before parsing."""
    try:
        with open(path, newline="", encoding=_ENCODING) as f:
            lines = (line for _, line in _data_lines(f, skip_header=header is not None))
            first = next(lines, None)
            if first is None:
                raise InputError(f"{path}: no data rows; give a CSV file with one example per line")
            # Rows at most the file's line count, columns the first row's: the parsed size.
            columns = len(_fields(first))
            check_size(
                f"{path}: {rows} rows of {columns} values",
                (rows, columns),
                _FLOAT_BYTES,
                "use fewer rows, or save the data with np.save and memory-map it",
            )
            # loadtxt parses in C, far faster than csv + float() on MNIST-sized files.
            return np.loadtxt(
                itertools.chain([first], lines),
                delimiter=",",
                dtype=np.float64,
                ndmin=2,
                comments=None,
                quotechar='"',
            )
    except InputError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        # numpy's messages number rows inconsistently; find the bad line ourselves.
        _diagnose_csv(path, skip_header=header is not None)
        raise InputError(f"{path}: cannot parse as numeric CSV ({exc}); fix the file") from None


def _check_lines(path: Path) -> int:
    """The file's line count, after checking that its longest line can be parsed in memory.

    Reading a line makes a string and the csv module a string per field (tens of bytes per
    character together), so one giant line could exhaust memory before any row is counted.
    """
    count, longest, current = 0, 0, 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == ord("\n"))
            if len(ends) == 0:
                current += len(block)
            else:
                gaps = np.diff(ends) if len(ends) > 1 else np.zeros(0, dtype=np.intp)
                longest = max(longest, current + int(ends[0]), int(gaps.max(initial=0)))
                current = len(block) - int(ends[-1]) - 1
            count += len(ends)
            longest = max(longest, current)
    needed, limit = longest * _LINE_BYTES_PER_CHAR, max_load_bytes()
    if needed > limit:
        raise InputError(
            f"{path}: a line of {longest:,} characters needs about {format_bytes(needed)} to "
            f"parse, over the limit of {format_bytes(limit)}; split it into rows of one example "
            f"each (or raise the limit with {MAX_BYTES_ENV})"
        )
    return count + (current > 0)


def _reshape(x: Array, image_shape: Any, path: Path) -> Array:
    if not isinstance(image_shape, tuple | list) or not image_shape:
        raise ConfigError(f"image_shape must be a tuple of positive ints, got {shown(image_shape)}")
    dims = [check_int("image_shape's entries", d, low=1) for d in image_shape]
    if int(np.prod(dims, dtype=object)) != x.shape[1]:
        raise ConfigError(
            f"{path}: rows of {x.shape[1]} values do not fit image_shape={tuple(image_shape)}; "
            f"give a shape whose product is {x.shape[1]}"
        )
    return x.reshape(len(x), *dims)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _data_lines(f: TextIO, *, skip_header: bool) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of each non-blank line, past the header if there is one."""
    skipped = not skip_header
    for number, line in enumerate(f, start=1):
        if not line.strip():
            continue
        if not skipped:
            skipped = True
            continue
        yield number, line


def _fields(line: str) -> list[str]:
    return next(csv.reader([line]), [])


def _csv_header(path: Path) -> list[str] | None:
    """The first non-blank line's fields if any of them is not a number, else None."""
    try:
        with open(path, newline="", encoding=_ENCODING) as f:
            for _, line in _data_lines(f, skip_header=False):
                fields = _fields(line)
                # An empty field is a missing value in a data row, not a column name.
                named = any(f.strip() and not _is_number(f) for f in fields)
                return fields if named else None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc}); give a CSV text file") from None
    return None


def _diagnose_csv(path: Path, *, skip_header: bool) -> None:
    """Raise an InputError naming the first ragged or non-numeric line, if there is one."""
    width: int | None = None
    with open(path, newline="", encoding=_ENCODING, errors="replace") as f:
        for number, line in _data_lines(f, skip_header=skip_header):
            fields = _fields(line)
            if width is None:
                width = len(fields)
            elif len(fields) != width:
                raise InputError(
                    f"{path}: line {number} has {len(fields)} values, earlier lines {width}; give "
                    f"every row the same number of values"
                )
            for column, field in enumerate(fields, start=1):
                if not _is_number(field):
                    raise InputError(
                        f"{path}: line {number}, column {column}: {field!r} is not a number; "
                        f"CSV rows must hold numbers only (a header is allowed on the first line)"
                    )


def _label_index(label_column: int | str, header: list[str] | None, width: int, path: Path) -> int:
    if isinstance(label_column, str):
        names = [name.strip() for name in header] if header is not None else []
        if label_column.strip() not in names:
            listed = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise ConfigError(
                f"{path}: no column named {shown(label_column)} (header: {listed or 'none'}); pass "
                f"the label column's name or index"
            )
        return names.index(label_column.strip())
    if not -width <= label_column < width:
        raise ConfigError(
            f"{path}: label_column={label_column} is out of range for rows of {width} values; "
            f"give an index from {-width} to {width - 1}"
        )
    return int(label_column) % width
