"""Anomaly scores from reconstruction errors: a held-out digit class is found by its errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import aekit
from aekit.anomaly import (
    AnomalyDetector,
    ErrorAndCodeScore,
    auroc,
    read_scores_csv,
    reconstruction_errors,
    threshold_at,
    write_scores_csv,
)
from aekit.data import load_dataset
from aekit.viz import histogram_plot

HELD_OUT = 7


def test_a_held_out_digit_class_is_detected(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    (x_train, y_train), (x_test, y_test) = load_dataset("digits")
    normal = x_train[y_train != HELD_OUT]
    est = aekit.AutoEncoder(
        [32, 8],
        input_shape=(8, 8),
        learning_rate=1e-2,
        model_dir=tmp_path,
        config=aekit.RunConfig(random_seed=0, log_step_count_steps=0, save_summary_steps=0),
    )
    est.train(aekit.data.numpy_input_fn(normal, batch_size=64, num_epochs=8, seed=0))
    detector = AnomalyDetector(est, percentile=95).calibrate(normal)
    assert detector.training_scores is not None and detector.threshold is not None
    # The threshold flags the chosen share of the training data.
    assert (detector.training_scores > detector.threshold).mean() == pytest.approx(0.05, abs=0.01)
    is_anomaly = np.asarray(y_test) == HELD_OUT
    area = auroc(detector.score(x_test), is_anomaly)
    record_property("auroc", area)
    print(f"AUROC of held-out digit {HELD_OUT} on the 8x8 digits test split: {area:.3f}")
    assert area > 0.85
    flagged = detector.is_anomaly(x_test)
    assert flagged[is_anomaly].mean() > 5 * flagged[~is_anomaly].mean()


def test_auroc_by_hand() -> None:
    # Of the 4 (anomaly, normal) pairs, 3 rank the anomaly higher.
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert auroc(np.array([3.0, 1.0, 2.0]), np.array([True, False, False])) == 1.0
    with pytest.raises(aekit.InputError, match="both normal and anomalous"):
        auroc(np.ones(3), np.zeros(3))
    with pytest.raises(aekit.InputError, match="one each"):
        auroc(np.ones(3), np.array([0, 1]))


def test_threshold_at_a_percentile() -> None:
    errors = np.arange(101, dtype=np.float64)
    # The conformal quantile: at least 90% of the 101 scores and a new one (92 of 102) at
    # or below it, so a new score from the same distribution lies above it 10/102 of times.
    assert threshold_at(errors, 90) == 91.0 and threshold_at(errors, 99.5) == 100.0
    rng = np.random.default_rng(0)
    above = [rng.random() > threshold_at(rng.random(50), 80) for _ in range(20_000)]
    assert np.mean(above) == pytest.approx(10 / 51, abs=0.01)  # at most 20%: 19.6%
    for bad in (0, 100, 120, "99"):
        with pytest.raises(aekit.ConfigError, match="percentile must be"):
            threshold_at(errors, bad)  # type: ignore[arg-type]
    with pytest.raises(aekit.InputError, match="at least one"):
        threshold_at(np.array([]), 50)
    with pytest.raises(aekit.ConfigError, match="calibrate"):
        AnomalyDetector(aekit.AutoEncoder([4], input_shape=(8,))).is_anomaly(np.zeros((2, 8)))


def test_every_reconstruction_model_scores(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((10, 1, 8, 8), dtype=np.float32)
    conv = aekit.ConvolutionalAutoencoder([4], image_shape=(1, 8, 8), model_dir=tmp_path / "c")
    conv.save_checkpoint()  # scoring needs a checkpoint
    conv.save_checkpoint()  # predicting needs a checkpoint: untrained weights are refused
    errors = reconstruction_errors(conv, x, batch_size=4)
    predictions = np.stack([p["prediction"] for p in conv.predict([x])])
    np.testing.assert_allclose(errors, ((predictions - x) ** 2).reshape(10, -1).mean(1), rtol=1e-5)
    classifier = aekit.Classifier(
        image_shape=(1, 8, 8), conv_filters=[2, 2], dense_units=4, model_dir=tmp_path / "k"
    )
    classifier.save_checkpoint()
    with pytest.raises(aekit.ConfigError, match="cannot score anomalies"):
        reconstruction_errors(classifier, x)


def test_the_two_part_score_counts_each_part_in_training_means() -> None:
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(500, 3)) * [1.0, 10.0, 0.1]  # units the distance takes out
    errors = rng.random(500) * 1e-3
    scorer = ErrorAndCodeScore(code_weight=2.0).fit(errors, codes)
    scores = scorer(errors, codes)
    # Error and distance each average 1 over the training examples: with weight 2, 1 + 2.
    assert scores.mean() == pytest.approx(3.0)
    far = scorer(np.array([errors.mean()]), np.array([[0.0, 0.0, 1.0]]))  # 10 sd on the 3rd
    near = scorer(np.array([errors.mean()]), np.array([[0.0, 5.0, 0.0]]))  # 0.5 sd on the 2nd
    assert far[0] > 20 and near[0] < 2
    np.testing.assert_allclose(ErrorAndCodeScore(0).fit(errors, codes)(errors, codes),
                               errors / errors.mean())  # fmt: skip
    for bad in (-1, "1", True, float("inf"), float("nan")):
        with pytest.raises(aekit.ConfigError, match="code_weight must be a finite number >= 0"):
            ErrorAndCodeScore(bad)  # type: ignore[arg-type]
    with pytest.raises(aekit.ConfigError, match="calibrate"):
        AnomalyDetector(aekit.AutoEncoder([4], input_shape=(8,)), code_weight=1).score(
            np.zeros((2, 8))
        )


def test_scores_csv_and_histogram(tmp_path: Path) -> None:
    scores = np.array([0.5, 2.0, 1.0])
    path = write_scores_csv(tmp_path / "s" / "scores.csv", scores, 1.5, labels=np.array([3, 7, 3]))
    rows = read_scores_csv(path)
    assert [r["anomaly"] for r in rows] == ["0", "1", "0"]
    assert [float(r["score"]) for r in rows] == [0.5, 2.0, 1.0] and rows[1]["label"] == "7"
    picture = histogram_plot(
        {"training": np.linspace(0, 1, 50), "scored": np.array([0.9, 1.2])},
        tmp_path / "h.png",
        threshold=0.95,
        size=(300, 200),
    )
    with Image.open(tmp_path / "h.png") as written:
        assert written.size == (300, 200) == picture.size
    pixels = np.asarray(picture)
    # Both groups' colours and the threshold's red are drawn.
    for color in [(31, 119, 180), (255, 127, 14), (214, 39, 40)]:
        assert (pixels == color).all(axis=2).any()
    with pytest.raises(aekit.InputError, match="at least one group"):
        histogram_plot({}, tmp_path / "none.png")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_threshold_of_scores_that_are_not_numbers_is_refused(bad: float) -> None:
    with pytest.raises(aekit.InputError, match="1 of 3 training scores are NaN or infinite"):
        threshold_at(np.array([bad, 1.0, 2.0]), 50)
    assert threshold_at(np.array([0.0, 1.0, 2.0]), 50) == 1.0
