"""Input functions over in-memory arrays: `numpy_input_fn` and the seed's `InputFunction`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from aekit.data.corruption import Corruption, GaussianNoise
from aekit.data.dataset import Array, Dataset
from aekit.errors import InputError
from aekit.estimator.inputs import input_context
from aekit.estimator.spec import ModeKeys

# In-memory data up to this share of the accelerator's free memory is moved there once.
_RESIDENT_SHARE = 0.25


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to float32 in [0, 1]; other integers to float32; floats as they are.

    Floating inputs keep their type: a batch already in bfloat16 feeds a network that
    runs in bfloat16 (RunConfig.precision) without a round trip through float32.
    """
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)
    return x if x.is_floating_point() else x.to(torch.float32)


def _check_pixels(x: Array, name: str) -> None:
    if getattr(x, "ndim", 1) == 0:
        raise InputError(f"{name} is a single number; give an array of examples")
    if len(x) == 0 or getattr(x, "size", 1) == 0:
        raise InputError(f"{name} is empty (shape {tuple(x.shape)}); give at least one example")
    kind = x.dtype.kind if isinstance(x, np.ndarray) else None
    if kind is not None and kind not in "biuf":
        raise InputError(
            f"{name} has dtype {x.dtype}, not numbers; give uint8 pixels or float features"
        )
    if kind in ("i", "u") and x.dtype != np.uint8 and not isinstance(x, np.memmap):
        # Only uint8 is scaled to [0, 1]: a wider integer type keeps its values, so pixels
        # 0..255 stored as int64 would train on targets up to 255.
        low, high = int(x.min()), int(x.max())
        if low < 0 or high > 1:
            raise InputError(
                f"{name} is {x.dtype} with values from {low} to {high}; give pixels as uint8 "
                f"(x.astype(np.uint8)) or as floats in [0, 1]"
            )
    if isinstance(x, np.ndarray) and not isinstance(x, np.memmap) and x.dtype.kind == "f":
        finite = np.isfinite(x)
        if not finite.all():
            raise InputError(
                f"{name} holds {int((~finite).sum())} NaN or infinite values; clean the data first"
            )


def numpy_input_fn(
    x: Array,
    y: Array | None = None,
    batch_size: int = 128,
    num_epochs: int | None = 1,
    shuffle: bool = True,
    seed: int | None = None,
    noise: Corruption | None = None,
    noise_factor: float | None = None,
    device: str | torch.device | None = None,
    drop_remainder: bool = False,
) -> Callable[[], Dataset]:
    """An input_fn over arrays: shuffled (whole-data buffer), repeated, batched.

    Features become float32 per batch (uint8 is scaled to [0, 1]). With `noise` (or
    `noise_factor`, Gaussian noise as in the seeds) the features are corrupted and
    the clean features, or `y` when given, are the labels: a denoising setup.
    `device` keeps the arrays on that device and builds batches there; by default
    an Estimator on an accelerator gets them there when they fit (not memory maps).
    In a data-parallel job each process takes its share of every epoch, so the
    global batch is `batch_size` × the number of processes.

    Returns a function giving a fresh Dataset of `(features, labels)` batches.
    """
    _check_pixels(x, "x")
    if y is not None and len(y) != len(x):
        raise InputError(f"x has {len(x)} examples but y has {len(y)}; they must match")
    if noise is not None and noise_factor is not None:
        raise InputError("give noise or noise_factor, not both")
    corruption = GaussianNoise(noise_factor) if noise_factor is not None else noise

    def prepare(features: torch.Tensor, labels: torch.Tensor | None = None) -> Any:
        features = to_float(features)
        if corruption is not None:
            return corruption(features, labels)
        return features, labels

    def input_fn() -> Dataset:
        data = Dataset.from_tensor_slices((x,) if y is None else (x, y))
        target = device if device is not None else _resident_device(x, y)
        if target is not None:
            data = data.to(target)
        if shuffle:
            data = data.shuffle(len(x), seed=seed)
        data = shard_for_estimator(data.repeat(num_epochs))
        return data.batch(batch_size, drop_remainder).map(prepare)

    return input_fn


def shard_for_estimator(data: Dataset) -> Dataset:
    """This process's share of `data` in a data-parallel job; all of it otherwise.

    Every process must draw the same shuffled order (RunConfig.random_seed, or the
    seed the Estimator shares from rank 0), so that the shares are disjoint.
    """
    context = input_context()
    if context.num_shards == 1:
        return data
    return data.shard(context.num_shards, context.shard_index, equal=context.equal_shards)


def _resident_device(x: Array, y: Array | None) -> torch.device | None:
    """The calling Estimator's accelerator when the arrays fit comfortably in its memory."""
    target = input_context().device
    if target is None or target.type != "cuda" or isinstance(x, np.memmap):
        return None
    size = sum(a.nbytes if isinstance(a, np.ndarray) else a.numel() * a.element_size()
               for a in (x, y) if a is not None)  # fmt: skip
    free, _ = torch.cuda.mem_get_info(target)
    return target if size <= _RESIDENT_SHARE * free else None


class InputFunction:
    """The seed's input function object: `InputFunction(data, batch_size, num_epochs, mode)`.

    In TRAIN mode the data are shuffled (buffer 10,000) and repeated `num_epochs`
    times; in EVAL and PREDICT they pass once in order. Batches are
    `(features, clean_features)`, the features corrupted when `noise_factor` is set.
    """

    def __init__(
        self,
        data: Array,
        batch_size: int,
        num_epochs: int | None,
        mode: ModeKeys | str,
        noise_factor: float | None = None,
        seed: int | None = None,
    ) -> None:
        _check_pixels(data, "data")
        self.data = data
        self.batch_size = batch_size
        self.num_epochs = num_epochs
        self.mode = ModeKeys(mode)
        self.noise = GaussianNoise(noise_factor) if noise_factor else None
        self.seed = seed

    def __call__(self) -> Dataset:
        dataset = Dataset.from_tensor_slices(self.data)
        if self.mode is ModeKeys.TRAIN:
            dataset = dataset.shuffle(10_000, seed=self.seed).repeat(self.num_epochs)
        noise = self.noise

        def pair(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            clean = to_float(features)
            return (noise.corrupt(clean), clean) if noise is not None else (clean, clean)

        return shard_for_estimator(dataset).batch(self.batch_size).map(pair)
