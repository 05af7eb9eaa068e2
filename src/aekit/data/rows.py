"""Rows of an array chosen by index, and reading memory maps without keeping them resident.

`Rows` is what a split or a filter gives instead of a copy: the array it reads from and the
indices of its rows. Nothing is read until rows are asked for; indexing gives a numpy array of
just those rows, `np.asarray` reads them all. The input pipeline (`Dataset`) gathers each batch
from the array underneath, so training on a memory-mapped split reads one batch at a time.

Pages of a memory map that were read stay mapped into the process, and count in its resident
memory, until the kernel needs them back: reading a 10 GiB file once would look like a 10 GiB
process, and a row read at random maps the whole large page-cache folio around it (hundreds of
KB). So `read_rows` reads scattered rows of a file-backed map from the file itself (`os.pread`:
the page cache, not this process, holds them), and `row_chunks` hands the pages of each chunk it
scanned back (`madvise`) every `PAGE_BUDGET` bytes.
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.lib.mixins import NDArrayOperatorsMixin

__all__ = [
    "PAGE_BUDGET",
    "Rows",
    "concat_rows",
    "first_rows",
    "is_mapped",
    "read_rows",
    "row_chunks",
    "take_rows",
]

Array = npt.NDArray[Any]

PAGE_BUDGET = 32 << 20
"""Bytes of a memory map read (or mapped around what was read) before its pages are dropped."""
CHUNK_BYTES = 16 << 20
"""Bytes of rows `row_chunks` reads at a time."""
# A fault maps up to 16 pages around the row it reads (Linux's fault-around): a row read at
# random costs that much resident memory, however short it is.
_FAULT_AROUND = 64 << 10

_lock = threading.Lock()
_read_since_drop: weakref.WeakKeyDictionary[mmap.mmap, int] = weakref.WeakKeyDictionary()
_files: weakref.WeakKeyDictionary[mmap.mmap, int] = weakref.WeakKeyDictionary()


class Rows(NDArrayOperatorsMixin):
    """The rows `index` of `base` (an array or memory map), read only when asked for.

    Has the `shape`, `dtype`, `ndim` and `len` of the rows it stands for; indexing it gives a
    numpy array of those rows, `take` another `Rows` without reading, and numpy functions and
    operators read it whole (`np.asarray`), as a copy would have been.
    """

    __slots__ = ("base", "index")

    def __init__(self, base: Any, index: npt.ArrayLike) -> None:
        positions = np.asarray(index)
        if positions.ndim != 1 or positions.dtype.kind not in "iu":
            raise ValueError(f"Rows takes a 1-D array of row indices, got {positions.dtype} "
                             f"of shape {positions.shape}")  # fmt: skip
        self.base = base
        self.index = positions.astype(np.int64, copy=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.base.shape[1:])

    @property
    def dtype(self) -> np.dtype[Any]:
        dtype: np.dtype[Any] = self.base.dtype
        return dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"Rows({len(self)} of {type(self.base).__name__} {list(self.base.shape)})"

    def __getitem__(self, key: Any) -> Any:
        head, rest = (key[0], key[1:]) if isinstance(key, tuple) and key else (key, ())
        picked = self.index[np.asarray(head) if isinstance(head, list) else head]
        if np.ndim(picked) == 0:  # one row
            row = np.asarray(self.base[int(picked)])
            return row[rest] if rest else row
        rows = read_rows(self.base, picked)
        return rows[(slice(None), *rest)] if rest else rows

    def take(self, positions: npt.ArrayLike) -> Rows:
        """The rows at `positions` (of these rows), still unread."""
        return Rows(self.base, self.index[np.asarray(positions)])

    def astype(self, dtype: npt.DTypeLike) -> Array:
        """All the rows read, as `dtype`."""
        return np.asarray(self, dtype=dtype)

    def reshape(self, *shape: Any) -> Array:
        """All the rows read, reshaped."""
        return np.asarray(self).reshape(*shape)

    def min(self) -> Any:
        """The smallest value, read a few MB at a time."""
        return min(part.min() for _, part in row_chunks(self))

    def max(self) -> Any:
        """The largest value, read a few MB at a time."""
        return max(part.max() for _, part in row_chunks(self))

    def __array__(self, dtype: npt.DTypeLike | None = None, copy: bool | None = None) -> Array:
        rows = read_rows(self.base, self.index)
        return rows if dtype is None else rows.astype(dtype, copy=False)

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        # Operators and ufuncs read the rows first: the result is a new array anyway.
        arrays = [np.asarray(a) if isinstance(a, Rows) else a for a in inputs]
        return getattr(ufunc, method)(*arrays, **kwargs)


def first_rows(x: Any, count: int | None) -> Any:
    """The first `count` rows of `x` (all: None), unread when `x` is a `Rows`."""
    if isinstance(x, Rows):
        return x.take(np.arange(len(x))[:count])
    return x[:count]


def take_rows(x: Any, positions: npt.ArrayLike) -> Rows:
    """The rows of `x` at `positions` without copying them (`x` a `Rows` or an array)."""
    return x.take(positions) if isinstance(x, Rows) else Rows(x, positions)


def concat_rows(first: Any, second: Any) -> Any:
    """`first` then `second`: one `Rows` when both read the same array, else a concatenation."""
    if isinstance(first, Rows) and isinstance(second, Rows) and _same(first.base, second.base):
        return Rows(first.base, np.concatenate([first.index, second.index]))
    return np.concatenate([np.asarray(first), np.asarray(second)])


def is_mapped(x: Any) -> bool:
    """Whether `x` (an array, a view or a `Rows`) reads a memory-mapped file."""
    return _mapping(x.base if isinstance(x, Rows) else x) is not None


def read_rows(x: Any, index: Array) -> Array:
    """`x[index]` as a numpy array; a memory map's pages are dropped every `PAGE_BUDGET` bytes."""
    if isinstance(x, Rows):
        return read_rows(x.base, x.index[index])
    mapping = _mapping(x)
    index = np.asarray(index)
    if mapping is None or index.dtype == bool or index.ndim != 1:
        return np.asarray(x[index])
    index = np.where(index < 0, index + len(x), index)
    if len(index) and (index.min() < 0 or index.max() >= len(x)):
        raise IndexError(f"row index out of range for {len(x)} rows")
    fd = _file_of(mapping, x)
    if fd is not None:
        return _pread_rows(x, fd, index)
    rows = np.asarray(x[index])
    _count(mapping, rows.nbytes + len(index) * _FAULT_AROUND)
    return rows


def row_chunks(x: Any, chunk_bytes: int | None = None) -> Iterator[tuple[int, Array]]:
    """(offset, rows) over `x` in order, `CHUNK_BYTES` of rows at a time (never read whole).

    In-memory arrays and memory maps give views (a map's pages are dropped once the caller
    has moved on), `Rows` the rows read.
    """
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    n = len(x)
    row_bytes = max(1, x.dtype.itemsize * int(np.prod(x.shape[1:], dtype=np.int64)))
    step = max(1, chunk_bytes // row_bytes)
    mapped = isinstance(x, Rows) or _mapping(x) is not None
    for start in range(0, n, step):
        if isinstance(x, Rows):
            yield start, read_rows(x.base, x.index[start : start + step])
        elif mapped:
            part = x[start : start + step]  # a view: read as the caller reads it
            yield start, part
            _count(_mapping(x), part.nbytes)  # the caller is done with these pages
        else:
            yield start, x[start : start + step]


# --- helpers -------------------------------------------------------------------------------


def _mapping(x: Any) -> mmap.mmap | None:
    """The mmap a numpy array (or a view of one) reads, if any and if its pages may be dropped."""
    base = x
    while isinstance(base, np.ndarray):
        if getattr(base, "mode", None) == "c":
            return None  # copy-on-write: dropping its pages would drop the changes made
        base = base.base
    return base if isinstance(base, mmap.mmap) else None


def _file_of(mapping: mmap.mmap, x: np.ndarray) -> int | None:
    """A descriptor of the file `mapping` maps, opened once; None when it cannot be read so."""
    if not hasattr(os, "pread"):
        return None
    with _lock:
        if mapping in _files:
            return _files[mapping]
    origin = x
    while isinstance(origin.base, np.ndarray):
        origin = origin.base
    filename = getattr(origin, "filename", None)
    if filename is None:
        return None
    try:
        fd = os.open(filename, os.O_RDONLY)
    except OSError:
        return None
    with _lock:
        if mapping in _files:  # another thread opened it meanwhile
            os.close(fd)
            return _files[mapping]
        _files[mapping] = fd
    weakref.finalize(mapping, os.close, fd)
    return fd


def _pread_rows(x: np.ndarray, fd: int, index: Array) -> Array:
    """`x[index]` read from the file under the memory map `x` (or a view of one), not the map."""
    origin = x
    while isinstance(origin.base, np.ndarray):
        origin = origin.base
    address = x.__array_interface__["data"][0] - origin.__array_interface__["data"][0]
    first = int(getattr(origin, "offset", 0)) + address  # where x[0] starts in the file
    inner, strides, item = x.shape[1:], x.strides[1:], x.dtype.itemsize
    # The bytes of one row lie in [start + low, start + high): a view's row may run backwards.
    low = sum(s * (n - 1) for s, n in zip(strides, inner, strict=True) if s < 0 and n)
    high = sum(s * (n - 1) for s, n in zip(strides, inner, strict=True) if s > 0 and n) + item
    span = high - low
    raw = np.empty((len(index), span), dtype=np.uint8)
    order = np.argsort(index, kind="stable")
    wanted = index[order]
    # Neighbouring rows adjacent in the file are read in one call (a split's runs of 4).
    if x.strides[0] == span:
        cuts = np.flatnonzero(np.diff(wanted) != 1) + 1
    else:
        cuts = np.arange(1, len(wanted))
    bounds = [0, *cuts.tolist(), len(wanted)]
    for a, b in itertools.pairwise(bounds):
        if a == b:
            continue
        offset = first + int(wanted[a]) * x.strides[0] + low
        data = os.pread(fd, (b - a) * span, offset)
        if len(data) != (b - a) * span:
            raise OSError(
                f"{getattr(origin, 'filename', 'the file')} is shorter than its header says"
            )
        raw[order[a:b]] = np.frombuffer(data, dtype=np.uint8).reshape(b - a, span)
    rows = np.ndarray(
        (len(index), *inner), dtype=x.dtype, buffer=raw, offset=-low, strides=(span, *strides)
    )
    return np.ascontiguousarray(rows)


def _count(mapping: mmap.mmap | None, nbytes: int) -> None:
    """Add `nbytes` read from `mapping`; past the budget, drop its pages from this process."""
    if mapping is None:
        return
    with _lock:
        total = _read_since_drop.get(mapping, 0) + nbytes
        if total < PAGE_BUDGET:
            _read_since_drop[mapping] = total
            return
        _read_since_drop[mapping] = 0
    _drop(mapping)


def _drop(mapping: mmap.mmap) -> None:
    # A read-only file mapping: the pages go back to the page cache, nothing is lost.
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if advice is None or mapping.closed:
        return  # no madvise here (Windows): the kernel reclaims them under pressure
    with contextlib.suppress(OSError, ValueError):  # best effort: reclaimable either way
        mapping.madvise(advice)


def _same(a: Any, b: Any) -> bool:
    """Whether `a` and `b` are the same array (or equal views of one)."""
    if a is b:
        return True
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
        return False
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.shape == b.shape
        and a.strides == b.strides
        and a.dtype == b.dtype
    )
