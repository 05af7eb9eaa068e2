"""History: a run's training losses and evaluation metrics, one record per epoch, as numbers.

A record closes at the end of each epoch of an input that marks its epochs (an array's
`numpy_input_fn`, `Dataset.repeat`, the folder and table streams), when an evaluation runs
during or after training, and when a train call ends with steps not yet recorded. So an
input of 3 epochs gives 3 records, and `train_and_evaluate` evaluates into each of them;
an input that does not mark epochs (a generator, a DataLoader) gets a record per
evaluation. A record holds "step" (the global step), "epoch" (from 0, as Keras's
`History.epoch`; an epoch's records only), "steps" and "seconds" (the training since the
previous record), "loss" (the mean over those steps' examples of the batch losses, each
batch weighted by its size, as Keras's; a last partial batch counts for its examples, as
an evaluation's "val_loss" does) and the evaluation's
metrics prefixed "val_" (or "<name>_" for a named evaluation), as Keras names them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping

import torch

Record = dict[str, float]


class History:
    """The records of one Estimator, in order; `history` gives them as Keras does (key -> list)."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self._loss_sum: torch.Tensor | None = None  # summed on the device, read when closed
        self._steps = 0
        self._examples = 0
        self._started: float | None = None

    @classmethod
    def of(cls, records: list[Record]) -> History:
        """A History holding `records` (a part of another's: one call's epochs)."""
        history = cls()
        history.records = list(records)
        return history

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __getitem__(self, index: int) -> Record:
        return self.records[index]

    def __repr__(self) -> str:
        return f"History({len(self.records)} records, keys {self.keys()})"

    def keys(self) -> list[str]:
        """Every key any record holds, in the order first seen."""
        keys: dict[str, None] = {}
        for record in self.records:
            keys.update(dict.fromkeys(record))
        return list(keys)

    @property
    def history(self) -> dict[str, list[float]]:
        """Each key's values over the records (NaN where a record lacks the key)."""
        return {key: [r.get(key, math.nan) for r in self.records] for key in self.keys()}

    def add_loss(self, loss: torch.Tensor, examples: int) -> None:
        """Count one training step's mean loss over `examples` (stays on the device: no sync)."""
        if self._started is None:
            self._started = time.monotonic()
        if self._loss_sum is None:
            self._loss_sum = torch.zeros((), dtype=torch.float64, device=loss.device)
        self._loss_sum.add_(loss.detach(), alpha=examples)  # one kernel, no host sync
        self._steps += 1
        self._examples += examples

    @property
    def epoch(self) -> list[int]:
        """The epochs (from 0) of the records that end one, as Keras's `History.epoch`."""
        return [int(r["epoch"]) for r in self.records if "epoch" in r]

    def end_epoch(self, global_step: int, epoch: int) -> bool:
        """Close the training since the last record as epoch `epoch`'s record.

        When an evaluation at this very step closed it already, that record is the
        epoch's. False when there is no such record (an empty epoch).
        """
        record = self.close_training(global_step)
        if record is None and self.records and self.records[-1]["step"] == global_step:
            record = self.records[-1]
        if record is None or "epoch" in record:
            return False
        record["epoch"] = float(epoch)
        return True

    def close_training(self, global_step: int) -> Record | None:
        """Turn the steps counted since the last record into a record (None: there were none)."""
        if not self._steps or self._loss_sum is None or self._started is None:
            return None
        record: Record = {
            "step": float(global_step),
            "steps": float(self._steps),
            "seconds": time.monotonic() - self._started,
            "loss": float(self._loss_sum) / max(self._examples, 1),
        }
        self.records.append(record)
        self._loss_sum, self._steps, self._examples, self._started = None, 0, 0, None
        return record

    def add_evaluation(
        self, global_step: int, metrics: Mapping[str, float], name: str | None = None
    ) -> Record:
        """Record an evaluation at `global_step`, closing the training counted before it.

        It joins the record of the same step when that one has no evaluation of this name yet.
        """
        self.close_training(global_step)
        prefix = f"{name}_" if name else "val_"
        values = {f"{prefix}{k}": float(v) for k, v in metrics.items() if k != "global_step"}
        last = self.records[-1] if self.records else None
        if last is not None and last["step"] == global_step and not values.keys() & last.keys():
            last.update(values)
            return last
        record: Record = {"step": float(global_step), **values}
        self.records.append(record)
        return record
