"""Fuzzing the data layer: CSV headers, channel counts, integer containers and sizes.

Each case either loads correctly (checked against an independent expectation) or raises
one InputError/ConfigError of one line, quickly and without a large allocation. Each fuzzer
runs AEKIT_FUZZ_EXAMPLES cases (default 100), as in test_fuzz_inputs.py.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from aekit import summary
from aekit.data import numpy_input_fn, to_float
from aekit.data.arrays import MAX_BYTES_ENV
from aekit.data.csv_file import LABEL_NAMES
from aekit.data.sources import load_csv, load_image_folder, load_npz
from aekit.errors import ConfigError, InputError
from fuzzing import Bounded, fuzz

LIMIT = 1 << 20  # the load limit these fuzzers run under: 1 MiB
_cases = itertools.count()


@pytest.fixture(autouse=True)
def small_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_BYTES_ENV, str(LIMIT))


def fresh(tmp_path: Path) -> Path:
    """A new folder per case: hypothesis runs every case in one tmp_path."""
    folder = tmp_path / f"case{next(_cases)}"
    folder.mkdir()
    return folder


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text, text
    return text


# --- CSV headers -----------------------------------------------------------------------------

NAMES = st.sampled_from([*LABEL_NAMES, "Label", " CLASS", "pixel0", "p", "x1", "1", "2.5", ""])


@st.composite
def csv_files(draw: st.DrawFn) -> dict[str, Any]:
    width = draw(st.integers(1, 5))
    rows = draw(st.integers(1, 4))
    values = draw(
        st.lists(
            st.lists(st.integers(0, 300) | st.sampled_from([0.5, -1.0]), min_size=width,
                     max_size=width),
            min_size=rows, max_size=rows,
        )
    )  # fmt: skip
    header = draw(st.none() | st.lists(NAMES, min_size=width, max_size=width))
    label = draw(
        st.none() | st.just(False) | st.integers(-6, 6) | NAMES | st.sampled_from([1.5, True, []])
    )
    return {"values": values, "header": header, "bom": draw(st.booleans()), "label": label}


def expected_csv(case: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None] | None:
    """What load_csv must return, or None where it must refuse."""
    values = np.array(case["values"], dtype=np.float64)
    header, label = case["header"], case["label"]

    def number(text: str) -> bool:
        try:
            float(text)
        except ValueError:
            return False
        return True

    if header == [""]:
        header = None  # a blank first line, skipped like every blank line
    if header is not None and all(not f.strip() or number(f) for f in header):
        if any(not f.strip() for f in header):
            return None  # an empty field in a numeric first line: a missing value
        values = np.vstack([np.array([float(f) for f in header]), values])
        header = None
    if (isinstance(label, bool) and label is not False) or isinstance(label, float | list):
        return None
    if label is None:
        found = [] if header is None else [
            i for i, f in enumerate(header) if f.strip().lower() in LABEL_NAMES
        ]  # fmt: skip
        if len(found) > 1:
            return None
        label = found[0] if found else False
    if isinstance(label, str):
        names = [] if header is None else [f.strip() for f in header]
        if label.strip() not in names:
            return None
        label = names.index(label.strip())
    y = None
    if label is not False:
        if not -values.shape[1] <= label < values.shape[1]:
            return None
        column = values[:, label]
        if (column != np.round(column)).any() or values.shape[1] == 1:
            return None
        y = column.astype(np.int64)
        values = np.delete(values, label, axis=1)
    return values, y


@fuzz
@given(case=csv_files())
def test_fuzz_csv_headers(tmp_path: Path, case: dict[str, Any]) -> None:
    lines = [] if case["header"] is None else [",".join(case["header"])]
    lines += [",".join(str(v) for v in row) for row in case["values"]]
    path = fresh(tmp_path) / "d.csv"
    path.write_bytes((b"\xef\xbb\xbf" if case["bom"] else b"") + "\n".join(lines).encode())
    expected = expected_csv(case)
    with Bounded(4 * LIMIT):
        try:
            x, y = load_csv(path, label_column=case["label"])
        except (InputError, ConfigError) as exc:
            one_line(exc)
            assert expected is None, f"refused a good file: {exc}"
            return
    assert expected is not None, "accepted a file it should refuse"
    np.testing.assert_allclose(x.astype(np.float64), expected[0], rtol=1e-6)
    assert x.dtype == (np.uint8 if np.isin(expected[0], np.arange(256)).all() else np.float32)
    assert (y is None) == (expected[1] is None)
    if y is not None and expected[1] is not None:
        np.testing.assert_array_equal(y, expected[1])


# --- channel counts: image folders, arrays, summaries ----------------------------------------

MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "F"]


@fuzz
@given(
    images=st.lists(
        st.tuples(st.sampled_from(MODES), st.sampled_from([(4, 3), (4, 3), (5, 5)]),
                  st.integers(0, 255)),
        min_size=1, max_size=4,
    ),
    mode=st.sampled_from(["L", "RGB"]),
    size=st.none() | st.sampled_from([3, (2, 6), (2000, 2000)]),
)  # fmt: skip
def test_fuzz_image_folder_channels(
    tmp_path: Path,
    images: list[tuple[str, tuple[int, int], int]],
    mode: str,
    size: Any,
) -> None:
    folder = fresh(tmp_path)
    expected = []
    for i, (image_mode, wh, value) in enumerate(images):
        image = Image.new(image_mode, wh, value if image_mode not in ("RGB", "CMYK") else
                          (value, 255 - value, value // 2, 0)[: len(image_mode)])  # fmt: skip
        file = folder / f"{i}.{'tiff' if image_mode in ('F', 'CMYK') else 'png'}"
        image.save(file)
        with Image.open(file) as saved:
            saved.load()
            expected.append(saved)
    with Bounded(4 * LIMIT):
        try:
            x, y = load_image_folder(folder, size=size, mode=mode)
        except InputError as exc:
            text = one_line(exc)
            wide = [i for i, im in enumerate(expected) if im.mode.startswith(("I", "F"))]
            sizes = {im.size for im in expected}
            assert wide or (size is None and len(sizes) > 1) or "limit" in text, text
            return
    # 16-bit and float images would be clipped to 8 bits: they must have been refused.
    assert not any(im.mode.startswith(("I", "F")) for im in expected)
    assert y is None and x.dtype == np.uint8
    height, width = (expected[0].size[1], expected[0].size[0]) if size is None else (
        (size, size) if isinstance(size, int) else size)  # fmt: skip
    assert x.shape == (len(images), height, width, *((3,) if mode == "RGB" else ()))
    for got, image in zip(x, expected, strict=True):
        solid = np.asarray(image.convert(mode))[0, 0]
        assert (got == solid).all()  # a solid image stays its colour, converted once


@fuzz
@given(
    n=st.integers(1, 3),
    channels=st.integers(1, 7),
    hw=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    layout=st.sampled_from(["NCHW", "CHW", "HW"]),
)
def test_fuzz_array_channels_reach_tensorboard(
    tmp_path: Path, n: int, channels: int, hw: tuple[int, int], layout: str
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x = np.random.default_rng(0).integers(0, 256, (n, channels, *hw), dtype=np.uint8)
    features, _ = next(iter(numpy_input_fn(x, batch_size=n, shuffle=False)()))
    image = {"NCHW": features, "CHW": features[0], "HW": features[0, 0]}[layout]
    folder = fresh(tmp_path)
    writers = summary.EventWriters(folder)
    recorder = summary.Recorder()
    with summary.recording(recorder):
        summary.image("img", image)
    writers.write_records("train", recorder, step=1)
    writers.close()
    events = EventAccumulator(str(folder / "train"), size_guidance={"images": 0})
    events.Reload()
    (written,) = events.Images("img")
    shown = 1 if layout == "HW" or channels == 3 else channels
    count = n if layout == "NCHW" else 1
    assert (written.width, written.height) == (count * shown * hw[1], hw[0])


# --- integer dtypes and containers -------------------------------------------------------------

INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.bool_]


@fuzz
@given(
    dtype=st.sampled_from(INT_DTYPES),
    container=st.sampled_from(["numpy", "memmap", "torch"]),
    values=st.lists(st.sampled_from([0, 1, 2, 127, 255, -1]), min_size=2, max_size=12),
)
def test_fuzz_integer_containers(
    tmp_path: Path, dtype: Any, container: str, values: list[int]
) -> None:
    dtype = np.dtype(dtype)
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    raw = np.array([v for v in values if info is None or info.min <= v <= info.max] or [0])
    array = (raw != 0 if dtype.kind == "b" else raw).astype(dtype).reshape(-1, 1)
    if container == "memmap":
        path = fresh(tmp_path) / "x.npy"
        np.save(path, array)
        data: Any = np.load(path, mmap_mode="r")
    elif container == "torch":
        if dtype in (np.uint16, np.uint32):
            data = torch.from_numpy(array.astype(np.int64)).to(getattr(torch, dtype.name))
        else:
            data = torch.from_numpy(array)
    else:
        data = array
    with Bounded(4 * LIMIT):
        try:
            features, _ = next(iter(numpy_input_fn(data, batch_size=len(array), shuffle=False)()))
        except InputError as exc:
            text = one_line(exc)
            assert dtype.kind in "iu" and dtype != np.uint8, text
            assert array.min() < 0 or array.max() > 1, text
            return
    expected = array.astype(np.float64) / (255.0 if dtype == np.uint8 else 1.0)
    np.testing.assert_allclose(features.numpy(), expected, rtol=1e-6)
    assert float(features.min()) >= 0 and float(features.max()) <= 1
    # to_float alone (a model_fn's own conversion) follows the same rule.
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    try:
        converted = to_float(tensor)
    except InputError:
        pytest.fail("to_float refused what numpy_input_fn accepted")
    np.testing.assert_allclose(converted.numpy(), expected, rtol=1e-6)
    del data


# --- sizes ------------------------------------------------------------------------------------


@fuzz
@given(
    kind=st.sampled_from(["npy", "npz", "csv", "images"]),
    rows=st.sampled_from([1, 3, 200, 5_000, 2**31]),
    columns=st.sampled_from([1, 8, 600, 3_000, 2**20]),
)
def test_fuzz_sizes_refused_before_allocation(
    tmp_path: Path, kind: str, rows: int, columns: int
) -> None:
    """Real or declared sizes around the 1 MiB limit: small ones load, large ones are refused."""
    folder = fresh(tmp_path)
    needed = rows * columns * 8  # float64 values, as numpy and the CSV parser hold them
    writable = needed <= 4 * LIMIT
    if kind in ("npy", "npz"):
        npy = folder / "d.npy"
        with open(npy, "wb") as f:
            # A true header; the data follows whole when small, else 8 bytes (the bomb case).
            header = {"descr": "<f8", "fortran_order": False, "shape": (rows, columns)}
            np.lib.format.write_array_header_1_0(f, header)
            f.write(np.ones(rows * columns if writable else 1).tobytes())
        path = npy
        if kind == "npz":
            import zipfile

            path = folder / "d.npz"
            with zipfile.ZipFile(path, "w") as zf:
                zf.write(npy, "x.npy")
        load: Any = lambda: load_npz(path)  # noqa: E731
    elif kind == "csv":
        if not writable:
            return  # a CSV holds its rows: a large one is too large to write here
        path = folder / "d.csv"
        path.write_text(("1," * (columns - 1) + "1\n") * rows)
        load = lambda: load_csv(path)  # noqa: E731
    else:
        count, side = min(rows, 3), min(columns, 3_000)
        for i in range(count):
            Image.new("L", (side, side), 7).save(folder / f"{i}.png")
        load = lambda: load_image_folder(folder, mode="RGB")  # noqa: E731
        needed = count * side * side * 3
        writable = True
    with Bounded(limit=6 * LIMIT, seconds=10):
        try:
            x, _ = load()
        except (InputError, ConfigError) as exc:
            text = one_line(exc)
            assert needed > LIMIT or not writable, f"refused {needed:,} bytes: {text}"
            assert "limit of 1.0 MiB" in text or not writable, text
            return
    assert needed <= LIMIT and writable, f"loaded {needed:,} bytes over the limit"
    assert x.size == needed // (8 if kind != "images" else 1)
