"""Turning what an input_fn yields into (features, labels) batches on a device.

Training reads an `EpochStream`'s `EpochEnd`s too (aekit.data.context): where its epochs end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeAlias

import numpy as np
import torch

from aekit.data.context import EpochEnd, EpochStream, InputContext, calling
from aekit.errors import InputError

Features: TypeAlias = torch.Tensor | Mapping[str, torch.Tensor]
Labels: TypeAlias = torch.Tensor | Mapping[str, torch.Tensor] | None
InputFn: TypeAlias = Callable[[], Iterable[Any]] | Iterable[Any]


def iterate_batches(
    input_fn: InputFn, context: InputContext | None = None
) -> Iterator[tuple[Features, Labels]]:
    """Yield (features, labels) from an input_fn or an iterable of batches.

    An element may be `(features, labels)`, `(features,)` or bare features; numpy
    arrays become tensors. Missing labels are None. `context` is what
    `input_context()` tells the input_fn while it builds its pipeline.
    """
    for element in _source(input_fn, context):
        yield _split(element)


class Batches:
    """What training iterates: (features, labels) batches and the input's `EpochEnd`s.

    `marks_epochs` says whether the input is an `EpochStream` (else no EpochEnd comes).
    """

    def __init__(self, input_fn: InputFn, context: InputContext) -> None:
        source = _source(input_fn, context)
        self.marks_epochs = isinstance(source, EpochStream)
        self._items = iter(source.with_epoch_ends() if isinstance(source, EpochStream) else source)

    def __iter__(self) -> Iterator[tuple[Features, Labels] | EpochEnd]:
        return self

    def __next__(self) -> tuple[Features, Labels] | EpochEnd:
        item = next(self._items)
        return item if isinstance(item, EpochEnd) else _split(item)


def _source(input_fn: InputFn, context: InputContext | None) -> Iterable[Any]:
    """What the input_fn gives (the iterable itself when it is not callable), checked."""
    source = calling(input_fn, context) if callable(input_fn) else input_fn
    if not isinstance(source, Iterable) or isinstance(source, torch.Tensor | np.ndarray):
        raise InputError(
            f"input_fn gave a {type(source).__name__}, not an iterable of batches; return "
            "e.g. aekit.data.Dataset, a DataLoader or a list of (features, labels)"
        )
    return source


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
