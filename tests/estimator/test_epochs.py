"""Epochs as Keras users count them: records, lines, evaluations and early stopping per pass,
and `Estimator.fit` on arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import aekit
from aekit.data import Dataset, numpy_input_fn
from aekit.estimator import checkpoint as ckpt
from aekit.hooks import EarlyStopping, Hook, ReduceLROnPlateau
from tiny import BatchLosses, quiet_estimator

ROWS, BATCH = 20, 6  # 4 steps an epoch: 6, 6, 6 and 2 rows
STEPS = 4


def data(n: int = ROWS, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 8), dtype=np.float32)


def seeded(path: Path, **config: object) -> aekit.Estimator:
    return quiet_estimator(path, random_seed=0, **config)  # type: ignore[arg-type]


def weights(est: aekit.Estimator) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in est.network.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_train_closes_a_record_per_epoch_with_that_epoch_s_mean_loss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    est = seeded(tmp_path)
    losses = BatchLosses()
    est.train(numpy_input_fn(data(), batch_size=BATCH, num_epochs=3), hooks=[losses], verbose=2)
    records = est.history.records
    assert [r["step"] for r in records] == [4, 8, 12] and est.history.epoch == [0, 1, 2]
    for epoch, record in enumerate(records):
        batch = losses.losses[epoch * STEPS : (epoch + 1) * STEPS]
        # A mean per example, as val_loss and Keras's loss are: the batch of 2 counts for 2.
        per_example = np.average(batch, weights=[6, 6, 6, 2])
        assert record["loss"] == pytest.approx(per_example, rel=1e-6) != np.mean(batch)
        assert record["steps"] == STEPS
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    # An endless input marks its epochs too; a generator has none: one record at the end.
    est.train(numpy_input_fn(data(), batch_size=BATCH, num_epochs=None), steps=9, verbose=0)
    assert [r["step"] for r in est.history.records[3:]] == [16, 20, 21]
    x = torch.from_numpy(data())
    est.train(lambda: (x[i : i + BATCH] for i in range(0, ROWS, BATCH)), verbose=0)
    assert [r["step"] for r in est.history.records[6:]] == [25] and "epoch" not in est.history[6]


def test_train_and_evaluate_evaluates_once_an_epoch_by_default(tmp_path: Path) -> None:
    est = seeded(tmp_path)
    aekit.train_and_evaluate(
        est,
        aekit.TrainSpec(numpy_input_fn(data(), batch_size=BATCH, num_epochs=5)),
        aekit.EvalSpec(numpy_input_fn(data(10, seed=2), batch_size=BATCH, shuffle=False)),
        verbose=0,
    )
    history = est.history.history
    assert history["step"] == [4, 8, 12, 16, 20] and len(history["val_loss"]) == 5
    assert not any(np.isnan(history["val_loss"]))
    # Each value is what evaluating that epoch's checkpoint gives.
    third = est.evaluate(
        numpy_input_fn(data(10, seed=2), batch_size=BATCH, shuffle=False),
        checkpoint_path=ckpt.checkpoint_path(tmp_path, 12),
    )
    assert history["val_loss"][2] == pytest.approx(third["loss"], rel=1e-6)


def test_early_stopping_stops_after_the_second_epoch_with_the_best_weights(
    tmp_path: Path,
) -> None:
    # Nothing beats the first epoch by 1e9: patience 0 stops at the second.
    est = seeded(tmp_path / "tae", keep_checkpoint_max=0)
    aekit.train_and_evaluate(
        est,
        aekit.TrainSpec(
            numpy_input_fn(data(), batch_size=BATCH, num_epochs=10),
            hooks=[EarlyStopping(monitor="val_loss", patience=0, min_delta=1e9)],
        ),
        aekit.EvalSpec(numpy_input_fn(data(10, seed=2), batch_size=BATCH, shuffle=False)),
        verbose=0,
    )
    assert est.global_step == 2 * STEPS and len(est.history) == 2
    first = ckpt.load(tmp_path / "tae" / f"ckpt-{STEPS}.pt")["network"]
    assert_same_weights(weights(est), first)
    fitted = seeded(tmp_path / "fit", keep_checkpoint_max=0)
    history = fitted.fit(
        data(),
        epochs=10,
        batch_size=BATCH,
        validation_data=data(10, seed=2),
        callbacks=[EarlyStopping(monitor="val_loss", patience=0, min_delta=1e9)],
        verbose=0,
    )
    assert history.epoch == [0, 1] and fitted.global_step == 2 * STEPS
    assert_same_weights(
        weights(fitted), ckpt.load(tmp_path / "fit" / f"ckpt-{STEPS}.pt")["network"]
    )


@pytest.mark.parametrize("hook", [EarlyStopping(), ReduceLROnPlateau()])
def test_a_monitor_nothing_records_is_refused_at_the_first_record(
    tmp_path: Path, hook: Hook
) -> None:
    est = seeded(tmp_path)
    with pytest.raises(aekit.ConfigError) as error:
        est.train(numpy_input_fn(data(), batch_size=BATCH, num_epochs=3), hooks=[hook], verbose=0)
    message = str(error.value)
    assert "monitor='val_loss' is not among the keys" in message and "\n" not in message
    assert "epoch, loss, seconds, step, steps" in message and "monitor 'loss'" in message
    assert est.global_step == STEPS  # the first epoch's end, not the run's
    est.train(
        numpy_input_fn(data(), batch_size=BATCH, num_epochs=2),
        hooks=[EarlyStopping(monitor="loss", patience=1)],
        verbose=0,
    )
    with pytest.raises(aekit.ConfigError, match="monitor one of them"):
        est.fit(data(), epochs=20, validation_data=data(10), callbacks=[EarlyStopping("val_auroc")])


def test_fit_is_train_and_evaluate_to_the_bit(tmp_path: Path) -> None:
    x, x_val = data(), data(10, seed=2)
    fitted = seeded(tmp_path / "fit")
    history = fitted.fit(x, epochs=3, batch_size=BATCH, validation_data=(x_val,), verbose=0)
    est = seeded(tmp_path / "tae")
    aekit.train_and_evaluate(
        est,
        aekit.TrainSpec(
            numpy_input_fn(x, batch_size=BATCH, num_epochs=3, resume=True), max_steps=3 * STEPS
        ),
        aekit.EvalSpec(numpy_input_fn(x_val, batch_size=BATCH, shuffle=False)),
        verbose=0,
    )
    assert_same_weights(weights(fitted), weights(est))
    timeless = [{k: v for k, v in r.items() if k != "seconds"} for r in history]
    assert timeless == [{k: v for k, v in r.items() if k != "seconds"} for r in est.history]
    # fit(x, x), as Keras autoencoders are fitted, reconstructs x: the same run again.
    again = seeded(tmp_path / "xx")
    again.fit(x, x, epochs=3, batch_size=BATCH, validation_data=(x_val, x_val), verbose=0)
    assert_same_weights(weights(again), weights(est))


def test_fit_resumes_from_the_model_dir_with_initial_epoch_semantics(tmp_path: Path) -> None:
    x = data()
    straight = seeded(tmp_path / "straight")
    straight.fit(x, epochs=4, batch_size=BATCH, verbose=0)
    first = seeded(tmp_path / "resumed").fit(x, epochs=2, batch_size=BATCH, verbose=0)
    resumed = seeded(tmp_path / "resumed")
    with pytest.raises(aekit.ConfigError, match="initial_epoch=1, but .* holds 2 epochs"):
        resumed.fit(x, epochs=4, batch_size=BATCH, initial_epoch=1, verbose=0)
    later = resumed.fit(x, epochs=4, batch_size=BATCH, initial_epoch=2, verbose=0)
    assert first.epoch == [0, 1] and later.epoch == [2, 3] and resumed.global_step == 4 * STEPS
    assert_same_weights(weights(resumed), weights(straight))  # the same epochs, the same order
    assert len(resumed.fit(x, epochs=4, batch_size=BATCH, verbose=0)) == 0  # nothing left


def test_fit_takes_a_split_a_dataset_and_refuses_what_keras_would_not_mean(
    tmp_path: Path,
) -> None:
    x = data(24)
    est = seeded(tmp_path / "split")
    history = est.fit(x, epochs=1, batch_size=BATCH, validation_split=0.25, verbose=0)
    last = est.evaluate(numpy_input_fn(x[18:], batch_size=BATCH, shuffle=False))
    assert history[0]["val_loss"] == pytest.approx(last["loss"])
    assert history[0]["steps"] == 3  # 18 rows to train on
    passes = seeded(tmp_path / "dataset").fit(
        Dataset.from_tensor_slices(x).batch(10), epochs=2, verbose=0
    )
    assert passes.epoch == [0, 1] and [r["steps"] for r in passes] == [3, 3]
    bad: list[tuple[dict[str, object], str]] = [
        ({"callbacks": [aekit.History()]}, "fit returns the History"),
        ({"callbacks": ["EarlyStopping"]}, "callbacks take aekit hooks"),
        ({"validation_split": 0.2, "validation_data": x}, "not both"),
        ({"validation_split": 1.0}, r"validation_split must be a number in \[0, 1\)"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
    ]
    for kwargs, message in bad:
        with pytest.raises(aekit.ConfigError, match=message):
            est.fit(x, verbose=0, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(aekit.ConfigError, match="batched Dataset"):
        est.fit(Dataset.from_tensor_slices(x))
    with pytest.raises(aekit.ConfigError, match="never ends"):
        est.fit(Dataset.from_tensor_slices(x).batch(4).repeat())
