"""Dataset: a tf.data-style input pipeline that gathers whole batches by index.

Before `batch`, the pipeline moves row *indices*, not examples: `shuffle`,
`repeat` and `take` reorder and cut index arrays, and `batch` gathers each batch
from the source arrays in one indexing operation. Element-wise `map` functions
given before `batch` are applied to the gathered rows one by one (correct but
slow); a `map` after `batch` sees whole batches and is the fast path. Arrays stay
in the dtype given (uint8 images take a quarter of the memory of float32), numpy
memory maps and `Rows` (rows of an array chosen by index: a split) are read batch by
batch, and tensors moved with `to(device)` before `batch` are gathered on that device.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from aekit.data.batching import rebatch
from aekit.data.context import EpochEnd, EpochStream
from aekit.data.rows import Rows
from aekit.data.slices import Source, elements, flatten, move, stack
from aekit.data.stages import apply, buffer_shuffle, parallel_map, prefetch, seed_stream, unmarked
from aekit.errors import ConfigError, InputError

_CHUNK = 4096  # indices handed on at a time by the element-wise shuffle
Indices = Callable[[], Iterator[Any]]  # a stream of index arrays and EpochEnds
Passes = tuple[int, int | None]  # a marked stream's (length of one pass, number of passes)


class Dataset(EpochStream):
    """An immutable pipeline; every method returns a new Dataset.

    Build one with `Dataset.from_tensor_slices`; iterate it (any number of times)
    to get torch tensors with the structure given: a tensor, a tuple or a dict.
    """

    def __init__(
        self,
        source: Source,
        indices: Indices | None,
        length: int | None,
        element_fns: tuple[Callable[..., Any], ...] = (),
        items: Callable[[], Iterator[Any]] | None = None,
        passes: Passes | None = None,
    ) -> None:
        self._source = source
        self._indices = indices  # before batch: a stream of index arrays (and EpochEnds)
        self._length = length  # elements before batch (None: endless)
        self._element_fns = element_fns
        self._items = items  # after batch: a stream of batches (and EpochEnds)
        self._passes = passes  # the passes `repeat` marked, when of known length

    # -- construction -------------------------------------------------------------

    @staticmethod
    def from_tensor_slices(tensors: Any) -> Dataset:
        """Slice arrays (a tensor/array, a tuple or a dict of them) along the first dimension."""
        leaves, rebuild = flatten(tensors)
        if not leaves:
            raise InputError("from_tensor_slices needs at least one array")
        for leaf in leaves:
            if not isinstance(leaf, torch.Tensor | np.ndarray | Rows):
                raise InputError(
                    f"from_tensor_slices takes tensors or numpy arrays, got {type(leaf).__name__}"
                )
            if leaf.ndim == 0:
                raise InputError("from_tensor_slices needs arrays with a first dimension to slice")
            if isinstance(leaf, np.ndarray | Rows) and leaf.dtype.kind not in "biuf":
                # Text, objects or dates cannot become tensors: say so now, not at the first batch.
                raise InputError(
                    f"from_tensor_slices takes arrays of numbers, got one of dtype {leaf.dtype}; "
                    "encode text or categories as numbers first"
                )
        lengths = {len(leaf) for leaf in leaves}
        if len(lengths) != 1:
            raise InputError(
                f"from_tensor_slices got arrays of different lengths {sorted(lengths)}; "
                "they must share the first dimension"
            )
        source = Source(leaves, rebuild)
        n = source.length
        return Dataset(source, lambda: iter([np.arange(n)]), n)

    @staticmethod
    def from_index_batches(
        tensors: Any,
        index_batches: Callable[[], Iterator[np.ndarray | EpochEnd]],
        passes: Passes,
        device: torch.device | None = None,
    ) -> Dataset:
        """Batches of `tensors`' rows (as `from_tensor_slices` takes them) chosen by a sampler.

        Each array `index_batches()` yields is one batch's row indices, gathered in one go
        (on `device` when given); its `EpochEnd`s pass on. `passes` is (batches per pass,
        passes) for `cardinality`.
        """
        source = Dataset.from_tensor_slices(tensors)._source
        if device is not None:
            source = source.to(device)

        def batches() -> Iterator[Any]:
            for index in index_batches():
                yield index if isinstance(index, EpochEnd) else source.rebuild(source.gather(index))

        steps, count = passes
        return Dataset(source, None, None if count is None else steps * count, (), batches, passes)

    @property
    def batched(self) -> bool:
        """Whether `batch` has been applied."""
        return self._items is not None

    def cardinality(self) -> int | None:
        """Number of elements (before batch) or batches (after); None when endless or unknown."""
        return self._length

    # -- stages ---------------------------------------------------------------------

    def shuffle(self, buffer_size: int, seed: int | None = None) -> Dataset:
        """Shuffle with a buffer of `buffer_size`, freshly on every pass over the data."""
        _check_count("buffer_size", buffer_size)
        seeds = seed_stream(seed)
        if self._items is not None:
            upstream = self._items
            return self._with_items(
                lambda: buffer_shuffle(unmarked(upstream()), buffer_size, next(seeds)),
                self._length,
                None,  # the passes mix: no epoch ends any more
            )
        upstream_indices, length = self._indices, self._length
        assert upstream_indices is not None

        def shuffled() -> Iterator[np.ndarray]:
            rng = next(seeds)
            if length is not None and length <= buffer_size:
                # The buffer holds everything: one permutation is exactly that shuffle.
                chunks = list(unmarked(upstream_indices()))
                if chunks:
                    yield rng.permutation(np.concatenate(chunks))
                return
            flat = (int(i) for chunk in unmarked(upstream_indices()) for i in chunk)
            stream = buffer_shuffle(flat, buffer_size, rng)
            while chunk := list(itertools.islice(stream, _CHUNK)):
                yield np.asarray(chunk, dtype=np.int64)

        return self._with_indices(shuffled, length, None)

    def repeat(self, count: int | None = None) -> Dataset:
        """Repeat the data `count` times (None: forever); each pass is an epoch.

        The end of each pass is marked for training (an `EpochEnd`); a repeat of a
        repeated Dataset makes its own passes the epochs.
        """
        if count is not None:
            _check_count("count", count, allow_zero=True)
        length = None if count is None or self._length is None else self._length * count
        passes = None if self._length is None else (self._length, count)

        def repeated(upstream: Callable[[], Iterator[Any]]) -> Callable[[], Iterator[Any]]:
            def run() -> Iterator[Any]:
                for epoch in range(count) if count is not None else itertools.count():
                    empty = True
                    for item in unmarked(upstream()):
                        empty = False
                        yield item
                    if empty:  # repeating nothing forever would hang
                        return
                    yield EpochEnd(epoch, count)

            return run

        if self._items is not None:
            return self._with_items(repeated(self._items), length, passes)
        assert self._indices is not None
        return self._with_indices(repeated(self._indices), length, passes)

    def take(self, count: int) -> Dataset:
        """Keep the first `count` elements (or batches, after `batch`)."""
        _check_count("count", count, allow_zero=True)
        length = count if self._length is None else min(count, self._length)
        if self._items is not None:
            upstream = self._items

            def first_items() -> Iterator[Any]:
                left = count
                for item in upstream():
                    if not isinstance(item, EpochEnd):
                        if left <= 0:
                            return
                        left -= 1
                    yield item

            return self._with_items(first_items, length, None)
        indices = self._indices
        assert indices is not None

        def taken() -> Iterator[np.ndarray | EpochEnd]:
            left = count
            for chunk in indices():
                if isinstance(chunk, EpochEnd):
                    yield chunk
                    continue
                if left <= 0:
                    return
                yield chunk[:left]
                left -= len(chunk)

        return self._with_indices(taken, length, None)

    def batch(self, batch_size: int, drop_remainder: bool = False) -> Dataset:
        """Group consecutive elements into batches of `batch_size`, gathered in one go."""
        _check_count("batch_size", batch_size)
        if self._items is not None:
            raise ConfigError("this Dataset is already batched; call batch() once")
        indices, source, fns = self._indices, self._source, self._element_fns
        assert indices is not None

        def gather(index: np.ndarray) -> Any:
            if not fns:
                return source.rebuild(source.gather(index))
            return stack(list(elements(source, index, fns)))

        def batches() -> Iterator[Any]:
            for index in rebatch(indices(), batch_size, drop_remainder):
                yield index if isinstance(index, EpochEnd) else gather(index)

        def batched(rows: int) -> int:
            return rows // batch_size if drop_remainder else -(-rows // batch_size)

        passes, length = None, None if self._length is None else batched(self._length)
        if self._passes is not None:  # each pass ends with its own smaller batch
            steps, count = batched(self._passes[0]), self._passes[1]
            passes, length = (steps, count), None if count is None else steps * count
        return Dataset(source, None, length, (), batches, passes)

    def shard(self, num_shards: int, index: int, equal: bool = False) -> Dataset:
        """Keep every `num_shards`-th element from the `index`-th on (before batch).

        Shards of one stream are disjoint and together hold every element; each pass of a
        repeated stream is shared out on its own. With `equal`, each pass (or the whole
        stream) is cut to a multiple of `num_shards`, so all shards have the same length
        (data-parallel training needs the same number of steps on every process).
        """
        _check_count("num_shards", num_shards)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < num_shards:
            raise InputError(f"shard index must be in [0, {num_shards}), got {index!r}")
        if self._items is not None:
            raise InputError("shard the elements before batch(): shard(...).batch(...)")
        upstream = self._indices
        assert upstream is not None

        def sharded() -> Iterator[np.ndarray | EpochEnd]:
            offset = 0  # the position in the pass of the chunk's first element
            held = np.empty(0, dtype=np.int64)  # equal: a group of num_shards not yet whole
            for chunk in upstream():
                if isinstance(chunk, EpochEnd):
                    offset, held = 0, held[:0]  # the pass's incomplete group is left out
                    yield chunk
                elif equal:
                    rows = np.concatenate([held, chunk])
                    whole = len(rows) - len(rows) % num_shards
                    held = rows[whole:]
                    yield rows[index:whole:num_shards]
                else:
                    yield chunk[(index - offset) % num_shards :: num_shards]
                    offset += len(chunk)

        def share(rows: int) -> int:
            return rows // num_shards if equal else len(range(index, rows, num_shards))

        passes, length = None, None if self._length is None else share(self._length)
        if self._passes is not None:
            rows, count = share(self._passes[0]), self._passes[1]
            passes, length = (rows, count), None if count is None else rows * count
        return self._with_indices(sharded, length, passes)

    def map(self, fn: Callable[..., Any], num_parallel_calls: int | None = None) -> Dataset:
        """Apply `fn` to every element (before batch) or every batch (after).

        A tuple element is spread over fn's arguments. After `batch`,
        `num_parallel_calls` > 1 runs that many calls at once in threads (torch
        releases the GIL), keeping the order.
        """
        if num_parallel_calls is not None:
            _check_count("num_parallel_calls", num_parallel_calls)
        if self._items is None:
            fns = (*self._element_fns, fn)
            return Dataset(self._source, self._indices, self._length, fns, None, self._passes)
        upstream = self._items
        if not num_parallel_calls or num_parallel_calls == 1:
            return self._with_items(
                lambda: (b if isinstance(b, EpochEnd) else apply(fn, b) for b in upstream()),
                self._length,
                self._passes,
            )
        workers = num_parallel_calls
        return self._with_items(
            lambda: parallel_map(fn, upstream(), workers), self._length, self._passes
        )

    def prefetch(self, buffer_size: int = 2) -> Dataset:
        """Prepare up to `buffer_size` items ahead in a background thread."""
        _check_count("buffer_size", buffer_size)
        upstream = self._items if self._items is not None else self._element_iterator
        return self._with_items(
            lambda: prefetch(upstream(), buffer_size), self._length, self._passes
        )

    def to(self, device: str | torch.device) -> Dataset:
        """Put the data on `device`: before batch the arrays move once, after it each batch."""
        target = torch.device(device)
        if self._items is None:
            source = self._source.to(target)
            return Dataset(
                source, self._indices, self._length, self._element_fns, None, self._passes
            )
        upstream = self._items
        return self._with_items(
            lambda: (move(b, target) for b in upstream()), self._length, self._passes
        )

    # -- iteration ------------------------------------------------------------------

    def with_epoch_ends(self) -> Iterator[Any]:
        """The elements (or batches), with an `EpochEnd` after each pass `repeat` made."""
        if self._items is not None:
            return self._items()
        return self._element_iterator()

    def _element_iterator(self) -> Iterator[Any]:
        assert self._indices is not None
        for chunk in self._indices():
            if isinstance(chunk, EpochEnd):
                yield chunk
                continue
            for start in range(0, len(chunk), _CHUNK):
                part = chunk[start : start + _CHUNK]
                yield from elements(self._source, part, self._element_fns)

    def _with_indices(
        self, indices: Indices, length: int | None, passes: Passes | None = None
    ) -> Dataset:
        return Dataset(self._source, indices, length, self._element_fns, None, passes)

    def _with_items(
        self, items: Callable[[], Iterator[Any]], length: int | None, passes: Passes | None = None
    ) -> Dataset:
        return Dataset(self._source, None, length, (), items, passes)


def _check_count(name: str, value: int, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
