"""train_and_evaluate: the Experiment schedule and best-checkpoint export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import aekit
from aekit.estimator import checkpoint as ckpt
from aekit.hooks import CheckpointSaverListener
from tiny import batches, quiet_estimator, tiny_data


def make(model_dir: Path, **config: Any) -> aekit.Estimator:
    return quiet_estimator(model_dir, learning_rate=0.05, keep_checkpoint_max=0, **config)


class Steps(CheckpointSaverListener):
    def __init__(self) -> None:
        self.saved: list[int] = []

    def after_save(self, context: aekit.hooks.RunContext, step: int, path: Path) -> None:
        self.saved.append(step)


def test_evaluates_every_n_steps_and_at_the_end(tmp_path: Path) -> None:
    x = tiny_data()
    evaluated: list[int] = []

    class Record(aekit.hooks.Hook):
        def end(self, context: aekit.hooks.RunContext) -> None:
            evaluated.append(context.global_step)

    est = make(tmp_path)
    result = aekit.train_and_evaluate(
        est,
        aekit.TrainSpec(lambda: batches(x, 8, epochs=3), max_steps=20),
        aekit.EvalSpec(lambda: batches(x, 32), every_n_steps=8, hooks=[Record()]),
    )
    assert evaluated == [8, 16, 20]
    assert result["global_step"] == 20
    assert [ckpt.step_of(p) for p in ckpt.list_checkpoints(tmp_path)] == [8, 16, 20]


def test_rerun_after_max_steps_only_evaluates(tmp_path: Path) -> None:
    x = tiny_data()
    spec = aekit.TrainSpec(lambda: batches(x, 8, epochs=3), max_steps=5)
    first = aekit.train_and_evaluate(make(tmp_path), spec, aekit.EvalSpec(lambda: [x]))
    again = aekit.train_and_evaluate(make(tmp_path), spec, aekit.EvalSpec(lambda: [x]))
    assert again == pytest.approx(first)


@pytest.mark.parametrize("mode", ["auto", "max"])
def test_the_best_checkpoint_is_exported_by_its_mode(tmp_path: Path, mode: str) -> None:
    # "auto" reads rmse as lower is better; "max" keeps the worst, as EarlyStopping's mode.
    x = tiny_data()
    est = make(tmp_path)
    aekit.train_and_evaluate(
        est,
        aekit.TrainSpec(lambda: batches(x, 8, epochs=4), max_steps=32),
        aekit.EvalSpec(lambda: [x], every_n_steps=8, best_metric="rmse", best_mode=mode),
    )
    record = json.loads((tmp_path / "best" / "best.json").read_text())
    best = tmp_path / "best" / record["checkpoint"]
    assert best.is_file() and len(ckpt.list_checkpoints(tmp_path / "best")) == 1
    rmse_of_best = est.evaluate([x], checkpoint_path=best)["rmse"]
    assert rmse_of_best == pytest.approx(record["metrics"]["rmse"])
    every = [est.evaluate([x], checkpoint_path=p)["rmse"] for p in ckpt.list_checkpoints(tmp_path)]
    chosen = min if mode == "auto" else max
    assert rmse_of_best == pytest.approx(chosen(every)) and min(every) < max(every)
    with pytest.raises(aekit.ConfigError, match="best_mode must be one of"):
        aekit.EvalSpec(lambda: [x], best_metric="rmse", best_mode="lower")


def test_unknown_best_metric_is_refused(tmp_path: Path) -> None:
    x = tiny_data()
    with pytest.raises(aekit.ConfigError, match="best_metric='acc'"):
        aekit.train_and_evaluate(
            make(tmp_path),
            aekit.TrainSpec(lambda: batches(x, 8), max_steps=2),
            aekit.EvalSpec(lambda: [x], best_metric="acc"),
        )


def test_eval_spec_validation() -> None:
    with pytest.raises(aekit.ConfigError, match="every_n_steps"):
        aekit.EvalSpec(lambda: [], every_n_steps=0)
    with pytest.raises(aekit.ConfigError, match="throttle_secs"):
        aekit.EvalSpec(lambda: [], throttle_secs=-1)


def test_saving_listeners_hear_every_save(tmp_path: Path) -> None:
    listener = Steps()
    make(tmp_path, save_checkpoints_steps=3).train(
        lambda: batches(tiny_data(), 8), saving_listeners=[listener]
    )
    assert listener.saved == [3, 6, 8]
