"""Anomaly scores from reconstruction errors: an autoencoder trained on normal data
reconstructs normal examples well and unusual ones badly.

Any model whose predictions include `reconstruction_error` (every reconstruction model in
the zoo, the variational one included) can score. The threshold is a percentile of the
scores on the training data: at 99, about 1% of normal examples are flagged.

With a `code_weight`, the score also counts how far an example's code lies from the
training examples' codes (`ErrorAndCodeScore`): an example that follows the normal pattern
to values the normal ones never reach is reconstructed well, but its code lies far out.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.covariance import LedoitWolf

from aekit.data.dataset import Array
from aekit.data.input_fn import numpy_input_fn
from aekit.errors import ConfigError, InputError, SpecError
from aekit.estimator import Estimator
from aekit.files import atomic_write_text, ensure_dir

SCORE_KEY = "reconstruction_error"

__all__ = [
    "SCORE_KEY",
    "AnomalyDetector",
    "ErrorAndCodeScore",
    "auroc",
    "reconstruction_errors",
    "threshold_at",
    "write_scores_csv",
]


CODE_KEY = "embedding"
_TINY = 1e-12  # the least a training mean may be: a perfect fit must not divide by zero


def reconstruction_errors(estimator: Estimator, x: Array, batch_size: int = 1000) -> np.ndarray:
    """Per-example reconstruction error (mean squared, pixels in [0, 1]) of every row of `x`."""
    return _predicted(estimator, x, batch_size, [SCORE_KEY])[SCORE_KEY].reshape(-1)


def errors_and_codes(
    estimator: Estimator, x: Array, batch_size: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Per-example reconstruction errors and codes (flattened) of every row of `x`."""
    predicted = _predicted(estimator, x, batch_size, [SCORE_KEY, CODE_KEY])
    return predicted[SCORE_KEY].reshape(-1), predicted[CODE_KEY]


def _predicted(
    estimator: Estimator, x: Array, batch_size: int, keys: list[str]
) -> dict[str, np.ndarray]:
    """The `keys` predictions of every row of `x`, each flattened to (N, -1), in float64."""
    batches = estimator.predict(
        numpy_input_fn(x, batch_size=batch_size, shuffle=False),
        predict_keys=keys,
        yield_single_examples=False,
    )
    try:
        parts = [{k: b[k].reshape(len(b[k]), -1) for k in keys} for b in batches]
    except SpecError:
        raise ConfigError(
            f"this model does not predict {' and '.join(map(repr, keys))}, so it cannot score "
            "anomalies; use a reconstruction model (fully_connected, convolutional, variational)"
        ) from None
    return {k: np.concatenate([p[k] for p in parts]).astype(np.float64) for k in keys}


class ErrorAndCodeScore:
    """Reconstruction error plus the code's Mahalanobis distance, each in training means.

    `fit` takes the errors and codes of the training examples: the mean error, each code
    unit's standard deviation, the Ledoit-Wolf covariance of the codes in those units
    (shrinkage keeps its inverse stable for correlated codes; standardising first keeps it
    from inflating the narrow units) and the mean distance. A score is then error / mean
    error + code_weight * distance / mean distance, so both parts count alike whatever their
    units.
    """

    def __init__(self, code_weight: float = 1.0) -> None:
        if (
            isinstance(code_weight, bool)
            or not isinstance(code_weight, int | float)
            or not 0 <= code_weight < np.inf
        ):
            raise ConfigError(f"code_weight must be a finite number >= 0, got {code_weight!r}")
        self.code_weight = float(code_weight)

    def fit(self, errors: np.ndarray, codes: np.ndarray) -> ErrorAndCodeScore:
        """Fit on the training examples' errors, (N,), and codes, (N, code size)."""
        self.error_mean_ = max(float(np.mean(errors)), _TINY)
        spread = np.std(codes, axis=0)
        self.code_scale_ = np.where(spread > _TINY, spread, 1.0)  # a constant unit stays as is
        self.codes_ = LedoitWolf().fit(codes / self.code_scale_)
        self.distance_mean_ = max(float(self.distances(codes).mean()), _TINY)
        return self

    def distances(self, codes: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each code from the training codes."""
        distances: np.ndarray = self.codes_.mahalanobis(codes / self.code_scale_)
        return distances

    def __call__(self, errors: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """The scores of examples with these errors and codes: higher is more abnormal."""
        scores: np.ndarray = errors / self.error_mean_
        if self.code_weight:
            scores = scores + self.code_weight * self.distances(codes) / self.distance_mean_
        return scores


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
    """Scores examples with a trained model; flags those above a percentile of training scores.

    Args:
        estimator: a trained model predicting `reconstruction_error` (and `embedding`,
            with a code_weight).
        percentile: where among the training scores the threshold lies, in (0, 100).
        code_weight: 0 scores by the reconstruction error; above 0, by `ErrorAndCodeScore`
            with this weight, fitted on the training data by `calibrate`.
    """

    def __init__(
        self, estimator: Estimator, percentile: float = 99.0, code_weight: float = 0.0
    ) -> None:
        threshold_at(np.zeros(1), percentile)  # validates the percentile now
        self.estimator = estimator
        self.percentile = float(percentile)
        self.code_weight = code_weight
        self._two_part = ErrorAndCodeScore(code_weight) if code_weight else None
        self.threshold: float | None = None
        self.training_scores: np.ndarray | None = None

    def calibrate(self, x_train: Array) -> AnomalyDetector:
        """Set the threshold from the scores of (normal) training data; returns self."""
        if self._two_part is None:
            self.training_scores = reconstruction_errors(self.estimator, x_train)
        else:
            errors, codes = errors_and_codes(self.estimator, x_train)
            self.training_scores = self._two_part.fit(errors, codes)(errors, codes)
        self.threshold = threshold_at(self.training_scores, self.percentile)
        return self

    def score(self, x: Array) -> np.ndarray:
        """The anomaly score of every example: its reconstruction error, or the two-part score."""
        if self._two_part is None:
            return reconstruction_errors(self.estimator, x)
        if self.training_scores is None:
            raise ConfigError(
                "a code_weight needs the training codes; call calibrate(x_train) first"
            )
        return self._two_part(*errors_and_codes(self.estimator, x))

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
