"""Bad input to the data layer: one clear error before anything large is allocated."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from aekit.data import InputFunction, numpy_input_fn, sources, to_float
from aekit.data.arrays import MAX_BYTES_ENV, check_values, max_load_bytes
from aekit.data.sources import load_csv, load_dataset, load_image_folder, load_npz
from aekit.errors import ConfigError, InputError

loose: Any = sources  # calls with deliberately wrong types, unchecked by mypy


def message(error: pytest.ExceptionInfo[Any], *fragments: str) -> str:
    text = str(error.value)
    assert text and "\n" not in text, text
    for fragment in fragments:
        assert fragment in text, text
    return text


def first_batch(x: object, **kwargs: object) -> torch.Tensor:
    features, _ = next(iter(numpy_input_fn(x, shuffle=False, **kwargs)()))  # type: ignore[arg-type]
    assert isinstance(features, torch.Tensor)
    return features


# --- sizes -------------------------------------------------------------------------------------


@pytest.fixture
def small_limit(monkeypatch: pytest.MonkeyPatch) -> int:
    """A 1 MiB load limit, so that 'too large' takes kilobytes of test files."""
    monkeypatch.setenv(MAX_BYTES_ENV, str(1 << 20))
    return 1 << 20


def test_the_limit_is_eight_gib_at_most_and_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_BYTES_ENV, raising=False)
    assert 0 < max_load_bytes() <= 8 << 30
    monkeypatch.setenv(MAX_BYTES_ENV, "12345")
    assert max_load_bytes() == 12345
    monkeypatch.setenv(MAX_BYTES_ENV, "lots")
    with pytest.raises(ConfigError, match=MAX_BYTES_ENV):
        max_load_bytes()


def test_image_folder_too_large_is_refused_before_decoding(
    tmp_path: Path, small_limit: int
) -> None:
    for i in range(3):
        Image.new("L", (400, 400), i).save(tmp_path / f"{i}.png")  # 3 x 160 kB decoded
    x, _ = load_image_folder(tmp_path)
    assert x.shape == (3, 400, 400)
    Image.new("L", (400, 400), 9).save(tmp_path / "3.png")
    Image.new("L", (400, 400), 9).save(tmp_path / "4.png")
    Image.new("L", (400, 400), 9).save(tmp_path / "5.png")
    Image.new("L", (400, 400), 9).save(tmp_path / "6.png")
    tracemalloc.start()
    with pytest.raises(InputError) as error:
        load_image_folder(tmp_path, mode="RGB")  # 7 x 400 x 400 x 3 = 3.2 MiB
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    message(error, "7 images", "7 x 400 x 400 x 3", "3.2 MiB", "limit of 1.0 MiB", MAX_BYTES_ENV)
    assert peak < 400_000  # no image was decoded
    with pytest.raises(InputError, match="limit"):
        load_image_folder(tmp_path, size=10**5)  # the requested size counts, not the files'
    huge = tmp_path / "huge"
    huge.mkdir()
    Image.new("L", (1100, 1000), 0).save(huge / "one.png")  # 1.05 MiB decoded
    with pytest.raises(InputError) as error:
        load_image_folder(huge, size=8)  # a small result, but decoding takes the whole image
    message(error, "one.png: decoding it", "1000 x 1100 x 1", "limit of 1.0 MiB")


def test_large_image_among_small_ones_is_named(tmp_path: Path) -> None:
    """The probe's case: one large image among small ones is not a reason to resize all."""
    for i in range(5):
        Image.new("L", (8, 8), i).save(tmp_path / f"{i}.png")
    Image.new("L", (3000, 2000), 1).save(tmp_path / "00_big.png")  # read first: still odd
    tracemalloc.start()
    with pytest.raises(InputError) as error:
        load_image_folder(tmp_path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    message(error, "00_big.png is 2000x3000", "5 of the 6 images are 8x8", "differ in size")
    assert peak < 1 << 20


def test_npz_declaring_more_than_the_limit_is_refused(tmp_path: Path, small_limit: int) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((600, 600), np.float32))  # 1.4 MiB
    with pytest.raises(InputError) as error:
        load_npz(tmp_path / "d.npz")
    message(error, "d.npz", "600 x 600", "1.4 MiB", "limit of 1.0 MiB")
    np.save(tmp_path / "d.npy", np.zeros((600, 600), np.float32))
    with pytest.raises(InputError, match="limit of 1.0 MiB"):
        load_npz(tmp_path / "d.npy")
    # load_dataset memory-maps a .npy file, allocating nothing: no limit to refuse it by.
    (x_train, _), (x_test, _) = load_dataset(tmp_path / "d.npy")
    assert (len(x_train), len(x_test)) == (480, 120)


def test_csv_rows_times_columns_checked_before_parsing(tmp_path: Path, small_limit: int) -> None:
    path = tmp_path / "d.csv"
    path.write_text("".join("0," * 999 + "0\n" for _ in range(200)))  # 200 x 1000 float64
    with pytest.raises(InputError) as error:
        load_csv(path)
    message(error, "d.csv", "200 x 1000", "1.5 MiB", "limit of 1.0 MiB")


def test_csv_with_one_giant_line_is_refused_before_reading_it(
    tmp_path: Path, small_limit: int
) -> None:
    """1 row x 40,000 values fits as floats, but parsing the line's text would not."""
    path = tmp_path / "wide.csv"
    path.write_text("1," * 39_999 + "1")
    tracemalloc.start()
    with pytest.raises(InputError) as error:
        load_csv(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    message(error, "wide.csv", "a line of 79,999 characters", "limit of 1.0 MiB", "split it")
    assert peak < 2 << 20  # block-wise scan: never the line as a string, nor its fields


# --- API arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"noise": "masking"}, ConfigError, "noise must be a Corruption object"),
        ({"noise": 0.3}, ConfigError, "MaskingNoise(0.3)"),
        ({"batch_size": 2.5}, ConfigError, "batch_size must be an integer"),
        ({"batch_size": 0}, ConfigError, "batch_size must be an integer >= 1"),
        ({"num_epochs": "2"}, ConfigError, "num_epochs must be an integer"),
        ({"shuffle": "yes"}, ConfigError, "shuffle must be True or False"),
        ({"seed": -1}, ConfigError, "seed must be an integer in"),
        ({"noise_factor": float("nan")}, ConfigError, "noise_factor must be a finite"),
        ({"device": "meta"}, ConfigError, "cannot train"),
        ({"device": 1.5}, ConfigError, "device must be"),
        ({"y": np.array(["a", "b", "c", "d"])}, InputError, "y has dtype <U1, not numbers"),
        ({"y": np.zeros(3)}, InputError, "x has 4 examples but y has 3"),
    ],
)
def test_numpy_input_fn_arguments(kwargs: dict[str, object], error: type, fragment: str) -> None:
    with pytest.raises(error) as info:
        numpy_input_fn(np.zeros((4, 3), np.uint8), **kwargs)  # type: ignore[arg-type]
    message(info, fragment)


@pytest.mark.parametrize(
    ("x", "fragment"),
    [
        (np.zeros(5, np.uint8), "shape (5,), one number per example"),
        (torch.zeros(5), "shape (5,), one number per example"),
        (np.float32(3), "single number"),
        (np.zeros((0, 3)), "empty"),
        ("pixels", "is a str; give a numpy array"),
        ([[1, 2], [3]], "rows of equal length"),
        (np.zeros((2, 2), complex), "not real numbers"),
        (torch.zeros(2, 2, dtype=torch.complex64), "not real numbers"),
    ],
)
def test_numpy_input_fn_shapes_and_containers(x: object, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        numpy_input_fn(x)  # type: ignore[arg-type]
    message(info, fragment)
    with pytest.raises(InputError):
        InputFunction(x, 2, 1, "train")  # type: ignore[arg-type]


def test_input_function_arguments() -> None:
    x = np.zeros((4, 3), np.uint8)
    with pytest.raises(ConfigError, match="mode must be one of"):
        InputFunction(x, 2, 1, "training")
    with pytest.raises(ConfigError, match="batch_size"):
        InputFunction(x, "2", 1, "train")  # type: ignore[arg-type]


def test_a_nested_list_is_an_array() -> None:
    assert first_batch([[0.0, 0.5], [1.0, 0.25]]).tolist() == [[0.0, 0.5], [1.0, 0.25]]


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (
            lambda p: loose.load_csv(p, label_column=1.5),
            ConfigError,
            "label_column must be a column",
        ),
        (
            lambda p: loose.load_csv(p, label_column=True),
            ConfigError,
            "label_column must be a column",
        ),
        (lambda p: loose.load_csv(p, image_shape=3), ConfigError, "image_shape must be a tuple"),
        (lambda p: loose.load_csv(p, image_shape=(1.5, 2)), ConfigError, "image_shape's entries"),
        (lambda p: loose.load_csv(123), ConfigError, "as a str or Path"),
        (lambda p: loose.load_npz(p, x_key=0), ConfigError, "x_key must be the name"),
        (lambda p: loose.load_image_folder(p.parent, size=1.5), ConfigError, "size=1.5 must be"),
        (
            lambda p: loose.load_image_folder(p.parent, size=(2, 2, 2)),
            ConfigError,
            "(height, width)",
        ),
        (lambda p: loose.load_dataset(None), ConfigError, "give a data set name"),
    ],
)
def test_loader_arguments(tmp_path: Path, call: object, error: type, fragment: str) -> None:
    path = tmp_path / "d.csv"
    path.write_text("1,2,3,4\n5,6,7,8\n")
    with pytest.raises(error) as info:
        call(path)  # type: ignore[operator]
    message(info, fragment)


# --- integers in every container --------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda v: np.asarray(v, np.int64),
        lambda v: torch.tensor(v, dtype=torch.int64),
        lambda v: torch.tensor(v, dtype=torch.int16),
        lambda v: np.asarray(v, np.uint16),
    ],
)
def test_integers_other_than_uint8_must_be_binary(make: object) -> None:
    pixels = make([[0, 255], [17, 3]])  # type: ignore[operator]
    with pytest.raises(InputError) as error:
        numpy_input_fn(pixels)
    message(error, "values from 0 to 255", "only uint8 is scaled")
    binary = make([[0, 1], [1, 0]])  # type: ignore[operator]
    assert first_batch(binary).tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert to_float(torch.as_tensor(np.asarray(binary))).dtype == torch.float32
    with pytest.raises(InputError, match="values from 0 to 255"):
        to_float(torch.as_tensor(np.asarray(pixels)))


def test_uint8_is_scaled_in_every_container(tmp_path: Path) -> None:
    pixels = np.array([[0, 255], [51, 102]], np.uint8)
    np.save(tmp_path / "p.npy", pixels)
    mapped = np.load(tmp_path / "p.npy", mmap_mode="r")
    for container in (pixels, torch.from_numpy(pixels), mapped):
        assert torch.allclose(first_batch(container), torch.tensor([[0.0, 1.0], [0.2, 0.4]]))
    del mapped


def test_int16_memmap_is_checked_in_chunks(tmp_path: Path) -> None:
    """The probe's int16 memory map up to 511: refused, without reading it into memory."""
    path = tmp_path / "big.npy"
    data = np.lib.format.open_memmap(path, mode="w+", dtype=np.int16, shape=(20_000, 1_000))
    data[-1, -1] = 511  # 40 MB of zeros and one value out of range, at the very end
    data.flush()
    del data
    mapped = np.load(path, mmap_mode="r")
    tracemalloc.start()
    with pytest.raises(InputError) as error:
        numpy_input_fn(mapped)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    message(error, "int16 with values from 0 to 511")
    assert peak < 20 << 20
    del mapped


def test_float_memmap_nan_found_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "f.npy"
    data = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(10_000, 1_000))
    data[7_777, 3] = np.nan
    data.flush()
    del data
    mapped = np.load(path, mmap_mode="r")
    tracemalloc.start()
    with pytest.raises(InputError, match="1 NaN or infinite"):
        check_values(mapped, "x")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 30 << 20  # a boolean mask of the whole map would take 10 MB; chunks ~4 MB
    del mapped


def test_non_finite_tensors_are_refused() -> None:
    with pytest.raises(InputError, match="2 NaN or infinite"):
        numpy_input_fn(torch.tensor([[0.5, float("inf")], [float("nan"), 0.0]]))


# --- CSV headers ----------------------------------------------------------------------------


def test_csv_with_a_byte_order_mark_keeps_its_first_row(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf1,2,3\n4,5,6\n")
    x, y = load_csv(path)
    assert x.tolist() == [[1, 2, 3], [4, 5, 6]] and y is None
    path.write_bytes(b"\xef\xbb\xbflabel,p0\n3,200\n")  # a BOM before a header: still a header
    x, y = load_csv(path)
    assert x.tolist() == [[200]] and y is not None and y.tolist() == [3]


@pytest.mark.parametrize("name", ["label", "Label", " class ", "TARGET", "y"])
def test_kaggle_style_label_column_is_the_labels(tmp_path: Path, name: str) -> None:
    path = tmp_path / "train.csv"
    path.write_text(f"pixel0,{name},pixel1\n0,7,255\n255,1,0\n")
    x, y = load_csv(path)
    assert x.tolist() == [[0, 255], [255, 0]] and x.dtype == np.uint8
    assert y is not None and y.tolist() == [7, 1]
    x_all, none = load_csv(path, label_column=False)
    assert x_all.shape == (2, 3) and none is None
    (train, y_train), _ = load_dataset(path)  # the CLI's path takes the labels too
    assert train.shape[1] == 2 and y_train is not None


def test_csv_label_column_errors(tmp_path: Path) -> None:
    path = tmp_path / "two.csv"
    path.write_text("label,target,p\n1,2,3\n")
    with pytest.raises(ConfigError) as error:
        load_csv(path)
    message(error, "'label', 'target'", "label_column=")
    assert load_csv(path, label_column="target")[1] is not None
    (tmp_path / "nan.csv").write_text("1,nan\n2,3\n")
    with pytest.raises(InputError) as input_error:
        load_csv(tmp_path / "nan.csv")
    message(input_error, "1 NaN, infinite")


def test_float64_and_float16_batches_become_float32() -> None:
    """numpy's default float64 would not multiply with a float32 network's weights."""
    for dtype in (np.float64, np.float16):
        assert first_batch(np.full((2, 3), 0.5, dtype)).dtype == torch.float32
    bf16 = torch.full((2, 3), 0.5, dtype=torch.bfloat16)
    assert to_float(bf16).dtype == torch.bfloat16  # kept for bfloat16 networks


def test_numpy_float64_trains_a_model(tmp_path: Path) -> None:
    import aekit
    from aekit.models.fully_connected import AutoEncoder

    est = AutoEncoder(
        hidden_units=[4],
        input_shape=(6,),
        model_dir=tmp_path,
        config=aekit.RunConfig(log_step_count_steps=0),
    )
    est.train(numpy_input_fn(np.random.default_rng(0).random((8, 6)), batch_size=4))
    assert est.global_step == 2


def test_array_likes_go_through_numpy() -> None:
    class Frame:  # what pandas and xarray offer
        def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
            return np.array([[0.0, 1.0], [0.5, 0.5]])

    assert first_batch(Frame()).tolist() == [[0.0, 1.0], [0.5, 0.5]]


def test_npz_string_labels_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 3), np.uint8), y=np.array(["cat", "dog"]))
    with pytest.raises(InputError) as error:
        load_npz(tmp_path / "d.npz")
    message(error, "d.npz", "dtype <U3, not numbers", "LabelEncoder")


def test_load_dataset_arguments() -> None:
    with pytest.raises(ConfigError, match="data_dir must be"):
        loose.load_dataset("mnist", data_dir=5)
    with pytest.raises(ConfigError, match="download must be True or False"):
        loose.load_dataset("mnist", download="yes")


def test_array_valued_arguments_give_one_line() -> None:
    """An array where a number belongs: its repr spans lines, the message must not."""
    grid = np.zeros((30, 30))
    with pytest.raises(ConfigError) as error:
        numpy_input_fn(np.zeros((4, 3), np.uint8), batch_size=grid)  # type: ignore[arg-type]
    message(error, "batch_size must be an integer, got array(")
    with pytest.raises(ConfigError) as error:
        numpy_input_fn(np.zeros((4, 3), np.uint8), noise=grid)  # type: ignore[arg-type]
    message(error, "noise must be a Corruption")
    with pytest.raises(ConfigError) as error:
        loose.load_csv("unused.csv", label_column=grid)
    message(error, "label_column must be")
