"""Fuzzing every input aekit reads: each bad one is a specific AekitError, never a crash.

Each fuzzer runs FUZZ_EXAMPLES cases (env AEKIT_FUZZ_EXAMPLES, default 100); run with
`--hypothesis-show-statistics` to see the count. Anything but the expected error class, a
message over one line, an allocation far beyond the input's size, or a slow case fails.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import os
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import aekit
from aekit.cli import config as run_config
from aekit.cli import data, run, training
from aekit.cli.main import _parser
from aekit.data import idx, mnist, numpy_input_fn
from aekit.data.idx import IDXError, read_idx
from aekit.errors import AekitError, ConfigError, InputError
from fuzzing import Bounded, fuzz

RUNS: Counter[str] = Counter()  # cases run per fuzzer


def counted(test: Callable[..., None]) -> Callable[..., None]:
    """Count the cases a fuzzer runs (goes under @given)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        RUNS[test.__name__] += 1
        test(*args, **kwargs)

    return run


@pytest.fixture(scope="module", autouse=True)
def report_counts() -> Iterator[None]:
    """With AEKIT_FUZZ_REPORT=file, write the number of cases each fuzzer ran to it (JSON)."""
    yield
    target = os.environ.get("AEKIT_FUZZ_REPORT")
    if target:
        Path(target).write_text(json.dumps(dict(sorted(RUNS.items())), indent=2) + "\n")


CODES = [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]
ITEMSIZE = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text, text
    return text


# --- IDX files ----------------------------------------------------------------------------


@st.composite
def idx_files(draw: st.DrawFn) -> tuple[bytes, bool]:
    """IDX bytes with any header field wrong, huge dims, truncation or trailing data."""
    zeros = draw(st.sampled_from([(0, 0)] * 6 + [(0, 1), (1, 0), (0x1F, 0x8B)]))
    code = draw(st.sampled_from(CODES) | st.integers(0, 255))
    ndim = draw(st.sampled_from([1, 2, 3, 4]) | st.integers(0, 255))
    small = st.integers(1, 6)
    dims = draw(st.lists(small | st.sampled_from([0, 2**31, 2**32 - 1]), min_size=0, max_size=6))
    header = bytes([*zeros, code, ndim]) + b"".join(struct.pack(">I", d) for d in dims)
    declared = math.prod(dims) * ITEMSIZE.get(code, 1) if dims else 0
    size = draw(st.sampled_from([declared] * 3 + [0, declared - 1, declared + 1]) | small)
    body = draw(st.binary(min_size=min(max(size, 0), 512), max_size=min(max(size, 0), 512)))
    data = header + body
    cut = draw(st.none() | st.integers(0, len(data)))
    return (data if cut is None else data[:cut]), draw(st.booleans())


@fuzz
@given(case=idx_files())
@counted
def test_fuzz_idx_headers(tmp_path: Path, case: tuple[bytes, bool]) -> None:
    data, compress = case
    path = tmp_path / ("f.idx.gz" if compress else "f.idx")
    path.write_bytes(gzip.compress(data) if compress else data)
    with Bounded(limit=4 * len(data) + (4 << 20)):
        try:
            array = read_idx(path)
        except IDXError as exc:
            assert str(path) in one_line(exc)
            return
    # Accepted: the file must really be what its header says, byte for byte.
    zero1, zero2, code, ndim = data[:4]
    assert (zero1, zero2) == (0, 0) and code in CODES and 1 <= ndim <= idx.MAX_NDIM
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    assert array.shape == dims
    assert array.nbytes == len(data) - 4 - 4 * ndim


@fuzz
@given(noise=st.binary(min_size=0, max_size=300), keep_magic=st.booleans())
@counted
def test_fuzz_corrupt_gzip_streams(tmp_path: Path, noise: bytes, keep_magic: bool) -> None:
    data = (b"\x1f\x8b" if keep_magic else b"") + noise
    path = tmp_path / "f.gz"
    path.write_bytes(data)
    with Bounded(limit=2 << 20), pytest.raises(IDXError) as info:
        read_idx(path)
    one_line(info.value)


def test_huge_declared_dimensions_allocate_nothing(tmp_path: Path) -> None:
    """255 x 255 x 255 x 2**32-1 float64 elements declared by a 20-byte file."""
    path = tmp_path / "bomb.idx"
    path.write_bytes(bytes([0, 0, 0x0E, 4]) + struct.pack(">4I", 255, 255, 255, 2**32 - 1))
    gz = tmp_path / "bomb.idx.gz"
    gz.write_bytes(gzip.compress(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 2**31) + b"\0" * 9))
    for bomb in (path, gz):
        with Bounded(limit=4 << 20), pytest.raises(IDXError, match="limit|truncated"):
            read_idx(bomb)


# --- MNIST-style folders: labels out of range, mismatched files -------------------------


@fuzz
@given(
    n_images=st.integers(1, 4),
    n_labels=st.integers(1, 4),
    labels=st.lists(st.integers(0, 255), min_size=4, max_size=4),
    image_shape=st.sampled_from([(28, 28), (28, 27), (7, 7)]),
    label_dtype=st.sampled_from([np.uint8, np.int16]),
)
@counted
def test_fuzz_mnist_label_files(
    tmp_path: Path,
    n_images: int,
    n_labels: int,
    labels: list[int],
    image_shape: tuple[int, int],
    label_dtype: Any,
) -> None:
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    images = np.zeros((n_images, *image_shape), np.uint8)
    y = np.array(labels[:n_labels], dtype=label_dtype)
    for stem in ("train", "t10k"):
        idx.write_idx(folder / f"{stem}-images-idx3-ubyte", images)
        idx.write_idx(folder / f"{stem}-labels-idx1-ubyte", y)
    try:
        (x_train, y_train), _ = mnist.load_data(folder, download=False)
    except InputError as exc:
        one_line(exc)
        return
    assert x_train.shape == (n_images, 28, 28) and len(y_train) == n_images
    assert y_train.dtype == np.uint8 and int(y_train.max()) <= 9


# --- Arrays: NaN, Inf, out-of-range pixels, shapes, dtypes, empty sets --------------------

DTYPES = [np.uint8, np.int16, np.int64, np.float16, np.float32, np.float64, np.bool_,
          np.complex64]  # fmt: skip


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
    elements = None
    if dtype.kind == "f":
        specials = st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 0.0, 0.5, 1.0, 2.0, 300.0])
        width = {2: 16, 4: 32}.get(dtype.itemsize, 64)
        elements = specials | st.floats(0, 1, width=width)  # type: ignore[arg-type]
    elif dtype.kind in "iu":
        low, high = (0, 255) if dtype.kind == "u" else (-300, 300)
        elements = st.integers(low, high)
    return draw(hnp.arrays(dtype, shape, elements=elements))


@fuzz
@given(x=arrays())
@counted
def test_fuzz_data_files_as_the_cli_loads_them(tmp_path: Path, x: np.ndarray) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, x=x)
    try:
        (x_train, _), (x_test, _) = data.load_images({"dataset": str(path), "data_dir": None})
    except (InputError, ConfigError) as exc:
        one_line(exc)
        return
    for part in (x_train, x_test):
        assert len(part) > 0 and part.ndim >= 2
        if part.dtype != np.uint8:
            assert part.dtype.kind in "fb" and np.isfinite(part).all()
            assert part.min() >= 0 and part.max() <= 1


@fuzz
@given(x=arrays(), batch=st.integers(-2, 4))
@counted
def test_fuzz_numpy_input_fn(x: np.ndarray, batch: int) -> None:
    try:
        first = next(iter(numpy_input_fn(x, batch_size=batch, shuffle=False)()))
    except (AekitError, StopIteration) as exc:
        if isinstance(exc, AekitError):
            one_line(exc)
        return
    features = first[0]
    assert features.dtype.is_floating_point and bool(features.isfinite().all())
    if x.dtype.kind in "iub":
        assert float(features.min()) >= 0 and float(features.max()) <= 1


@fuzz
@given(
    y=hnp.arrays(
        st.sampled_from([np.int64, np.float32, np.int16]),
        hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=4),
        elements=st.sampled_from([0, 1, 9, 10, -1, 255]),
    ),
    n_classes=st.integers(2, 12),
)
@counted
def test_fuzz_class_labels(y: np.ndarray, n_classes: int) -> None:
    try:
        training._check_class_ids(y, n_classes, "the training labels")
    except InputError as exc:
        one_line(exc)
        return
    assert y.ndim == 1 and y.min() >= 0 and y.max() < n_classes


# --- Config files and flags -----------------------------------------------------------------

KEYS = ["epochs", "batch_size", "learning_rate", "weight_decay", "dropout", "noise_factor",
        "hidden_units", "seed", "log_every", "clip_grad_norm", "activation", "device",
        "dataset", "model", "unknown-key"]  # fmt: skip
VALUES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.text(max_size=8)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.lists(st.integers(-3, 300), max_size=4)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)


@fuzz
@given(
    content=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4).map(lambda d: ("yaml", d))
    | st.text(max_size=60).map(lambda t: ("toml", t))
    | st.binary(max_size=40).map(lambda b: ("yaml", b)),
)
@counted
def test_fuzz_config_files(tmp_path: Path, content: tuple[str, Any]) -> None:
    import yaml

    suffix, body = content
    path = tmp_path / f"run.{suffix}"
    if isinstance(body, bytes):
        path.write_bytes(body)
    elif isinstance(body, dict):
        path.write_text(yaml.safe_dump(body))
    else:
        path.write_text(body)
    model_dir = tmp_path / "model"
    try:
        resolved = run_config.resolve("fully_connected", model_dir, {}, path)
        resolved["example_shape"] = [8, 8]
        run.build(resolved, model_dir)
    except ConfigError as exc:
        one_line(exc)
    assert not model_dir.exists()  # nothing is written while settings are resolved


FLAGS = ["--epochs", "--batch-size", "--learning-rate", "--weight-decay", "--dropout",
         "--noise-factor", "--hidden-units", "--seed", "--log-every", "--clip-grad-norm",
         "--activation", "--device"]  # fmt: skip
FLAG_VALUES = st.sampled_from(["0", "-1", "nan", "inf", "-inf", "1e400", "3", "0.5", "x", "",
                               "1,2", "0,4", "2**40", "cuda:7", "relu"])  # fmt: skip


@fuzz
@given(flags=st.lists(st.tuples(st.sampled_from(FLAGS), FLAG_VALUES), min_size=1, max_size=4))
@counted
def test_fuzz_train_flags(tmp_path: Path, flags: list[tuple[str, str]]) -> None:
    """Every stage before training: parsing, settings, building the estimator."""
    argv = ["train", "fully_connected", "--model-dir", str(tmp_path / "m")]
    for flag, value in flags:
        argv += [f"{flag}={value}"]
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: usage and one error line, status 2
        assert exc.code == 2
        return
    skip = {"command", "model", "config", "preset", "verbose", "model_dir"}
    given_ = {k: v for k, v in vars(args).items() if k not in skip}
    try:
        resolved = run_config.resolve("fully_connected", args.model_dir, given_)
        resolved["example_shape"] = [8, 8]
        est = run.build(resolved, args.model_dir)
    except ConfigError as exc:
        one_line(exc)
        return
    assume(isinstance(est, aekit.Estimator))
    assert not (tmp_path / "m").exists()


@fuzz
@given(
    field=st.sampled_from(["save_checkpoints_steps", "save_checkpoints_secs", "save_summary_steps",
                           "keep_checkpoint_max", "log_step_count_steps", "random_seed",
                           "clip_grad_norm", "device"]),
    value=VALUES,
)  # fmt: skip
@counted
def test_fuzz_run_config(field: str, value: Any) -> None:
    try:
        config = aekit.RunConfig(**{field: value})
    except ConfigError as exc:
        one_line(exc)
        return
    got = getattr(config, field)
    if isinstance(got, float):
        assert math.isfinite(got) or field == "save_checkpoints_secs"
