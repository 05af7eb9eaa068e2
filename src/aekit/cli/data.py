"""The data of a run: its data set loaded and checked, or another one of the same shape."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from aekit.cli import registry
from aekit.cli.settings import absolute, check_values
from aekit.cli.streamed import FolderImages, streamed_folder
from aekit.data import mnist
from aekit.data.folder_stream import split_image_folder
from aekit.data.rows import Rows, row_chunks, take_rows
from aekit.data.sources import DATASET_NAMES, load_dataset, table_columns
from aekit.errors import ConfigError, InputError

Examples = np.ndarray | Rows
"""A split's examples in memory: an array, or `Rows` of one (a memory map's rows stay on disk)."""
Split = Examples | FolderImages
"""A split's examples as a command reads them: in memory, or the files of a streamed folder."""
Splits = tuple[tuple[Split, np.ndarray | None], tuple[Split, np.ndarray | None]]
Loaded = tuple[tuple[Examples, np.ndarray | None], tuple[Examples, np.ndarray | None]]


def loaded(x: Split) -> Examples:
    """`x`, which a command read with `stream=False`: in memory (or memory-mapped)."""
    assert not isinstance(x, FolderImages), "read without stream=True"
    return x


def with_data(
    settings: dict[str, Any], dataset: str | None = None, data_dir: str | None = None
) -> dict[str, Any]:
    """`settings` reading `dataset` and/or `data_dir` instead of the saved ones.

    Another data set comes with its own data dir (none: its default place), not the run's.
    """
    if dataset is None and data_dir is None:
        return settings
    chosen = {"dataset": dataset or settings["dataset"], "data_dir": data_dir}
    check_values(chosen)
    return {**settings, **absolute(chosen)}


@overload
def load_images(
    settings: Mapping[str, Any], with_excluded: bool = False, stream: Literal[False] = False
) -> Loaded: ...
@overload
def load_images(
    settings: Mapping[str, Any], with_excluded: bool = False, *, stream: bool
) -> Splits: ...
def load_images(
    settings: Mapping[str, Any], with_excluded: bool = False, stream: bool = False
) -> Splits:
    """The run's data set, images as (N, H, W) or (N, C, H, W), pixels checked.

    With `stream` (a command that reads its data through `stream_input_fn` or by slices),
    a folder the `stream` setting streams comes as `FolderImages`: listed, not decoded.

    The classes in the setting `exclude_classes` are left out of both splits (a model of
    the normal classes, for anomaly detection) unless `with_excluded` is true. The rows of
    a table run (a `scaling` setting) are numbers as they are (float64), never pixels.
    Nothing here copies the examples of images: the splits stay `Rows` of what was loaded
    (a .npy file's memory map), checked a few MB at a time.
    """
    data_dir = settings["data_dir"]
    if data_dir is not None and not Path(data_dir).is_dir():
        raise InputError(f"data dir {data_dir} does not exist; check --data-dir")
    label_column = settings.get("label_column")
    if label_column is not None and settings["dataset"] in DATASET_NAMES:
        raise ConfigError(
            f"--label-column names a column of a table file or an .npz array; "
            f"{settings['dataset']} comes with its labels, drop it"
        )
    streamed = streamed_folder(settings) if stream else None
    x_train: Split
    x_test: Split
    try:
        if streamed is not None:
            train, test = split_image_folder(streamed)
            (x_train, y_train), (x_test, y_test) = (
                (FolderImages(train), train.labels),
                (FolderImages(test), test.labels),
            )
        else:
            (x_train, y_train), (x_test, y_test) = load_dataset(
                settings["dataset"], data_dir, label_column=label_column
            )
    except mnist.DownloadError:
        # The library's message speaks to Python callers (load_data(data_dir=...)); this
        # one names the flag and the files.
        dataset = settings["dataset"]
        where = data_dir or mnist.cache_dir(dataset)
        raise InputError(
            f"{dataset} is not in {where} and could not be downloaded; pass --data-dir DIR "
            f"holding {', '.join(mnist.FILES)}"
        ) from None
    excluded = settings.get("exclude_classes")
    if excluded and not with_excluded:
        if y_train is None or y_test is None:
            raise InputError(
                f"--exclude-classes needs labels, and {settings['dataset']} has none; drop it"
            )
        y_train, y_test = np.asarray(y_train), np.asarray(y_test)
        _check_excluded(excluded, y_train, y_test, settings["dataset"])
        # The rows kept are indices into the data, not a copy of them.
        keep_train = np.flatnonzero(~np.isin(y_train, excluded))
        keep_test = np.flatnonzero(~np.isin(y_test, excluded))
        x_train, y_train = _keep(x_train, keep_train), y_train[keep_train]
        x_test, y_test = _keep(x_test, keep_test), y_test[keep_test]
    if not isinstance(x_train, FolderImages):  # a stream moves channels batch by batch
        assert not isinstance(x_test, FolderImages)
        if registry.is_table_run(settings):  # rows, not pixels
            # float64, as the outlier detector reads them: the same seed gives the same model.
            x_train, x_test = x_train.astype(np.float64), x_test.astype(np.float64)
        x_train, x_test = _channels_first(x_train), _channels_first(x_test)
        x_train, x_test = by_name(settings, x_train, x_test)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise InputError(
            f"the training examples of {settings['dataset']} have shape {list(x_train.shape[1:])}"
            f", its test examples {list(x_test.shape[1:])}; give both splits the same shape"
        )
    for name, x in (("training", x_train), ("test", x_test)):
        if len(x) == 0:
            raise InputError(f"the {name} set of {settings['dataset']} is empty; give more data")
        if x.ndim < 2:
            raise InputError(
                f"the {name} set of {settings['dataset']} has shape {x.shape}, one number per "
                "example; give examples as rows (N, features) or images (N, H, W)"
            )
        if not isinstance(x, FolderImages) and x.dtype != np.uint8:
            _check_finite(x, f"the {name} set")
        if settings.get("scaling", "none") == "none":  # images ("auto": not decided yet)
            trained = "example_shape" in settings  # a trained run's data, given again or anew
            check_pixels(x, f"the {name} set", "scaling" in settings, trained)
    return (x_train, y_train), (x_test, y_test)


SHOWN_SEED = 0
"""The seed of the images a command shows: the same ones every time and every epoch."""


def shown(x: Split, y: Any, count: int | None) -> tuple[Any, Any]:
    """`count` examples (and their labels) spread over the whole split, in their order.

    One in every len(x)/count, from a seeded offset, not the first `count`: a split listed
    class by class (a folder of class sub-folders) shows every class, in proportion. The
    same examples every time.
    """
    if count is None or count >= len(x):
        return (x[:] if isinstance(x, FolderImages) else x), y  # a folder's, decoded
    offset = np.random.default_rng(SHOWN_SEED).random()
    chosen = ((np.arange(count) + offset) * (len(x) / count)).astype(np.int64)
    # Decoded or read now: a few examples, which the caller draws.
    picked = (
        x.subset(chosen)[:] if isinstance(x, FolderImages) else np.asarray(take_rows(x, chosen))
    )
    return picked, None if y is None else np.asarray(y)[chosen]


def by_name(settings: Mapping[str, Any], x_train: Split, x_test: Split) -> tuple[Split, Split]:
    """A table's columns in the order the run was trained on, matched by their names.

    A run trained on a table with a header remembers its columns (the setting `columns`);
    a table given to it later with the same columns in another order is reordered, and one
    with missing or other columns is refused, naming them. Data without names (an .npz
    array, a CSV without a header) are taken by position.
    """
    trained = settings.get("columns")
    names = table_columns(settings["dataset"], settings.get("label_column")) if trained else None
    if trained is None or names is None or names == trained:
        return x_train, x_test
    missing = [c for c in trained if c not in names]
    other = [c for c in names if c not in trained]
    if missing or other:
        parts = [f"lacks {_listed(missing)}"] if missing else []
        parts += [f"has {_listed(other)} besides"] if other else []
        raise InputError(
            f"{settings['dataset']} {' and '.join(parts)} the columns this run was trained on "
            f"({_listed(trained)}); give a table with those columns"
        )
    order = [names.index(c) for c in trained]  # the same columns: put them in the run's order
    return np.asarray(x_train)[:, order], np.asarray(x_test)[:, order]


def _listed(names: Sequence[str], most: int = 6) -> str:
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def describe(
    settings: Mapping[str, Any],
    parts: Sequence[tuple[Split, np.ndarray | None]],
    names: Sequence[str] = ("training", "test"),
    left_out: Sequence[int] | None = None,
) -> str:
    """One line on loaded data: source, examples per part, shape, dtype, labels.

    E.g. "data: digits (a named data set): 1,438 training and 359 test examples of shape
    [8, 8], uint8, 10 classes (labels 0..9)". `parts` are (x, y) pairs named by `names`,
    `left_out` the classes taken out of them.
    """
    dataset, data_dir = settings["dataset"], settings.get("data_dir")
    if dataset in DATASET_NAMES:
        source = "a named data set" + (f", in {data_dir}" if data_dir else "")
    elif Path(dataset).is_dir():
        streamed = isinstance(parts[0][0], FolderImages)
        source = "a folder of images" + (", streamed" if streamed else "")
    else:
        source = f"a {Path(dataset).suffix or 'data'} file"
    counts = " and ".join(f"{len(x):,} {name}" for (x, _), name in zip(parts, names, strict=True))
    x = parts[0][0]
    line = (
        f"data: {dataset} ({source}): {counts} examples of shape {list(x.shape[1:])}, {x.dtype}, "
        + _labels([y for _, y in parts])
    )
    if not left_out:
        return line
    plural = "es" if len(left_out) > 1 else ""
    return line + f", class{plural} {', '.join(map(str, left_out))} left out"


def _labels(ys: Sequence[np.ndarray | None]) -> str:
    """The labels in a few words: "no labels", "10 classes (labels 0..9)", ..."""
    if any(y is None for y in ys):
        return "no labels"
    y = np.concatenate([np.asarray(v) for v in ys if v is not None])
    if y.ndim > 1:
        return f"labels of shape {list(y.shape[1:])}"
    if y.dtype.kind not in "biuf":
        return f"{len(np.unique(y))} classes ({y.dtype} labels)"
    values = np.unique(y)
    if y.dtype.kind == "f" and not (np.isfinite(values).all() and (values % 1 == 0).all()):
        return f"{y.dtype} labels of {len(values)} distinct values"
    ints = [int(v) for v in values]
    if len(ints) <= 5:
        shown = ", ".join(map(str, ints))
    else:  # a run of consecutive classes, or the range of scattered ones
        shown = (
            f"{ints[0]}..{ints[-1]}"
            if ints[-1] - ints[0] == len(ints) - 1
            else (f"{ints[0]} to {ints[-1]}")
        )
    return f"{len(ints)} class{'' if len(ints) == 1 else 'es'} (labels {shown})"


def check_pixels(x: Split, name: str, takes_tables: bool, trained: bool = False) -> None:
    """InputError unless `x` holds pixels: uint8, or floats in [0, 1]; read in chunks.

    A streamed folder is uint8, decoded from 8-bit images: valid without reading a pixel.
    `trained`: the data are given to a run trained on images, which says so.
    """
    if x.dtype == np.uint8 or isinstance(x, FolderImages):
        return
    low, high, first = math.inf, -math.inf, None
    for start, part in row_chunks(x):
        if not part.size:
            continue
        low, high = min(low, float(part.min())), max(high, float(part.max()))
        if first is None:
            outside = ((part < 0) | (part > 1)).reshape(len(part), -1).any(axis=1)
            first = start + int(np.argmax(outside)) if outside.any() else None
    if first is None:
        return
    if trained:
        raise InputError(
            f"this run was trained on images, and {name} holds numbers from {low:g} to "
            f"{high:g}, not pixels (uint8, or floats in [0, 1]); give images like its training "
            "ones, or train a model on this table (aekit train fully_connected)"
        )
    fix = (
        "rows of a table take --scaling standard"
        if takes_tables
        else "a table's rows train with the fully_connected model"
    )
    raise InputError(
        f"{name}'s pixels run from {low:g} to {high:g} (example {first:,} is the first outside "
        f"[0, 1]); give uint8 (0..255) or floats in [0, 1]; {fix}"
    )


def _check_finite(x: Examples, name: str) -> None:
    """InputError naming the first example with NaN or infinite values; read in chunks."""
    count, first = 0, None
    for start, part in row_chunks(x):
        bad = ~np.isfinite(part.reshape(len(part), -1)).all(axis=1)
        if bad.any():
            count += int(bad.sum())
            first = start + int(np.argmax(bad)) if first is None else first
    if first is not None:
        raise InputError(
            f"{name} holds NaN or infinite values in {count:,} example(s), the first example "
            f"{first:,}; clean the data"
        )


def table_or_images(dataset: str, x: Split) -> tuple[bool, str | None]:
    """Whether the examples are rows of a table (not images), and why (None: no guess).

    Decided by the source and the shape, never by the values' range alone: named data sets,
    folders and examples of two or more dimensions are images; rows (N, D) are a table,
    unless they are 8-bit integers whose D is a square of at least 8x8 (flattened pictures).
    `--scaling` overrides it: none reads the data as images, a scaling as a table.
    """
    if dataset in DATASET_NAMES or Path(dataset).is_dir():
        return False, None  # images by their source
    if x.ndim > 2:
        return False, f"examples of shape {list(x.shape[1:])}, images"
    features = x.shape[1]
    side = math.isqrt(features)
    if x.dtype == np.uint8 and side * side == features and side >= 8:
        return False, f"rows of {features} values in 0..255, flattened {side}x{side} pictures"
    return True, f"rows of {features} features, a table"


def anomaly_labels(y_train: np.ndarray, y_test: np.ndarray) -> list[int]:
    """The labels that mark anomalies in a table: every integer label other than 0."""
    labels = np.unique(np.concatenate([np.ravel(y_train), np.ravel(y_test)]))
    if labels.dtype.kind == "f" and not (np.isfinite(labels).all() and (labels % 1 == 0).all()):
        raise InputError(
            "a table's labels mark anomalies (0 normal, 1 anomaly), and these are not integers; "
            "give 0/1 labels or --label-column of such a column"
        )
    return [int(v) for v in labels if v != 0]


def _check_excluded(
    excluded: Sequence[int], y_train: np.ndarray, y_test: np.ndarray, dataset: str
) -> None:
    """InputError unless every class to leave out is an integer label the data hold."""
    labels = np.concatenate([y_train.reshape(-1), y_test.reshape(-1)])
    if labels.dtype.kind not in "biuf" or (
        labels.dtype.kind == "f" and not (np.isfinite(labels).all() and (labels % 1 == 0).all())
    ):
        raise InputError(
            f"--exclude-classes needs integer labels, and the labels of {dataset} are "
            f"{labels.dtype}; drop --exclude-classes or give integer labels"
        )
    # Compared as Python ints: a class like 10**30 must not overflow numpy's integers.
    present = {int(v) for v in np.unique(labels)}
    missing = sorted(set(excluded) - present)
    if missing:
        shown = ", ".join(map(str, sorted(present)[:20])) + (" ..." if len(present) > 20 else "")
        raise InputError(
            f"--exclude-classes {', '.join(map(str, missing[:5]))}: no example of {dataset} "
            f"has that label; its labels are {shown}"
        )


def _keep(x: Split, rows: np.ndarray) -> Split:
    """The examples at `rows`: indices into the data (or its files), not a copy of them."""
    return x.subset(rows) if isinstance(x, FolderImages) else take_rows(x, rows)


def _channels_first(x: Any) -> Any:
    # Image folders give (N, H, W, C); the models take channels first. A last axis shorter
    # than both others holds the channels, whatever their number (2, 4, 5, ...).
    if not (x.ndim == 4 and x.shape[-1] < min(x.shape[1], x.shape[2])):
        return x
    if isinstance(x, Rows) and isinstance(x.base, np.ndarray) and x.base.ndim == 4:
        # A view of the array underneath: nothing is read, batches are gathered from it.
        return Rows(x.base.transpose(0, 3, 1, 2), x.index)
    return np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2))
