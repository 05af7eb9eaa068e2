"""Tiny data and a tiny autoencoder model_fn shared by the tests."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

import aekit
from aekit import metrics
from aekit.data import numpy_input_fn
from aekit.hooks import Hook, RunContext, StepResult


def tiny_autoencoder_fn(
    network: nn.Sequential,
    features: torch.Tensor,
    labels: torch.Tensor | None,
    mode: aekit.ModeKeys,
    params: Mapping[str, Any],
) -> aekit.EstimatorSpec:
    """Sigmoid cross-entropy reconstruction, RMSE metric; optional input noise from params."""
    inputs = features
    if mode is aekit.ModeKeys.TRAIN and params.get("noise", 0.0):
        inputs = features + params["noise"] * torch.randn_like(features)
    logits = network(inputs)
    probs = torch.sigmoid(logits)
    if mode is aekit.ModeKeys.PREDICT:
        return aekit.EstimatorSpec(
            mode, predictions={"prediction": probs, "code": network[0](inputs)}
        )
    target = features if labels is None else labels
    loss = nn.functional.binary_cross_entropy_with_logits(logits, target)
    return aekit.EstimatorSpec(
        mode, loss=loss, eval_metric_ops={"rmse": metrics.root_mean_squared_error(target, probs)}
    )


def quiet_estimator(
    model_dir: Path, *, learning_rate: float = 0.01, **config: Any
) -> aekit.Estimator:
    """The tiny autoencoder as an Estimator that neither logs nor writes summaries."""
    settings: dict[str, Any] = {"log_step_count_steps": 0, "save_summary_steps": 0, **config}
    return aekit.Estimator(
        tiny_autoencoder_fn,
        tiny_network(),
        model_dir=model_dir,
        params={"learning_rate": learning_rate},
        config=aekit.RunConfig(**settings),
    )


def tiny_network(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 8))


def tiny_data(n: int = 64) -> torch.Tensor:
    """Random features in [0, 1), the same on every call."""
    generator = torch.Generator().manual_seed(1)
    return torch.rand(n, 8, generator=generator)


def batches(x: torch.Tensor, batch_size: int = 16, epochs: int = 1) -> list[torch.Tensor]:
    """Fixed, ordered batches (a list is a valid input_fn)."""
    return [x[i : i + batch_size] for _ in range(epochs) for i in range(0, len(x), batch_size)]


# Epochs of the tiny data for train_and_evaluate: 64 rows in batches of 16.
ROWS, BATCH = 64, 16
STEPS_PER_EPOCH = ROWS // BATCH


def train_epochs(
    estimator: aekit.Estimator, epochs: int, hooks: list[Hook], verbose: int | str = 0
) -> None:
    """train_and_evaluate with an evaluation per epoch."""
    x = tiny_data(ROWS).numpy()
    aekit.train_and_evaluate(
        estimator,
        aekit.TrainSpec(
            numpy_input_fn(x, batch_size=BATCH, num_epochs=None, seed=0),
            max_steps=epochs * STEPS_PER_EPOCH,
            hooks=hooks,
        ),
        aekit.EvalSpec(
            numpy_input_fn(x, batch_size=BATCH),
            every_n_steps=STEPS_PER_EPOCH,
        ),
        verbose=verbose,
    )


class BatchLosses(Hook):
    """Every step's batch loss, read from the loop's own result."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def after_run(self, context: RunContext, result: StepResult) -> None:
        assert result.loss is not None
        self.losses.append(float(result.loss))
