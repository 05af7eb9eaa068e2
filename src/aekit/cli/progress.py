"""What `aekit train` shows while it runs: a bar over the whole run and a line per epoch."""

from __future__ import annotations

import logging
import math
import sys

from aekit.estimator.feedback import describe
from aekit.hooks.base import RunContext
from aekit.hooks.progress import ProgressBar, ProgressHook

_log = logging.getLogger("aekit")


class EpochProgress(ProgressHook):
    """The epochs of a train-and-evaluate run: summaries at each epoch's end, a line per epoch.

    On a terminal the bar spans the whole run (epoch i/N, percent, ETA, loss, speed); each
    epoch's record of the History (`after_record`) prints as a Keras-like line ("epoch 3/10
    - 4.1 s - mean loss 0.105 - val_rmse 0.118 - val_loss 0.101": the epoch's mean training
    loss, then the evaluation's figures) above it, or is logged off the terminal.
    """

    def __init__(self, steps_per_epoch: int, epochs: int, bar: bool | None = None) -> None:
        super().__init__(draws=sys.stderr.isatty() if bar is None else bar)
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs

    def _epoch_of(self, step: float) -> int:
        return min(self.epochs, max(1, math.ceil(step / self.steps_per_epoch)))

    def make_bar(self, context: RunContext) -> ProgressBar:
        epoch = self._epoch_of(context.global_step + 1)
        total = self.steps_per_epoch * self.epochs
        return ProgressBar(total, context.global_step, f"epoch {epoch}/{self.epochs}")

    def before_run(self, context: RunContext) -> None:
        if (context.global_step + 1) % self.steps_per_epoch == 0:
            context.record_summaries = True  # TensorBoard sees the end of every epoch

    def after_record(self, context: RunContext, record: dict[str, float]) -> None:
        if not context.is_chief:
            return
        epoch = int(record["epoch"]) + 1 if "epoch" in record else self._epoch_of(record["step"])
        line = describe(record, f"epoch {epoch}/{self.epochs}")
        if self._bar is not None:
            self._bar.write(line)
            self._bar.describe(f"epoch {min(epoch + 1, self.epochs)}/{self.epochs}")
        else:
            _log.info("%s", line)
