"""The stages a `Dataset` pipeline is built of, as plain iterators: shuffle, map, prefetch.

Each takes the stream of the stage before it (items, and the `EpochEnd` marks between
passes) and yields its own; `aekit.data.dataset.Dataset` chains them.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from aekit.data.context import EpochEnd, input_context
from aekit.data.sampler import order_seed


def apply(fn: Callable[..., Any], element: Any) -> Any:
    """Call fn the tf.data way: a tuple element is spread over the arguments."""
    return fn(*element) if isinstance(element, tuple) else fn(element)


def seed_stream(seed: int | None) -> Iterator[np.random.Generator]:
    """One generator per pass over the data: new order each pass, reproducible under a seed.

    Without a seed, one is drawn when iteration starts: in a pipeline built for an
    Estimator's training, from the generator it shares with every process of its job
    (InputContext.shuffle_generator); elsewhere from torch's global generator. Either
    way RunConfig.random_seed, and the state restored from a checkpoint, decide the order.
    """
    # Read now: iteration runs outside the input_fn call, where the context is gone.
    return _generators(seed, input_context().shuffle_generator)


def _generators(
    seed: int | None, generator: torch.Generator | None
) -> Iterator[np.random.Generator]:
    seed = order_seed(seed, False, generator)  # the seed rule of every input (sampler.py)
    for epoch in itertools.count():
        yield np.random.default_rng([seed, epoch])


def buffer_shuffle(items: Iterator[Any], size: int, rng: np.random.Generator) -> Iterator[Any]:
    """tf.data's shuffle: fill a buffer, emit a random slot, refill it from the input."""
    buffer = list(itertools.islice(items, size))
    for item in items:
        slot = int(rng.integers(len(buffer)))
        yield buffer[slot]
        buffer[slot] = item
    rng.shuffle(buffer)
    yield from buffer


def unmarked(items: Iterable[Any]) -> Iterator[Any]:
    """The items without their EpochEnds."""
    return (item for item in items if not isinstance(item, EpochEnd))


def parallel_map(fn: Callable[..., Any], items: Iterable[Any], workers: int) -> Iterator[Any]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: list[Future[Any] | EpochEnd] = []
        for item in items:
            pending.append(item if isinstance(item, EpochEnd) else pool.submit(apply, fn, item))
            if len(pending) >= workers:
                first = pending.pop(0)
                yield first if isinstance(first, EpochEnd) else first.result()
        for future in pending:
            yield future if isinstance(future, EpochEnd) else future.result()


_END = object()


def prefetch(items: Iterator[Any], size: int) -> Iterator[Any]:
    """Run `items` in a thread, `size` ahead; errors surface in the consumer."""
    buffer: queue.Queue[Any] = queue.Queue(maxsize=size)
    stop = threading.Event()
    # A new thread starts on GPU 0: give it the consumer's GPU (a job's process works on
    # GPU LOCAL_RANK), or its copies and pinned buffers would land on another device.
    gpu = torch.cuda.current_device() if torch.cuda.is_initialized() else None  # type: ignore[no-untyped-call]

    def produce() -> None:
        if gpu is not None:
            torch.cuda.set_device(gpu)
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(_END)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            buffer.put(exc)

    thread = threading.Thread(target=produce, daemon=True, name="aekit-prefetch")
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
