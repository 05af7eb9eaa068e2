"""A model_fn's own update (`EstimatorSpec.train_op`) runs; settings it skips are refused."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import aekit
from tiny import tiny_data, tiny_network


def own_update_fn(
    network: nn.Sequential,
    features: torch.Tensor,
    labels: torch.Tensor | None,
    mode: aekit.ModeKeys,
    params: Mapping[str, Any],
) -> aekit.EstimatorSpec:
    """Plain SGD written by hand, counting its calls in params["calls"]."""
    loss = nn.functional.mse_loss(torch.sigmoid(network(features)), features)
    if mode is not aekit.ModeKeys.TRAIN:
        return aekit.EstimatorSpec(mode, loss=loss, predictions={"loss": loss.reshape(1)})

    def step() -> None:
        grads = torch.autograd.grad(loss, list(network.parameters()))
        with torch.no_grad():
            for parameter, grad in zip(network.parameters(), grads, strict=True):
                parameter.sub_(0.5 * grad)
        params["calls"].append(1)

    return aekit.EstimatorSpec(mode, loss=loss, train_op=step)


def estimator(model_dir: Path, **config: Any) -> tuple[aekit.Estimator, list[int]]:
    calls: list[int] = []
    est = aekit.Estimator(
        own_update_fn,
        tiny_network(),
        model_dir=model_dir,
        params={"calls": calls},
        config=aekit.RunConfig(log_step_count_steps=0, save_summary_steps=0, **config),
    )
    return est, calls


def batches() -> list[torch.Tensor]:
    x = tiny_data()
    return [x[i : i + 16] for i in range(0, 64, 16)] * 3


def test_the_train_op_replaces_the_update(tmp_path: Path) -> None:
    est, calls = estimator(tmp_path)
    before = [p.detach().clone() for p in est.network.parameters()]
    est.train(batches, max_steps=6)
    assert len(calls) == 6 and est.global_step == 6
    assert all(not torch.equal(a, b) for a, b in zip(before, est.network.parameters(), strict=True))
    # Adam never stepped: its state is empty, the update was the model_fn's own.
    assert not est.optimizer.state
    assert est.latest_checkpoint() is not None


@pytest.mark.parametrize(
    ("setting", "named"),
    [({"clip_grad_norm": 1.0}, "clip_grad_norm"), ({"precision": "16-mixed"}, "16-mixed")],
)
def test_settings_that_act_inside_the_update_are_refused(
    tmp_path: Path, setting: dict[str, Any], named: str
) -> None:
    est, calls = estimator(tmp_path, **setting)
    before = [p.detach().clone() for p in est.network.parameters()]
    with pytest.raises(aekit.ConfigError, match=f"train_op.*{named}"):
        est.train(batches, max_steps=3)
    assert calls == []  # refused before the model_fn's update ran
    assert all(torch.equal(a, b) for a, b in zip(before, est.network.parameters(), strict=True))
    assert est.latest_checkpoint() is None  # and nothing was saved
