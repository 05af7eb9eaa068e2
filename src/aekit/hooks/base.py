"""The Hook interface and what hooks see of a running loop."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from aekit.summary import Recorder

if TYPE_CHECKING:
    from aekit.data.context import EpochEnd
    from aekit.estimator.history import History, Record
    from aekit.estimator.spec import EstimatorSpec, ModeKeys


class RunContext:
    """A running train, evaluate or predict loop, as hooks see it.

    Attributes:
        mode: the loop's ModeKeys.
        network: the torch module the loop runs.
        model_dir: the Estimator's model directory.
        is_chief: whether this process writes files (rank 0 of a job, or alone).
        global_step: training steps taken so far (the loop keeps it current).
        record_summaries: whether the step about to run records summaries; a hook's
            `before_run` may set it to True.
        history: the Estimator's records of losses and metrics (None outside training).
        optimizer: the optimizer of a training loop (None when evaluating or predicting);
            a hook may change its learning rates.
        marks_epochs: whether the training input marks where its epochs end (an
            `EpochStream`: numpy_input_fn, Dataset.repeat, the streams).
        epoch_end: during the checkpoint save at an epoch's end, that `EpochEnd`; else None.
    """

    def __init__(
        self,
        mode: ModeKeys,
        network: torch.nn.Module,
        model_dir: str,
        global_step: int = 0,
        is_chief: bool = True,
        history: History | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        self.mode = mode
        self.network = network
        self.model_dir = model_dir
        self.global_step = global_step
        self.is_chief = is_chief
        self.history = history
        self.optimizer = optimizer
        self.record_summaries = False
        self.marks_epochs = False
        self.epoch_end: EpochEnd | None = None
        self.stop_requested = False
        self.checkpoint_requested = False

    def request_stop(self) -> None:
        """End the loop after the current step."""
        self.stop_requested = True

    def request_checkpoint(self) -> None:
        """Save a checkpoint after the current step, or at the end when asked from `end`
        (training only: a hook that changes the weights at the end asks for one)."""
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

    def begin(self, context: RunContext) -> None:
        """Once, before the hooks' checkpointed state is restored and the loop starts."""

    def after_create_session(self, context: RunContext) -> None:
        """Once, after the checkpoint and the hooks' state are restored, before the first step."""

    def before_run(self, context: RunContext) -> None:
        """Before every step."""

    def after_run(self, context: RunContext, result: StepResult) -> None:
        """After every step."""

    def after_record(self, context: RunContext, record: Record) -> None:
        """When training adds a record to the History (an epoch's losses and metrics).

        Comes at the end of each epoch of an input that marks them (after the evaluation
        that joins the record, if any), after an evaluation that closes a record between
        epochs, or at the end of the train call for steps not yet recorded (then after
        `end`). A hook that changes state a checkpoint keeps calls
        `context.request_checkpoint()`: the step is then saved again.
        """

    def end(self, context: RunContext) -> None:
        """Once, when the loop ends without an error (before training's final checkpoint)."""

    def state_dict(self) -> dict[str, Any] | None:
        """State to keep in checkpoints (None: the hook is stateless)."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what `state_dict` returned when the checkpoint was saved."""


class CheckpointSaverListener:
    """Code run around each checkpoint save of a training loop. Override what you need.

    A listener with `each_epoch = True` gets a save at the end of every epoch of an input
    that marks them (`context.epoch_end` is set during it), as `train_and_evaluate`'s
    evaluation does.
    """

    each_epoch: bool = False

    def begin(self, context: RunContext) -> None:
        """Once, before training starts."""

    def before_save(self, context: RunContext, step: int) -> None:
        """Before a checkpoint for `step` is written."""

    def after_save(self, context: RunContext, step: int, path: Path) -> None:
        """After the checkpoint for `step` was written to `path`."""

    def end(self, context: RunContext, step: int) -> None:
        """Once, after the final checkpoint of a train call."""
