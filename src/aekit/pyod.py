"""aekit's table detector in PyOD's convention: a PyOD user changes one import line.

    from pyod.models.auto_encoder import AutoEncoder  # before
    from aekit.pyod import AutoEncoder                # after

`AutoEncoder` follows PyOD's `BaseDetector` contract: `fit(X)`, `decision_function` (higher
is more abnormal), `predict` (1 outlier, 0 normal), `predict_proba` ("linear" or "unify"),
`predict_confidence`, `fit_predict`, and the fitted `decision_scores_`, `threshold_` and
`labels_`. Underneath it is `aekit.anomaly.AutoencoderOutlierDetector` (scikit-learn's
convention, where higher is more normal): the same model, the same score, the sign turned.

Constructor names: PyOD's where PyOD has the setting (`contamination`, `lr`, `epoch_num`,
`batch_size`, `hidden_neuron_list`, `random_state`, `device`, `verbose`), aekit's for what
PyOD lacks (`scaling`, `n_neighbors`, ...). They are not aliases: each class takes one name
per setting, its convention's, so no call can give one setting twice. PyOD's settings for
parts aekit's model does not have (`batch_norm`, `dropout_rate`, `optimizer_name`, ...) are
not taken, and Python refuses them by name. The defaults are aekit's sized recipe (epochs,
batch and widths follow the table), not PyOD's fixed 10 epochs of batch 32; the seed is
PyOD's 42.

`decision_scores_` are the training rows' scores from the members of the cross-fitted
model that never trained on them (`AutoencoderOutlierDetector.training_scores_`), so
`threshold_`, their `contamination` quantile, flags that share of new normal rows; PyOD
takes its quantile of scores of rows its model fitted, which new rows exceed more often.
`threshold_` is the split-conformal quantile (`aekit.anomaly.threshold_at`): at most one
training score above PyOD's interpolated percentile, so that new normal rows exceed it at
most `contamination` of the time, where the percentile lets about 1/(n + 1) more through.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import binom
from sklearn.base import BaseEstimator
from sklearn.metrics import roc_auc_score
from sklearn.utils.validation import check_is_fitted

from aekit.anomaly.outliers import AutoencoderOutlierDetector
from aekit.anomaly.table_score import TABLE_CODE_WEIGHT, TABLE_NEIGHBORS
from aekit.anomaly.tabular import TABLE_LEARNING_RATE
from aekit.checks import Choice

__all__ = ["AutoEncoder"]

PROBA_METHODS = ("linear", "unify")
"""predict_proba's ways from scores to probabilities, PyOD's names."""


class AutoEncoder(BaseEstimator):  # type: ignore[misc]
    """An autoencoder outlier detector with PyOD's interface (see the module's docstring).

    Args:
        contamination: the share of rows taken as outliers, in (0, 0.5].
        lr: Adam's learning rate.
        epoch_num: the most epochs (None: from the number of rows); early stopping on
            held-out rows usually ends training sooner.
        batch_size: rows per step (None: from the number of rows).
        hidden_neuron_list: encoder layer sizes, mirrored by the decoder (None: from the
            number of features).
        random_state: the seed (None: a fresh one each fit).
        device: "cpu", "cuda" or None (CUDA when there is one).
        verbose: 0 quiet, 1 a progress bar and a line per epoch, 2 the lines alone.

    `scaling`, `validation_fraction`, `patience`, `n_estimators`, `code_weight`,
    `n_neighbors` and `max_rows` are `AutoencoderOutlierDetector`'s.
    """

    def __init__(
        self,
        contamination: float = 0.1,
        lr: float = TABLE_LEARNING_RATE,
        epoch_num: int | None = None,
        batch_size: int | None = None,
        hidden_neuron_list: Sequence[int] | None = None,
        random_state: int | None = 42,
        device: str | None = None,
        verbose: int = 1,
        scaling: str = "standard",
        validation_fraction: float = 0.1,
        patience: int = 3,
        n_estimators: int = 1,
        code_weight: float = TABLE_CODE_WEIGHT,
        n_neighbors: int = TABLE_NEIGHBORS,
        max_rows: int | None = None,
    ) -> None:
        self.contamination = contamination
        self.lr = lr
        self.epoch_num = epoch_num
        self.batch_size = batch_size
        self.hidden_neuron_list = hidden_neuron_list
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.scaling = scaling
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.n_estimators = n_estimators
        self.code_weight = code_weight
        self.n_neighbors = n_neighbors
        self.max_rows = max_rows

    def fit(self, X: Any, y: Any = None) -> AutoEncoder:
        """Fit on the rows of X (an array, a table file's path or a TableSource); y is ignored."""
        self.detector_ = AutoencoderOutlierDetector(
            hidden_units=self.hidden_neuron_list,
            scaling=self.scaling,
            epochs=self.epoch_num,
            batch_size=self.batch_size,
            learning_rate=self.lr,
            validation_fraction=self.validation_fraction,
            patience=self.patience,
            n_estimators=self.n_estimators,
            code_weight=self.code_weight,
            n_neighbors=self.n_neighbors,
            contamination=self.contamination,
            random_state=self.random_state,
            device="auto" if self.device is None else self.device,
            max_rows=self.max_rows,
            verbose=self.verbose,
        ).fit(X)
        self.n_features_in_ = self.detector_.n_features_in_
        self.decision_scores_: np.ndarray = self.detector_.training_scores_
        self.threshold_ = -self.detector_.offset_
        self.labels_: np.ndarray = (self.decision_scores_ > self.threshold_).astype(np.int64)
        self._mu = float(np.mean(self.decision_scores_))
        self._sigma = float(np.std(self.decision_scores_))
        self._classes = 2
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Each row's outlier score: higher is more abnormal."""
        check_is_fitted(self, "detector_")
        scores: np.ndarray = -self.detector_.score_samples(X)
        return scores

    def predict(self, X: Any, return_confidence: bool = False) -> Any:
        """1 for an outlier (a score above `threshold_`), 0 for a normal row."""
        labels = (self.decision_function(X) > self.threshold_).astype(np.int64)
        if return_confidence:
            return labels, self.predict_confidence(X)
        return labels

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit, then the training rows' labels (`labels_`)."""
        return self.fit(X).labels_

    def predict_proba(self, X: Any, method: str = "linear", return_confidence: bool = False) -> Any:
        """The outlier probability, (n, 2): column 0 normal, column 1 outlier.

        "linear" min-max scales the score by the training scores' range, "unify" takes the
        Gaussian error function of its z-score (by their mean and standard deviation) over
        √2, both clipped to [0, 1], as PyOD. Training scores that are all equal leave no
        range or spread: "linear" then divides by 1 (as scikit-learn's MinMaxScaler, which
        PyOD uses, does) and "unify" is a step at that value, where PyOD gives NaN.
        """
        Choice(*PROBA_METHODS)("method", method)
        check_is_fitted(self, "decision_scores_")
        scores, train = self.decision_function(X), self.decision_scores_
        with np.errstate(over="ignore", invalid="ignore"):  # inf scores clip to 1 below
            if method == "linear":
                span = float(train.max() - train.min())
                outlier = (scores - train.min()) / (span if span > 0 else 1.0)
            elif train.max() > train.min():  # (the std of equal floats may come out > 0)
                standard = (scores - self._mu) / (self._sigma * np.sqrt(2))
                outlier = torch.special.erf(torch.from_numpy(standard)).numpy()
            else:
                outlier = (scores > train.max()).astype(np.float64)
        proba = np.empty((len(scores), 2))
        proba[:, 1] = np.clip(outlier, 0.0, 1.0)
        proba[:, 0] = 1.0 - proba[:, 1]
        if return_confidence:
            return proba, self.predict_confidence(X)
        return proba

    def predict_confidence(self, X: Any) -> np.ndarray:
        """How surely each row's label would stay under other training sets, in [0, 1].

        PyOD's (Perini et al., 2020): the row's rank among the training scores gives a
        Beta posterior of its outlier probability; the confidence is the binomial chance
        that the training rows above it stay within the contamination count.
        """
        check_is_fitted(self, "decision_scores_")
        n = len(self.decision_scores_)
        scores = self.decision_function(X)
        at_or_below = np.searchsorted(np.sort(self.decision_scores_), scores, side="right")
        posterior = (1 + at_or_below) / (2 + n)
        confidence = 1 - binom.cdf(n - int(n * self.contamination), n, posterior)
        normal = scores <= self.threshold_
        confidence[normal] = 1 - confidence[normal]
        result: np.ndarray = confidence
        return result

    def _predict_rank(self, X: Any, normalized: bool = False) -> np.ndarray:
        """Each row's rank among the training scores (normalised to [0, 1] on request)."""
        check_is_fitted(self, "decision_scores_")
        ranks = np.searchsorted(np.sort(self.decision_scores_), self.decision_function(X))
        return ranks / ranks.max() if normalized else ranks

    def fit_predict_score(self, X: Any, y: Any, scoring: str = "roc_auc_score") -> float:
        """Fit on X, then score the training scores against labels y (1 outlier): the AUROC
        ("roc_auc_score") or the precision among the n highest scores, n the number of
        outliers ("prc_n_score"), as PyOD."""
        if scoring not in ("roc_auc_score", "prc_n_score"):
            raise NotImplementedError(
                f"scoring={scoring!r}: give 'roc_auc_score' or 'prc_n_score', PyOD's two"
            )
        self.fit(X)
        truth = np.asarray(y).astype(bool).ravel()
        if scoring == "roc_auc_score":
            return float(roc_auc_score(truth, self.decision_scores_))
        top = np.argsort(-self.decision_scores_, kind="stable")[: int(truth.sum())]
        return float(truth[top].mean()) if len(top) else 0.0
