"""`Estimator.fit`: Keras's `fit` on arrays or a batched Dataset, built on train_and_evaluate.

`fit(x, y, epochs=10, validation_data=(x_val, y_val))` is `train_and_evaluate` with
`numpy_input_fn(x, y, batch_size, num_epochs=epochs, shuffle=shuffle, resume=True)` and
an `EvalSpec` over the validation arrays (once an epoch), so both give the same weights
to the bit. `epochs` is the epoch to end at, counted over the model dir's whole run, as
Keras counts it with `initial_epoch`: after `fit(epochs=5)`, `fit(epochs=10)` trains
epochs 6 to 10.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from aekit.checks import check_bool, check_int, shown
from aekit.data.context import EpochEnd, EpochStream, InputContext
from aekit.data.dataset import Dataset
from aekit.data.input_fn import numpy_input_fn
from aekit.data.rows import Rows
from aekit.data.sampler import Sampler
from aekit.errors import ConfigError
from aekit.estimator import checkpoint as ckpt
from aekit.estimator.feedback import resolve_verbose, say
from aekit.estimator.history import History
from aekit.estimator.inputs import InputFn
from aekit.estimator.training import EvalSpec, TrainSpec, train_and_evaluate
from aekit.hooks.base import Hook

if TYPE_CHECKING:
    from aekit.estimator.estimator import Estimator

KERAS_BATCH_SIZE = 32
"""fit's batch size when none is given, as Keras's."""


def fit(
    estimator: Estimator,
    x: Any,
    y: Any = None,
    *,
    epochs: int = 1,
    batch_size: int | None = None,
    validation_data: Any = None,
    validation_split: float = 0.0,
    callbacks: Sequence[Hook] | None = None,
    verbose: int | str = "auto",
    shuffle: bool = True,
    initial_epoch: int | None = None,
) -> History:
    """Train `estimator` on `x` (see `Estimator.fit`); the History of this call's epochs."""
    epochs = check_int("epochs", epochs, low=1)
    shuffle = check_bool("shuffle", shuffle)
    verbose = resolve_verbose(verbose)
    hooks = _hooks(callbacks)
    if isinstance(x, Dataset):
        for name, value in (("y", y), ("batch_size", batch_size)):
            if value is not None:
                raise ConfigError(
                    f"fit(x=Dataset) takes the labels and batches from the Dataset; drop {name}"
                )
        if validation_split:
            raise ConfigError(
                "validation_split splits arrays; give a Dataset's validation data as "
                "validation_data=..."
            )
        steps = _batches_per_pass(x)
        done = _epochs_done(estimator, steps, initial_epoch)
        train: InputFn = _passes(x, epochs, done)
        batch = KERAS_BATCH_SIZE
    else:
        batch = (
            KERAS_BATCH_SIZE if batch_size is None else check_int("batch_size", batch_size, low=1)
        )
        if validation_split:
            if validation_data is not None:
                raise ConfigError("give validation_data or validation_split, not both")
            x, y, validation_data = _split_last(x, y, validation_split)
        train = numpy_input_fn(
            x, y, batch_size=batch, num_epochs=epochs, shuffle=shuffle, resume=True
        )
        strategy = estimator.strategy
        context = InputContext(None, strategy.world_size, strategy.rank, equal_shards=True)
        steps = Sampler.of(len(x), batch, shuffle, False, context).steps_per_epoch
        done = _epochs_done(estimator, steps, initial_epoch)
    evaluate = _validation_input(validation_data, batch)
    if done[0] >= epochs:
        if verbose and estimator.strategy.is_chief:
            say(
                f"nothing to train: {estimator.model_dir} has trained {done[0]} epochs of these "
                f"data; fit(epochs=N) trains up to epoch N, so give epochs above {done[0]}"
            )
        return History()
    first = len(estimator.history)
    max_steps = epochs * steps
    if evaluate is None:
        estimator.train(train, hooks=hooks, max_steps=max_steps, verbose=verbose)
    else:
        train_and_evaluate(
            estimator,
            TrainSpec(train, max_steps=max_steps, hooks=hooks),
            EvalSpec(evaluate),
            verbose=verbose,
        )
    return History.of(estimator.history.records[first:])


def _hooks(callbacks: Sequence[Hook] | None) -> list[Hook]:
    if callbacks is None:
        return []
    if isinstance(callbacks, Hook) or not isinstance(callbacks, Sequence):
        raise ConfigError(f"callbacks must be a list of aekit hooks, got {shown(callbacks)}")
    for callback in callbacks:
        if isinstance(callback, History):
            raise ConfigError(
                "fit returns the History (and estimator.history keeps every record); leave "
                "History out of callbacks"
            )
        if not isinstance(callback, Hook):
            raise ConfigError(
                f"callbacks take aekit hooks (aekit.hooks.EarlyStopping, ReduceLROnPlateau, "
                f"CSVLogger, or your own Hook), got {type(callback).__name__}"
            )
    return list(callbacks)


def _epochs_done(
    estimator: Estimator, steps_per_epoch: int, initial_epoch: int | None
) -> tuple[int, int]:
    """(epochs, steps into the next) the model dir has trained; checks initial_epoch."""
    latest = estimator.latest_checkpoint()
    step = ckpt.step_of(latest) if latest is not None else 0
    done = divmod(step, steps_per_epoch)
    if initial_epoch is not None:
        initial_epoch = check_int("initial_epoch", initial_epoch, low=0)
        if initial_epoch != done[0]:
            raise ConfigError(
                f"initial_epoch={initial_epoch}, but {estimator.model_dir} holds {done[0]} "
                f"epochs of these data (step {step}, {steps_per_epoch} steps an epoch) and fit "
                "goes on from there; drop initial_epoch, or give a new model_dir"
            )
    return done


def _batches_per_pass(data: Dataset) -> int:
    if not data.batched:
        raise ConfigError(
            "fit takes a batched Dataset (as Keras does): add .batch(batch_size), or give "
            "arrays and batch_size"
        )
    steps = data.cardinality()
    if steps is None:
        raise ConfigError(
            "fit(x=Dataset) makes each pass over the Dataset an epoch, and this one never "
            "ends; drop its repeat(), or train it with estimator.train(..., max_steps=...)"
        )
    if steps == 0:
        raise ConfigError("the Dataset given to fit holds no batch; give it data")
    return steps


def _passes(data: Dataset, epochs: int, done: tuple[int, int]) -> EpochStream:
    """Passes over a batched Dataset as the epochs after `done`, each marked at its end."""

    def passes() -> Iterator[Any]:
        first, skip = done  # a run resumed mid-epoch goes on with the epoch's rest
        for epoch in range(first, epochs):
            yield from itertools.islice(data, skip, None)
            skip = 0
            yield EpochEnd(epoch, epochs)

    return EpochStream.from_generator(passes)


def _split_last(x: Any, y: Any, fraction: Any) -> tuple[Any, Any, tuple[Any, Any]]:
    """Keras's validation_split: the last `fraction` of the examples, before shuffling."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction < 1:
        raise ConfigError(f"validation_split must be a number in [0, 1), got {shown(fraction)}")
    n = len(x)
    cut = math.floor(n * (1 - fraction))
    if cut < 1 or cut >= n:
        raise ConfigError(
            f"validation_split={fraction} of {n} examples leaves {cut} to train on and "
            f"{n - cut} to validate on; each needs at least one"
        )

    def part(a: Any, rows: slice) -> Any:
        if a is None:
            return None
        if isinstance(a, Rows):
            return a.take(np.arange(n)[rows])
        return a[rows]

    if y is not None and len(y) != n:
        raise ConfigError(f"x has {n} examples but y has {len(y)}; they must match")
    head, tail = slice(0, cut), slice(cut, n)
    return part(x, head), part(y, head), (part(x, tail), part(y, tail))


def _validation_input(data: Any, batch_size: int) -> InputFn | None:
    """validation_data as an input_fn: a Dataset, or arrays `(x, y)`, `(x,)` or `x`."""
    if data is None:
        return None
    if isinstance(data, Dataset):
        return lambda: data
    if isinstance(data, tuple | list):
        if len(data) == 3:
            raise ConfigError("validation_data takes (x, y); sample weights are not supported")
        if len(data) not in (1, 2):
            raise ConfigError(
                f"validation_data must be (x, y), (x,) or x, got a sequence of {len(data)}"
            )
        x, y = data[0], data[1] if len(data) == 2 else None
    elif isinstance(data, np.ndarray | torch.Tensor | Rows):
        x, y = data, None
    else:
        raise ConfigError(
            f"validation_data must be (x, y), x or an aekit Dataset, got {shown(data)}"
        )
    return numpy_input_fn(x, y, batch_size=batch_size, shuffle=False)
