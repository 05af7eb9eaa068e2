"""Training on a large table without holding it: the row cap, and a recipe of row samples.

A table of more rows than the cap (`row_cap`) trains on a fresh uniform sample of the cap's
rows each epoch, drawn from every row but the held-out share; early stopping watches a
fixed sample of the held-out rows. Only the samples are in memory: the table is read once
per epoch to draw one (a Parquet or Arrow file in well under a second per million rows).

Why 100,000 rows at most: the recipe goes through at most a million rows (`sized_epochs`),
so past about 100,000 rows more rows per epoch only means fewer, longer epochs, and early
stopping checks less often; with a new sample each epoch, training still sees rows from all
over the table. On ADBench's tables even 2,000 rows a sample lost little AUROC
(docs/anomaly.md). Why 64 MiB: a wide table (hundreds of
features) keeps its sample, the held-out rows and their copies in a few hundred MiB.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from aekit.anomaly.tabular import early_stopping, held_out_split, sized_batch, sized_epochs
from aekit.data.context import EpochEnd, EpochStream
from aekit.data.input_fn import numpy_input_fn
from aekit.data.tables import ArrayTable, TableSource
from aekit.hooks.base import Hook

SAMPLE_ROWS = 100_000
"""The most rows a training sample holds by default."""
SAMPLE_BYTES = 64 * 2**20
"""The most float64 bytes a training sample holds by default (fewer rows for wide tables)."""
_SCORE_BYTES = 4 * 2**20  # float64 rows of a large table scored at a time
_FORWARD_ROWS = 8192  # TabularNetwork.errors_and_codes's batch: chunks are multiples of it


def row_cap(n_features: int, max_rows: int | None = None) -> int:
    """The most rows trained on at once: `max_rows`, else 64 MiB of float64, at most 100,000."""
    if max_rows is not None:
        return int(max_rows)
    return int(min(SAMPLE_ROWS, max(1_000, SAMPLE_BYTES // (8 * max(n_features, 1)))))


def chunk_rows(table: TableSource, cap: int) -> int:
    """Rows scored at a time: an array within the cap in one piece (as when it is held in
    memory, so that its scores stay those of the whole), else 4 MiB, in whole forward batches.
    """
    if isinstance(table, ArrayTable) and table.n_rows <= cap:
        return max(table.n_rows, 1)
    rows = _SCORE_BYTES // (8 * max(table.n_features, 1))
    return max(1, rows // _FORWARD_ROWS) * _FORWARD_ROWS


def uniform_sample(table: TableSource, size: int, seed: int) -> np.ndarray:
    """`size` rows drawn uniformly without replacement, in the table's order."""
    rng = np.random.default_rng([seed, 2])  # apart from the split's and the epochs' draws
    chosen = rng.choice(table.n_rows, size=min(size, table.n_rows), replace=False)
    return table.take(np.sort(chosen))


@dataclass(frozen=True)
class SampledRecipe:
    """`TabularRecipe`'s interface for a table larger than the cap: a new sample each epoch.

    Build it with `SampledRecipe.of(table, cap, seed, ...)`: a `validation_fraction` of the
    rows is held out (their indices drawn with the seed), and early stopping watches a sample
    of `validation_fraction` of the cap's rows among them; each epoch trains on the cap's
    remaining rows, drawn uniformly from the other rows. Batch size and epochs are sized from
    the rows of an epoch. The row indices cost 8 bytes a row of the table.
    """

    table: TableSource
    pool: np.ndarray  # the indices of the rows training draws from
    held_rows: np.ndarray
    rows_per_epoch: int
    batch_size: int
    epochs: int
    patience: int
    seed: int

    @classmethod
    def of(
        cls,
        table: TableSource,
        cap: int,
        seed: int,
        batch_size: int | None = None,
        epochs: int | None = None,
        validation_fraction: float = 0.1,
        patience: int = 3,
    ) -> SampledRecipe:
        """Split `table`'s rows into held-out and training ones; size the epochs."""
        n = table.n_rows
        order, n_held = held_out_split(n, seed, validation_fraction)
        watched = min(n_held, int(cap * validation_fraction))
        held = table.take(np.sort(order[:watched]))
        pool = order[n_held:]
        per_epoch = max(1, min(len(pool), cap - watched))
        batch = batch_size or sized_batch(per_epoch)
        epochs = epochs or sized_epochs(per_epoch, batch)
        return cls(table, pool, held, per_epoch, batch, epochs, patience, seed)

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch's sample."""
        return -(-self.rows_per_epoch // self.batch_size)

    @property
    def max_steps(self) -> int:
        """The most steps training takes: every epoch to its end."""
        return self.steps_per_epoch * self.epochs

    def input_fn(self) -> Callable[[], EpochStream]:
        """Per epoch: a fresh uniform sample of the training rows, shuffled, in batches."""

        def batches() -> Iterator[Any]:
            rng = np.random.default_rng([self.seed, 1])  # apart from the held-out split's draw
            for epoch in range(self.epochs):
                chosen = rng.choice(self.pool, size=self.rows_per_epoch, replace=False)
                rows = self.table.take(np.sort(chosen))  # read in the file's order
                yield from numpy_input_fn(
                    rows,
                    batch_size=self.batch_size,
                    num_epochs=1,
                    seed=self.seed + epoch,
                    dtype=torch.float64,
                )()
                del rows  # before the next sample is read, not after
                yield EpochEnd(epoch, self.epochs)

        return lambda: EpochStream.from_generator(batches)

    def hooks(self) -> list[Hook]:
        """Early stopping on the held-out sample (none when no rows are held out)."""
        return early_stopping(self.held_rows, self.steps_per_epoch, self.patience)
