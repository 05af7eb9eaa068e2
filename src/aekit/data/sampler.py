"""Which rows each batch takes, epoch by epoch: the one order of arrays and image folders.

Epoch `e` of a run with seed `s` permutes the rows with `numpy.random.default_rng([s, e])`
(or keeps them in order without shuffling). In a data-parallel job process `i` of `k`
takes every `k`-th row of that order from the `i`-th on; in training every process takes
as many rows as the smallest share (the epoch is cut to a multiple of `k`), so that all
take the same number of steps. Batches never mix two epochs: each epoch ends with its own
smaller batch (none with `drop_remainder`), and the stream marks each end with an
`EpochEnd`. `numpy_input_fn` and `image_folder_input_fn` both draw from a `Sampler`, so a
folder streamed from disk gives exactly the batches of the same folder loaded into memory.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

import numpy as np
import torch

from aekit.data.context import EpochEnd, InputContext
from aekit.errors import InputError


@dataclasses.dataclass(frozen=True)
class Sampler:
    """The batches of row indices of one process, for `rows` rows.

    Attributes:
        rows: examples in one pass over the data.
        batch_size: rows per batch (per process in a job).
        shuffle: a new permutation each epoch; False keeps the rows in order.
        drop_remainder: leave out each epoch's last, smaller batch.
        num_shards: processes sharing each epoch.
        shard_index: this process's share, in [0, num_shards).
        equal_shards: cut each epoch so that every share has the same number of rows.
    """

    rows: int
    batch_size: int
    shuffle: bool = True
    drop_remainder: bool = False
    num_shards: int = 1
    shard_index: int = 0
    equal_shards: bool = False

    @classmethod
    def of(
        cls, rows: int, batch_size: int, shuffle: bool, drop_remainder: bool, context: InputContext
    ) -> Sampler:
        """The sampler of the process `context` describes.

        InputError when an epoch would give no batch where one is needed: to a process of
        a training job, or to a process alone (an evaluation's share may be empty).
        """
        sampler = cls(
            rows,
            batch_size,
            shuffle,
            drop_remainder,
            context.num_shards,
            context.shard_index,
            context.equal_shards,
        )
        needs_batches = context.equal_shards or context.num_shards == 1
        if sampler.steps_per_epoch == 0 and needs_batches:
            if sampler.rows_per_shard == 0:
                raise InputError(
                    f"{rows} examples leave none to some of the {context.num_shards} processes "
                    "of this job; give more data or start fewer processes"
                )
            share = f"{sampler.rows_per_shard} examples" + (
                " per process" if context.num_shards > 1 else ""
            )
            raise InputError(
                f"{share} make no batch of {batch_size} with drop_remainder; give more data, "
                "a smaller batch_size, or drop_remainder=False"
            )
        return sampler

    @property
    def rows_per_shard(self) -> int:
        """Rows this process takes each epoch."""
        if self.equal_shards:
            return self.rows // self.num_shards
        return len(range(self.shard_index, self.rows, self.num_shards))

    @property
    def steps_per_epoch(self) -> int:
        """Batches this process takes each epoch."""
        mine = self.rows_per_shard
        return mine // self.batch_size if self.drop_remainder else -(-mine // self.batch_size)

    def order(self, seed: int, epoch: int) -> np.ndarray:
        """Every row, in the order of epoch `epoch` (all processes share it)."""
        if not self.shuffle:
            return np.arange(self.rows, dtype=np.int64)
        return np.random.default_rng([seed, epoch]).permutation(self.rows).astype(np.int64)

    def epoch(self, seed: int, epoch: int) -> list[np.ndarray]:
        """This process's batches of epoch `epoch`."""
        cut = self.rows - self.rows % self.num_shards if self.equal_shards else self.rows
        mine = self.order(seed, epoch)[self.shard_index : cut : self.num_shards]
        return [
            mine[start : start + self.batch_size]
            for start in range(0, self.steps_per_epoch * self.batch_size, self.batch_size)
        ]

    def batches(
        self, seed: int, num_epochs: int | None, start_step: int = 0
    ) -> Iterator[np.ndarray | EpochEnd]:
        """The batches of `num_epochs` epochs (None: endless), each followed by its EpochEnd.

        `start_step` skips that many batches: a resumed run's input starts where its
        steps left off. A finite stream already behind `start_step` starts afresh.
        """
        if self.steps_per_epoch == 0:  # an evaluation's empty share
            return
        first, skip = divmod(start_step, self.steps_per_epoch)
        if num_epochs is not None and first >= num_epochs:
            first, skip = 0, 0
        epochs = itertools.count(first) if num_epochs is None else range(first, num_epochs)
        for epoch in epochs:
            yield from self.epoch(seed, epoch)[skip:]
            skip = 0
            yield EpochEnd(epoch, num_epochs)


def order_seed(seed: int | None, resume: bool, generator: torch.Generator | None) -> int:
    """The seed of an input's order: `seed` when given; for a resumed run's input, the run's
    own (the seed its generator started from, which its checkpoints keep); else one drawn
    now, a new order each time the input starts (from the Estimator's generator, which
    RunConfig.random_seed seeds, the same on every process of a job)."""
    if seed is not None:
        return seed
    if resume and generator is not None:
        return int(generator.initial_seed())
    return int(torch.randint(0, 2**62, (), generator=generator).item())
