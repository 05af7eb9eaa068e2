"""Turning what an input_fn yields into (features, labels) batches on a device."""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeAlias

import numpy as np
import torch

from aekit.errors import InputError

Features: TypeAlias = torch.Tensor | Mapping[str, torch.Tensor]
Labels: TypeAlias = torch.Tensor | Mapping[str, torch.Tensor] | None
InputFn: TypeAlias = Callable[[], Iterable[Any]] | Iterable[Any]


@dataclasses.dataclass(frozen=True)
class InputContext:
    """What an input_fn may want to know about the Estimator calling it.

    Attributes:
        device: the Estimator's device; data kept there is gathered without copies.
        num_shards: processes that split the input (data-parallel jobs), 1 otherwise.
        shard_index: this process's share, in [0, num_shards).
        equal_shards: every share must give the same number of batches (training).
        shuffle_generator: where shuffles not given a seed draw theirs: in training, a
            generator in the same state on every process of a job (so the shares stay
            disjoint), saved with the checkpoints; None elsewhere (torch's global one).
        global_step: the training step the call starts from (0 outside training): a
            stream that is a whole run's input may skip what the steps before it took.
    """

    device: torch.device | None = None
    num_shards: int = 1
    shard_index: int = 0
    equal_shards: bool = False
    shuffle_generator: torch.Generator | None = None
    global_step: int = 0


_OUTSIDE = InputContext()  # frozen, so one shared default is safe
_context: contextvars.ContextVar[InputContext] = contextvars.ContextVar(
    "aekit_input_context", default=_OUTSIDE
)


def input_context() -> InputContext:
    """The context of the Estimator calling the current input_fn (defaults outside one)."""
    return _context.get()


def iterate_batches(
    input_fn: InputFn, context: InputContext | None = None
) -> Iterator[tuple[Features, Labels]]:
    """Yield (features, labels) from an input_fn or an iterable of batches.

    An element may be `(features, labels)`, `(features,)` or bare features; numpy
    arrays become tensors. Missing labels are None. `context` is what
    `input_context()` tells the input_fn while it builds its pipeline.
    """
    if callable(input_fn):
        token = _context.set(context or InputContext())
        try:
            source = input_fn()
        finally:
            _context.reset(token)
    else:
        source = input_fn
    if not isinstance(source, Iterable) or isinstance(source, torch.Tensor | np.ndarray):
        raise InputError(
            f"input_fn gave a {type(source).__name__}, not an iterable of batches; return "
            "e.g. aekit.data.Dataset, a DataLoader or a list of (features, labels)"
        )
    for element in source:
        yield _split(element)


def _split(element: Any) -> tuple[Features, Labels]:
    if isinstance(element, tuple | list):
        if len(element) == 2:
            return _tensors(element[0]), _tensors(element[1])
        if len(element) == 1:
            return _tensors(element[0]), None
        raise InputError(
            f"a batch is a sequence of {len(element)} items; yield (features, labels) "
            "or features alone"
        )
    return _tensors(element), None


def _tensors(value: Any) -> Any:
    if value is None or isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, Mapping):
        return {k: _tensors(v) for k, v in value.items()}
    raise InputError(
        f"a batch holds a {type(value).__name__}; features and labels must be tensors, "
        "numpy arrays or dicts of them"
    )


def to_device(value: Any, device: torch.device) -> Any:
    """Move tensors (also inside dicts) to `device` without blocking the host.

    Host batches bound for a GPU go through pinned memory, whose copy runs asynchronously
    (the caching host allocator keeps the buffer until the copy is done).
    """
    if isinstance(value, torch.Tensor):
        if value.device == device:
            return value
        if device.type == "cuda" and value.device.type == "cpu" and not value.is_pinned():
            value = value.pin_memory()
        return value.to(device, non_blocking=value.is_pinned())
    if isinstance(value, Mapping):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


def batch_size(features: Features) -> int:
    """Number of examples in a batch: the first dimension of its first tensor."""
    tensor = features if isinstance(features, torch.Tensor) else next(iter(features.values()), None)
    if not isinstance(tensor, torch.Tensor) or tensor.dim() == 0:
        raise InputError("features must be a tensor (or dict of tensors) with a batch dimension")
    return int(tensor.shape[0])
