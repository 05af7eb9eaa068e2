"""NaN loss or NaN weights stop training at the last good checkpoint; clipping survives a spike."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import aekit
from aekit.cli import config, run
from aekit.errors import ConfigError, NanLossError
from aekit.estimator import checkpoint as ckpt
from tiny import tiny_autoencoder_fn, tiny_data, tiny_network


def stream(bad_step: int | None = None, scale: float = float("nan")) -> Iterator[torch.Tensor]:
    """Batches of the tiny data; the batch of step `bad_step` (1-based) is multiplied by `scale`."""
    x = tiny_data(64)
    step = 0
    while True:
        for i in range(0, 64, 16):
            step += 1
            yield x[i : i + 16] * scale if step == bad_step else x[i : i + 16]


def estimator(model_dir: Path, **config: Any) -> aekit.Estimator:
    return aekit.Estimator(
        tiny_autoencoder_fn,
        tiny_network(),
        model_dir=model_dir,
        params={"learning_rate": 0.01},
        config=aekit.RunConfig(log_step_count_steps=0, save_summary_steps=0, **config),
    )


def test_nan_loss_at_step_k_stops_at_the_last_good_checkpoint(tmp_path: Path) -> None:
    est = estimator(tmp_path, save_checkpoints_steps=3)
    with pytest.raises(NanLossError) as info:
        est.train(lambda: stream(bad_step=8), max_steps=20)
    message = str(info.value)
    assert "by step 8" in message and str(tmp_path / "ckpt-6.pt") in message
    assert "\n" not in message and "learning rate" in message
    assert [ckpt.step_of(p) for p in ckpt.list_checkpoints(tmp_path)] == [3, 6]
    state = ckpt.load(tmp_path / "ckpt-6.pt")
    assert all(torch.isfinite(t).all() for t in state["network"].values())
    # The run resumes from that checkpoint once the data are clean.
    again = estimator(tmp_path, save_checkpoints_steps=3)
    again.train(lambda: stream(), max_steps=12)
    assert ckpt.step_of(ckpt.latest_checkpoint(tmp_path) or "") == 12


def nan_gradient_fn(
    network: nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor | None,
    mode: aekit.ModeKeys,
    params: Mapping[str, Any],
) -> aekit.EstimatorSpec:
    """The tiny autoencoder, plus a term whose value is 0 but whose gradient is NaN at step k."""
    spec = tiny_autoencoder_fn(network, features, labels, mode, params)  # type: ignore[arg-type]
    if mode is aekit.ModeKeys.TRAIN and params["step"][0] == params["bad_step"]:
        assert spec.loss is not None
        zero = torch.stack([p.sum() for p in network.parameters()]).sum() * 0.0
        spec = aekit.EstimatorSpec(mode, loss=spec.loss + torch.sqrt(zero))  # d sqrt(0) = inf
    params["step"][0] += 1
    return spec


def test_nan_weights_behind_a_finite_loss_never_reach_a_checkpoint(tmp_path: Path) -> None:
    est = aekit.Estimator(
        nan_gradient_fn,
        tiny_network(),
        model_dir=tmp_path,
        params={"learning_rate": 0.01, "step": [0], "bad_step": 4},  # the 5th step
        config=aekit.RunConfig(
            log_step_count_steps=0, save_summary_steps=0, save_checkpoints_steps=5
        ),
    )
    with pytest.raises(NanLossError, match="weights became NaN or infinite by step 5") as info:
        est.train(lambda: stream(), max_steps=20)
    assert "no checkpoint was written" in str(info.value)
    assert ckpt.list_checkpoints(tmp_path) == []  # ckpt-5 would hold NaN weights


def sgd_estimator(model_dir: Path, clip: float | None) -> aekit.Estimator:
    def mse_fn(
        network: nn.Module,
        features: torch.Tensor,
        labels: torch.Tensor | None,
        mode: aekit.ModeKeys,
        params: Mapping[str, Any],
    ) -> aekit.EstimatorSpec:
        loss = nn.functional.mse_loss(network(features), features)
        return aekit.EstimatorSpec(mode, loss=loss)

    return aekit.Estimator(
        mse_fn,
        tiny_network(),
        optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
        model_dir=model_dir,
        config=aekit.RunConfig(log_step_count_steps=0, save_summary_steps=0, clip_grad_norm=clip),
    )


def test_clipping_survives_an_exploding_batch_that_kills_an_unclipped_run(tmp_path: Path) -> None:
    with pytest.raises(NanLossError):  # the same spike without clipping ruins the weights
        sgd_estimator(tmp_path / "plain", None).train(lambda: stream(10, 1e6), max_steps=60)
    calm = sgd_estimator(tmp_path / "calm", 1.0).train(lambda: stream(), max_steps=60)
    clipped = sgd_estimator(tmp_path / "clipped", 1.0).train(lambda: stream(10, 1e6), max_steps=60)
    assert clipped.global_step == 60
    data = [tiny_data(64)]
    calm_loss = calm.evaluate(data)["loss"]
    clipped_loss = clipped.evaluate(data)["loss"]
    assert clipped_loss < 2 * calm_loss + 0.05, (clipped_loss, calm_loss)


def test_clipping_bounds_the_update(tmp_path: Path) -> None:
    est = sgd_estimator(tmp_path, 0.25)
    before = [p.detach().clone() for p in est.network.parameters()]
    est.train([tiny_data(16) * 100], steps=1)
    moved = torch.cat(
        [(p.detach() - b).flatten() for p, b in zip(est.network.parameters(), before, strict=True)]
    )
    assert moved.norm().item() == pytest.approx(0.1 * 0.25, rel=1e-4)  # lr x clip norm


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), "1", True])
def test_clip_grad_norm_is_validated(value: Any) -> None:
    with pytest.raises(ConfigError, match="clip_grad_norm"):
        aekit.RunConfig(clip_grad_norm=value)


def test_clip_grad_norm_from_the_command_line(tmp_path: Path) -> None:
    resolved = config.resolve("fully_connected", tmp_path, {"clip_grad_norm": 0.5})
    resolved["example_shape"] = [8, 8]
    assert run.build(resolved, tmp_path).config.clip_grad_norm == 0.5
    with pytest.raises(ConfigError, match="clip_grad_norm must be a finite number > 0"):
        config.resolve("fully_connected", tmp_path, {"clip_grad_norm": -2.0})
