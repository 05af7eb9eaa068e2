"""What `aekit train` shows while it runs: a bar over the whole run and a line per epoch."""

from __future__ import annotations

import logging
import math
import sys
import time

import torch

from aekit.hooks.base import RunContext, StepResult
from aekit.hooks.progress import ProgressBar, ProgressHook

_log = logging.getLogger("aekit")


class EpochProgress(ProgressHook):
    """The epochs of a train-and-evaluate run: summaries at each epoch's end, a line per epoch.

    On a terminal the bar spans the whole run (epoch i/N, percent, ETA, loss, speed);
    `report`, called after each evaluation, prints a Keras-like line ("epoch 3/10 - 4.1 s
    - mean loss 0.105 - val_rmse 0.118 - val_loss 0.101": the epoch's mean training loss,
    then the evaluation's figures) above it, or logs it off the terminal.
    """

    def __init__(self, steps_per_epoch: int, epochs: int, bar: bool | None = None) -> None:
        super().__init__(draws=sys.stderr.isatty() if bar is None else bar)
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self._loss_sum: torch.Tensor | None = None  # kept on the device, read once an epoch
        self._losses = 0
        self._started = time.monotonic()

    def _epoch_of(self, step: int) -> int:
        return min(self.epochs, max(1, math.ceil(step / self.steps_per_epoch)))

    def make_bar(self, context: RunContext) -> ProgressBar:
        epoch = self._epoch_of(context.global_step + 1)
        total = self.steps_per_epoch * self.epochs
        return ProgressBar(total, context.global_step, f"epoch {epoch}/{self.epochs}")

    def after_create_session(self, context: RunContext) -> None:
        super().after_create_session(context)
        self._started = time.monotonic()

    def before_run(self, context: RunContext) -> None:
        if (context.global_step + 1) % self.steps_per_epoch == 0:
            context.record_summaries = True  # TensorBoard sees the end of every epoch

    def after_run(self, context: RunContext, result: StepResult) -> None:
        if result.loss is not None:
            loss = result.loss.detach().float()
            self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
            self._losses += 1
        super().after_run(context, result)

    def report(self, metrics: dict[str, float], step: int) -> None:
        """The line of one epoch's evaluation (EvalSpec.report)."""
        epoch = self._epoch_of(step)
        seconds = time.monotonic() - self._started
        parts = [f"epoch {epoch}/{self.epochs}", f"{seconds:.{2 if seconds < 10 else 1}f} s"]
        if self._loss_sum is not None and self._losses:
            # The mean over the epoch's batches: the step lines' "batch loss" is one batch's.
            parts.append(f"mean loss {float(self._loss_sum) / self._losses:.4g}")
        # Keras' names: the evaluation's figures carry "val_".
        parts += [f"val_{k} {v:.5g}" for k, v in metrics.items() if k != "global_step"]
        if self._bar is not None:
            self._bar.write(" - ".join(parts))
            self._bar.describe(f"epoch {min(epoch + 1, self.epochs)}/{self.epochs}")
        else:
            _log.info("%s", " - ".join(parts))
        self._started, self._loss_sum, self._losses = time.monotonic(), None, 0
