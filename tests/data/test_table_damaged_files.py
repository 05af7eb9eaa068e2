"""Damaged and lying table files: one-line InputErrors at every door, nothing sized by a lie.

The doors are `open_table` (and reading the table it gives), `table_input_fn`, `load_dataset`
and `AutoencoderOutlierDetector.fit`. The files are real: written by pyarrow, then cut
short, overwritten, or given a footer whose counts were rewritten (a small Thrift writer
below does that for Parquet; an Arrow file's counts are plain little-endian int64s).
"""

from __future__ import annotations

import os
import re
import struct
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv  # type: ignore[import-untyped]
import pyarrow.feather as feather  # type: ignore[import-untyped]
import pyarrow.ipc as ipc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from aekit.anomaly import AutoencoderOutlierDetector
from aekit.data import load_dataset, table_input_fn
from aekit.data.table_files import open_table
from aekit.errors import InputError
from aekit.estimator.inputs import iterate_batches

ROWS = 3_000  # rows of the tables below; 777 a record batch or row group (no buffer's size)
PIECE = 777

# --- Thrift's compact protocol: enough of it to rewrite a Parquet footer's counts ---------

Struct = dict[int, tuple[int, Any]]  # field id: (compact type, value), in the file's order
_STRUCT, _LIST, _SET = 12, 9, 10


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])


def _zigzag(value: int) -> bytes:
    return _uvarint((value << 1) ^ (value >> 63))


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        value, shift, pos = value | (byte & 0x7F) << shift, shift + 7, pos + 1
        if not byte & 0x80:
            return value, pos


def _read(data: bytes, pos: int, kind: int) -> tuple[Any, int]:
    """The value of compact type `kind` at `pos`, and where the next one starts."""
    if kind in (1, 2):  # a bool field: its value is its type
        return kind == 1, pos
    if kind == 3:
        return data[pos], pos + 1
    if kind in (4, 5, 6):
        raw, pos = _varint(data, pos)
        return (raw >> 1) ^ -(raw & 1), pos
    if kind == 7:
        return data[pos : pos + 8], pos + 8
    if kind == 8:
        size, pos = _varint(data, pos)
        return data[pos : pos + size], pos + size
    if kind in (_LIST, _SET):
        size, element = data[pos] >> 4, data[pos] & 0x0F
        pos += 1
        if size == 15:
            size, pos = _varint(data, pos)
        items = []
        for _ in range(size):
            item, pos = (
                (data[pos] == 1, pos + 1) if element in (1, 2) else _read(data, pos, element)
            )
            items.append(item)
        return (element, items), pos
    assert kind == _STRUCT, f"compact type {kind} is not in a Parquet footer"
    fields: Struct = {}
    last = 0
    while data[pos]:
        delta, field_type = data[pos] >> 4, data[pos] & 0x0F
        pos += 1
        if not delta:
            raw, pos = _varint(data, pos)
            delta = ((raw >> 1) ^ -(raw & 1)) - last
        last += delta
        value, pos = _read(data, pos, field_type)
        fields[last] = (field_type, value)
    return fields, pos + 1


def _write(kind: int, value: Any) -> bytes:
    if kind in (1, 2):
        return b""
    if kind == 3:
        return bytes([value])
    if kind in (4, 5, 6):
        return _zigzag(value)
    if kind in (7,):
        return bytes(value)
    if kind == 8:
        return _uvarint(len(value)) + bytes(value)
    if kind in (_LIST, _SET):
        element, items = value
        head = [len(items) << 4 | element] if len(items) < 15 else [0xF0 | element]
        size = b"" if len(items) < 15 else _uvarint(len(items))
        body = [bytes([1 if i else 2]) if element in (1, 2) else _write(element, i) for i in items]
        return bytes(head) + size + b"".join(body)
    out, last = bytearray(), 0
    for field, (field_type, item) in value.items():
        field_type = (1 if item else 2) if field_type in (1, 2) else field_type
        short = 0 < field - last <= 15
        out += bytes([(field - last) << 4 | field_type if short else field_type])
        out += b"" if short else _zigzag(field)
        out += _write(field_type, item)
        last = field
    return bytes([*out, 0])


def rewrite_footer(path: Path, change: Callable[[Struct], None]) -> None:
    """Rewrite a Parquet file's footer (Thrift FileMetaData, its length, b"PAR1") by `change`."""
    raw = path.read_bytes()
    start = len(raw) - 8 - struct.unpack("<I", raw[-8:-4])[0]
    meta, end = _read(raw, start, _STRUCT)
    assert end == len(raw) - 8 and _write(_STRUCT, meta) == raw[start:end]  # read right
    change(meta)
    body = _write(_STRUCT, meta)
    path.write_bytes(raw[:start] + body + struct.pack("<I", len(body)) + b"PAR1")


def declare(file_rows: int, groups: dict[int, int]) -> Callable[[Struct], None]:
    """A change declaring `file_rows` in all (FileMetaData field 3) and `groups[i]` rows in
    row group i (RowGroup field 3); the pages keep the rows they hold."""

    def change(meta: Struct) -> None:
        meta[3] = (6, file_rows)
        for index, rows in groups.items():
            meta[4][1][1][index][3] = (6, rows)

    return change


# --- the tables, the damage and the doors -----------------------------------------------------


def table(n: int = ROWS) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.normal(size=n)})


def write(path: Path, n: int = ROWS, compression: str = "lz4") -> Path:
    """`path` as Parquet, Feather (file format) or, ending in .arrow, the IPC stream format."""
    data = table(n)
    if path.suffix == ".parquet":
        pq.write_table(data, path, row_group_size=PIECE, compression="none")
    elif path.suffix == ".feather":
        feather.write_feather(data, path, chunksize=PIECE, compression=compression)
    elif path.suffix == ".csv":
        pa.csv.write_csv(data, path)
    else:
        with pa.OSFile(str(path), "wb") as sink, ipc.new_stream(sink, data.schema) as writer:
            writer.write_table(data, max_chunksize=PIECE)
    return path


def read_all(path: Path) -> None:
    source = open_table(path)
    assert source.n_rows >= 0
    for _ in source.batches(1000):
        pass
    for index in range(len(source.piece_sizes() or ())):
        list(source.read_piece(index))


def stream(path: Path) -> None:
    for _ in iterate_batches(table_input_fn(path, num_epochs=1, batch_size=500)):
        pass


def load(path: Path) -> None:
    load_dataset(path)


def fit(path: Path) -> None:
    AutoencoderOutlierDetector(epochs=1, n_estimators=1, random_state=0).fit(path)


DOORS: dict[str, Callable[[Path], None]] = {
    "open_table": read_all,
    "table_input_fn": stream,
    "load_dataset": load,
    "detector.fit": fit,
}


def count(path: Path) -> None:
    assert open_table(path).n_rows >= 0  # counted: Parquet's pages, Arrow's checked batches


def refused(door: Callable[[Path], None], path: Path, *phrases: str) -> str:
    """The one-line InputError `door` raises on `path`, which names it and says `phrases`;
    nothing on the way allocated more than 64 MiB (a lie believed would ask for GiBs)."""
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as caught:
            door(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path)), message
    assert all(phrase in message for phrase in phrases), message
    assert peak < 64 * 2**20, f"{peak:,} bytes allocated before: {message}"
    return message


GROUPS = [PIECE, PIECE, PIECE, ROWS - 3 * PIECE]
BIG = 2**50  # more rows than 76 KB of pages can hold: 2**31 a page of 17 bytes or more
LIES = {  # row counts declared: the file's, and row groups' by index
    "a row group beyond the file's bytes": (BIG + ROWS - PIECE, {0: BIG}),
    "a negative row group": (ROWS - PIECE - 1, {1: -1}),
    "a total that is not the row groups' sum": (2**28, {}),
    # Within what the bytes could hold (a page of 17 bytes may hold 2**31 - 1 rows): caught
    # by the rows the pages actually hold, before anything is sized by the footer.
    "a row group of 2**28 holding 777": (2**28 + ROWS - PIECE, {1: 2**28}),
    "the last row group": (2**28 + ROWS - GROUPS[3], {3: 2**28}),
}
SAYS = {  # else "declares N rows but holds M": of the file, or of the row group streamed
    "a row group beyond the file's bytes": f"row group 0 declares {BIG} rows but holds at most",
    "a negative row group": "row group 1 declares -1 rows",
    "a total that is not the row groups' sum": "declares 268435456 rows but its row groups 3000",
}


@pytest.mark.parametrize("lie", list(LIES))
@pytest.mark.parametrize("door", list(DOORS))
def test_a_parquet_footer_that_declares_rows_the_file_lacks_is_refused(
    tmp_path: Path, door: str, lie: str
) -> None:
    path = write(tmp_path / "lies.parquet")
    rewrite_footer(path, declare(*LIES[lie]))
    meta = pq.ParquetFile(path).metadata  # pyarrow opens it, believing it
    assert [meta.row_group(i).num_rows for i in range(4)] + [meta.num_rows] != [*GROUPS, ROWS]
    refused(DOORS[door], path, SAYS.get(lie, "rows but holds"))


def test_the_bound_on_a_footer_refuses_lies_but_not_dense_honest_files(tmp_path: Path) -> None:
    # Two million zeros and falses: far more rows than bytes, even uncompressed, and honest.
    n = 2_000_000
    path = tmp_path / "dense.parquet"
    pq.write_table(pa.table({"x": np.zeros(n), "flag": np.zeros(n, bool)}), path, row_group_size=n)
    assert pq.ParquetFile(path).metadata.row_group(0).total_byte_size < n // 4
    source = open_table(path)
    assert source.n_rows == n and source.piece_sizes() == (n,)
    assert next(source.batches(10)).tolist() == [[0.0, 0.0]] * 10
    rewrite_footer(path, declare(BIG, {0: BIG}))  # still a few KB: far too few for 2**50
    refused(count, path, f"row group 0 declares {BIG} rows but holds at most")


@pytest.mark.parametrize("name", ["lies.feather", "lies-lz4.feather", "lies.arrow"])
def test_a_record_batch_that_declares_more_rows_than_its_buffers_is_refused(
    tmp_path: Path, name: str
) -> None:
    path = write(tmp_path / name, compression="lz4" if "lz4" in name else "uncompressed")
    # A batch's length and its columns' lengths, the only int64s of 777 (buffers are padded
    # to multiples of 8): 2**28 rows declared, 777 held.
    raw = path.read_bytes()
    assert raw.count(struct.pack("<q", PIECE)) >= 4
    path.write_bytes(raw.replace(struct.pack("<q", PIECE), struct.pack("<q", 2**28)))
    says = "record batch 0 declares 268435456 rows but its data does not hold them"
    refused(count, path, says)  # first: before a door reads past a batch's buffers
    for door in DOORS.values():
        refused(door, path, says)


def damaged(folder: Path) -> Iterator[Path]:
    """Files that are not tables, or no longer whole ones, each kind as each door reads it."""
    rng = np.random.default_rng(1)
    for name in ("noise.parquet", "noise.feather", "noise.arrow", "noise.csv"):
        (folder / name).write_bytes(rng.bytes(5_000))
        yield folder / name
    for name in ("cut.parquet", "cut.feather", "cut.arrow", "cut.csv"):
        raw = write(folder / name).read_bytes()
        cut = int(len(raw) * 0.7)
        if name.endswith(".csv"):  # within a row's first field: a row of one column
            cut = raw.rindex(b"\n", 0, cut) + 3
        (folder / name).write_bytes(raw[:cut])
        yield folder / name
    # Damage that shows only when a later row group or record batch is read.
    path = write(folder / "page.parquet")
    page = pq.ParquetFile(path).metadata.row_group(3).column(1).data_page_offset
    with path.open("r+b") as f:
        f.seek(page)
        f.write(b"\xff" * 64)  # the page header: no longer Thrift
    yield path
    path = write(folder / "type.parquet")  # column b's doubles declared floats (type 5 → 4)
    rewrite_footer(path, lambda meta: meta[2][1][1][2].update({1: (5, 4)}))
    assert pq.ParquetFile(path).schema_arrow.field("b").type == pa.float32()
    yield path  # half of its values' bits read as floats: NaN, some of them signalling
    path = write(folder / "body.feather")  # lz4: each buffer starts with its size unpacked
    with pa.memory_map(str(path)) as source:
        source.seek(8)  # past the file format's magic: its messages, as a stream
        messages = ipc.MessageReader.open_stream(source)
        ends = [(source.tell(), message.body.size) for message in messages]
    end, size = ends[4]  # record batch 3 (after the schema and batches 0 to 2)
    body = bytearray(path.read_bytes())
    assert body[end - size : end - size + 8] == struct.pack("<q", GROUPS[3] * 8)
    body[end - size : end - size + 8] = struct.pack("<q", GROUPS[3] * 8 + 64)
    path.write_bytes(body)
    yield path


@pytest.mark.parametrize("door", list(DOORS))
def test_damaged_files_are_one_line_errors_at_every_door(tmp_path: Path, door: str) -> None:
    for path in damaged(tmp_path):
        if door == "load_dataset" and path.suffix == ".csv":
            continue  # load_dataset reads CSV with its own loader
        refused(DOORS[door], path)


@pytest.mark.parametrize("suffix", [".parquet", ".feather", ".arrow", ".csv"])
def test_a_file_gone_or_replaced_after_opening_is_an_input_error(
    tmp_path: Path, suffix: str
) -> None:
    path = write(tmp_path / f"t{suffix}")
    opened = open_table(path)
    path.unlink()
    with pytest.raises(InputError, match="cannot read as .*check that the file is there"):
        list(opened.batches())
    path.mkdir()  # a folder in its place
    with pytest.raises(InputError, match=f"^{re.escape(str(path))}: cannot read as"):
        list(opened.batches())
    with pytest.raises(InputError, match="a folder, not a table file"):
        open_table(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without read permission")
def test_a_file_without_read_permission_is_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path / "t.parquet")
    path.chmod(0)
    for door in DOORS.values():
        refused(door, path, "Permission denied")


def test_a_fifo_is_refused_rather_than_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "t.parquet"
    os.mkfifo(fifo)
    done = threading.Event()

    def writer() -> None:
        # A reader that opened the FIFO would wait for a writer for ever: this one comes,
        # so that such a reader fails this test rather than hangs it.
        while not done.wait(0.05):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # no reader waiting
                continue

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        with pytest.raises(InputError, match="not a regular file"):
            open_table(fifo)
    finally:
        done.set()
        thread.join()
