"""The Hook interface and what hooks see of a running loop."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from aekit.summary import Recorder

if TYPE_CHECKING:
    from aekit.estimator.estimator import Estimator
    from aekit.estimator.spec import EstimatorSpec, ModeKeys


class RunContext:
    """A running train, evaluate or predict loop, as hooks see it."""

    def __init__(self, estimator: Estimator, mode: ModeKeys) -> None:
        self.estimator = estimator
        self.mode = mode
        self.stop_requested = False
        self.checkpoint_requested = False
        self.record_summaries = False

    @property
    def global_step(self) -> int:
        """The number of training steps taken so far."""
        return self.estimator.global_step

    def request_stop(self) -> None:
        """End the loop after the current step."""
        self.stop_requested = True

    def request_checkpoint(self) -> None:
        """Ask the checkpoint saver to save after the current step."""
        self.checkpoint_requested = True


@dataclass(frozen=True)
class StepResult:
    """What one step produced. Tensors stay on the device: reading them syncs."""

    spec: EstimatorSpec
    batch_size: int
    loss: torch.Tensor | None = None
    learning_rate: float | None = None
    grad_norm: torch.Tensor | None = None
    recorder: Recorder | None = None


class Hook:
    """Code run at fixed points of a loop. Override what you need; all are no-ops."""

    def begin(self, estimator: Estimator) -> None:
        """Once, before the checkpoint is restored and the loop starts."""

    def after_create_session(self, context: RunContext) -> None:
        """Once, after restoring the checkpoint, before the first step."""

    def before_run(self, context: RunContext) -> None:
        """Before every step."""

    def after_run(self, context: RunContext, result: StepResult) -> None:
        """After every step."""

    def end(self, context: RunContext) -> None:
        """Once, when the loop ends without an error."""

    def state_dict(self) -> dict[str, Any] | None:
        """State to keep in checkpoints (None: the hook is stateless)."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what `state_dict` returned when the checkpoint was saved."""


class CheckpointSaverListener:
    """Code run around each checkpoint save. Override what you need."""

    def begin(self, estimator: Estimator) -> None:
        """Once, before training starts."""

    def before_save(self, estimator: Estimator, step: int) -> None:
        """Before a checkpoint for `step` is written."""

    def after_save(self, estimator: Estimator, step: int, path: Path) -> None:
        """After the checkpoint for `step` was written to `path`."""

    def end(self, estimator: Estimator, step: int) -> None:
        """Once, after the final checkpoint of a train call."""
