"""The History a training run keeps, what `verbose` prints, and a call with nothing to do."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import aekit
from tiny import (
    BATCH,
    ROWS,
    STEPS_PER_EPOCH,
    BatchLosses,
    quiet_estimator,
    tiny_data,
    train_epochs,
)


def test_one_record_per_epoch_with_the_losses_and_metrics_the_run_saw(tmp_path: Path) -> None:
    est = quiet_estimator(tmp_path, save_summary_steps=100)
    losses = BatchLosses()
    train_epochs(est, 3, [losses])
    records = est.history.records
    assert [r["step"] for r in records] == [4, 8, 12]
    events = EventAccumulator(str(tmp_path / "eval"))  # what the evaluations wrote
    events.Reload()
    for key in ("loss", "rmse"):
        logged = [e.value for e in events.Scalars(key)]
        assert logged == pytest.approx(est.history.history[f"val_{key}"], rel=1e-6)
    for epoch, record in enumerate(records):
        batch = losses.losses[epoch * STEPS_PER_EPOCH : (epoch + 1) * STEPS_PER_EPOCH]
        assert record["loss"] == pytest.approx(np.mean(batch), rel=1e-6)
        assert record["steps"] == STEPS_PER_EPOCH and record["seconds"] > 0


def test_train_calls_and_evaluations_make_records_in_order(tmp_path: Path) -> None:
    est = quiet_estimator(tmp_path)
    x = tiny_data(ROWS)
    batches = lambda: (x[i : i + BATCH] for i in range(0, ROWS, BATCH))  # noqa: E731
    for _ in range(2):  # an epoch per call, then an evaluation: one record per epoch
        est.train(batches, verbose=0)
        est.evaluate(batches)
    est.evaluate(batches, name="again")  # another evaluation of the same step joins it
    est.train(batches, verbose=0)  # steps without an evaluation close at the call's end
    keys = [sorted(r) for r in est.history]
    assert [r["step"] for r in est.history] == [4, 8, 12]
    assert "val_loss" in keys[0] and "again_loss" in keys[1] and "val_loss" not in keys[2]
    assert math.isnan(est.history.history["again_rmse"][0])


def test_verbose_prints_a_line_per_record_and_nothing_when_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    est = quiet_estimator(tmp_path / "lines")
    train_epochs(est, 2, [], verbose=2)
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["Epoch 1", "Epoch 2"]  # endless input
    assert all("mean loss " in line and "val_rmse " in line for line in lines)
    train_epochs(quiet_estimator(tmp_path / "quiet"), 2, [], verbose=0)
    assert capsys.readouterr().err == ""
    for bad in (3, -1, True, "loud"):
        with pytest.raises(aekit.ConfigError, match="verbose must be 0"):
            est.train(lambda: [], verbose=bad)


def test_a_call_with_nothing_to_train_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    est = quiet_estimator(tmp_path)
    endless = lambda: (torch.rand(4, 8) for _ in range(100))  # noqa: E731
    est.train(endless, max_steps=5, verbose=0)
    capsys.readouterr()
    est.train(endless, max_steps=5, verbose=2)
    said = capsys.readouterr().err.strip()
    assert said.startswith("nothing to train:") and str(tmp_path) in said
    assert "step 5" in said and "max_steps" in said and "\n" not in said
    with caplog.at_level(logging.DEBUG, logger="aekit"):  # quiet: a debug line, no print
        quiet_estimator(tmp_path).train(endless, max_steps=3, verbose=0)
    said_quietly = [r for r in caplog.records if r.getMessage().startswith("nothing to train")]
    assert [r.levelno for r in said_quietly] == [logging.DEBUG]
    assert capsys.readouterr().err == ""
    assert est.global_step == 5
