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
    Listeners are told before and after every save. In a data-parallel job every rank
    must save at the same step: the step rule is a schedule all ranks share, while the
    clock and requests are rank 0's, heard only every `decide_every_n_steps` steps (one
    broadcast then, none in between).
    """

    def __init__(
        self,
        save_steps: int | None = None,
        save_secs: float | None = None,
        listeners: Sequence[CheckpointSaverListener] = (),
        decide_every_n_steps: int = 100,
    ) -> None:
        if save_steps is not None and save_steps <= 0:
            raise ConfigError(f"save_steps must be positive, got {save_steps}")
        if save_secs is not None and save_secs <= 0:
            raise ConfigError(f"save_secs must be positive, got {save_secs}")
        self.save_steps = save_steps
        self.save_secs = save_secs
        self.listeners = list(listeners)
        self.decide_every_n_steps = max(1, decide_every_n_steps)
        self._last_saved_step: int | None = None

    def begin(self, estimator: Estimator) -> None:
        for listener in self.listeners:
            listener.begin(estimator)

    def after_create_session(self, context: RunContext) -> None:
        self._last_time = time.monotonic()
        self._last_saved_step = context.global_step

    def after_run(self, context: RunContext, result: StepResult) -> None:
        step = context.global_step
        due = self.save_steps is not None and step % self.save_steps == 0
        if not due and distributed.world_size() == 1:
            due = self._asked(context)
        elif not due and step % self.decide_every_n_steps == 0:
            due = distributed.rank0_says(self._asked(context))
        if due:
            context.checkpoint_requested = False
            self._save(context)

    def _asked(self, context: RunContext) -> bool:
        """Whether this process's clock or a hook asks for a save now."""
        timed_out = (
            self.save_secs is not None and time.monotonic() - self._last_time >= self.save_secs
        )
        return timed_out or context.checkpoint_requested

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
