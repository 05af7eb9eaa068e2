"""Input functions over in-memory arrays: `numpy_input_fn` and the seed's `InputFunction`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from aekit.checks import check_bool, check_int, resolve_device, shown
from aekit.data.arrays import as_array, check_values, to_float
from aekit.data.binarize import Binarization, bernoulli_pixels, binarize, check_binarization
from aekit.data.context import EpochEnd, input_context
from aekit.data.corruption import Corruption, GaussianNoise
from aekit.data.dataset import Dataset
from aekit.data.rows import Rows, is_mapped
from aekit.data.sampler import Sampler, order_seed
from aekit.data.slices import Array
from aekit.errors import ConfigError, InputError
from aekit.modes import ModeKeys

__all__ = [
    "InputFunction",
    "numpy_input_fn",
    "predict_input_fn",
    "shard_for_estimator",
    "to_float",
]

# In-memory data up to this share of the accelerator's free memory is moved there once.
_RESIDENT_SHARE = 0.25


def _check_data(value: Any, name: str) -> Array:
    """`value` as an array of at least two dimensions whose values will be read right."""
    x = as_array(value, name)
    if x.ndim == 0 or len(x) == 0 or (x.numel() if isinstance(x, torch.Tensor) else x.size) == 0:
        raise InputError(
            f"{name} is empty or a single number (shape {tuple(x.shape)}); give an array of "
            f"examples, (N, features) or (N, H, W)"
        )
    if x.ndim == 1:
        raise InputError(
            f"{name} has shape {tuple(x.shape)}, one number per example; give examples as rows "
            f"(N, features), e.g. {name}.reshape(-1, 1)"
        )
    check_values(x, name)
    return x


def _check_labels(value: Any, n: int) -> Array:
    y = as_array(value, "y")
    if y.ndim == 0:
        raise InputError("y is a single number; give one label per example")
    if len(y) != n:
        raise InputError(f"x has {n} examples but y has {len(y)}; they must match")
    if isinstance(y, np.ndarray) and y.dtype.kind not in "biuf":
        raise InputError(
            f"y has dtype {y.dtype}, not numbers; encode the labels as integers first "
            f"(e.g. sklearn.preprocessing.LabelEncoder)"
        )
    if isinstance(y, torch.Tensor) and y.is_complex():
        raise InputError(f"y has dtype {y.dtype}, not real numbers; give integer or float labels")
    return y


def _check_noise(noise: Any) -> Corruption | None:
    if noise is None or isinstance(noise, Corruption):
        return noise
    # A name is the likely mistake: say which object to give instead.
    raise ConfigError(
        f"noise must be a Corruption object such as MaskingNoise(0.3), SaltAndPepper(0.1) or "
        f"GaussianNoise(0.5) (or make_corruption(name, amount)), got {shown(noise)}"
    )


def _check_device(device: Any) -> torch.device | None:
    if device is None:
        return None
    try:
        return resolve_device(device if isinstance(device, str) else str(torch.device(device)))
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"device must be None, a device string or a torch.device, got {shown(device)}"
        ) from None


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
    binarize: Binarization | None = None,
    dtype: torch.dtype | None = None,
    resume: bool = False,
) -> Callable[[], Dataset]:
    """An input_fn over arrays: `num_epochs` passes (None: endless), each shuffled anew, batched.

    An epoch is one pass over `x` in batches of `batch_size`, the last one smaller (none
    with `drop_remainder`); training marks its end (a History record, the `Epoch k/N`
    line, an evaluation under `train_and_evaluate`). The order is `aekit.data.sampler`'s:
    epoch `e` permutes the rows from `[seed, e]`; without a seed, the seed is drawn from
    the Estimator's generator (RunConfig.random_seed) each time the input starts.

    Features become float32 per batch (uint8 is scaled to [0, 1]). With `noise` (or
    `noise_factor`, Gaussian noise as in the seeds) the features are corrupted and
    the clean features, or `y` when given, are the labels: a denoising setup.
    `device` keeps the arrays on that device and builds batches there; by default
    an Estimator on an accelerator gets them there when they fit (not memory maps).
    `x` may be `Rows` (a split of `load_dataset`): each batch reads just its rows.
    In a data-parallel job each process takes its share of every epoch, so the
    global batch is `batch_size` × the number of processes. `binarize` makes the features
    0/1 pixels drawn with their intensity as the probability: "fixed" once (with `seed`,
    else 0), "dynamic" anew for every batch (before any noise). `dtype` gives the features
    as numbers of that floating type, uint8 included (not pixels): for a model that scales
    its inputs itself, such as a table's in float64 (aekit.anomaly.tabular). Labels of the
    features' shape and type are targets to reconstruct, and become numbers as they do.
    With `resume`, the input is a whole run's: each train call starts at the batch the
    run's global step has reached (the epochs before it skipped, not read), and without a
    `seed` the order is the run's (the seed its generator started from), so a run resumed
    from a checkpoint trains on what an uninterrupted one would.

    Returns a function giving a fresh Dataset of `(features, labels)` batches.
    """
    # Every argument is checked here, before any batch is built: one clear error each.
    x = _check_data(x, "x")
    y = None if y is None else _check_labels(y, len(x))
    batch_size = check_int("batch_size", batch_size, low=1)
    num_epochs = None if num_epochs is None else check_int("num_epochs", num_epochs, low=1)
    shuffle = check_bool("shuffle", shuffle)
    drop_remainder = check_bool("drop_remainder", drop_remainder)
    resume = check_bool("resume", resume)
    seed = None if seed is None else check_int("seed", seed, low=0, high=2**63 - 1)
    noise = _check_noise(noise)
    if noise is not None and noise_factor is not None:
        raise ConfigError("give noise or noise_factor, not both")
    corruption = GaussianNoise(noise_factor) if noise_factor is not None else noise
    placement = _check_device(device)
    binarization = check_binarization(binarize)
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise ConfigError(f"dtype must be a floating torch dtype or None, got {shown(dtype)}")
    if dtype is not None and binarization is not None:
        raise ConfigError("binarize makes 0/1 pixels, dtype numbers as they are: give one")
    if binarization == "fixed":
        x = _binarized(x, seed or 0)

    # Labels of the features' shape and type are images to reconstruct (fit(x, x)).
    targets = y is not None and tuple(y.shape) == tuple(x.shape) and y.dtype == x.dtype

    def numbers(features: torch.Tensor) -> torch.Tensor:
        return features.to(dtype) if dtype is not None else to_float(features)

    def prepare(features: torch.Tensor, labels: torch.Tensor | None = None) -> Any:
        if targets and labels is not None:
            labels = numbers(labels)
        features = bernoulli_pixels(features) if binarization == "dynamic" else numbers(features)
        if corruption is not None:
            return corruption(features, labels)
        return features, labels

    def input_fn() -> Dataset:
        context = input_context()
        sampler = Sampler.of(len(x), batch_size, shuffle, drop_remainder, context)
        start = context.global_step if resume else 0
        generator = context.shuffle_generator

        def index_batches() -> Iterator[np.ndarray | EpochEnd]:
            order = order_seed(seed, resume, generator) if shuffle else 0
            return sampler.batches(order, num_epochs, start)

        arrays = (x,) if y is None else (x, y)
        target = placement if placement is not None else _resident_device(x, y)
        passes = (sampler.steps_per_epoch, num_epochs)
        data = Dataset.from_index_batches(arrays, index_batches, passes, target)
        return data.map(prepare)

    return input_fn


def predict_input_fn(x: Array, network: torch.nn.Module, batch_size: int = 1000) -> Any:
    """`x` in order, once, in the dtype `network` takes (its `input_dtype`; else float32)."""
    dtype = getattr(network, "input_dtype", None)
    return numpy_input_fn(x, batch_size=batch_size, shuffle=False, dtype=dtype)


def _binarized(x: Array, seed: int) -> Array:
    array = binarize(x, seed)
    return torch.from_numpy(array).to(x.device) if isinstance(x, torch.Tensor) else array


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
    # A memory map (or rows of one) stays on disk: it may be larger than the host's memory.
    if target is None or target.type != "cuda" or isinstance(x, np.memmap) or is_mapped(x):
        return None
    size = sum(a.nbytes if isinstance(a, np.ndarray | Rows) else a.numel() * a.element_size()
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
        self.data = _check_data(data, "data")
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.num_epochs = None if num_epochs is None else check_int("num_epochs", num_epochs, low=1)
        try:
            self.mode = ModeKeys(mode)
        except ValueError:
            modes = ", ".join(repr(m.value) for m in ModeKeys)
            raise ConfigError(f"mode must be one of {modes}, got {shown(mode)}") from None
        self.noise = GaussianNoise(noise_factor) if noise_factor else None
        self.seed = None if seed is None else check_int("seed", seed, low=0, high=2**63 - 1)

    def __call__(self) -> Dataset:
        dataset = Dataset.from_tensor_slices(self.data)
        if self.mode is ModeKeys.TRAIN:
            dataset = dataset.shuffle(10_000, seed=self.seed).repeat(self.num_epochs)
        noise = self.noise

        def pair(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            clean = to_float(features)
            return (noise.corrupt(clean), clean) if noise is not None else (clean, clean)

        return shard_for_estimator(dataset).batch(self.batch_size).map(pair)
