"""Data sources besides MNIST's IDX files: .npz/.npy, image folders, tables, scikit-learn's digits.

Each loader returns ``(x, y)``: `x` uint8 when the values are integers in 0..255 (pixels), else
floating point; `y` the labels, or None when the source has none. `load_dataset` turns a name or
a path into ``((x_train, y_train), (x_test, y_test))``, a .npy file memory-mapped, and splits
without copying: each split is a `Rows` of the loaded array. Image folders live in
`image_folder`, CSV in `csv_file`, Parquet and Feather in `table_files`; every loader checks
the size it will allocate first (`checks.check_size`).
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from aekit.checks import check_bool, shown
from aekit.data import mnist
from aekit.data.arrays import check_size, existing_path
from aekit.data.csv_file import load_csv
from aekit.data.image_folder import IMAGE_SUFFIXES, load_image_folder
from aekit.data.rows import Rows, row_chunks, take_rows
from aekit.data.table_files import open_table
from aekit.errors import ConfigError, InputError

__all__ = [
    "DATASET_NAMES",
    "IMAGE_SUFFIXES",
    "load_csv",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "load_npz",
    "load_table",
    "open_npy_memmap",
]

Array = npt.NDArray[Any]
XY = tuple[Array, Array | None]
Splits = tuple[tuple[Array | Rows, Array | None], tuple[Array | Rows, Array | None]]
PathLike = str | os.PathLike[str]

TABLE_SUFFIXES = (".parquet", ".pq", ".feather", ".arrow", ".ipc", ".arrows")
"""Table files `load_dataset` reads through `open_table` (CSV has its own loader)."""

DATASET_NAMES = (*mnist.DATASETS, "digits")
"""Names `load_dataset` accepts besides paths."""

TEST_EVERY = 5
"""`load_dataset` puts every 5th example (indices 4, 9, ...) into the test split: 80/20."""

# Keys tried in order when load_npz is not told which arrays to use.
_X_KEYS = ("x", "X", "x_train", "images", "features", "data")
_Y_KEYS = ("y", "Y", "y_train", "labels", "targets", "target")


def load_npz(path: PathLike, x_key: str | None = None, y_key: str | None = None) -> XY:
    """Load arrays from a .npz archive (keys `x_key`/`y_key`, or the usual names) or a .npy file.

    Without keys, x is the first of x, X, x_train, images, features, data (or the only array),
    and y the first of y, Y, y_train, labels, targets, target, or None. A .npy file gives
    ``(array, None)``. Pickled (object) arrays are refused: they could run code.
    """
    for name, key in (("x_key", x_key), ("y_key", y_key)):
        if key is not None and not isinstance(key, str):
            raise ConfigError(f"{name} must be the name of an array in the archive, got {key!r}")
    path = _existing(path, "file")
    loaded = _np_load(path)
    if isinstance(loaded, np.ndarray):
        if x_key is not None or y_key is not None:
            raise ConfigError(
                f"{path}: a .npy file holds one array, x_key/y_key apply to .npz archives; "
                f"drop them or save both arrays with np.savez"
            )
        return _pixels(loaded, path), None
    with loaded as archive:
        keys = list(archive.files)
        if x_key is None:
            x_key = next((k for k in _X_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
            if x_key is None:
                raise ConfigError(
                    f"{path}: cannot tell which array holds the data (keys: {', '.join(keys)}); "
                    f"pass x_key=... (and y_key=...)"
                )
            if y_key is None:
                y_key = next((k for k in _Y_KEYS if k in keys), None)
        for key in (x_key, y_key):
            if key is not None and key not in keys:
                raise ConfigError(
                    f"{path}: no array named {key!r} (keys: {', '.join(keys) or 'none'}); "
                    f"pass one of those as x_key/y_key"
                )
        x = _pixels(_npz_array(archive, x_key, path), path)
        y = None if y_key is None else _npz_array(archive, y_key, path)
    return x, _check_labels(y, len(x), path)


def load_digits() -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """scikit-learn's bundled 8x8 digits: uint8 images (1797, 8, 8) in 0..255, labels 0..9."""
    from sklearn.datasets import load_digits as sklearn_digits  # slow import: only when used

    bunch = sklearn_digits()
    # The bundled images take the values 0..16; scale them to the 0..255 of 8-bit pixels.
    images = np.asarray(bunch.images, dtype=np.float64)
    x = np.round(images * (255.0 / 16.0)).astype(np.uint8)
    return x, np.asarray(bunch.target, dtype=np.int64)


def open_npy_memmap(path: PathLike) -> np.memmap[Any, np.dtype[Any]]:
    """Open a .npy file read-only without reading it: pages load on access (data > memory)."""
    path = _existing(path, "file")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(
            f"{path}: cannot memory-map it ({exc}); give an uncompressed .npy file written "
            f"by np.save"
        ) from None
    if not isinstance(array, np.memmap):
        if hasattr(array, "close"):
            array.close()
        raise InputError(
            f"{path}: not a .npy file (a .npz archive cannot be memory-mapped); save the array "
            f"with np.save, or read it with load_npz"
        )
    return array


def load_dataset(
    name_or_path: PathLike,
    data_dir: PathLike | None = None,
    download: bool = True,
    label_column: str | None = None,
) -> Splits:
    """Load a named data set or a file/folder as ``((x_train, y_train), (x_test, y_test))``.

    Names: "mnist", "fashion_mnist", "kmnist" (their own splits, see `mnist.load_data`) and
    "digits". Paths: .npz (its own split when it has x_train and x_test), .npy, .csv, a Parquet
    (.parquet/.pq) or Arrow IPC / Feather (.feather/.arrow/.ipc) table, a folder of MNIST IDX
    files, or a folder of images. Sources without a split of their own are split
    deterministically: every 5th example is a test example (20%), the order kept; those splits
    are `Rows` of the loaded array (no copy; indexing or `np.asarray` reads them). A .npy file
    is memory-mapped, never read whole: data bigger than memory train batch by batch.
    `label_column` names the labels: a table's column (header name, or index) or a .npz
    archive's array; a table's default is its column named label/labels/class/target/y.
    """
    if not isinstance(name_or_path, str | os.PathLike):
        raise ConfigError(
            f"give a data set name ({', '.join(DATASET_NAMES)}) or a path, got "
            f"{shown(name_or_path)}"
        )
    if data_dir is not None and not isinstance(data_dir, str | os.PathLike):
        raise ConfigError(f"data_dir must be a folder's path or None, got {shown(data_dir)}")
    check_bool("download", download)
    if isinstance(name_or_path, str) and name_or_path in mnist.DATASETS:
        return mnist.load_data(data_dir, dataset=name_or_path, download=download)
    if name_or_path == "digits":
        return _split(*load_digits(), "digits")
    path = Path(name_or_path).expanduser()
    if not path.exists():
        text = str(name_or_path)
        if not any(c in text for c in "/\\.~"):
            raise ConfigError(
                f"unknown dataset {text!r}; choose one of {', '.join(map(repr, DATASET_NAMES))} "
                f"or give the path of a .npz, .npy, .csv, .parquet or .feather file or of a folder"
            )
        raise InputError(f"{path}: no such file or folder; check the path")
    if path.is_dir():
        if all(_idx_present(path, name) for name in mnist.FILES):
            return mnist.load_data(path, download=False)
        return _split(*load_image_folder(path), path)
    suffix = path.suffix.lower()
    if label_column is not None and suffix not in (".csv", ".npz", *TABLE_SUFFIXES):
        raise ConfigError(
            f"{path}: a label column applies to .csv, .npz, Parquet and Feather files; drop "
            f"--label-column"
        )
    if suffix == ".npz":
        own = _npz_own_split(path) if label_column is None else None
        if own is not None:
            return own
    if suffix == ".npy":
        return _split(_pixels(open_npy_memmap(path), path), None, path)
    if suffix == ".npz":
        return _split(*load_npz(path, y_key=label_column), path)
    column = _column(label_column)
    if suffix == ".csv":
        return _split(*load_csv(path, column), path)
    if suffix in TABLE_SUFFIXES:
        return _split(*load_table(path, column), path)
    raise InputError(
        f"{path}: unsupported file type {suffix or '(none)'}; give a .npz, .npy, .csv, .parquet "
        f"or .feather/.arrow file, a folder of images, or a folder of MNIST IDX files"
    )


def table_columns(dataset: str, label_column: str | None = None) -> list[str] | None:
    """The feature columns' names of a table file with a header, in order; None otherwise."""
    path = Path(dataset).expanduser()
    if path.suffix.lower() not in (".csv", *TABLE_SUFFIXES) or not path.is_file():
        return None
    table = open_table(path, _column(label_column))
    return list(table.feature_names) if table.named else None


def _column(label_column: str | None) -> str | int | None:
    """--label-column's text as `open_table` takes it: a name, or an index when a number."""
    if label_column is not None and label_column.lstrip("-").isdigit():
        return int(label_column)  # a column's index, from the end when negative
    return label_column


def load_table(path: PathLike, label_column: int | str | bool | None = None) -> XY:
    """A Parquet or Arrow/Feather file's rows in memory: float64, or uint8 for pixels.

    Read through `open_table` (`label_column` as it takes it), the size checked first. Like
    an .npz array, integer columns whose values all lie in 0..255 are pixels (uint8); any
    other numbers stay float64. For a table bigger than memory, stream it with
    `aekit.data.table_input_fn`.
    """
    table = open_table(path, label_column)
    n, width = table.n_rows, table.n_features
    if n == 0:
        raise InputError(f"{table.name}: the table has no rows; give at least one example")
    check_size(
        f"{table.name}: {n} rows of {width} values",
        (n, width),
        np.dtype(np.float64).itemsize,
        "stream it with aekit.data.table_input_fn, or use fewer rows",
    )
    # One batch of every row, filled in place: the table once in memory, not its pieces too.
    x = next(table.batches(n))
    if getattr(table, "integer_columns", False) and x.min() >= 0 and x.max() <= 255:
        x = x.astype(np.uint8)
    return x, table.labels()


# --- helpers -------------------------------------------------------------------------------


def _existing(path: PathLike, kind: str) -> Path:
    return existing_path(path, kind)


def _np_load(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            if f.read(6) == b"\x93NUMPY":
                f.seek(0)
                _check_npy_size(f, os.fstat(f.fileno()).st_size, path, "the array")
        return np.load(path, allow_pickle=False)
    except MemoryError:
        raise InputError(f"{path}: the array is too large for this machine's memory") from None
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        # np.load treats anything that is not .npy/.npz as a pickle, which allow_pickle=False
        # refuses: say what was expected instead of numpy's message about pickles.
        raise InputError(
            f"{path}: not a readable .npy or .npz file ({exc}); write it with np.save / np.savez"
        ) from None


def _npz_array(archive: Any, key: str, path: Path) -> Array:
    try:
        with zipfile.ZipFile(path) as zf:
            member = zf.getinfo(f"{key}.npy")
            with zf.open(member) as f:
                _check_npy_size(f, member.file_size, path, f"array {key!r}")
        return np.asarray(archive[key])
    except MemoryError:
        raise InputError(f"{path}: array {key!r} is too large for this machine's memory") from None
    except InputError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(
            f"{path}: cannot read array {key!r} ({exc}); save plain numeric arrays with np.savez"
        ) from None


def _check_npy_size(f: Any, size: int, path: Path, what: str) -> None:
    """Refuse a .npy header declaring more data than the file holds, before numpy allocates it.

    numpy allocates the declared shape first and reads after, so a 100-byte file declaring
    terabytes would be a MemoryError (or gigabytes of address space) instead of an error.
    """
    try:
        version = np.lib.format.read_magic(f)
        read = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read(f)
    except (ValueError, OSError, EOFError):
        return  # a malformed header: np.load itself says so
    if dtype.hasobject:
        return  # refused as a pickle by np.load(allow_pickle=False)
    declared = math.prod(shape) * dtype.itemsize
    check_size(
        f"{path}: {what}", tuple(shape), dtype.itemsize, "save a smaller array, or memory-map it"
    )
    available = size - f.tell()
    if declared > available:
        raise InputError(
            f"{path}: {what} declares shape {shape} of {dtype} ({declared:,} bytes) but the file "
            f"holds {max(available, 0):,}; the file is truncated or corrupt, write it again"
        )


def _npz_own_split(path: Path) -> Splits | None:
    loaded = _np_load(path)
    if isinstance(loaded, np.ndarray):
        return None
    with loaded as archive:
        keys = set(archive.files)
        if not {"x_train", "x_test"} <= keys:
            return None
        splits: list[XY] = []
        for part in ("train", "test"):
            x = _pixels(_npz_array(archive, f"x_{part}", path), path)
            y_key = f"y_{part}"
            y = _npz_array(archive, y_key, path) if y_key in keys else None
            splits.append((x, _check_labels(y, len(x), path)))
    return splits[0], splits[1]


def _pixels(x: Array, path: Path) -> Array:
    """Integers in 0..255 become uint8 (pixels); other numbers become or stay floating point."""
    if x.ndim == 0 or x.size == 0:  # no examples, or examples without values
        raise InputError(f"{path}: the data array is empty ({x.shape}); give at least one example")
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind in "iu" and _lowest(x) >= 0 and _highest(x) <= 255:
        return x.astype(np.uint8)
    # Booleans are binary intensities 0.0/1.0, not 8-bit pixels: keep them off the 0..255 scale.
    if x.dtype.kind in "biu" or (x.dtype.kind == "f" and x.dtype.itemsize < 4):
        return x.astype(np.float32)
    if x.dtype.kind == "f":
        return x
    raise InputError(
        f"{path}: the data array has dtype {x.dtype}, not numbers; store pixels as uint8 or "
        f"float arrays"
    )


def _check_labels(y: Array | None, n: int, path: Path) -> Array | None:
    if y is not None and (y.ndim == 0 or len(y) != n):
        raise InputError(
            f"{path}: {n} examples but labels of shape {y.shape}; give one label per example"
        )
    if y is not None and y.dtype.kind not in "biuf":
        raise InputError(
            f"{path}: the labels have dtype {y.dtype}, not numbers; save them as integer class "
            f"ids (e.g. with sklearn.preprocessing.LabelEncoder)"
        )
    return y


def _idx_present(folder: Path, name: str) -> bool:
    return (folder / name).is_file() or (folder / name.removesuffix(".gz")).is_file()


def _lowest(x: Array) -> Any:
    return min(part.min() for _, part in row_chunks(x))  # a memory map: never read whole


def _highest(x: Array) -> Any:
    return max(part.max() for _, part in row_chunks(x))


def split_positions(n: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The positions of the training and the test examples among `n`: every 5th is a test one.

    Fewer than 5 examples: the last one is the test split. Both keep the order.
    """
    positions = np.arange(n, dtype=np.int64)
    is_test = positions % TEST_EVERY == TEST_EVERY - 1
    if n and not is_test.any():
        is_test[-1] = True
    return positions[~is_test], positions[is_test]


def _split(x: Array, y: Array | None, source: object) -> Splits:
    """Train and test `Rows` of `x` (its rows stay where they are) and their labels."""
    n = len(x)
    if n < 2:
        raise InputError(f"{source}: {n} example(s) cannot be split into train and test; add more")
    train, test = split_positions(n)
    return (
        (take_rows(x, train), None if y is None else y[train]),
        (take_rows(x, test), None if y is None else y[test]),
    )
