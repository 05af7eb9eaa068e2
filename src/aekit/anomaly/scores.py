"""Anomaly scores: per-row errors, the error-plus-code-distance score, thresholds, AUROC.

An autoencoder trained on normal data reconstructs normal examples well and unusual ones
badly, so a row's reconstruction error scores it. With a `code_weight` the score also
counts how far the row's code lies from the training rows' codes (`ErrorAndCodeScore`): a
row that follows the normal pattern to values the normal ones never reach is reconstructed
well, but its code lies far out. With `neighbors`, it counts how far the code lies from its
nearest training codes too: normal data of several clusters leave gaps between them that
one Gaussian over the codes covers. The threshold is a percentile of the training rows'
scores: at 99, about 1% of normal rows are flagged. Every door (the scikit-learn detector,
`AnomalyDetector` over an Estimator, `aekit score`) scores with these functions.

A table's cross-fitted model scores with `aekit.anomaly.table_score.TableScore`.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.covariance import LedoitWolf

from aekit.checks import MAX_CODE_WEIGHT, Number
from aekit.errors import ConfigError, InputError
from aekit.files import atomic_write_text, ensure_dir

_log = logging.getLogger("aekit")

SCORE_KEY = "reconstruction_error"
"""The prediction key of a row's reconstruction error, in every reconstruction model."""
CODE_KEY = "embedding"
"""The prediction key of a row's code."""
_TINY = 1e-12  # the least a training mean may be: a perfect fit must not divide by zero
REFERENCE_CODES = 2048
"""The most training codes (or rows) a neighbourhood part searches (a uniform sample beyond)."""
_QUERY_ROWS = 2048  # codes searched at a time: 2,048 x 2,048 distances are 32 MiB


class ErrorAndCodeScore:
    """Reconstruction error, the code's Mahalanobis distance and its nearest training codes.

    `fit` takes the errors and codes of the training examples: the mean error, each code
    unit's standard deviation, the Ledoit-Wolf covariance of the codes in those units
    (shrinkage keeps its inverse stable for correlated codes; standardising first keeps it
    from inflating the narrow units) and the mean distance. With `neighbors` k, it also keeps
    (a sample of at most `REFERENCE_CODES` of) the standardised training codes and their mean
    distance to their k nearest others. A score is error / mean error + code_weight *
    distance / mean distance + neighbours' distance / its mean, so the parts count alike
    whatever their units.
    """

    def __init__(self, code_weight: float = 1.0, neighbors: int = 0) -> None:
        Number(most=MAX_CODE_WEIGHT)("code_weight", code_weight)  # beyond, scores overflow
        if isinstance(neighbors, bool) or not isinstance(neighbors, int) or neighbors < 0:
            raise ConfigError(f"neighbors must be an int >= 0 (0: none), got {neighbors!r}")
        self.code_weight = float(code_weight)
        self.neighbors = neighbors

    def fit(self, errors: np.ndarray, codes: np.ndarray) -> ErrorAndCodeScore:
        """Fit on the training examples' errors, (N,), and codes, (N, code size)."""
        self.error_mean_ = max(float(np.mean(errors)), _TINY)
        spread = np.std(codes, axis=0)
        self.code_scale_ = np.where(spread > _TINY, spread, 1.0)  # a constant unit stays as is
        self.codes_ = LedoitWolf().fit(codes / self.code_scale_)
        self.distance_mean_ = max(float(self.distances(codes).mean()), _TINY)
        if self.neighbors:
            self._fit_neighbors(codes / self.code_scale_)
        return self

    def _fit_neighbors(self, standard: np.ndarray) -> None:
        chosen = standard
        if len(standard) > REFERENCE_CODES:  # a fixed draw: the same codes, the same reference
            picked = np.random.default_rng(0).choice(len(standard), REFERENCE_CODES, replace=False)
            chosen = standard[np.sort(picked)]
        self.reference_ = np.ascontiguousarray(chosen)
        # The training mean, over the reference codes: each finds itself first, at distance
        # 0, so its k nearest others are the k after that.
        k = min(self.neighbors, len(chosen) - 1)
        if k < self.neighbors:
            _log.warning("neighbors=%d: only %d other training codes; the %d nearest are used",
                         self.neighbors, len(chosen) - 1, k)  # fmt: skip
        found = nearest(chosen, self.reference_, k + 1)[:, 1:] if k else np.zeros(1)
        self.neighbor_mean_ = max(float(found.mean()), _TINY)

    def distances(self, codes: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each code from the training codes."""
        distances: np.ndarray = self.codes_.mahalanobis(codes / self.code_scale_)
        return distances

    def neighbor_distances(self, codes: np.ndarray) -> np.ndarray:
        """Mean distance of each code to its nearest training codes (standardised units)."""
        k = min(self.neighbors, len(self.reference_))
        mean: np.ndarray = nearest(codes / self.code_scale_, self.reference_, k).mean(axis=1)
        return mean

    def __call__(self, errors: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """The scores of examples with these errors and codes: higher is more abnormal."""
        scores: np.ndarray = errors / self.error_mean_
        if self.code_weight:
            scores = scores + self.code_weight * self.distances(codes) / self.distance_mean_
        if self.neighbors:
            scores = scores + self.neighbor_distances(codes) / self.neighbor_mean_
        return scores


def nearest(codes: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    """The distances from each code to its k nearest reference codes, nearest first.

    Each distance is summed from the coordinates' differences, not through a matrix product
    (as scikit-learn's search does): a row's score must not depend on the rows scored with it.
    """
    ref = torch.from_numpy(reference)
    codes = np.ascontiguousarray(codes)
    # Written into one array: a result kept from each block would sit above the block's
    # freed 32 MiB on the heap, and the next block would grow the heap instead of reusing it
    # (2.8 GiB over 100,000 codes when each block's result was kept).
    found = np.empty((len(codes), k))
    for start in range(0, len(codes), _QUERY_ROWS):
        rows = torch.from_numpy(codes[start : start + _QUERY_ROWS])
        distances = torch.cdist(rows, ref, compute_mode="donot_use_mm_for_euclid_dist")
        found[start : start + len(rows)] = torch.topk(distances, k, dim=1, largest=False).values
        del distances
    return found


def threshold_at(errors: np.ndarray, percentile: float) -> float:
    """The threshold above which at most `100 - percentile`% of new normal rows score.

    The smallest of the scores with at least `percentile`% of them, counting a new row's
    among them, at or below it: the split-conformal quantile. When `errors` are scores of
    rows the model did not fit (a table's, aekit.anomaly.table_score), a new normal row
    exceeds it with probability at most 1 - percentile/100 (and within 1/(n + 1) of it);
    numpy's interpolated percentile, which scikit-learn and PyOD take, lets up to 1/(n + 1)
    more through (a percentage point at 100 rows). The scores must be finite numbers: a NaN
    would make the threshold NaN, flagging nothing.
    """
    if isinstance(percentile, bool) or not isinstance(percentile, int | float):
        raise ConfigError(f"percentile must be a number in (0, 100), got {percentile!r}")
    if not 0 < percentile < 100:
        raise ConfigError(f"percentile must be in (0, 100), got {percentile!r}; 99 is usual")
    values = np.asarray(errors, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise InputError("no errors to take a percentile of; give at least one training example")
    if not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise InputError(
            f"{bad} of {values.size} training scores are NaN or infinite, so no threshold can "
            "be set; check the training data and the model for NaN"
        )
    rank = math.ceil(round((values.size + 1) * percentile / 100, 9))  # 9: float noise
    return float(np.sort(values)[min(rank, values.size) - 1])


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
