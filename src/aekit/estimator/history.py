"""History: a run's training losses and evaluation metrics, one record per epoch, as numbers.

A record closes when an evaluation runs during or after training, or when a train call
ends with steps not yet recorded. Training one epoch per call, or `train_and_evaluate`
with `EvalSpec(every_n_steps=steps_per_epoch)`, gives one record per epoch; a record holds
"step" (the global step), "steps" and "seconds" (the training since the previous record),
"loss" (the mean batch loss of those steps) and the evaluation's metrics prefixed "val_"
(or "<name>_" for a named evaluation), as Keras names them.
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
        self._started: float | None = None

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

    def add_loss(self, loss: torch.Tensor) -> None:
        """Count one training step's loss (stays on the device: no sync)."""
        if self._started is None:
            self._started = time.monotonic()
        loss = loss.detach().to(torch.float64)
        self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
        self._steps += 1

    def close_training(self, global_step: int) -> Record | None:
        """Turn the steps counted since the last record into a record (None: there were none)."""
        if not self._steps or self._loss_sum is None or self._started is None:
            return None
        record: Record = {
            "step": float(global_step),
            "steps": float(self._steps),
            "seconds": time.monotonic() - self._started,
            "loss": float(self._loss_sum) / self._steps,
        }
        self.records.append(record)
        self._loss_sum, self._steps, self._started = None, 0, None
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
