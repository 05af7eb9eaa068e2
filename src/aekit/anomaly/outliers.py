"""Anomaly detection on tables in scikit-learn's outlier API: `AutoencoderOutlierDetector`.

The model and its training are `aekit.anomaly.tabular`'s (the same as `aekit train
fully_connected` on a table). A row's score adds two parts, each in units of its mean over
the training rows (`ErrorAndCodeScore`): the mean squared reconstruction error in the scaled
space, which finds rows off the pattern of the normal ones, and the Mahalanobis distance of
the row's code from the training rows' codes, which finds rows that follow the pattern to
values the normal ones never reach (an autoencoder reconstructs those well).

It follows scikit-learn's outlier convention: `score_samples` is higher for normal rows,
`decision_function` is negative for outliers, and `predict` gives -1 (outlier) or 1, with the
threshold at the `contamination` share of the training rows. PyOD's names are there too, in
PyOD's sense (higher is more abnormal): `decision_scores_`, `threshold_`, `labels_` (0 normal,
1 outlier) and `predict_proba`; docs/anomaly.md maps one convention onto the other.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted

from aekit.anomaly.scores import ErrorAndCodeScore
from aekit.anomaly.tabular import (
    SCALINGS,
    TabularAutoencoder,
    TabularRecipe,
    set_scaling,
    sized_hidden_units,
    tabular_config,
    tabular_estimator,
)
from aekit.checks import Choice, Integer, Number, Optional, Sizes
from aekit.estimator import rng as rng_state

PROBA_METHODS = ("linear", "unify")
"""predict_proba's ways from scores to probabilities, PyOD's names."""

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as validate_data
except ImportError:  # older versions validate through a method of BaseEstimator

    def validate_data(estimator: Any, X: Any, **kwargs: Any) -> Any:
        return estimator._validate_data(X, **kwargs)


class AutoencoderOutlierDetector(OutlierMixin, BaseEstimator):  # type: ignore[misc]
    """An autoencoder that flags rows it reconstructs badly (scikit-learn's outlier API).

    Args:
        hidden_units: encoder layer sizes; None sizes them from the number of features.
        scaling: "standard", "robust" or "minmax": how features are scaled before training
            and scoring (fitted on the training rows, kept with the model).
        epochs: the most epochs to train (None: from the number of rows); training stops
            earlier once the held-out error has not improved for `patience` epochs.
        batch_size: rows per step (None: from the number of rows).
        learning_rate: Adam's rate.
        validation_fraction: the share of training rows held out for early stopping (0: none).
        patience: epochs without improvement before training stops.
        n_estimators: autoencoders trained from different seeds; their scores are averaged.
        code_weight: the weight of the code's Mahalanobis distance in the score, against 1
            for the reconstruction error (each divided by its mean over the training rows);
            0 scores by the reconstruction error alone.
        contamination: the share of training rows taken as outliers by `predict`.
        random_state: an int seed in [0, 2**32 - 1], or None for a fresh one each fit.
        device: where to train ("cpu", "cuda", "auto").
        verbose: 0 quiet; 2 a line per epoch on stderr (steps, the mean training loss and
            the held-out error "held_out_loss"); 1 adds a progress bar.

    scikit-learn's side: `score_samples` (higher is normal), `decision_function` (< 0 is an
    outlier), `predict` (-1 outlier, 1 normal) and `offset_`. PyOD's side, where higher is more
    abnormal: `decision_scores_` (minus score_samples on the training rows), `threshold_`
    (minus `offset_`), `labels_` (1 outlier, 0 normal) and `predict_proba`. A row exactly at
    the threshold is normal on both sides.
    """

    def __init__(
        self,
        hidden_units: Sequence[int] | None = None,
        scaling: str = "standard",
        epochs: int | None = None,
        batch_size: int | None = None,
        learning_rate: float = 1e-3,
        validation_fraction: float = 0.1,
        patience: int = 3,
        n_estimators: int = 1,
        code_weight: float = 1.0,
        contamination: float = 0.1,
        random_state: int | None = None,
        device: str = "cpu",
        verbose: int = 0,
    ) -> None:
        self.hidden_units = hidden_units
        self.scaling = scaling
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.n_estimators = n_estimators
        self.code_weight = code_weight
        self.contamination = contamination
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def fit(self, X: Any, y: Any = None) -> AutoencoderOutlierDetector:
        """Train on the rows of X, taken as (mostly) normal; y is ignored."""
        self._check_params()
        X = self._validate(X, reset=True)
        units = (
            [int(u) for u in self.hidden_units]
            if self.hidden_units is not None
            else sized_hidden_units(X.shape[1])
        )
        seed = (
            int(np.random.default_rng().integers(2**31))  # None: a fresh draw each fit
            if self.random_state is None
            else int(self.random_state)
        )
        saved = rng_state.get_state()  # training seeds the global generators; restore the caller's
        try:
            self.networks_ = [self._train_one(X, units, seed + i) for i in range(self.n_estimators)]
        finally:
            rng_state.set_state(saved)
        self.hidden_units_ = units
        self.scorers_ = [
            ErrorAndCodeScore(self.code_weight).fit(*network.errors_and_codes(X))
            for network in self.networks_
        ]
        normality = self.score_samples(X)
        self.offset_ = float(np.percentile(normality, 100 * self.contamination))
        # PyOD's attributes, with its sign. threshold_ is minus offset_ rather than PyOD's
        # percentile at 1 - contamination (equal but for rounding) so that labels_ and predict
        # agree exactly: -score > -offset_ is score < offset_, predict's test, ties normal.
        self.decision_scores_: np.ndarray = -normality
        self.threshold_ = -self.offset_
        self.labels_: np.ndarray = (self.decision_scores_ > self.threshold_).astype(np.int64)
        return self

    def _train_one(self, X: np.ndarray, units: list[int], seed: int) -> TabularAutoencoder:
        recipe = TabularRecipe.of(
            X, seed, self.batch_size, self.epochs, self.validation_fraction, self.patience
        )
        with tempfile.TemporaryDirectory(prefix="aekit-outliers-") as model_dir:
            est = tabular_estimator(
                X.shape[1],
                units,
                self.learning_rate,
                model_dir=model_dir,
                config=tabular_config(seed, self.device),
            )
            set_scaling(est.network, X, self.scaling)
            est.train(recipe.input_fn(), hooks=recipe.hooks(), verbose=self.verbose)
            est.event_writers.close()
        network = est.network
        assert isinstance(network, TabularAutoencoder)
        # Scoring in float64 on the CPU: a row's score does not depend on the rows scored with
        # it (float32 sums in another order differ in the last bits), and the model pickles.
        return network.cpu().double().eval()

    def score_samples(self, X: Any) -> np.ndarray:
        """Minus each row's reconstruction error plus its code's distance: lower is more abnormal.

        Each part is divided by its mean over the training rows; the ensemble's scores are
        averaged.
        """
        check_is_fitted(self, "scorers_")
        rows = self._validate(X, reset=False)
        total = np.zeros(len(rows))
        for network, scorer in zip(self.networks_, self.scorers_, strict=True):
            total += scorer(*network.errors_and_codes(rows))
        scores: np.ndarray = -total / len(self.networks_)
        return scores

    def decision_function(self, X: Any) -> np.ndarray:
        """score_samples shifted so that the `contamination` share of training rows is < 0."""
        check_is_fitted(self, "offset_")
        decision: np.ndarray = self.score_samples(X) - self.offset_
        return decision

    def predict(self, X: Any) -> np.ndarray:
        """-1 for an outlier, 1 for a normal row."""
        labels: np.ndarray = np.where(self.decision_function(X) < 0, -1, 1)
        return labels

    def predict_proba(self, X: Any, method: str = "linear") -> np.ndarray:
        """PyOD's outlier probability: (n, 2), column 0 normal, column 1 outlier.

        The PyOD score (minus score_samples) is mapped to [0, 1] against the training rows'
        scores: "linear" min-max scales it by their minimum and maximum, "unify" takes the
        Gaussian error function of its z-score (by their mean and standard deviation) over √2;
        both are clipped to [0, 1].
        """
        Choice(*PROBA_METHODS)("method", method)
        check_is_fitted(self, "decision_scores_")
        scores = -self.score_samples(X)
        train = self.decision_scores_
        # Training scores that are all equal leave no span or spread: "linear" then divides by 1
        # (as scikit-learn's MinMaxScaler, which PyOD uses, does) and "unify" is a step at that
        # value, where PyOD would give NaN.
        with np.errstate(over="ignore", invalid="ignore"):  # inf scores clip to 1 below
            if method == "linear":
                span = float(train.max() - train.min())
                outlier = (scores - train.min()) / (span if span > 0 else 1.0)
            elif (spread := float(train.std())) > 0:
                standard = (scores - train.mean()) / (spread * np.sqrt(2))
                outlier = torch.special.erf(torch.from_numpy(standard)).numpy()
            else:
                outlier = (scores > train.max()).astype(np.float64)
        proba = np.empty((len(scores), 2))
        proba[:, 1] = np.clip(outlier, 0.0, 1.0)
        proba[:, 0] = 1.0 - proba[:, 1]
        return proba

    def _check_params(self) -> None:
        Choice(*SCALINGS)("scaling", self.scaling)
        Optional(Sizes())("hidden_units", self.hidden_units)
        for name in ("epochs", "batch_size"):
            Optional(Integer(1))(name, getattr(self, name))
        for name in ("patience", "n_estimators"):
            Integer(1)(name, getattr(self, name))
        Number(positive=True, most=0.5)("contamination", self.contamination)
        Number(most=0.5)("validation_fraction", self.validation_fraction)
        Number(positive=True)("learning_rate", self.learning_rate)
        ErrorAndCodeScore(self.code_weight)  # checks the weight
        Optional(Integer(0, below=2**32))("random_state", self.random_state)
        Integer(0, below=3)("verbose", self.verbose)

    def _validate(self, X: Any, reset: bool) -> np.ndarray:
        # scikit-learn's finiteness check sums X first: finite data near ±1e308 make that sum
        # inf - inf, a harmless warning (it then checks element by element).
        with np.errstate(over="ignore", invalid="ignore"):
            checked: np.ndarray = validate_data(self, X, dtype=np.float64, reset=reset)
        return checked
