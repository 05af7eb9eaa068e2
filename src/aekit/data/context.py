"""What an input function knows of the Estimator calling it, and how it marks its epochs.

An input that passes over its data several times (`numpy_input_fn(num_epochs=3)`,
`Dataset.repeat`, the folder and table streams) is an `EpochStream`: besides its batches
it yields an `EpochEnd` after the last batch of each pass, which is how the training loop
knows where an epoch ends. Iterating such a stream plainly leaves the marks out.

The input pipelines read the `InputContext` here; the Estimator sets it (`calling`) while
it calls an input_fn. Both sit below the Estimator, which imports them.
"""

from __future__ import annotations

import abc
import contextvars
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch


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


@dataclasses.dataclass(frozen=True)
class EpochEnd:
    """In a stream of batches: the batches before it completed pass `index` (from 0) of `count`.

    `count` is None for a stream that repeats without end.
    """

    index: int
    count: int | None


class EpochStream(abc.ABC):
    """An iterable of batches that knows where each pass over its data ends."""

    @abc.abstractmethod
    def with_epoch_ends(self) -> Iterator[Any]:
        """The batches with an `EpochEnd` after the last batch of each pass."""

    def __iter__(self) -> Iterator[Any]:
        return (item for item in self.with_epoch_ends() if not isinstance(item, EpochEnd))

    @staticmethod
    def from_generator(make: Callable[[], Iterator[Any]]) -> EpochStream:
        """The stream of what `make()` yields: batches, and an `EpochEnd` after each epoch."""
        return _Generated(make)


class _Generated(EpochStream):
    def __init__(self, make: Callable[[], Iterator[Any]]) -> None:
        self.make = make

    def with_epoch_ends(self) -> Iterator[Any]:
        return self.make()


_OUTSIDE = InputContext()  # frozen, so one shared default is safe
_context: contextvars.ContextVar[InputContext] = contextvars.ContextVar(
    "aekit_input_context", default=_OUTSIDE
)


def input_context() -> InputContext:
    """The context of the Estimator calling the current input_fn (defaults outside one)."""
    return _context.get()


def calling(input_fn: Callable[[], Any], context: InputContext | None) -> Any:
    """`input_fn()`, with `input_context()` telling it `context` while it builds its pipeline."""
    token = _context.set(context or _OUTSIDE)
    try:
        return input_fn()
    finally:
        _context.reset(token)
