"""ModeKeys and EstimatorSpec: what a model_fn returns for each mode."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from aekit.errors import SpecError
from aekit.metrics import MetricUpdate
from aekit.modes import ModeKeys

__all__ = ["EstimatorSpec", "ModeKeys", "check_spec"]


Predictions = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class EstimatorSpec:
    """The result of one model_fn call.

    Attributes:
        mode: the mode the model_fn was called in.
        predictions: a tensor or a dict of tensors whose first dimension is the batch
            (required in PREDICT). A bare tensor is stored under the key "predictions".
        loss: scalar tensor (required in TRAIN and EVAL). In TRAIN it is minimised.
        train_op: optional callable that replaces the Estimator's own step
            (zero_grad, backward, optimizer.step) for models that update themselves.
        eval_metric_ops: per-batch metric updates from `aekit.metrics`, aggregated by
            the Estimator over the whole evaluation.
    """

    mode: ModeKeys
    predictions: Predictions | None = None
    loss: torch.Tensor | None = None
    train_op: Callable[[], Any] | None = None
    eval_metric_ops: Mapping[str, MetricUpdate] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            mode = ModeKeys(self.mode)
        except ValueError:
            raise SpecError(
                f"EstimatorSpec.mode must be one of {[m.value for m in ModeKeys]}, "
                f"got {self.mode!r}; pass the mode the model_fn received"
            ) from None
        object.__setattr__(self, "mode", mode)
        if isinstance(self.predictions, torch.Tensor):
            object.__setattr__(self, "predictions", {"predictions": self.predictions})
        if mode in (ModeKeys.TRAIN, ModeKeys.EVAL):
            self._check_loss(mode)
        if mode is ModeKeys.PREDICT and not self.predictions:
            raise SpecError(
                "EstimatorSpec in PREDICT mode needs predictions; return "
                "EstimatorSpec(mode, predictions={'name': tensor})"
            )
        for name, update in self.eval_metric_ops.items():
            if not isinstance(update, MetricUpdate):
                raise SpecError(
                    f"eval_metric_ops[{name!r}] is a {type(update).__name__}; build it "
                    "with a function of aekit.metrics (e.g. metrics.mean(values))"
                )

    def _check_loss(self, mode: ModeKeys) -> None:
        loss = self.loss
        if loss is None:
            raise SpecError(
                f"EstimatorSpec in {mode.name} mode needs a loss; return "
                "EstimatorSpec(mode, loss=scalar_tensor, ...)"
            )
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise SpecError(
                f"EstimatorSpec.loss must be a scalar tensor, got {shape}; reduce it, "
                "e.g. with .mean()"
            )
        if mode is ModeKeys.TRAIN and self.train_op is None and not loss.requires_grad:
            raise SpecError(
                "EstimatorSpec.loss in TRAIN mode does not require grad, so nothing can "
                "be trained; compute it from the network's outputs (not under no_grad)"
            )


def check_spec(spec: Any, mode: ModeKeys) -> EstimatorSpec:
    """`spec` if it is an EstimatorSpec of `mode`, else a SpecError saying what went wrong."""
    if not isinstance(spec, EstimatorSpec):
        raise SpecError(
            f"model_fn returned a {type(spec).__name__}; it must return aekit.EstimatorSpec"
        )
    if spec.mode is not mode:
        raise SpecError(
            f"model_fn was called in {mode.name} mode but returned a {spec.mode.name} spec"
        )
    return spec
