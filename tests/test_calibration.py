"""Thresholds flag what they promise: `contamination` (or 100 - percentile) of new normal rows.

Fresh normal rows from the distribution of the training rows are scored; the share above
the threshold, averaged over 5 seeds, must lie within 1.5 percentage points of the promise,
for tables of 100 to 50,000 training rows, through the detector, the PyOD class and the
command line. A training row is never scored by a model member that trained on it: before
that rule, the detector flagged 7.7% of fresh rows at contamination 0.05.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from aekit.anomaly import AutoencoderOutlierDetector
from aekit.anomaly.scores import threshold_at
from aekit.cli.main import main
from aekit.pyod import AutoEncoder

pytestmark = pytest.mark.slow  # dozens of fits over 5 to 10 seeds each

CONTAMINATIONS = (0.01, 0.05, 0.1)
SEEDS = range(5)
SMALL_SEEDS = range(10)  # 100 rows: a 5-seed mean strays 1 point by chance alone
TOLERANCE = 0.015
FRESH = 20_000
_MIXING = np.random.default_rng(100).normal(size=(8, 8))


def normal_rows(n: int, seed: int) -> np.ndarray:
    """Rows of one fixed, curved distribution in 8 features (not a Gaussian)."""
    rng = np.random.default_rng(seed)
    return np.tanh(rng.normal(size=(n, 8)) @ _MIXING) + 0.1 * rng.normal(size=(n, 8))


def flagged(scores: np.ndarray, training: np.ndarray, contamination: float) -> float:
    return float((scores > threshold_at(training, 100 * (1 - contamination))).mean())


@pytest.mark.parametrize("rows", [100, 1000, 50_000])
def test_the_detector_flags_its_contamination_of_new_normal_rows(rows: int) -> None:
    shares = []
    for seed in SMALL_SEEDS if rows <= 100 else SEEDS:
        detector = AutoencoderOutlierDetector(random_state=seed).fit(normal_rows(rows, seed))
        fresh = -detector.score_samples(normal_rows(FRESH, 1000 + seed))
        shares.append([flagged(fresh, detector.training_scores_, c) for c in CONTAMINATIONS])
        if seed == 0:  # predict's threshold is that of its contamination (0.1 by default)
            assert (detector.predict(normal_rows(FRESH, 1000)) == -1).mean() == shares[0][2]
    mean = np.mean(shares, axis=0)
    assert np.abs(mean - CONTAMINATIONS).max() <= TOLERANCE, dict(
        zip(CONTAMINATIONS, mean, strict=True)
    )


def test_the_pyod_class_flags_its_contamination_of_new_normal_rows() -> None:
    shares = []
    for seed in SEEDS:
        clf = AutoEncoder(contamination=0.05, random_state=seed, verbose=0)
        clf.fit(normal_rows(2000, seed))
        shares.append(clf.predict(normal_rows(FRESH, 2000 + seed)).mean())
    assert abs(np.mean(shares) - 0.05) <= TOLERANCE, shares


def test_aekit_score_flags_its_percentile_of_new_normal_rows_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shares = []
    for seed in SEEDS:
        train, fresh = normal_rows(1000, seed), normal_rows(4000, 3000 + seed)
        anomalies = 3 + normal_rows(40, 4000 + seed)  # labels 1: the normal ones' share counts
        split = tmp_path / f"split-{seed}.npz"
        np.savez(split, x_train=train, y_train=np.zeros(len(train), int),
                 x_test=np.vstack([fresh, anomalies]),
                 y_test=np.r_[np.zeros(len(fresh), int), np.ones(40, int)])  # fmt: skip
        run = tmp_path / f"run-{seed}"
        assert main(["train", "fully_connected", "--dataset", str(split), "--scaling",
                     "standard", "--seed", str(seed), "--model-dir", str(run)]) == 0  # fmt: skip
        per_seed = []
        for contamination in CONTAMINATIONS:
            percentile = f"{100 * (1 - contamination):g}"
            out = tmp_path / f"scores-{seed}-{percentile}"
            capsys.readouterr()
            assert main(["score", "--model-dir", str(run), "--percentile", percentile,
                         "--output", str(out)]) == 0  # fmt: skip
            with (out / "scores.csv").open() as f:
                rows = list(csv.DictReader(f))
            normal = [r["anomaly"] == "1" for r in rows if r["label"] == "0"]
            per_seed.append(float(np.mean(normal)))
            said = capsys.readouterr().out
            assert f"{100 * per_seed[-1]:.1f}% of the normal rows" in said, said
        shares.append(per_seed)
    mean = np.mean(shares, axis=0)
    assert np.abs(mean - CONTAMINATIONS).max() <= TOLERANCE, dict(
        zip(CONTAMINATIONS, mean, strict=True)
    )
