"""Hooks: code the Estimator runs at fixed points of its loops."""

from aekit.hooks.base import CheckpointSaverListener, Hook, RunContext, StepResult
from aekit.hooks.basic import (
    LoggingHook,
    ParameterTableHook,
    StepCounterHook,
    StopAtStepHook,
    SummarySaverHook,
)
from aekit.hooks.checkpoint_saver import CheckpointSaverHook
from aekit.hooks.cpu_threads import CpuThreadsHook
from aekit.hooks.nan_guard import NanLossGuardHook

__all__ = [
    "CheckpointSaverHook",
    "CheckpointSaverListener",
    "CpuThreadsHook",
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
