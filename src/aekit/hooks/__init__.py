"""Hooks: code the Estimator runs at fixed points of its loops."""

from aekit.hooks.base import CheckpointSaverListener, Hook, RunContext, StepResult
from aekit.hooks.basic import (
    LoggingHook,
    NanLossGuardHook,
    ParameterTableHook,
    StepCounterHook,
    StopAtStepHook,
    SummarySaverHook,
)
from aekit.hooks.checkpoint_saver import CheckpointSaverHook

__all__ = [
    "CheckpointSaverHook",
    "CheckpointSaverListener",
    "Hook",
    "LoggingHook",
    "NanLossGuardHook",
    "ParameterTableHook",
    "RunContext",
    "StepCounterHook",
    "StepResult",
    "StopAtStepHook",
    "SummarySaverHook",
]
