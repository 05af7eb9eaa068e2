"""EarlyStopping, ReduceLROnPlateau and CSVLogger on real training runs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

import aekit
from aekit.estimator import checkpoint as ckpt
from aekit.hooks import CSVLogger, EarlyStopping, Hook, ReduceLROnPlateau
from aekit.hooks.monitors import Plateau
from tiny import STEPS_PER_EPOCH, quiet_estimator, train_epochs


def weights_of(path: Path) -> dict[str, torch.Tensor]:
    loaded = ckpt.load(path, torch.device("cpu"))
    network: dict[str, torch.Tensor] = loaded["network"]
    return network


def test_plateau_counts_values_that_do_not_beat_the_best_by_min_delta() -> None:
    low = Plateau("val_loss", min_delta=0.1)
    assert [low.update(v, s) for s, v in enumerate([1.0, 0.95, 0.8, 0.9])] == [
        True,
        False,
        True,
        False,
    ]
    assert (low.best, low.best_step, low.waited) == (0.8, 2, 1)
    high = Plateau("val_accuracy")  # "auto" reads accuracy as better when higher
    assert high.update(0.5, 0) and high.update(0.6, 1) and not high.update(0.55, 2)
    assert not Plateau("val_loss", mode="max").update(float("nan"), 0)
    with pytest.raises(aekit.ConfigError, match="mode must be one of"):
        Plateau("val_loss", mode="lowest")


def test_early_stopping_stops_and_ends_with_the_best_weights(tmp_path: Path) -> None:
    est = quiet_estimator(tmp_path, keep_checkpoint_max=0)
    # No later epoch can beat the first by 1e9: it stays the best, and patience 2 stops
    # training after the third epoch's evaluation, of 10 asked for.
    stopper = EarlyStopping(monitor="val_loss", patience=2, min_delta=1e9)
    train_epochs(est, 10, [stopper])
    assert est.global_step == 3 * STEPS_PER_EPOCH
    first = weights_of(tmp_path / f"ckpt-{STEPS_PER_EPOCH}.pt")
    final = weights_of(ckpt.checkpoint_path(tmp_path, est.global_step))
    for name, tensor in est.network.state_dict().items():
        assert torch.equal(tensor, first[name]) and torch.equal(final[name], first[name])
    assert len(est.history) == 3  # as Keras: the records say what each epoch's weights did


def test_early_stopping_without_restoring_keeps_the_last_weights(tmp_path: Path) -> None:
    est = quiet_estimator(tmp_path, keep_checkpoint_max=0)
    train_epochs(est, 10, [EarlyStopping(patience=1, min_delta=1e9, restore_best_weights=False)])
    assert est.global_step == 2 * STEPS_PER_EPOCH
    last = weights_of(ckpt.checkpoint_path(tmp_path, est.global_step))
    first = weights_of(tmp_path / f"ckpt-{STEPS_PER_EPOCH}.pt")
    assert any(not torch.equal(last[k], first[k]) for k in last)
    assert len(est.history) == 2


def test_a_monitor_the_records_lack_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(aekit.ConfigError, match="monitor='val_auroc' is not among"):
        train_epochs(quiet_estimator(tmp_path), 2, [EarlyStopping(monitor="val_auroc")])


def test_reduce_lr_on_plateau_lowers_the_rate_and_a_resumed_run_keeps_it(tmp_path: Path) -> None:
    def rate(estimator: aekit.Estimator) -> float:
        return float(estimator.optimizer.param_groups[0]["lr"])

    est = quiet_estimator(tmp_path, learning_rate=0.01)
    reducer = ReduceLROnPlateau(factor=0.5, patience=2, min_delta=1e9, min_lr=0.002)
    train_epochs(est, 5, [reducer])
    # epochs 2 and 3 stall (reduce to 0.005), epochs 4 and 5 stall again (0.0025)
    assert rate(est) == pytest.approx(0.0025)
    resumed = quiet_estimator(tmp_path, learning_rate=0.01)
    train_epochs(
        resumed, 7, [ReduceLROnPlateau(factor=0.5, patience=2, min_delta=1e9, min_lr=0.002)]
    )
    assert rate(resumed) == pytest.approx(0.002)  # halved once more, held at min_lr
    with pytest.raises(aekit.ConfigError, match="factor must be below 1"):
        ReduceLROnPlateau(factor=1.5)


def test_csv_logger_writes_the_history_and_appends_when_resumed(tmp_path: Path) -> None:
    est = quiet_estimator(tmp_path)
    train_epochs(est, 2, [CSVLogger()])
    train_epochs(quiet_estimator(tmp_path), 3, [CSVLogger()])
    with open(tmp_path / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["step"] for row in rows] == ["4", "8", "12"]
    assert float(rows[0]["val_loss"]) == est.history.records[0]["val_loss"]
    assert float(rows[1]["loss"]) == est.history.records[1]["loss"]


def test_csv_logger_gives_a_late_key_its_column(tmp_path: Path) -> None:
    class LateMetric(Hook):
        def after_record(self, context: aekit.hooks.RunContext, record: dict[str, float]) -> None:
            if record["step"] >= 2 * STEPS_PER_EPOCH:
                record["late"] = 1.5

    path = tmp_path / "elsewhere" / "log.csv"
    train_epochs(quiet_estimator(tmp_path / "run"), 2, [LateMetric(), CSVLogger(path)])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["late"] for row in rows] == ["", "1.5"]


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda: EarlyStopping(restore_best_weights="no"), "restore_best_weights must be"),  # type: ignore[arg-type]
        (lambda: EarlyStopping(patience=-1), "patience must be an integer >= 0"),
        (lambda: EarlyStopping(relative_delta=2), "relative_delta must be at most 1"),
        (lambda: ReduceLROnPlateau(min_lr=-1), "min_lr must be a finite number >= 0"),
        (lambda: aekit.hooks.StopAtStepHook(num_steps=0), "num_steps must be an integer >= 1"),
        (lambda: aekit.hooks.StopAtStepHook(last_step="9"), "last_step must be an"),  # type: ignore[arg-type]
        (lambda: aekit.hooks.ProgressHook(draws="yes"), "draws must be True or"),  # type: ignore[arg-type]
        (lambda: aekit.hooks.ProgressHook(interval=-1), "interval must be a finite number"),
    ],
)
def test_hooks_check_their_arguments_when_built(build: object, says: str) -> None:
    with pytest.raises(aekit.ConfigError, match=says) as error:
        build()  # type: ignore[operator]
    assert "\n" not in str(error.value)


def test_early_stopping_keeps_its_best_weights_in_checkpoints(tmp_path: Path) -> None:
    est = quiet_estimator(tmp_path, keep_checkpoint_max=0)
    train_epochs(est, 3, [EarlyStopping(monitor="val_loss", patience=5, min_delta=1e9)])
    # The second epoch's checkpoint: the first epoch stays the best, one epoch waited.
    saved = ckpt.load(tmp_path / f"ckpt-{2 * STEPS_PER_EPOCH}.pt")["hooks"]["EarlyStopping"]
    first = weights_of(tmp_path / f"ckpt-{STEPS_PER_EPOCH}.pt")
    assert saved["waited"] == 1 and saved["best_step"] == STEPS_PER_EPOCH
    for name, tensor in first.items():
        assert torch.equal(saved["best_weights"][name], tensor)
    # Resumed by a new process from there, it ends as the uninterrupted run: with the best's
    # weights, which only the checkpoint held.
    for later in ckpt.list_checkpoints(tmp_path):
        if ckpt.step_of(later) > 2 * STEPS_PER_EPOCH:
            later.unlink()
    resumed = quiet_estimator(tmp_path, keep_checkpoint_max=0)
    train_epochs(resumed, 3, [EarlyStopping(monitor="val_loss", patience=5, min_delta=1e9)])
    for name, tensor in resumed.network.state_dict().items():
        assert torch.equal(tensor, first[name])
