"""Hooks for a user's loop control."""

from __future__ import annotations

from aekit.checks import Integer
from aekit.errors import ConfigError
from aekit.hooks.base import Hook, RunContext, StepResult


class StopAtStepHook(Hook):
    """Stops training after `num_steps` more steps or at global step `last_step`."""

    def __init__(self, num_steps: int | None = None, last_step: int | None = None) -> None:
        if (num_steps is None) == (last_step is None):
            raise ConfigError("StopAtStepHook needs exactly one of num_steps and last_step")
        self._num_steps = None if num_steps is None else Integer(1)("num_steps", num_steps)
        self.last_step = None if last_step is None else Integer(0)("last_step", last_step)

    def after_create_session(self, context: RunContext) -> None:
        if self._num_steps is not None:
            self.last_step = context.global_step + self._num_steps
        if self.last_step is not None and context.global_step >= self.last_step:
            context.request_stop()

    def after_run(self, context: RunContext, result: StepResult) -> None:
        if self.last_step is not None and context.global_step >= self.last_step:
            context.request_stop()
