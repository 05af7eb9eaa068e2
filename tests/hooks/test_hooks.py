"""The hooks aekit ships, and what the training loop does on its intervals."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import aekit
from aekit.hooks import StopAtStepHook
from aekit.hooks.progress import ProgressBar, ProgressHook
from tiny import tiny_autoencoder_fn, tiny_network


def endless() -> list[torch.Tensor]:
    return [torch.rand(4, 8) for _ in range(50)]


def make(model_dir: Path, **config: object) -> aekit.Estimator:
    return aekit.Estimator(
        tiny_autoencoder_fn,
        tiny_network(),
        model_dir=model_dir,
        config=aekit.RunConfig(**config),  # type: ignore[arg-type]
    )


def test_stop_at_step_needs_exactly_one_bound() -> None:
    with pytest.raises(aekit.ConfigError, match="exactly one"):
        StopAtStepHook()
    with pytest.raises(aekit.ConfigError, match="exactly one"):
        StopAtStepHook(num_steps=1, last_step=2)


def test_stop_at_step_hook_given_by_user(tmp_path: Path) -> None:
    est = make(tmp_path, log_step_count_steps=0)
    est.train(endless, hooks=[StopAtStepHook(num_steps=7)])
    assert est.global_step == 7
    est.train(endless, hooks=[StopAtStepHook(last_step=7)])
    assert est.global_step == 7


def test_logging_hook_logs_loss_and_speed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    est = make(tmp_path, log_step_count_steps=5)
    with caplog.at_level(logging.INFO, logger="aekit"):
        est.train(endless, max_steps=10, verbose=2)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert [line.split(":")[0] for line in lines] == ["step 5", "step 10"]
    assert all("loss = " in line and "examples/sec" in line for line in lines)


def test_progress_bar_draws_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make(tmp_path, log_step_count_steps=0).train(endless, max_steps=4, verbose=1)
    lines = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()
    draws = [line for line in lines if "%" in line]
    assert "100%" in draws[-1] and "4/4" in draws[-1] and "loss=" in draws[-1]
    assert lines[-1].startswith("step 4/4 - ") and "mean loss " in lines[-1]  # the record


def test_one_progress_bar_spans_the_calls_of_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = ProgressBar(total=8, description="epoch 1/2")
    est = make(tmp_path, log_step_count_steps=0)
    est.train(endless, hooks=[ProgressHook(run, interval=0.0)], max_steps=4)
    run.describe("epoch 2/2")
    run.write("epoch 1/2 - loss 0.5")  # a line above the bar, as the command line prints
    est.train(endless, hooks=[ProgressHook(run, interval=0.0)], max_steps=8)
    run.close()
    err = capsys.readouterr().err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("epoch 2/2") and "8/8" in last and "loss=" in last
    assert "epoch 1/2 - loss 0.5" in err


def test_speed_goes_to_tensorboard_every_log_interval(tmp_path: Path) -> None:
    make(tmp_path, log_step_count_steps=3).train(endless, max_steps=6, verbose=0)
    events = EventAccumulator(str(tmp_path / "train"))
    events.Reload()
    steps = events.Scalars("global_step/sec")
    examples = events.Scalars("examples/sec")
    assert [e.step for e in steps] == [3, 6] and [e.step for e in examples] == [3, 6]
    for step, example in zip(steps, examples, strict=True):
        assert step.value > 0 and example.value == pytest.approx(4 * step.value, rel=1e-5)


def test_checkpoints_by_seconds(tmp_path: Path) -> None:
    # A tiny interval is due after every step, so every step saves.
    est = make(tmp_path, save_checkpoints_secs=1e-9, keep_checkpoint_max=0, log_step_count_steps=0)
    est.train(endless, max_steps=3)
    assert sorted(p.name for p in tmp_path.glob("ckpt-*.pt")) == [
        "ckpt-1.pt",
        "ckpt-2.pt",
        "ckpt-3.pt",
    ]
