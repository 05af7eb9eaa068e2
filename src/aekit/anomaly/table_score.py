"""The anomaly score of a table's row: reconstruction, code distance and nearest rows.

A table's model is cross-fitted (aekit.anomaly.folds): `TableScore` scores every row,
training row or new, with the member that never trains on rows like it, whose parts are in
units taken from the rows it trained on (not from the rows it scores, whose own scores
would then shrink their unit). The nearest-rows part needs no training, so it is the same
for every member: a row's distance to its nearest *other* training rows (identical rows
left out, so a training row never finds itself). A training row is thus scored as a new
row is, and a threshold at the 99th percentile of the training rows' scores flags about
1% of new normal rows (checked on fresh rows, from 100 to 50,000 training rows).

The parts, each in units of its mean:

- the reconstruction error (weight 1): rows off the pattern of the normal ones;
- the code's Mahalanobis distance (`TABLE_CODE_WEIGHT`): rows that follow the pattern to
  values the normal ones never reach, which an autoencoder rebuilds well;
- the mean distance to the `TABLE_NEIGHBORS` nearest training rows, features scaled to
  [0, 1] (`TABLE_NEIGHBOR_WEIGHT`): local anomalies, which the narrow code of a table with
  few features loses, and which nearest-neighbour detectors find (docs/anomaly.md).
"""

from __future__ import annotations

import logging

import numpy as np

from aekit.anomaly.scores import REFERENCE_CODES, ErrorAndCodeScore, nearest
from aekit.anomaly.tabular import TabularNetwork
from aekit.errors import ConfigError, InputError

TABLE_CODE_WEIGHT = 0.5
"""The code distance's weight in a table's score (the outlier detector's, `aekit score`'s)."""
TABLE_NEIGHBORS = 2
"""The nearest training rows whose mean distance a table's score adds (0: none)."""
TABLE_NEIGHBOR_WEIGHT = 20.0
"""The nearest rows' weight: their distance varies far less among normal rows than the
reconstruction error does, and at weight 1 it is drowned (docs/anomaly.md)."""
_TINY = 1e-12
_log = logging.getLogger("aekit")


class NearestRows:
    """The mean distance of rows to their `k` nearest other training rows, in [0, 1] units.

    Features are min-max scaled by the training rows (each feature's range, not its spread:
    standardising turns the rare values of an almost constant feature into far points).
    The reference is a fixed uniform sample of at most `REFERENCE_CODES` distinct training
    rows; a reference row identical to the row scored is skipped.
    """

    def __init__(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"neighbors must be an int >= 1, got {k!r}")
        self.k = k

    def fit(self, rows: np.ndarray) -> NearestRows:
        """Fit on the training rows (N, features)."""
        # Halves: a range over float64's largest (-1e308 to 1e308) must not overflow.
        self.low_ = rows.min(axis=0) / 2
        span = rows.max(axis=0) / 2 - self.low_
        self.span_ = np.where(span > _TINY, span, 1.0)  # a constant feature stays as is
        chosen = rows
        if len(rows) > REFERENCE_CODES:  # a fixed draw: the same rows, the same reference
            picked = np.random.default_rng(0).choice(len(rows), REFERENCE_CODES, replace=False)
            chosen = rows[np.sort(picked)]
        self.reference_ = np.ascontiguousarray(np.unique(self._scaled(chosen), axis=0))
        others = len(self.reference_) - 1
        if self.k > others:  # a clamped setting says so
            used = max(others, 1)
            _log.warning("neighbors=%d: %d other distinct training rows; the %d nearest are used",
                         self.k, others, used)  # fmt: skip
        self.mean_ = max(float(self(chosen).mean()), _TINY)  # each skipping itself
        return self

    def _scaled(self, rows: np.ndarray) -> np.ndarray:
        scaled: np.ndarray = (rows / 2 - self.low_) / self.span_
        return scaled

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """Each row's mean distance to its k nearest reference rows other than itself."""
        count = len(self.reference_)
        k = min(self.k, max(count - 1, 1))
        found = nearest(self._scaled(rows), self.reference_, min(k + 1, count))
        if found.shape[1] > k:  # a first neighbour at distance 0 is the row itself (or its twin)
            itself = found[:, :1] == 0
            found = np.where(itself, found[:, 1:], found[:, :k])
        distances: np.ndarray = found.mean(axis=1)
        return distances


class TableScore:
    """The score of a table's cross-fitted model (see the module's docstring).

    `fit(network, rows)` fits member m's code statistics and units on the rows it trained
    on (those whose fold is not m), and the nearest-rows part on all of them.
    """

    def __init__(
        self, code_weight: float = TABLE_CODE_WEIGHT, neighbors: int = TABLE_NEIGHBORS
    ) -> None:
        ErrorAndCodeScore(code_weight, neighbors)  # checks both
        self.code_weight, self.neighbors = code_weight, neighbors

    def fit(self, network: TabularNetwork, rows: np.ndarray) -> TableScore:
        """Fit on the model's training rows (normal rows, the held-out ones too), float64."""
        errors, codes, folds = network.errors_and_codes(rows)
        self.members_: list[ErrorAndCodeScore] = []
        for m in range(network.members):
            trained, left = folds != m, folds == m
            if trained.sum() < 2 or not left.any():
                raise InputError(
                    f"n_samples = {len(rows)} training rows leave member {m} of the model too "
                    "few rows to train on or to be checked on; give more rows"
                )
            score = ErrorAndCodeScore(self.code_weight).fit(errors[m, trained], codes[m, trained])
            self.members_.append(score)
        self.nearest_ = NearestRows(self.neighbors).fit(rows) if self.neighbors else None
        return self

    def __call__(self, network: TabularNetwork, rows: np.ndarray) -> np.ndarray:
        """The scores of rows (higher is more abnormal), each from its fold's member."""
        errors, codes, folds = network.errors_and_codes(rows)
        scores = np.zeros(len(rows))
        for m, score in enumerate(self.members_):
            mine = folds == m
            if mine.any():
                scores[mine] = score(errors[m, mine], codes[m, mine])
        if self.nearest_ is not None:
            scores += TABLE_NEIGHBOR_WEIGHT * self.nearest_(rows) / self.nearest_.mean_
        return scores
