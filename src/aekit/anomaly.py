"""Anomaly scores from reconstruction errors: an autoencoder trained on normal data
reconstructs normal examples well and unusual ones badly.

Any model whose predictions include `reconstruction_error` (every reconstruction model in
the zoo, the variational one included) can score. The threshold is a percentile of the
errors on the training data: at 99, about 1% of normal examples are flagged.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aekit._io import atomic_write_text, ensure_dir
from aekit.data.dataset import Array
from aekit.data.input_fn import numpy_input_fn
from aekit.errors import ConfigError, InputError, SpecError
from aekit.estimator import Estimator

SCORE_KEY = "reconstruction_error"

__all__ = [
    "SCORE_KEY",
    "AnomalyDetector",
    "auroc",
    "reconstruction_errors",
    "threshold_at",
    "write_scores_csv",
]


def reconstruction_errors(estimator: Estimator, x: Array, batch_size: int = 1000) -> np.ndarray:
    """Per-example reconstruction error (mean squared, pixels in [0, 1]) of every row of `x`."""
    batches = estimator.predict(
        numpy_input_fn(x, batch_size=batch_size, shuffle=False),
        predict_keys=[SCORE_KEY],
        yield_single_examples=False,
    )
    try:
        errors = [b[SCORE_KEY].reshape(-1) for b in batches]
    except SpecError:
        raise ConfigError(
            f"this model does not predict {SCORE_KEY!r}, so it cannot score anomalies; use a "
            "reconstruction model (fully_connected, convolutional, variational)"
        ) from None
    return np.concatenate(errors).astype(np.float64)


def threshold_at(errors: np.ndarray, percentile: float) -> float:
    """The `percentile`-th percentile of `errors`: scores above it are anomalies."""
    if isinstance(percentile, bool) or not isinstance(percentile, int | float):
        raise ConfigError(f"percentile must be a number in (0, 100), got {percentile!r}")
    if not 0 < percentile < 100:
        raise ConfigError(f"percentile must be in (0, 100), got {percentile!r}; 99 is usual")
    values = np.asarray(errors, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise InputError("no errors to take a percentile of; give at least one training example")
    return float(np.percentile(values, percentile))


def auroc(scores: np.ndarray, is_anomaly: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a random anomaly outscores a random normal."""
    flags = np.asarray(is_anomaly, dtype=bool).reshape(-1)
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(flags) != len(values):
        raise InputError(f"{len(values)} scores but {len(flags)} anomaly flags; give one each")
    if flags.all() or not flags.any():
        raise InputError("AUROC needs both normal and anomalous examples among the scored ones")
    from sklearn.metrics import roc_auc_score  # imported here: it takes a moment

    return float(roc_auc_score(flags, values))


class AnomalyDetector:
    """Scores examples with a trained model; flags those above a percentile of training errors.

    Args:
        estimator: a trained model predicting `reconstruction_error`.
        percentile: where among the training errors the threshold lies, in (0, 100).
    """

    def __init__(self, estimator: Estimator, percentile: float = 99.0) -> None:
        threshold_at(np.zeros(1), percentile)  # validates the percentile now
        self.estimator = estimator
        self.percentile = float(percentile)
        self.threshold: float | None = None
        self.training_errors: np.ndarray | None = None

    def calibrate(self, x_train: Array) -> AnomalyDetector:
        """Set the threshold from the errors on (normal) training data; returns self."""
        self.training_errors = reconstruction_errors(self.estimator, x_train)
        self.threshold = threshold_at(self.training_errors, self.percentile)
        return self

    def score(self, x: Array) -> np.ndarray:
        """The anomaly score of every example: its reconstruction error."""
        return reconstruction_errors(self.estimator, x)

    def is_anomaly(self, x: Array) -> np.ndarray:
        """Whether each example scores above the threshold (call `calibrate` first)."""
        if self.threshold is None:
            raise ConfigError("the detector has no threshold yet; call calibrate(x_train) first")
        flags: np.ndarray = self.score(x) > self.threshold
        return flags


def write_scores_csv(
    path: str | Path,
    scores: np.ndarray,
    threshold: float,
    labels: Sequence[object] | np.ndarray | None = None,
) -> Path:
    """A CSV with a row per example: index, score, anomaly (0/1) and, when given, label."""
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels is not None and len(labels) != len(values):
        raise InputError(f"{len(values)} scores but {len(labels)} labels; give one label each")
    header = ["index", "score", "anomaly", *(["label"] if labels is not None else [])]
    lines: list[str] = [",".join(header)]
    for i, value in enumerate(values):
        row = [str(i), f"{value:.8g}", str(int(value > threshold))]
        if labels is not None:
            row.append(str(labels[i]))
        lines.append(",".join(row))
    path = Path(path)
    ensure_dir(path.parent)  # a read-only or full disk: one StorageError, nothing left
    atomic_write_text(path, "\n".join(lines) + "\n")  # also removes a killed writer's temporary
    return path


def read_scores_csv(path: str | Path) -> list[dict[str, str]]:
    """The rows `write_scores_csv` wrote, as dicts of strings."""
    with Path(path).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
