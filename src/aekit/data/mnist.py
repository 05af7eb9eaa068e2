"""MNIST, Fashion-MNIST and KMNIST: find the IDX files locally or download them, then load them.

`load_data` mirrors `tf.keras.datasets.mnist.load_data`: it returns
``((x_train, y_train), (x_test, y_test))`` as uint8 arrays, images of shape (N, 28, 28).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from aekit.data.idx import read_idx
from aekit.errors import AekitError, ConfigError, InputError
from aekit.files import atomic_write

__all__ = [
    "DATASETS",
    "FILES",
    "DatasetInfo",
    "DownloadError",
    "cache_dir",
    "load_data",
]

logger = logging.getLogger(__name__)

Split = tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]

FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
"""The four standard file names: train images, train labels, test images, test labels."""

TIMEOUT_S = 10.0
"""Seconds to wait for a mirror to connect or send more data."""

MAX_DOWNLOAD_BYTES = 2**28
"""Stop reading a response past this size (256 MiB; the largest real file is under 30 MB)."""


class DownloadError(AekitError, OSError):
    """Data set files are missing and could not be downloaded."""


@dataclass(frozen=True)
class DatasetInfo:
    """Where a data set is published and the md5 checksum of each of its `FILES`."""

    name: str
    mirrors: tuple[str, ...]
    md5: Mapping[str, str]
    homepage: str


# Checksums and mirrors as torchvision publishes them (torchvision/datasets/mnist.py); MNIST's
# own host comes last because it often refuses automated downloads.
DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        homepage="http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    ),
    "kmnist": DatasetInfo(
        name="kmnist",
        mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        md5={
            "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
            "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
            "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
            "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
        },
        homepage="https://github.com/rois-codh/kmnist",
    ),
}


def _info(dataset: str) -> DatasetInfo:
    try:
        return DATASETS[dataset]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown dataset {dataset!r}; choose one of {', '.join(map(repr, DATASETS))}"
        ) from None


def cache_dir(dataset: str = "mnist") -> Path:
    """The directory `load_data` downloads into when no `data_dir` is given.

    ``$AEKIT_DATA_DIR/<dataset>`` when that variable is set, else ``~/.cache/aekit/<dataset>``.
    """
    _info(dataset)
    root = os.environ.get("AEKIT_DATA_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "aekit"
    return base / dataset


def load_data(
    data_dir: str | os.PathLike[str] | None = None,
    dataset: str = "mnist",
    download: bool = True,
    mirrors: Sequence[str] | None = None,
) -> tuple[Split, Split]:
    """Load `dataset` as ``((x_train, y_train), (x_test, y_test))``, uint8, images (N, 28, 28).

    Files are looked for in `data_dir` (if given, else `cache_dir(dataset)`), gzipped or
    uncompressed. Files found there are used as they are: their IDX headers are validated, their
    checksums are not (so a directory of one's own files works). Missing files are downloaded
    into that directory from the first mirror that serves them with the published checksum;
    `mirrors` replaces the registry's list of base URLs.
    """
    info = _info(dataset)
    directory = Path(data_dir).expanduser() if data_dir is not None else cache_dir(dataset)
    found = {name: _find(directory, name) for name in FILES}
    missing = [name for name, path in found.items() if path is None]
    if missing and not download:
        raise DownloadError(
            f"{dataset}: missing {', '.join(missing)} in {directory} and download=False; "
            f"pass download=True, or {_fix_hint(dataset, data_dir)}"
        )
    if missing:
        urls = list(mirrors if mirrors is not None else info.mirrors)
        for name in missing:
            found[name] = _download(info, name, directory, urls, missing, data_dir)
    paths = [p for p in found.values() if p is not None]
    x_train, y_train = _load_split(paths[0], paths[1])
    x_test, y_test = _load_split(paths[2], paths[3])
    return (x_train, y_train), (x_test, y_test)


def _find(directory: Path, name: str) -> Path | None:
    # Accept the published .gz file or its uncompressed form (what torchvision leaves behind).
    for candidate in (directory / name, directory / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _fix_hint(dataset: str, data_dir: object) -> str:
    where = "a directory" if data_dir is None else "another directory"
    return (
        f"put the four files (.gz or uncompressed) in {where} and pass load_data(data_dir=...), "
        f"or set AEKIT_DATA_DIR to a directory holding {dataset}/ with them"
    )


def _load_split(images_path: Path, labels_path: Path) -> Split:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise InputError(
            f"{images_path}: expected uint8 images of shape (N, 28, 28), got {images.dtype} "
            f"{images.shape}; point data_dir at the data set's own image files"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise InputError(
            f"{labels_path}: expected uint8 labels of shape (N,), got {labels.dtype} "
            f"{labels.shape}; point data_dir at the data set's own label files"
        )
    if len(images) != len(labels):
        raise InputError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            f"labels; the files come from different sets, replace them with a matching pair"
        )
    if labels.max() >= 10:
        raise InputError(
            f"{labels_path}: label {int(labels.max())} is out of range 0..9; the file is not a "
            f"label file of this data set, replace it"
        )
    return images.astype(np.uint8, copy=False), labels.astype(np.uint8, copy=False)


class _ChecksumMismatch(Exception):
    """The downloaded bytes do not have the published md5; carries the digest received."""


def _download(
    info: DatasetInfo,
    name: str,
    directory: Path,
    mirrors: list[str],
    missing: Sequence[str],
    data_dir: object,
) -> Path:
    """Download `name` into `directory` from the first mirror serving it intact; its path.

    Mirrors that could not be reached are moved to the end of `mirrors`, so the next file
    tries the working ones first.
    """
    # Names come only from the registry, never from a server; refuse anything that is not a
    # bare file name so a tampered registry cannot write outside the directory either.
    if Path(name).name != name or name in ("", ".", ".."):
        raise ConfigError(f"data set file name {name!r} is not a bare file name; fix DATASETS")
    expected = info.md5.get(name)
    if expected is None:
        raise ConfigError(f"no md5 checksum for {name!r} in DATASETS[{info.name!r}]; add one")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    failures: list[str] = []
    unreachable: list[str] = []
    offline = True
    for mirror in list(mirrors):
        url = f"{mirror.rstrip('/')}/{name}"
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"mirror {mirror!r} is not an http(s) URL; fix the mirrors list")
        logger.info("downloading %s", url)
        try:
            _fetch(url, target, expected)
        except _ChecksumMismatch as exc:
            offline = False
            failures.append(f"{url}: md5 {exc} instead of {expected}")
            continue
        except urllib.error.HTTPError as exc:
            # The server answered: the network works, this mirror lacks the file.
            offline = False
            failures.append(f"{url}: HTTP {exc.code}")
            continue
        except (OSError, ValueError, http.client.HTTPException) as exc:
            # URLError (refused, DNS), socket timeouts, a cut connection, a malformed URL:
            # the mirror could not be reached.
            failures.append(f"{url}: {_reason(exc)}")
            unreachable.append(mirror)
            continue
        for mirror_down in unreachable:
            mirrors.remove(mirror_down)
            mirrors.append(mirror_down)
        return target
    cause = "the network seems unreachable" if offline else "no mirror served the right file"
    raise DownloadError(
        f"{info.name}: could not download {name} ({cause}: {'; '.join(failures) or 'no mirrors'}); "
        f"missing {', '.join(missing)} in {directory}; {_fix_hint(info.name, data_dir)}"
    )


def _fetch(url: str, target: Path, expected_md5: str) -> None:
    """Stream `url` into `target` atomically, keeping it only if its md5 is `expected_md5`."""

    def write(out: BinaryIO) -> None:
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            while chunk := resp.read(1 << 16):
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise OSError(f"response larger than {MAX_DOWNLOAD_BYTES} bytes")
                md5.update(chunk)
                out.write(chunk)
        if md5.hexdigest() != expected_md5:
            raise _ChecksumMismatch(md5.hexdigest())

    # atomic_write streams into a temporary file beside `target` and removes it on any
    # exception, so a failed or interrupted download leaves nothing behind.
    atomic_write(target, write)


def _reason(exc: Exception) -> str:
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__
