"""MNIST's IDX file format: read and write n-dimensional arrays, optionally gzip-compressed.

An IDX file is a 4-byte magic number (two zero bytes, a dtype code, the number of dimensions), one
big-endian uint32 per dimension, then the array in C order, big-endian. See
http://yann.lecun.com/exdb/mnist/ (bottom of the page).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from aekit.errors import InputError
from aekit.files import atomic_write

__all__ = ["MAX_BYTES", "MAX_NDIM", "IDXError", "read_idx", "write_idx"]

# Type code -> big-endian numpy dtype, as the format defines them.
_CODE_TO_DTYPE: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# Keyed by (kind, itemsize) so that native and big-endian dtypes map alike.
_DTYPE_TO_CODE: dict[tuple[str, int], int] = {
    (dtype.kind, dtype.itemsize): code for code, dtype in _CODE_TO_DTYPE.items()
}

MAX_NDIM = 4
"""The most dimensions accepted: N images of H x W x C."""

MAX_BYTES = 2**31
"""Refuse arrays whose declared size exceeds this (2 GiB; MNIST's largest file holds 47 MB)."""

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


class IDXError(InputError):
    """An IDX file is malformed, or an array cannot be stored as IDX."""


def read_idx(path: str | os.PathLike[str], *, max_bytes: int = MAX_BYTES) -> npt.NDArray[Any]:
    """Read an IDX file (raw or gzip, detected by content) into a native-endian numpy array.

    Raises `IDXError` for a malformed file. The header is checked against the data size before
    the data is read, so a corrupt or hostile header never makes this allocate more than the
    file really holds, nor more than `max_bytes`.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if compressed:
                with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                    return _read_stream(f, path, compressed=True, max_bytes=max_bytes)
            return _read_stream(raw, path, compressed=False, max_bytes=max_bytes)
    except FileNotFoundError:
        raise IDXError(
            f"{path}: no such IDX file; check the path (MNIST files are named like "
            f"train-images-idx3-ubyte.gz)"
        ) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        # The compressed stream itself is damaged: a partial download, most often.
        raise IDXError(
            f"{path}: the gzip stream is corrupt or cut short ({exc}); download the file again"
        ) from None


def _read_stream(
    f: io.BufferedIOBase, path: Path, *, compressed: bool, max_bytes: int
) -> npt.NDArray[Any]:
    magic = _read_exact(f, 4, path, "the 4-byte magic number")
    zero1, zero2, code, ndim = magic
    if zero1 != 0 or zero2 != 0:
        raise IDXError(
            f"{path}: not an IDX file (magic number {magic.hex()} does not start with two zero "
            f"bytes); give the path of an IDX file such as train-images-idx3-ubyte.gz"
        )
    dtype = _CODE_TO_DTYPE.get(code)
    if dtype is None:
        codes = ", ".join(f"0x{c:02X}" for c in _CODE_TO_DTYPE)
        raise IDXError(
            f"{path}: unknown IDX data type code 0x{code:02X} (known: {codes}); the file is "
            f"corrupt or not IDX, download or regenerate it"
        )
    if not 1 <= ndim <= MAX_NDIM:
        raise IDXError(
            f"{path}: IDX header declares {ndim} dimensions, expected 1 to {MAX_NDIM}; the file "
            f"is corrupt or not IDX, download or regenerate it"
        )
    dims = struct.unpack(f">{ndim}I", _read_exact(f, 4 * ndim, path, f"{ndim} dimension sizes"))
    if 0 in dims:
        raise IDXError(
            f"{path}: IDX header declares a zero dimension {dims}; an IDX file must hold at "
            f"least one element, regenerate it"
        )
    # Python ints: no overflow however large the declared dims are.
    declared = math.prod(dims) * dtype.itemsize
    if declared > max_bytes:
        raise IDXError(
            f"{path}: IDX header declares {dims} {dtype.name} elements ({declared} bytes), over "
            f"the {max_bytes}-byte limit; the header is corrupt, download or regenerate the file"
        )
    if not compressed:
        # A raw file's size is known up front: compare before reading anything.
        available = os.fstat(f.fileno()).st_size - 4 - 4 * ndim
        _check_size(path, dims, declared, available)
    # Read at most one byte more than declared: enough to detect trailing data, and a small
    # file that claims a huge size costs only what it really decompresses to.
    data = bytearray()
    while len(data) <= declared:
        chunk = f.read(min(_CHUNK, declared + 1 - len(data)))
        if not chunk:
            break
        data += chunk
    _check_size(path, dims, declared, len(data))
    array = np.frombuffer(data, dtype=dtype).reshape(dims)
    # Hand back native byte order: torch and most numpy code expect it.
    return array.astype(dtype.newbyteorder("="), copy=False)


def _read_exact(f: io.BufferedIOBase, n: int, path: Path, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise IDXError(
            f"{path}: IDX header is truncated (expected {what}, got {len(data)} of {n} bytes); "
            f"the file is incomplete, download or regenerate it"
        )
    return data


def _check_size(path: Path, dims: tuple[int, ...], declared: int, available: int) -> None:
    if available < declared:
        raise IDXError(
            f"{path}: IDX data is truncated (header declares shape {dims}, {declared} bytes, the "
            f"file holds {max(available, 0)}); the file is incomplete, download it again"
        )
    if available > declared:
        raise IDXError(
            f"{path}: IDX file has trailing bytes after the {declared} declared by its header "
            f"(shape {dims}); the file is corrupt or the header wrong, download or regenerate it"
        )


def write_idx(path: str | os.PathLike[str], array: npt.ArrayLike) -> None:
    """Write `array` as an IDX file atomically; gzip-compressed when `path` ends in ``.gz``.

    Supported dtypes: uint8, int8, int16, int32, float32, float64 (what IDX can hold).
    """
    path = Path(path)
    arr = np.asarray(array)
    code = _DTYPE_TO_CODE.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise IDXError(
            f"{path}: IDX cannot store dtype {arr.dtype}; convert the array first, e.g. "
            f"array.astype(np.int32) or array.astype(np.float32)"
        )
    if not 1 <= arr.ndim <= MAX_NDIM:
        raise IDXError(
            f"{path}: IDX holds arrays of 1 to {MAX_NDIM} dimensions, got shape {arr.shape}; "
            f"reshape the array"
        )
    if 0 in arr.shape or max(arr.shape) > 0xFFFFFFFF:
        raise IDXError(
            f"{path}: cannot write shape {arr.shape} as IDX (every dimension must be 1 to "
            f"2**32-1); drop empty arrays or split large ones"
        )
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    body = np.ascontiguousarray(arr, dtype=_CODE_TO_DTYPE[code]).tobytes()

    def write(f: BinaryIO) -> None:
        if path.name.endswith(".gz"):
            # mtime=0 and no embedded name keep the output byte-identical (stable checksums).
            with gzip.GzipFile(filename="", fileobj=f, mode="wb", mtime=0) as gz:
                gz.write(header)
                gz.write(body)
        else:
            f.write(header)
            f.write(body)

    atomic_write(path, write)
