"""Hooks that watch a metric of the History: early stopping and reducing the rate on a plateau.

Both read each record training adds (`Hook.after_record`): one per epoch, holding the
epoch's mean training "loss" and, under `train_and_evaluate` or `Estimator.fit` with
validation data, the evaluation's metrics as "val_<name>". A watched key that the first
record lacks is refused there, naming the keys recorded (Keras only warns, and a stop that
never fires costs whole runs); a later record without it (an evaluation throttled away) is
passed over.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import torch

from aekit.checks import Choice, Integer, Number, Text, check_bool
from aekit.errors import ConfigError
from aekit.hooks.base import Hook, RunContext

_log = logging.getLogger("aekit")

# Metrics that are better when higher, when mode="auto" ("val_accuracy", "val_auroc", ...).
_HIGHER_IS_BETTER = ("acc", "auc", "auroc", "auprc", "precision", "recall", "f1")


class Plateau:
    """The best value of a metric so far and how many values in a row have not beaten it.

    A value beats the best when it is lower (mode "min"; higher for "max") by more than
    `min_delta` plus `relative_delta` times the best's size (0.001: a 0.1% gain, whatever the
    metric's scale). "auto" is "max" for accuracy-like names and "min" otherwise. The one
    tracker of best values: EarlyStopping, ReduceLROnPlateau and EvalSpec.best_metric use it.
    """

    def __init__(
        self,
        monitor: str,
        mode: str = "auto",
        min_delta: float = 0.0,
        relative_delta: float = 0.0,
    ) -> None:
        Text()("monitor", monitor)
        Choice("auto", "min", "max")("mode", mode)
        Number()("min_delta", min_delta)
        Number(most=1)("relative_delta", relative_delta)
        if mode == "auto":
            mode = "max" if any(part in monitor.lower() for part in _HIGHER_IS_BETTER) else "min"
        self.monitor, self.higher, self.min_delta = monitor, mode == "max", float(min_delta)
        self.relative_delta = float(relative_delta)
        self.best = -math.inf if self.higher else math.inf
        self.best_step: int | None = None
        self.waited = 0
        self.seen = False  # whether a record held the monitored key

    def value_of(self, record: Mapping[str, float], watcher: str) -> float | None:
        """The watched value of `record`; None to pass it over; refused if nothing records it."""
        if self.monitor in record:
            self.seen = True
            return record[self.monitor]
        if self.seen:
            return None  # the key is recorded, only not this time (a throttled evaluation)
        keys = ", ".join(sorted(record))
        if any(key.startswith("val_") for key in record) or not self.monitor.startswith("val_"):
            fix = "monitor one of them"
        else:
            fix = (
                "give data to evaluate on (train_and_evaluate with an EvalSpec, or "
                "fit(validation_data=...)), or monitor 'loss'"
            )
        raise ConfigError(
            f"{watcher}: monitor={self.monitor!r} is not among the keys training records "
            f"({keys}); {fix}"
        )

    def update(self, value: float, step: int) -> bool:
        """Take a new value; whether it is the new best."""
        gain = value - self.best if self.higher else self.best - value
        share = self.relative_delta * abs(self.best) if math.isfinite(self.best) else 0.0
        needed = self.min_delta + share
        if math.isfinite(value) and gain > needed:
            self.best, self.best_step, self.waited = value, step, 0
            return True
        self.waited += 1
        return False

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps (so a resumed run goes on counting)."""
        return {
            "monitor": self.monitor,
            "best": self.best,
            "best_step": self.best_step,
            "waited": self.waited,
            "seen": self.seen,
        }

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Take back `state_dict`'s values; False for a watch of another key (it starts afresh)."""
        if state.get("monitor", self.monitor) != self.monitor:
            return False
        self.best, self.best_step, self.waited = state["best"], state["best_step"], state["waited"]
        self.seen = bool(state.get("seen", True))  # older checkpoints: it was recorded
        return True


class EarlyStopping(Hook):
    """Stops training once `monitor` has not improved for `patience` records (epochs).

    With `restore_best_weights`, the network ends with the weights of the best record and
    the final checkpoint holds them: when it stops, or at the end of training when the best
    record was not the last. The best weights go into the checkpoints with the counters, so
    a run resumed after a crash stops and restores as the uninterrupted one would.

    Args:
        monitor: the record's key to watch, e.g. "val_loss" or "val_rmse".
        patience: epochs in a row without improvement before stopping (0: the first).
        min_delta: how much a value must beat the best by to count as an improvement.
        mode: "min", "max", or "auto" (from the name).
        restore_best_weights: end with the best record's weights.
        relative_delta: the improvement must also exceed this share of the best value
            (0.001: 0.1%, whatever the metric's scale).
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 3,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best_weights: bool = True,
        relative_delta: float = 0.0,
    ) -> None:
        Integer(0)("patience", patience)
        self.plateau = Plateau(monitor, mode, min_delta, relative_delta)
        self.patience = patience
        self.restore_best_weights = check_bool("restore_best_weights", restore_best_weights)
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.stopped_step: int | None = None

    def after_record(self, context: RunContext, record: dict[str, float]) -> None:
        value = self.plateau.value_of(record, "EarlyStopping")
        if value is None or self.stopped_step is not None:
            return
        context.request_checkpoint()  # the counters below change: the checkpoint keeps them
        if self.plateau.update(value, context.global_step):
            if self.restore_best_weights:
                self.best_weights = _copy(context.network)
            return
        if self.plateau.waited >= self.patience:
            self.stopped_step = context.global_step
            _log.info(
                "early stopping at step %d: %s has not improved on %.5g (step %s) for %d records",
                context.global_step,
                self.plateau.monitor,
                self.plateau.best,
                self.plateau.best_step,
                self.plateau.waited,
            )
            context.request_stop()
            self._restore(context)

    def end(self, context: RunContext) -> None:
        if self.stopped_step is None:  # the run ended by itself: the best may be earlier
            self._restore(context)

    def _restore(self, context: RunContext) -> None:
        best_step = self.plateau.best_step
        if not self.restore_best_weights or best_step in (None, context.global_step):
            return
        if self.best_weights is None:  # a checkpoint written without them
            _log.info(
                "the best %s was at step %s, whose weights the checkpoint lacks; keeping step %d's",
                self.plateau.monitor,
                best_step,
                context.global_step,
            )
            return
        context.network.load_state_dict(self.best_weights)
        context.request_checkpoint()  # the last checkpoint holds the weights kept
        _log.info("restored the weights of step %s (%s %.5g)", best_step, self.plateau.monitor,
                  self.plateau.best)  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        state = self.plateau.state_dict()
        if self.best_weights is not None:
            state["best_weights"] = self.best_weights
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not self.plateau.load_state_dict(state):
            return  # another key's watch: this one starts afresh
        weights = state.get("best_weights")
        self.best_weights = dict(weights) if weights is not None else None


class ReduceLROnPlateau(Hook):
    """Multiplies the learning rates by `factor` once `monitor` has stalled for `patience` records.

    After a reduction it waits `cooldown` records before counting again, and never goes
    below `min_lr`. The rates live in the optimizer, so checkpoints keep them. Not for use
    with an `lr_scheduler` that sets the rates itself every step.

    Args:
        monitor: the record's key to watch, e.g. "val_loss".
        factor: the multiplier, in (0, 1).
        patience: records in a row without improvement before reducing.
        min_delta: how much a value must beat the best by to count as an improvement.
        cooldown: records to skip after a reduction.
        min_lr: the lowest rate.
        mode: "min", "max", or "auto" (from the name).
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
        mode: str = "auto",
    ) -> None:
        if not (Number(positive=True)("factor", factor) < 1):
            raise ConfigError(f"factor must be below 1 (a reduction), got {factor!r}")
        Integer(0)("patience", patience)
        Integer(0)("cooldown", cooldown)
        Number()("min_lr", min_lr)
        self.plateau = Plateau(monitor, mode, min_delta)
        self.factor, self.patience, self.cooldown, self.min_lr = factor, patience, cooldown, min_lr
        self.cooling = 0

    def after_record(self, context: RunContext, record: dict[str, float]) -> None:
        value = self.plateau.value_of(record, "ReduceLROnPlateau")
        if value is None:
            return
        if context.optimizer is None:
            raise ConfigError("ReduceLROnPlateau works in training: give it to train()")
        context.request_checkpoint()  # the counters (and maybe the rates) change
        if self.cooling:
            self.cooling -= 1
            self.plateau.update(value, context.global_step)
            self.plateau.waited = 0
            return
        if self.plateau.update(value, context.global_step) or self.plateau.waited < self.patience:
            return
        for group in context.optimizer.param_groups:
            old = float(group["lr"])
            group["lr"] = max(old * self.factor, self.min_lr)
        _log.info(
            "%s has not improved for %d records: learning rate now %.3g at step %d",
            self.plateau.monitor,
            self.plateau.waited,
            context.optimizer.param_groups[0]["lr"],
            context.global_step,
        )
        self.plateau.waited, self.cooling = 0, self.cooldown

    def state_dict(self) -> dict[str, Any]:
        return {**self.plateau.state_dict(), "cooling": self.cooling}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.plateau.load_state_dict(state):
            self.cooling = state["cooling"]


def _copy(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in network.state_dict().items()}
