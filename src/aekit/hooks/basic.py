"""Built-in hooks for stopping, counting speed, logging and summaries."""

from __future__ import annotations

import logging
import math
import time
import weakref
from typing import TYPE_CHECKING

import torch

from aekit.errors import ConfigError
from aekit.hooks.base import Hook, RunContext, StepResult

if TYPE_CHECKING:
    from aekit.estimator.estimator import Estimator

_log = logging.getLogger("aekit")


def _check_every(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
    return value


class StopAtStepHook(Hook):
    """Stops training after `num_steps` more steps or at global step `last_step`."""

    def __init__(self, num_steps: int | None = None, last_step: int | None = None) -> None:
        if (num_steps is None) == (last_step is None):
            raise ConfigError("StopAtStepHook needs exactly one of num_steps and last_step")
        self._num_steps = num_steps
        self.last_step = last_step

    def after_create_session(self, context: RunContext) -> None:
        if self._num_steps is not None:
            self.last_step = context.global_step + self._num_steps
        if self.last_step is not None and context.global_step >= self.last_step:
            context.request_stop()

    def after_run(self, context: RunContext, result: StepResult) -> None:
        if self.last_step is not None and context.global_step >= self.last_step:
            context.request_stop()


class StepCounterHook(Hook):
    """Measures steps/sec and examples/sec every `every_n_steps` and writes them as summaries."""

    def __init__(self, every_n_steps: int = 100) -> None:
        self.every_n_steps = _check_every("every_n_steps", every_n_steps)
        self.steps_per_sec: float | None = None
        self.examples_per_sec: float | None = None

    def after_create_session(self, context: RunContext) -> None:
        self._start = time.perf_counter()
        self._steps = 0
        self._examples = 0

    def after_run(self, context: RunContext, result: StepResult) -> None:
        self._steps += 1
        self._examples += result.batch_size
        if not self.every_n_steps or context.global_step % self.every_n_steps:
            return
        if result.loss is not None:
            synchronize(result.loss.device)  # time the work, not its launch
        elapsed = time.perf_counter() - self._start
        if elapsed > 0:
            self.steps_per_sec = self._steps / elapsed
            self.examples_per_sec = self._examples / elapsed
            context.estimator.event_writers.write_scalars(
                "train",
                {"global_step/sec": self.steps_per_sec, "examples/sec": self.examples_per_sec},
                context.global_step,
            )
        self.after_create_session(context)


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on `device` (CUDA, XPU, MPS, ...; nothing on the CPU)."""
    if device.type == "cpu":
        return
    # torch.cuda, torch.xpu, torch.mps, ...: each backend module has its own synchronize.
    sync = getattr(getattr(torch, device.type, None), "synchronize", None)
    if callable(sync):
        sync()


class LoggingHook(Hook):
    """Logs the loss (and the speed, given the StepCounterHook) every `every_n_steps`.

    What a run off the terminal shows; on a terminal the Estimator draws a progress bar
    (aekit.hooks.progress) instead.
    """

    def __init__(self, every_n_steps: int = 100, counter: StepCounterHook | None = None) -> None:
        self.every_n_steps = _check_every("every_n_steps", every_n_steps)
        self._counter = counter

    def after_run(self, context: RunContext, result: StepResult) -> None:
        step = context.global_step
        if not self.every_n_steps or step % self.every_n_steps or result.loss is None:
            return
        speed = self._counter.examples_per_sec if self._counter else None
        speed_text = f", {speed:,.0f} examples/sec" if speed else ""
        _log.info("step %d: loss = %.5g%s", step, float(result.loss), speed_text)


class SummarySaverHook(Hook):
    """Records the step's summaries and writes loss, lr and grad norm on summary steps.

    Summary steps are the first, every `save_steps`-th, and `last_step` (the end of a
    `train` call given steps or max_steps, so a short run still shows where it ended).
    """

    def __init__(self, save_steps: int = 100, last_step: int | None = None) -> None:
        self.save_steps = _check_every("save_steps", save_steps)
        self.last_step = last_step

    def before_run(self, context: RunContext) -> None:
        step = context.global_step + 1  # the step about to run
        # A step schedule, the same on every rank of a job: summary steps run the eager
        # step module, and all ranks take the same path; only the writing rank records.
        context.record_summaries = bool(self.save_steps) and (
            step % self.save_steps == 0 or step == 1 or step == self.last_step
        )

    def after_run(self, context: RunContext, result: StepResult) -> None:
        writers = context.estimator.event_writers
        if not context.record_summaries or not writers.enabled:
            return
        scalars: dict[str, float] = {}
        if result.loss is not None:
            scalars["loss"] = float(result.loss)
        if result.learning_rate is not None:
            scalars["learning_rate"] = result.learning_rate
        if result.grad_norm is not None:
            norm = float(result.grad_norm)
            if math.isfinite(norm):
                scalars["global_gradient_norm"] = norm
        writers.write_scalars("train", scalars, context.global_step)
        if result.recorder is not None:
            writers.write_records("train", result.recorder, context.global_step)


# Networks whose table was logged: a network trained in several phases or train calls
# (a stacked autoencoder's pretraining and fine-tuning, an epoch loop) shows it once.
_tabled: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()


class ParameterTableHook(Hook):
    """Logs each parameter's name, shape and size, the total and its size in MB, once a network."""

    def begin(self, estimator: Estimator) -> None:
        if estimator.network not in _tabled:
            _tabled.add(estimator.network)
            _log.info("%s", parameter_table(estimator.network))


def parameter_table(network: torch.nn.Module) -> str:
    """A text table of a network's parameters with the total count and size in MB."""
    rows = [
        (name, "x".join(map(str, p.shape)) or "scalar", p.numel(), p.element_size() * p.numel())
        for name, p in network.named_parameters()
    ]
    width = max((len(r[0]) for r in rows), default=4)
    lines = [f"{'name':<{width}}  {'shape':>14}  {'count':>10}"]
    lines += [f"{name:<{width}}  {shape:>14}  {count:>10,}" for name, shape, count, _ in rows]
    total = sum(r[2] for r in rows)
    megabytes = sum(r[3] for r in rows) / 2**20
    lines.append(f"total: {total:,} parameters, {megabytes:.2f} MB")
    return "\n".join(lines)
