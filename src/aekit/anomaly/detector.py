"""`AnomalyDetector`: anomaly scores of any trained reconstruction Estimator.

Any model whose predictions include `reconstruction_error` (every reconstruction model in
the zoo, the variational one included) can score; with a `code_weight` it must also predict
`embedding`. A table's cross-fitted model scores with `TableScore`, every row by a member
that never trained on it, as the outlier detector does.
The scores themselves are `aekit.anomaly.scores`'.
"""

from __future__ import annotations

import copy

import numpy as np

from aekit.anomaly.scores import CODE_KEY, SCORE_KEY, ErrorAndCodeScore, threshold_at
from aekit.anomaly.table_score import TableScore
from aekit.anomaly.tabular import TabularNetwork
from aekit.data.input_fn import predict_input_fn
from aekit.data.slices import Array
from aekit.errors import ConfigError, SpecError
from aekit.estimator import Estimator


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
        predict_input_fn(x, estimator.network, batch_size),
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


class AnomalyDetector:
    """Scores examples with a trained model; flags those above a percentile of training scores.

    Args:
        estimator: a trained model predicting `reconstruction_error` (and `embedding`,
            with a code_weight).
        percentile: where among the training scores the threshold lies, in (0, 100).
        code_weight: 0 scores by the reconstruction error; above 0 (or with `neighbors`), by
            `ErrorAndCodeScore` with this weight, fitted on the training data by `calibrate`.
        neighbors: how many nearest training codes the score's neighbourhood part averages
            over (0: none).
    """

    def __init__(
        self,
        estimator: Estimator,
        percentile: float = 99.0,
        code_weight: float = 0.0,
        neighbors: int = 0,
    ) -> None:
        threshold_at(np.zeros(1), percentile)  # validates the percentile now
        self.estimator = estimator
        self.percentile = float(percentile)
        self.code_weight = code_weight
        self.neighbors = neighbors
        two_part = ErrorAndCodeScore(code_weight, neighbors)  # checks both
        self._two_part = two_part if code_weight or neighbors else None
        table = isinstance(estimator.network, TabularNetwork)
        self._table = TableScore(code_weight, neighbors) if table else None
        self._network: TabularNetwork | None = None
        self.threshold: float | None = None
        self.training_scores: np.ndarray | None = None

    def calibrate(self, x_train: Array) -> AnomalyDetector:
        """Set the threshold from the scores of (normal) training data; returns self.

        A table's model scores each row with a member that never trained on it (TableScore).
        """
        if self._table is not None:
            rows, network = np.asarray(x_train, dtype=np.float64), self._scoring_network()
            self.training_scores = self._table.fit(network, rows)(network, rows)
        elif self._two_part is None:
            self.training_scores = reconstruction_errors(self.estimator, x_train)
        else:
            errors, codes = errors_and_codes(self.estimator, x_train)
            self.training_scores = self._two_part.fit(errors, codes)(errors, codes)
        self.threshold = threshold_at(self.training_scores, self.percentile)
        return self

    def score(self, x: Array) -> np.ndarray:
        """The anomaly score of every example: its reconstruction error, or the two-part score."""
        if self._two_part is None and self._table is None:
            return reconstruction_errors(self.estimator, x)
        if self.training_scores is None:
            raise ConfigError(
                "a code_weight or neighbors need the training codes; call calibrate(x_train) first"
            )
        if self._table is not None:
            return self._table(self._scoring_network(), np.asarray(x, dtype=np.float64))
        assert self._two_part is not None
        return self._two_part(*errors_and_codes(self.estimator, x))

    def _scoring_network(self) -> TabularNetwork:
        # Scored in float64 on the CPU, as the outlier detector scores: the same figures.
        if self._network is None:
            network = self.estimator.network
            assert isinstance(network, TabularNetwork)
            self._network = copy.deepcopy(network).cpu().double().eval()
        return self._network

    def is_anomaly(self, x: Array) -> np.ndarray:
        """Whether each example scores above the threshold (call `calibrate` first)."""
        if self.threshold is None:
            raise ConfigError("the detector has no threshold yet; call calibrate(x_train) first")
        flags: np.ndarray = self.score(x) > self.threshold
        return flags
