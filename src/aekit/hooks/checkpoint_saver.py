"""The hook that saves checkpoints on a step or time schedule, with listeners."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aekit.errors import ConfigError
from aekit.estimator import distributed
from aekit.hooks.base import CheckpointSaverListener, Hook, RunContext, StepResult

if TYPE_CHECKING:
    from aekit.estimator.estimator import Estimator


class CheckpointSaverHook(Hook):
    """Saves every `save_steps` steps or `save_secs` seconds, and once at the end.

    Also saves after any step whose hooks called `context.request_checkpoint()`.
    Listeners are told before and after every save.
    """

    def __init__(
        self,
        save_steps: int | None = None,
        save_secs: float | None = None,
        listeners: Sequence[CheckpointSaverListener] = (),
    ) -> None:
        if save_steps is not None and save_steps <= 0:
            raise ConfigError(f"save_steps must be positive, got {save_steps}")
        if save_secs is not None and save_secs <= 0:
            raise ConfigError(f"save_secs must be positive, got {save_secs}")
        self.save_steps = save_steps
        self.save_secs = save_secs
        self.listeners = list(listeners)
        self._last_saved_step: int | None = None

    def begin(self, estimator: Estimator) -> None:
        for listener in self.listeners:
            listener.begin(estimator)

    def after_create_session(self, context: RunContext) -> None:
        self._last_time = time.monotonic()
        self._last_saved_step = context.global_step

    def after_run(self, context: RunContext, result: StepResult) -> None:
        step = context.global_step
        due = (self.save_steps is not None and step % self.save_steps == 0) or (
            self.save_secs is not None and time.monotonic() - self._last_time >= self.save_secs
        )
        # In a job every rank must save at the same step; rank 0's clock and requests decide.
        if distributed.rank0_says(due or context.checkpoint_requested):
            context.checkpoint_requested = False
            self._save(context)

    def end(self, context: RunContext) -> None:
        if distributed.rank0_says(
            self._last_saved_step != context.global_step
            or not context.estimator.latest_checkpoint()
        ):
            self._save(context)
        for listener in self.listeners:
            listener.end(context.estimator, context.global_step)

    def _save(self, context: RunContext) -> None:
        estimator, step = context.estimator, context.global_step
        for listener in self.listeners:
            listener.before_save(estimator, step)
        path = estimator.save_checkpoint()
        self._last_saved_step = step
        self._last_time = time.monotonic()
        for listener in self.listeners:
            listener.after_save(estimator, step, path)
