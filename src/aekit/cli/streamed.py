"""A run's folder of images streamed: its splits as files, decoded batch by batch.

`aekit train` and the commands after it stream a folder whose decoded pixels pass the memory
limit (the `stream` setting): each split is a `FolderImages`, read by `stream_input_fn`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from aekit.cli import registry
from aekit.data import mnist
from aekit.data.arrays import max_load_bytes
from aekit.data.folder_stream import image_folder_input_fn
from aekit.data.image_folder import ImageFolderFiles, list_image_folder
from aekit.data.sources import DATASET_NAMES, _idx_present
from aekit.errors import ConfigError

Batch = tuple[torch.Tensor, torch.Tensor | None]


@dataclass(frozen=True)
class FolderImages:
    """A split of a streamed folder: its files listed, decoded only when read.

    Looks like the (N, H, W) uint8 array the folder would load as (the command line reads
    folders grey): shape, dtype and length, so the data line and the checks read it
    unchanged; a slice (a few test images for a picture) decodes those images alone.
    Training and evaluation read it through `stream_input_fn`.
    """

    files: ImageFolderFiles

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.files), *self.files.shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        """uint8: decoded 8-bit images, so their pixels are always valid."""
        return np.dtype(np.uint8)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: slice) -> npt.NDArray[np.uint8]:
        """The images of a slice, decoded."""
        if not isinstance(key, slice):
            raise TypeError("a streamed folder's images are read by slices")
        return self.files.read_batch(np.arange(len(self.files))[key])

    def subset(self, rows: npt.ArrayLike) -> FolderImages:
        """These images only, in the order of `rows`."""
        return FolderImages(self.files.subset(rows))


def streamed_folder(settings: Mapping[str, Any]) -> ImageFolderFiles | None:
    """The listed files of the run's folder when the `stream` setting streams it, else None.

    "always" streams any folder of images, "auto" one whose decoded pixels exceed
    `max_load_bytes()` (loading it would be refused), "never" none. Other data sets (named
    ones, files, a folder of MNIST's IDX files) load as before: a .npy is memory-mapped.
    """
    choice = settings.get("stream", "auto")  # a run saved before the setting: auto
    path = Path(settings["dataset"]).expanduser()
    if (
        choice == "never"
        or settings["dataset"] in DATASET_NAMES
        or not path.is_dir()
        or all(_idx_present(path, name) for name in mnist.FILES)
    ):
        return None
    files = list_image_folder(path)  # headers only: counts, size and mode
    if choice == "auto" and len(files) * math.prod(files.shape) <= max_load_bytes():
        return None
    if registry.is_table_run(settings):
        raise ConfigError(
            f"{path} is streamed, as images; --scaling {settings['scaling']} reads the data "
            "as a table's rows in memory: give --scaling none, or --stream never"
        )
    return files


def stream_workers() -> int:
    """Decoding processes of a stream: up to two, leaving a core to training itself.

    Decoding small images is cheap beside a step; more workers would take cores from the
    training process. On one core the training process decodes (no worker).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(2, cores - 1)) if cores > 1 else 0


def stream_input_fn(
    x: FolderImages,
    labels: bool,
    batch_size: int,
    seed: int,
    binarize: str | None,
    train: bool,
    resume: bool = True,
) -> Callable[[], Iterable[Batch]]:
    """The input function of a streamed split: endless training batches, or one test pass.

    Training: `numpy_input_fn`'s batches over the loaded split (same seed, same order),
    with `resume` from the example the run's global step reached. Evaluation: the split in order,
    once; with `binarize`, each pass draws its 0/1 pixels from seed 0, so every evaluation
    scores the same images (the in-memory run draws them once, from the whole array).
    """
    if train and binarize == "fixed":
        raise ConfigError(
            "--binarize fixed draws the whole training set once, and a streamed folder is never "
            "whole in memory; give --binarize dynamic (a draw per batch), or --stream never"
        )
    stream = image_folder_input_fn(
        x.files,
        batch_size,
        num_epochs=None if train else 1,
        shuffle=train,
        seed=seed,  # unused in order, but a draw from the Estimator's generator would be
        num_workers=stream_workers(),
        labels=labels,
        binarize="dynamic" if train and binarize else None,
        resume=train and resume,
    )
    if train or not binarize:
        return stream

    def input_fn() -> Iterable[Batch]:
        return _Drawn(stream())  # called here: it reads the input context

    return input_fn


class _Drawn:
    """A test stream's pixels as 0/1 draws, each pass from seed 0: every pass the same draw."""

    def __init__(self, batches: Iterable[Batch]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[Batch]:
        # Its own generator: the training generator's draws (noise, dropout) stay as they were.
        generator = torch.Generator().manual_seed(0)
        for features, labels in self.batches:
            yield torch.bernoulli(features, generator=generator), labels
