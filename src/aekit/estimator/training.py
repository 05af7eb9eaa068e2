"""TrainSpec, EvalSpec and train_and_evaluate: train, evaluating after checkpoints."""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aekit.checks import Choice
from aekit.errors import ConfigError
from aekit.estimator import checkpoint as ckpt
from aekit.estimator.inputs import InputFn
from aekit.files import atomic_write, atomic_write_text
from aekit.hooks.base import CheckpointSaverListener, Hook, RunContext, StepResult
from aekit.hooks.monitors import Plateau

if TYPE_CHECKING:  # the Estimator is handed in: it calls train_and_evaluate from fit
    from aekit.estimator.estimator import Estimator

_log = logging.getLogger("aekit")


@dataclass(frozen=True)
class TrainSpec:
    """What to train on, for how long (None: until the input ends), with which hooks."""

    input_fn: InputFn
    max_steps: int | None = None
    hooks: Sequence[Hook] = ()
    saving_listeners: Sequence[CheckpointSaverListener] = ()


@dataclass(frozen=True)
class EvalSpec:
    """What to evaluate on, and when.

    By default once an epoch, at its end, when the training input marks its epochs
    (`numpy_input_fn`, `Dataset.repeat`, the streams): each epoch's record of
    `estimator.history` then holds its evaluation ("val_<metric>"). `every_n_steps`
    evaluates every that many steps instead. For an input that does not mark epochs (a
    generator), evaluation follows the checkpoint saves (TensorFlow's schedule). Either
    way, evaluations are `throttle_secs` apart at least, and one runs at the end. With
    `best_metric`, the checkpoint with the best value is copied to `model_dir/best/`;
    `best_mode` says whether lower ("min") or higher ("max") is better, and "auto" guesses
    from the name, as `EarlyStopping`'s `mode` does (accuracy-like names: higher).
    """

    input_fn: InputFn
    steps: int | None = None
    name: str | None = None
    hooks: Sequence[Hook] = ()
    every_n_steps: int | None = None
    throttle_secs: float = 0.0
    best_metric: str | None = None
    best_mode: str = "auto"

    def __post_init__(self) -> None:
        if self.every_n_steps is not None and self.every_n_steps <= 0:
            raise ConfigError(f"EvalSpec.every_n_steps must be positive, got {self.every_n_steps}")
        if self.throttle_secs < 0:
            raise ConfigError(f"EvalSpec.throttle_secs must be >= 0, got {self.throttle_secs}")
        Choice("auto", "min", "max")("EvalSpec.best_mode", self.best_mode)


def train_and_evaluate(
    estimator: Estimator, train_spec: TrainSpec, eval_spec: EvalSpec, verbose: int | str = "auto"
) -> dict[str, float]:
    """Train per `train_spec`, evaluating per `eval_spec`; returns the last evaluation.

    With an input that marks its epochs and a default EvalSpec, it evaluates at the end
    of every epoch, into that epoch's record of `estimator.history`; `verbose` as
    `Estimator.train`'s.
    """
    evaluator = _EvaluateAfterSave(estimator, eval_spec)
    hooks = list(train_spec.hooks)
    if eval_spec.every_n_steps is not None:
        hooks.append(_CheckpointEveryNSteps(eval_spec.every_n_steps))
    estimator.train(
        train_spec.input_fn,
        hooks=hooks,
        max_steps=train_spec.max_steps,
        saving_listeners=[*train_spec.saving_listeners, evaluator],
        verbose=verbose,
    )
    if evaluator.last_result is None:  # nothing left to train: evaluate what is there
        evaluator.evaluate()
    assert evaluator.last_result is not None
    return evaluator.last_result


class _CheckpointEveryNSteps(Hook):
    def __init__(self, every_n_steps: int) -> None:
        self.every_n_steps = every_n_steps

    def after_run(self, context: RunContext, result: StepResult) -> None:
        if context.global_step % self.every_n_steps == 0:
            context.request_checkpoint()


class _EvaluateAfterSave(CheckpointSaverListener):
    def __init__(self, estimator: Estimator, spec: EvalSpec) -> None:
        self.estimator = estimator
        self.spec = spec
        self.each_epoch = spec.every_n_steps is None
        self.last_result: dict[str, float] | None = None
        self._last_time = -math.inf
        self._last_step: int | None = None

    def after_save(self, context: RunContext, step: int, path: Path) -> None:
        if self.each_epoch and context.marks_epochs and context.epoch_end is None:
            return  # a save within an epoch: the evaluation comes at the epoch's end
        if time.monotonic() - self._last_time >= self.spec.throttle_secs:
            self.evaluate(path)

    def end(self, context: RunContext, step: int) -> None:
        if self._last_step != step:
            self.evaluate()

    def evaluate(self, path: Path | None = None) -> None:
        spec, estimator = self.spec, self.estimator
        result = estimator.evaluate(
            spec.input_fn, steps=spec.steps, hooks=spec.hooks, name=spec.name
        )
        self.last_result = result
        self._last_time = time.monotonic()
        self._last_step = estimator.global_step
        if not estimator.strategy.is_chief:  # every rank has the same figures; rank 0 reports
            return
        _log.debug(
            "evaluation at step %d: %s",
            estimator.global_step,
            ", ".join(f"{k} = {v:.5g}" for k, v in result.items() if k != "global_step"),
        )
        if spec.best_metric is not None:
            _export_if_best(estimator, spec, result, path or estimator.latest_checkpoint())


def _export_if_best(
    estimator: Estimator, spec: EvalSpec, result: dict[str, float], path: Path | None
) -> None:
    metric = spec.best_metric
    assert metric is not None
    if metric not in result:
        raise ConfigError(
            f"EvalSpec.best_metric={metric!r} is not among the metrics {sorted(result)}"
        )
    if path is None:
        return
    best_dir = Path(estimator.model_dir) / "best"
    record = best_dir / "best.json"
    value = result[metric]
    best = Plateau(metric, spec.best_mode)  # the one tracker of best values
    if record.is_file():
        best.update(json.loads(record.read_text())["metrics"][metric], step=0)
    if not best.update(value, estimator.global_step):
        return
    best_dir.mkdir(parents=True, exist_ok=True)
    target = best_dir / path.name
    with open(path, "rb") as source:
        atomic_write(target, lambda f: shutil.copyfileobj(source, f))
    atomic_write_text(
        record,
        json.dumps({"checkpoint": target.name, "metric": metric, "metrics": result}, indent=2),
    )
    for old in ckpt.list_checkpoints(best_dir):
        if old != target:
            old.unlink(missing_ok=True)
    _log.info(
        "new best %s = %.5g at step %d, copied to %s", metric, value, estimator.global_step, target
    )
