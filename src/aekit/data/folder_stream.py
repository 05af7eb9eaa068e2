"""A folder of images streamed from disk: decoded batch by batch, in worker processes.

`image_folder_input_fn` gives the batches `numpy_input_fn` gives over `load_image_folder`'s
arrays (same seed: same values, same order), without ever holding the folder in memory:
the files are listed first (`list_image_folder`), and each batch is decoded when training
reaches it — in `num_workers` processes of a torch DataLoader, which keeps the order, so
the batches do not depend on the number of workers.

Resuming: a stream that is a run's one training input (`num_epochs=None`, as the command
line trains) may pass `resume=True` with a seed: each train call then starts at the batch
the run's global step has reached, so a run resumed from a checkpoint continues with the
batch after the last one trained on. Once a finite stream has run out, another call starts
it afresh.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader

from aekit.checks import check_bool, check_int, shown
from aekit.data.arrays import to_float
from aekit.data.binarize import Binarization, bernoulli_pixels, check_binarization
from aekit.data.context import EpochEnd, EpochStream, InputContext, input_context
from aekit.data.corruption import Corruption
from aekit.data.image_folder import ImageFolderFiles, list_image_folder
from aekit.data.input_fn import _check_noise
from aekit.data.sampler import Sampler, order_seed
from aekit.data.sources import _split
from aekit.errors import ConfigError, InputError

__all__ = ["image_folder_input_fn", "split_image_folder"]

Batch = tuple[torch.Tensor, torch.Tensor | None]


def split_image_folder(files: ImageFolderFiles) -> tuple[ImageFolderFiles, ImageFolderFiles]:
    """(train, test) files split as `load_dataset` splits a folder: every 5th file is a test one.

    The same rule (`sources.TEST_EVERY`), applied by the same function, so streaming the
    train split gives exactly the examples of `load_dataset(folder)`'s train split.
    """
    index = np.arange(len(files))
    (train, _), (test, _) = _split(index, None, files.root)
    return files.subset(train), files.subset(test)


def image_folder_input_fn(
    folder: str | os.PathLike[str] | ImageFolderFiles,
    batch_size: int = 128,
    num_epochs: int | None = 1,
    shuffle: bool = True,
    seed: int | None = None,
    num_workers: int = 0,
    labels: bool = False,
    size: int | tuple[int, int] | None = None,
    mode: str = "L",
    noise: Corruption | None = None,
    binarize: Binarization | None = None,
    drop_remainder: bool = False,
    resume: bool = False,
) -> Callable[[], Iterable[Batch]]:
    """An input_fn streaming a folder of images (or its listed files, e.g. one split).

    Batches as `numpy_input_fn(x, y, ...)` over `load_image_folder(folder, size, mode)`
    gives them: float32 pixels in [0, 1], shuffled anew each epoch (from `seed`, else
    from the Estimator's shared generator), each process of a job taking its equal
    share of every epoch. `labels` adds the class ids (class sub-folders) as labels;
    `noise` corrupts the features (the clean ones become the labels); `binarize` takes
    "dynamic" only ("fixed" draws over the whole array). `num_workers` > 0 decodes in
    that many processes, a few batches ahead: memory holds those batches, not the folder.
    With `resume`, each train call starts at the batch the run's global step has reached,
    in the run's order: for the one input of a run, resumed from a checkpoint.
    """
    if isinstance(folder, ImageFolderFiles):
        if size is not None or mode != "L":
            raise ConfigError(
                "size and mode apply when listing a folder; give them to list_image_folder"
            )
        files = folder
    else:
        files = list_image_folder(folder, size, mode)
    settings = _Settings(
        batch_size=check_int("batch_size", batch_size, low=1),
        num_epochs=None if num_epochs is None else check_int("num_epochs", num_epochs, low=1),
        shuffle=check_bool("shuffle", shuffle),
        seed=None if seed is None else check_int("seed", seed, low=0, high=2**63 - 1),
        num_workers=check_int("num_workers", num_workers, low=0),
        drop_remainder=check_bool("drop_remainder", drop_remainder),
        resume=check_bool("resume", resume),
    )
    if check_bool("labels", labels) and files.labels is None:
        raise ConfigError(
            f"{files.root}: a flat folder has no labels; put the images in one sub-folder per "
            f"class, or give labels=False"
        )
    corruption = _check_noise(noise)
    binarization = check_binarization(binarize)
    if binarization == "fixed":
        raise ConfigError(
            f"binarize={shown(binarize)} draws over the whole array at once; a streamed folder "
            f"takes binarize='dynamic' (or load the folder into memory)"
        )

    def prepare(features: torch.Tensor, target: torch.Tensor | None) -> Batch:
        pixels = bernoulli_pixels(features) if binarization == "dynamic" else to_float(features)
        if corruption is not None:
            return corruption(pixels, target)
        return pixels, target

    def input_fn() -> Iterable[Batch]:
        # Read now: the stream is iterated after the Estimator's context is gone.
        return _Stream(files, labels, settings, input_context(), prepare)

    return input_fn


@dataclasses.dataclass(frozen=True)
class _Settings:
    batch_size: int
    num_epochs: int | None
    shuffle: bool
    seed: int | None
    num_workers: int
    drop_remainder: bool
    resume: bool


@dataclasses.dataclass(frozen=True)
class _Failed:
    """A worker's InputError, handed back as data: re-raised whole, its message one line."""

    message: str


class _Decoder(torch.utils.data.Dataset[Any]):
    """Decodes a whole batch of files per item (the sampler hands out index arrays)."""

    def __init__(self, files: ImageFolderFiles, labels: bool) -> None:
        self.files = files
        self.labels = labels

    def __getitem__(
        self, index: npt.NDArray[np.int64] | EpochEnd
    ) -> tuple[torch.Tensor, Any] | _Failed | EpochEnd:
        if isinstance(index, EpochEnd):  # an epoch's end passes through, in its place
            return index
        try:
            pixels = torch.from_numpy(self.files.read_batch(index))
        except InputError as exc:
            # A DataLoader re-raises a worker's error with its traceback in the message.
            return _Failed(str(exc))
        labels = self.files.labels
        if not self.labels or labels is None:
            return pixels, None
        return pixels, torch.from_numpy(labels[index])


def _as_is(item: Any) -> Any:
    return item


class _Stream(EpochStream):
    """One process's batches, from the start or, resumed, from the run's global step."""

    def __init__(
        self,
        files: ImageFolderFiles,
        labels: bool,
        settings: _Settings,
        context: InputContext,
        prepare: Callable[[torch.Tensor, torch.Tensor | None], Batch],
    ) -> None:
        self.files = files
        self.labels = labels
        self.settings = settings
        self.context = context
        self.prepare = prepare

    def with_epoch_ends(self) -> Iterator[Batch | EpochEnd]:
        settings, context = self.settings, self.context
        sampler = Sampler.of(
            len(self.files), settings.batch_size, settings.shuffle, settings.drop_remainder, context
        )
        # The run's one input: the steps behind it trained on the batches before.
        start = context.global_step if settings.resume else 0
        seed = (
            order_seed(settings.seed, settings.resume, context.shuffle_generator)
            if settings.shuffle
            else 0
        )
        loader = DataLoader(
            _Decoder(self.files, self.labels),
            batch_size=None,  # the sampler's items are whole batches of indices
            sampler=sampler.batches(seed, settings.num_epochs, start),
            num_workers=settings.num_workers,
            collate_fn=_as_is,
            # Its own generator for the workers' seeds (decoding draws nothing): drawing them
            # from torch's global one would change the noise the batches get.
            generator=torch.Generator().manual_seed(0),
        )
        for item in loader:
            if isinstance(item, _Failed):
                raise InputError(item.message)
            if isinstance(item, EpochEnd):
                yield item
                continue
            features, labels = item
            yield self.prepare(features, labels)
