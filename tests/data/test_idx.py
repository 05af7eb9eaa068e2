"""IDX reading and writing: exact round trips and every malformed-file case."""

from __future__ import annotations

import gzip
import struct
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from aekit.data.idx import MAX_BYTES, IDXError, read_idx, write_idx
from aekit.errors import InputError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def header(code: int, dims: tuple[int, ...]) -> bytes:
    """An IDX header, written by hand so malformed variants are easy to build."""
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def sample(dtype: Any, shape: tuple[int, ...]) -> npt.NDArray[Any]:
    """Values spanning the dtype's range, extremes included."""
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
        x.flat[0], x.flat[-1] = info.min, info.max
    else:
        x = (rng.standard_normal(size=shape) * 1e3).astype(dtype)
        x.flat[:4] = [np.inf, -np.inf, np.nan, -0.0]
    return x


def expect_error(path: Path, *fragments: str) -> IDXError:
    with pytest.raises(IDXError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return info.value


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 4, 3), (2, 3, 2, 3)])
def test_round_trip_is_exact(tmp_path: Path, dtype: Any, name: str, shape: tuple[int, ...]) -> None:
    x = sample(dtype, shape)
    write_idx(tmp_path / name, x)
    y = read_idx(tmp_path / name)
    assert y.dtype == np.dtype(dtype) and y.dtype.isnative and y.shape == shape
    np.testing.assert_array_equal(y, x)
    assert y.flags.writeable
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary files left


def test_gz_name_gets_gzip_and_detection_is_by_content(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "a.gz", x)
    assert (tmp_path / "a.gz").read_bytes()[:2] == b"\x1f\x8b"
    # Compressed data under a plain name, and plain data under a .gz name, both read.
    (tmp_path / "compressed").write_bytes((tmp_path / "a.gz").read_bytes())
    (tmp_path / "plain.gz").write_bytes(header(0x08, (3, 4)) + x.tobytes())
    np.testing.assert_array_equal(read_idx(tmp_path / "compressed"), x)
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), x)


def test_big_endian_on_disk(tmp_path: Path) -> None:
    write_idx(tmp_path / "a", np.array([1, 256], dtype=np.int16))
    assert (tmp_path / "a").read_bytes() == header(0x0B, (2,)) + b"\x00\x01\x01\x00"


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"\x01\x00\x08\x01" + b"\x00\x00\x00\x01\x05", "magic"),
        (b"\x00\x00\x0a\x01" + b"\x00\x00\x00\x01\x05", "data type code 0x0A"),
        (b"\x00\x00\x08", "header is truncated"),
        (b"", "header is truncated"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01\x00\x00", "header is truncated"),
        (header(0x08, (2, 3)) + bytes(5), "truncated"),
        (header(0x0C, (2,)) + bytes(7), "truncated"),
        (header(0x08, (2, 3)) + bytes(7), "trailing"),
        (header(0x08, (2, 0)), "zero dimension"),
        (header(0x08, ()), "0 dimensions"),
        (header(0x08, (1, 1, 1, 1, 1)) + bytes(1), "5 dimensions"),
    ],
)
def test_malformed_files_raise(
    tmp_path: Path, content: bytes, fragment: str, compress: bool
) -> None:
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(gzip.compress(content) if compress else content)
    error = expect_error(path, fragment)
    assert isinstance(error, InputError)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "dims", [(2**31, 2**31), (2**32 - 1,) * 4, (MAX_BYTES + 1,), (MAX_BYTES // 4 + 1, 1)]
)
def test_huge_declared_sizes_are_refused_without_allocating(
    tmp_path: Path, dims: tuple[int, ...], compress: bool
) -> None:
    code = 0x0C if dims[-1] == 1 else 0x08
    content = header(code, dims) + bytes(16)
    path = tmp_path / "huge"
    path.write_bytes(gzip.compress(content) if compress else content)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        expect_error(path, "limit")
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.perf_counter() - start < 0.5
    assert peak < 1 << 20


@pytest.mark.parametrize("compress", [False, True])
def test_large_claim_in_small_file_is_truncated_not_allocated(
    tmp_path: Path, compress: bool
) -> None:
    # Under the cap (1 GiB declared), but the file holds 100 bytes: reading must cost ~nothing.
    content = header(0x08, (2**15, 2**15)) + bytes(100)
    path = tmp_path / "liar"
    path.write_bytes(gzip.compress(content) if compress else content)
    tracemalloc.start()
    try:
        expect_error(path, "truncated")
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 4 << 20


def test_gzip_bomb_reads_only_declared_plus_one(tmp_path: Path) -> None:
    # 10 bytes declared, 8 MB of zeros behind them: refused as trailing data, not inflated.
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(header(0x08, (10,)) + bytes(8 << 20), compresslevel=1))
    tracemalloc.start()
    try:
        expect_error(path, "trailing")
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 2 << 20


def test_max_bytes_is_adjustable(tmp_path: Path) -> None:
    write_idx(tmp_path / "a", np.zeros((4, 4), np.uint8))
    with pytest.raises(IDXError, match="over the 8-byte limit"):
        read_idx(tmp_path / "a", max_bytes=8)


def test_damaged_gzip_stream(tmp_path: Path) -> None:
    write_idx(tmp_path / "a.gz", np.arange(1000, dtype=np.int32))
    data = (tmp_path / "a.gz").read_bytes()
    (tmp_path / "cut.gz").write_bytes(data[: len(data) // 2])
    expect_error(tmp_path / "cut.gz", "gzip")
    (tmp_path / "garbled.gz").write_bytes(data[:20] + bytes(len(data) - 20))
    expect_error(tmp_path / "garbled.gz", "gzip")


def test_missing_file(tmp_path: Path) -> None:
    expect_error(tmp_path / "nope.gz", "no such")


@pytest.mark.parametrize(
    "array", [np.zeros(3, np.int64), np.zeros(3, bool), np.zeros(3, np.uint16), np.zeros(3, "U1")]
)
def test_write_refuses_dtypes_idx_cannot_hold(tmp_path: Path, array: npt.NDArray[Any]) -> None:
    with pytest.raises(IDXError, match="astype"):
        write_idx(tmp_path / "a", array)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("shape", [(0,), (3, 0), (), (1, 1, 1, 1, 1)])
def test_write_refuses_shapes_idx_cannot_hold(tmp_path: Path, shape: tuple[int, ...]) -> None:
    with pytest.raises(IDXError):
        write_idx(tmp_path / "a", np.zeros(shape, np.uint8))
    assert not any(tmp_path.iterdir())


def test_write_accepts_big_endian_and_noncontiguous_input(tmp_path: Path) -> None:
    x = np.arange(24, dtype=">f4").reshape(4, 6)[:, ::2]
    write_idx(tmp_path / "a", x)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), x)


def test_gzip_output_is_deterministic(tmp_path: Path) -> None:
    x = np.arange(100, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", x)
    write_idx(tmp_path / "b.gz", x)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()
