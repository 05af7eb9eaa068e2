"""Other data sources: .npz/.npy, image folders, CSV, scikit-learn's digits, memmaps, dispatch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from aekit.data.idx import write_idx
from aekit.data.mnist import FILES
from aekit.data.sources import (
    load_csv,
    load_dataset,
    load_digits,
    load_image_folder,
    load_npz,
    open_npy_memmap,
)
from aekit.errors import ConfigError, InputError


def one_line(error: pytest.ExceptionInfo[Exception], *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def save_png(path: Path, height: int, width: int, value: int | tuple[int, int, int]) -> None:
    """A solid image: resizing keeps its value, so pixels can be checked exactly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "L" if isinstance(value, int) else "RGB"
    Image.new(mode, (width, height), value).save(path)


# --- .npz / .npy -------------------------------------------------------------------------------


@pytest.mark.parametrize(("x_name", "y_name"), [("x", "y"), ("x_train", "y_train"), ("X", None)])
def test_npz_with_usual_keys(tmp_path: Path, x_name: str, y_name: str | None) -> None:
    x = np.arange(60, dtype=np.uint8).reshape(5, 3, 4)
    y = np.arange(5)
    arrays: dict[str, Any] = {x_name: x} | ({y_name: y} if y_name else {})
    np.savez(tmp_path / "d.npz", **arrays)
    got_x, got_y = load_npz(tmp_path / "d.npz")
    np.testing.assert_array_equal(got_x, x)
    if y_name is None:
        assert got_y is None
    else:
        assert got_y is not None
        np.testing.assert_array_equal(got_y, y)


def test_npz_explicit_keys_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, pixels=np.ones((4, 2), np.float32), classes=np.arange(4), extra=np.zeros(3))
    x, y = load_npz(path, x_key="pixels", y_key="classes")
    assert x.dtype == np.float32 and x.shape == (4, 2)
    assert y is not None and list(y) == [0, 1, 2, 3]
    with pytest.raises(ConfigError) as error:
        load_npz(path)
    one_line(error, "x_key", "pixels")
    with pytest.raises(ConfigError) as error:
        load_npz(path, x_key="nope")
    one_line(error, "'nope'", "classes")
    with pytest.raises(InputError) as input_error:
        load_npz(path, x_key="pixels", y_key="extra")
    one_line(input_error, "one label per example")


def test_npy_and_dtype_normalisation(tmp_path: Path) -> None:
    np.save(tmp_path / "ints.npy", np.arange(12, dtype=np.int64).reshape(3, 4) * 20)
    x, y = load_npz(tmp_path / "ints.npy")
    assert x.dtype == np.uint8 and y is None  # integers in 0..255 are pixels
    np.save(tmp_path / "wide.npy", np.array([[-1, 300]]))
    assert load_npz(tmp_path / "wide.npy")[0].dtype == np.float32
    np.save(tmp_path / "half.npy", np.zeros((2, 2), np.float16))
    assert load_npz(tmp_path / "half.npy")[0].dtype == np.float32
    np.save(tmp_path / "bool.npy", np.ones((2, 2), bool))
    binary = load_npz(tmp_path / "bool.npy")[0]
    assert binary.dtype == np.float32 and binary.max() == 1.0  # 0/1 intensities stay 0/1
    np.save(tmp_path / "f64.npy", np.full((2, 2), 0.5))
    assert load_npz(tmp_path / "f64.npy")[0].dtype == np.float64
    with pytest.raises(ConfigError):
        load_npz(tmp_path / "ints.npy", x_key="x")


def test_npz_bad_inputs(tmp_path: Path) -> None:
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError) as error:
        load_npz(tmp_path / "objects.npy")
    one_line(error, "objects.npy")
    (tmp_path / "text.npz").write_text("not numpy")
    with pytest.raises(InputError) as error:
        load_npz(tmp_path / "text.npz")
    one_line(error, "text.npz", "np.save")
    np.save(tmp_path / "strings.npy", np.array(["a", "b"]))
    with pytest.raises(InputError, match="not numbers"):
        load_npz(tmp_path / "strings.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 3), np.uint8))
    with pytest.raises(InputError, match="empty"):
        load_npz(tmp_path / "empty.npy")
    with pytest.raises(InputError) as error:
        load_npz(tmp_path / "missing.npz")
    one_line(error, "missing.npz", "no such file")


# --- image folders -----------------------------------------------------------------------------


def test_image_folder_with_class_subfolders(tmp_path: Path) -> None:
    save_png(tmp_path / "b_dogs" / "1.png", 3, 5, 200)
    save_png(tmp_path / "b_dogs" / "2.png", 3, 5, 100)
    save_png(tmp_path / "a_cats" / "x.png", 3, 5, 50)
    save_png(tmp_path / "a_cats" / "y.jpg", 3, 5, 70)
    (tmp_path / "a_cats" / "notes.txt").write_text("not an image")
    (tmp_path / "a_cats" / ".hidden.png").write_bytes(b"junk")
    (tmp_path / "empty_class").mkdir()
    x, y = load_image_folder(tmp_path)
    assert x.shape == (4, 3, 5) and x.dtype == np.uint8
    assert y is not None and y.dtype == np.int64 and list(y) == [0, 0, 1, 1]
    assert [int(image.mean().round()) for image in x] == [50, 70, 200, 100]


def test_image_folder_of_mixed_sizes_names_the_odd_image(tmp_path: Path) -> None:
    """No silent resize to the first image's size: the odd file is named, or size= given."""
    save_png(tmp_path / "a" / "1.png", 6, 4, 200)
    save_png(tmp_path / "a" / "2.png", 6, 4, 90)
    save_png(tmp_path / "b" / "3.png", 9, 9, 100)
    with pytest.raises(InputError) as error:
        load_image_folder(tmp_path)
    one_line(error, "3.png", "9x9", "6x4", "size=(height, width)")
    x, _ = load_image_folder(tmp_path, size=(6, 4))
    assert x.shape == (3, 6, 4)
    assert np.ptp(x[2]) == 0 and x[2, 0, 0] == 100  # a solid image stays solid when resized


def test_image_folder_size_and_rgb(tmp_path: Path) -> None:
    save_png(tmp_path / "a.png", 6, 4, (255, 0, 10))
    save_png(tmp_path / "b.png", 3, 3, 128)  # grayscale converted to RGB
    x, y = load_image_folder(tmp_path, size=(5, 7), mode="RGB")
    assert x.shape == (2, 5, 7, 3) and y is None
    assert tuple(x[0, 2, 3]) == (255, 0, 10) and tuple(x[1, 0, 0]) == (128, 128, 128)
    gray, _ = load_image_folder(tmp_path, size=8)
    assert gray.shape == (2, 8, 8)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError) as error:
        load_image_folder(tmp_path)
    one_line(error, str(tmp_path), "no images")
    with pytest.raises(InputError, match="no such folder"):
        load_image_folder(tmp_path / "nope")
    save_png(tmp_path / "a.png", 2, 2, 1)
    with pytest.raises(InputError, match="not a folder"):
        load_image_folder(tmp_path / "a.png")
    with pytest.raises(ConfigError, match="'L'"):
        load_image_folder(tmp_path, mode="CMYK")
    with pytest.raises(ConfigError, match="positive"):
        load_image_folder(tmp_path, size=(0, 3))
    save_png(tmp_path / "cls" / "b.png", 2, 2, 1)
    with pytest.raises(InputError, match="both images and class sub-folders"):
        load_image_folder(tmp_path)
    (tmp_path / "a.png").unlink()
    (tmp_path / "cls" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError) as error:
        load_image_folder(tmp_path)
    one_line(error, "broken.png", "cannot read")


# --- CSV ---------------------------------------------------------------------------------------


def test_csv_plain_rows(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("0,128,255\n\n1,2,3\n")
    x, y = load_csv(path)
    assert x.dtype == np.uint8 and y is None
    np.testing.assert_array_equal(x, [[0, 128, 255], [1, 2, 3]])


def test_csv_header_and_labels(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("label,p0,p1,p2,p3\n7,0,1,2,3\n2,4,5,6,7\n")
    x, y = load_csv(path, label_column="label", image_shape=(2, 2))
    assert x.shape == (2, 2, 2) and y is not None and list(y) == [7, 2]
    np.testing.assert_array_equal(x[1], [[4, 5], [6, 7]])
    x_last, y_last = load_csv(path, label_column=-1)
    assert y_last is not None and list(y_last) == [3, 7] and x_last.shape == (2, 4)
    x_auto, y_auto = load_csv(path)  # a column named "label" is the labels by default
    assert x_auto.shape == (2, 4) and y_auto is not None and list(y_auto) == [7, 2]
    x_all, y_none = load_csv(path, label_column=False)
    assert x_all.shape == (2, 5) and y_none is None


def test_csv_floats_stay_float(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('0.5,1\n"0.25",0\n')
    x, y = load_csv(path, label_column=1)
    assert x.dtype == np.float32 and x[:, 0].tolist() == [0.5, 0.25]
    assert y is not None and y.tolist() == [1, 0]


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("1,2,3\n4,5,6\n7,8\n", ("line 3 has 2 values", "earlier lines 3")),
        ("a,b\n1,2\n\n3,4,5\n", ("line 4 has 3 values",)),
        ("1,2\n3,x\n", ("line 2, column 2", "'x' is not a number")),
        ("1,,2\n3,4,5\n", ("line 1, column 2", "'' is not a number")),
        ("a,b,c\n", ("no data rows",)),
        ("", ("no data rows",)),
    ],
)
def test_csv_bad_rows(tmp_path: Path, text: str, fragments: tuple[str, ...]) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError) as error:
        load_csv(path)
    one_line(error, "bad.csv", *fragments)


def test_csv_bad_arguments(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1.5,2\n")
    with pytest.raises(InputError, match="non-integer"):
        load_csv(path, label_column="a")
    with pytest.raises(ConfigError, match="no column named 'z'"):
        load_csv(path, label_column="z")
    with pytest.raises(ConfigError, match="out of range"):
        load_csv(path, label_column=2)
    with pytest.raises(ConfigError, match="image_shape"):
        load_csv(path, image_shape=(3, 3))
    with pytest.raises(InputError, match="besides the labels"):
        (tmp_path / "one.csv").write_text("1\n2\n")
        load_csv(tmp_path / "one.csv", label_column=0)
    (tmp_path / "latin.csv").write_bytes(b"caf\xe9,1\n1,2\n")
    with pytest.raises(InputError, match="UTF-8"):
        load_csv(tmp_path / "latin.csv")


# --- digits, memmap ----------------------------------------------------------------------------


@pytest.mark.slow  # importing scikit-learn takes over a second
def test_digits() -> None:
    x, y = load_digits()
    assert x.shape == (1797, 8, 8) and x.dtype == np.uint8
    assert x.min() == 0 and x.max() == 255
    assert y.shape == (1797,) and set(np.unique(y)) == set(range(10))


def test_memmap_reads_a_large_npy_back_exactly(tmp_path: Path) -> None:
    batch = 32
    rows = batch * 100 + 7
    data = np.random.default_rng(0).integers(0, 256, size=(rows, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "big.npy", data)
    mapped = open_npy_memmap(tmp_path / "big.npy")
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    assert mapped.shape == data.shape and mapped.dtype == data.dtype
    for start in range(0, rows, batch):
        np.testing.assert_array_equal(mapped[start : start + batch], data[start : start + batch])
    del mapped  # release the mapping before tmp_path is removed


def test_memmap_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=np.zeros(3))
    with pytest.raises(InputError) as error:
        open_npy_memmap(tmp_path / "a.npz")
    one_line(error, "a.npz", "np.save")
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(InputError, match="cannot memory-map"):
        open_npy_memmap(tmp_path / "junk.npy")
    with pytest.raises(InputError, match="no such file"):
        open_npy_memmap(tmp_path / "none.npy")


# --- load_dataset ------------------------------------------------------------------------------


def sizes(splits: Any) -> tuple[int, int]:
    (x_train, y_train), (x_test, y_test) = splits
    for x, y in ((x_train, y_train), (x_test, y_test)):
        assert y is None or len(y) == len(x)
    return len(x_train), len(x_test)


@pytest.mark.slow  # importing scikit-learn takes over a second
def test_load_dataset_digits_is_a_fixed_80_20_split() -> None:
    (x_train, y_train), (x_test, y_test) = load_dataset("digits")
    assert x_train.shape == (1438, 8, 8) and x_test.shape == (359, 8, 8)
    x, y = load_digits()
    np.testing.assert_array_equal(x_test, x[4::5])  # every 5th example, order kept
    assert y_test is not None and y_train is not None
    np.testing.assert_array_equal(y_test, y[4::5])
    np.testing.assert_array_equal(np.sort(np.concatenate([y_train, y_test])), np.sort(y))


def test_load_dataset_paths(tmp_path: Path) -> None:
    x = np.arange(10 * 4, dtype=np.uint8).reshape(10, 4)
    np.savez(tmp_path / "plain.npz", x=x, y=np.arange(10))
    assert sizes(load_dataset(tmp_path / "plain.npz")) == (8, 2)
    np.save(tmp_path / "plain.npy", x)
    (x_train, y_train), _ = load_dataset(str(tmp_path / "plain.npy"))
    assert y_train is None
    np.testing.assert_array_equal(x_train, np.delete(x, [4, 9], axis=0))
    np.savez(tmp_path / "keras.npz", x_train=x[:7], y_train=np.arange(7), x_test=x[7:])
    (_, y_train), (x_test, y_test) = load_dataset(tmp_path / "keras.npz")
    assert y_train is not None and len(y_train) == 7 and len(x_test) == 3 and y_test is None
    (tmp_path / "d.csv").write_text("".join(f"{i},{i}\n" for i in range(4)))
    assert sizes(load_dataset(tmp_path / "d.csv")) == (3, 1)  # < 5 rows: the last one is test
    for i in range(5):
        save_png(tmp_path / "images" / f"c{i % 2}" / f"{i}.png", 3, 3, i)
    assert sizes(load_dataset(tmp_path / "images")) == (4, 1)


def test_load_dataset_mnist_names_and_idx_folders(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name, shape in zip(FILES, [(5, 28, 28), (5,), (2, 28, 28), (2,)], strict=True):
        write_idx(tmp_path / name, rng.integers(0, 10, size=shape, dtype=np.uint8))
    assert sizes(load_dataset("fashion_mnist", data_dir=tmp_path, download=False)) == (5, 2)
    assert sizes(load_dataset(tmp_path)) == (5, 2)  # a folder of IDX files is MNIST-like


def test_load_dataset_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_dataset("cifar10")
    one_line(error, "'cifar10'", "'digits'", "'mnist'")
    with pytest.raises(InputError, match="no such file"):
        load_dataset(tmp_path / "missing.npz")
    (tmp_path / "a.txt").write_text("1,2\n")
    with pytest.raises(InputError, match="unsupported file type .txt"):
        load_dataset(tmp_path / "a.txt")
    np.save(tmp_path / "one.npy", np.zeros((1, 3), np.uint8))
    with pytest.raises(InputError, match="cannot be split"):
        load_dataset(tmp_path / "one.npy")
