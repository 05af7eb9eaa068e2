"""A self-contained run of the engine: a small autoencoder on the bundled 8x8 digits."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from aekit import metrics
from aekit.estimator import (
    Estimator,
    EstimatorSpec,
    EvalSpec,
    ModeKeys,
    RunConfig,
    TrainSpec,
    train_and_evaluate,
)


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 8x8 digits as float pixels in [0, 1] (train, test split 80/20)."""
    from sklearn.datasets import load_digits

    x = torch.from_numpy(load_digits().data).float() / 16.0
    cut = int(len(x) * 0.8)
    return x[:cut], x[cut:]


def autoencoder_fn(
    network: nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor | None,
    mode: ModeKeys,
    params: Mapping[str, Any],
) -> EstimatorSpec:
    """Reconstruct the features with a sigmoid cross-entropy loss."""
    logits = network(features)
    probs = torch.sigmoid(logits)
    if mode is ModeKeys.PREDICT:
        return EstimatorSpec(mode, predictions={"prediction": probs})
    target = features if labels is None else labels
    loss = nn.functional.binary_cross_entropy_with_logits(logits, target)
    return EstimatorSpec(
        mode,
        loss=loss,
        eval_metric_ops={"rmse": metrics.root_mean_squared_error(target, probs)},
    )


def _batches(x: torch.Tensor, batch_size: int, shuffle: bool) -> Iterator[torch.Tensor]:
    while True:
        order = torch.randperm(len(x)) if shuffle else torch.arange(len(x))
        for start in range(0, len(x), batch_size):
            yield x[order[start : start + batch_size]]
        if not shuffle:
            return


def run_demo(model_dir: str, steps: int = 600, seed: int = 0) -> dict[str, float]:
    """Train and evaluate; rerunning on the same model_dir resumes up to `steps`."""
    torch.manual_seed(seed)
    train_x, test_x = digits()
    network = nn.Sequential(
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, 16),
        nn.ReLU(),
        nn.Linear(16, 32),
        nn.ReLU(),
        nn.Linear(32, 64),
    )
    estimator = Estimator(
        autoencoder_fn,
        network,
        params={"learning_rate": 3e-3},
        config=RunConfig(
            model_dir=model_dir,
            random_seed=seed,
            save_checkpoints_steps=200,
            log_step_count_steps=100,
        ),
    )
    return train_and_evaluate(
        estimator,
        TrainSpec(lambda: _batches(train_x, 64, shuffle=True), max_steps=steps),
        EvalSpec(lambda: _batches(test_x, 256, shuffle=False), best_metric="rmse"),
    )
