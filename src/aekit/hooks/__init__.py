"""Hooks: code the Estimator runs at fixed points of its loops (the user's extension point).

The loop itself saves, logs, writes summaries, checks for NaN and stops
(aekit.estimator.loop); hooks add to that.
"""

from aekit.hooks.base import CheckpointSaverListener, Hook, RunContext, StepResult
from aekit.hooks.basic import StopAtStepHook
from aekit.hooks.csv_logger import CSVLogger
from aekit.hooks.monitors import EarlyStopping, ReduceLROnPlateau
from aekit.hooks.progress import ProgressBar, ProgressHook

__all__ = [
    "CSVLogger",
    "CheckpointSaverListener",
    "EarlyStopping",
    "Hook",
    "ProgressBar",
    "ProgressHook",
    "ReduceLROnPlateau",
    "RunContext",
    "StepResult",
    "StopAtStepHook",
]
