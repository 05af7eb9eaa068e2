"""Anomaly detection on tables in scikit-learn's outlier API: `AutoencoderOutlierDetector`.

The model and its training are `aekit.anomaly.tabular`'s (the same as `aekit train
fully_connected` on a table), and the score `aekit.anomaly.table_score.TableScore`'s: the
reconstruction error, the code's Mahalanobis distance and the distance to the nearest
other training rows, each scored by a member of the cross-fitted model that never trained
on the row. Chosen on ADBench's 22 tables with 5 splits (docs/anomaly.md).

X is an array, a path to a .parquet, .feather/.arrow or .csv file, or a
`aekit.data.tables.TableSource` (`aekit.data.table_files.open_table(path, label_column)`): a
table larger than the row cap (`max_rows`) is never held in memory. Its scaling statistics
are taken in one pass (the robust median and IQR from a uniform sample of the cap's rows), it
trains on a fresh uniform sample each epoch (`aekit.anomaly.sampling`) and it is scored a
chunk at a time; float32 arrays and memory maps are converted to float64 a chunk at a time too.

It follows scikit-learn's outlier convention and nothing else: `score_samples` is higher for
normal rows, `decision_function` is negative for outliers, and `predict` gives -1 (outlier)
or 1. The threshold flags the `contamination` share of the training rows and of new normal
rows alike: every row is scored by the member of the cross-fitted model that never trained
on rows like it (aekit.anomaly.scores.TableScore), never by one that fitted it. PyOD's
convention (higher is more abnormal, `decision_scores_`, `labels_`) is
`aekit.pyod.AutoEncoder`'s, over the same model and score.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted

from aekit.anomaly.sampling import SampledRecipe, chunk_rows, row_cap, uniform_sample
from aekit.anomaly.scaling import fit_scaling, stream_scaling
from aekit.anomaly.scores import ErrorAndCodeScore, threshold_at
from aekit.anomaly.table_score import TABLE_CODE_WEIGHT, TABLE_NEIGHBORS, TableScore
from aekit.anomaly.tabular import (
    SCALINGS,
    TABLE_LEARNING_RATE,
    TabularNetwork,
    TabularRecipe,
    load_scaling,
    set_scaling,
    sized_hidden_units,
    tabular_config,
    tabular_estimator,
)
from aekit.checks import Choice, Integer, Number, Optional, Sizes
from aekit.data.table_files import open_table
from aekit.data.tables import ArrayTable, TableSource, is_table_path
from aekit.errors import InputError
from aekit.estimator import rng as rng_state
from aekit.estimator.cpu import ThreadCount

MIN_ROWS = 10
"""The fewest rows the detector fits on: each member needs rows to train and to be checked on."""
_STATISTICS_ROWS = 16_384  # rows per batch of the statistics pass: each makes a few temporaries

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as validate_data

    _NO_FINITE_CHECK = {"ensure_all_finite": False}  # done a chunk at a time, naming the column
except ImportError:  # older versions validate through a method of BaseEstimator

    def validate_data(estimator: Any, X: Any, **kwargs: Any) -> Any:
        return estimator._validate_data(X, **kwargs)

    _NO_FINITE_CHECK = {"force_all_finite": False}


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
        n_estimators: models trained from different seeds; their scores are averaged.
        code_weight: the weight of the code's Mahalanobis distance in the score, against 1
            for the reconstruction error (each divided by its mean over the training rows).
        n_neighbors: the score adds the row's mean distance to this many nearest other
            training rows (of at most 2,048 of them, features min-max scaled), in units of
            its mean, weight 20; 0 adds none. Left out of a model trained on samples (a table
            over `max_rows` rows): searching them would cost more than the model.
            code_weight=0 and n_neighbors=0 score by the reconstruction error alone.
        contamination: the share of rows flagged by `predict`: of the training rows, and
            alike of new normal rows.
        random_state: an int seed in [0, 2**32 - 1], or None for a fresh one each fit.
        device: where to train ("cpu", "cuda", "auto").
        max_rows: the most rows held in memory to train on. A larger table trains on a new
            uniform sample of that many rows each epoch (early stopping on a sample of its
            held-out rows) and is scored a chunk at a time. None: as many rows as fit 64 MiB
            in float64, at most 100,000.
        verbose: 0 quiet; 2 a line per epoch on stderr (steps, the mean training loss and
            the held-out error "held_out_loss"); 1 adds a progress bar.

    `score_samples` (higher is normal), `decision_function` (< 0 is an outlier), `predict`
    (-1 outlier, 1 normal), `offset_`, and `training_scores_`: the training rows' scores,
    higher is more abnormal.
    Every row, training or new, is scored by the members of the cross-fitted model that
    never trained on rows like it, so `contamination` is the share flagged of the training
    rows and, alike, of new normal rows. A row exactly at the threshold is normal. PyOD's
    convention is `aekit.pyod.AutoEncoder`'s.
    """

    def __init__(
        self,
        hidden_units: Sequence[int] | None = None,
        scaling: str = "standard",
        epochs: int | None = None,
        batch_size: int | None = None,
        learning_rate: float = TABLE_LEARNING_RATE,
        validation_fraction: float = 0.1,
        patience: int = 3,
        n_estimators: int = 1,
        code_weight: float = TABLE_CODE_WEIGHT,
        n_neighbors: int = TABLE_NEIGHBORS,
        contamination: float = 0.1,
        random_state: int | None = None,
        device: str = "cpu",
        max_rows: int | None = None,
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
        self.n_neighbors = n_neighbors
        self.contamination = contamination
        self.random_state = random_state
        self.device = device
        self.max_rows = max_rows
        self.verbose = verbose

    def fit(self, X: Any, y: Any = None) -> AutoencoderOutlierDetector:
        """Train on the rows of X, taken as (mostly) normal; y is ignored.

        X: an array, a table file's path or a TableSource (see the module's docstring).
        """
        self._check_params()
        # One thread, as training runs: these networks are too small for a second to pay, and
        # a second thread waiting on a busy core made scoring 8x slower under load.
        with ThreadCount(1):
            return self._fit(X)

    def _fit(self, X: Any) -> AutoencoderOutlierDetector:
        table = self._table(X, reset=True)
        if table.n_rows < MIN_ROWS:
            raise InputError(
                f"n_samples = {table.n_rows} rows are too few to train on and to check the "
                f"model on rows it did not train on; give at least {MIN_ROWS}"
            )
        units = (
            [int(u) for u in self.hidden_units]
            if self.hidden_units is not None
            else sized_hidden_units(table.n_features)
        )
        seed = (
            int(np.random.default_rng().integers(2**31))  # None: a fresh draw each fit
            if self.random_state is None
            else int(self.random_state)
        )
        cap = row_cap(table.n_features, self.max_rows)
        # A table within the cap is held in memory, as it always was (the same scores for a
        # seed); a larger one is read in pieces and trained on samples.
        rows = table.to_numpy() if table.n_rows <= cap else None
        sample = scaling = None
        if rows is None and self.scaling == "robust":  # a median needs rows at once: a sample's
            sample = uniform_sample(table, cap, seed)
            scaling = fit_scaling(sample, "robust")
        elif rows is None:  # one pass over the table
            batches = table.batches(_STATISTICS_ROWS)
            scaling = stream_scaling(batches, table.n_features, self.scaling)
        saved = rng_state.get_state()  # training seeds the global generators; restore the caller's
        try:
            self.networks_ = [
                self._train_one(table if rows is None else rows, units, seed + i, cap, scaling)
                for i in range(self.n_estimators)
            ]
        finally:
            rng_state.set_state(saved)
        self.hidden_units_ = units
        # The score's training means: of every row in memory, or of a uniform sample (drawn
        # now, so that it is not held through training).
        if rows is None:
            rows = sample if sample is not None else uniform_sample(table, cap, seed)
        # The neighbourhood part on rows in memory only (see n_neighbors).
        self.n_neighbors_ = self.n_neighbors if table.n_rows <= cap else 0
        self.scores_ = [
            TableScore(self.code_weight, self.n_neighbors_).fit(network, rows)
            for network in self.networks_
        ]
        del rows, sample
        # Every training row scored as a new row is, by members that never trained on it;
        # the contamination share of them lies above the threshold.
        self.training_scores_: np.ndarray = -self._score_table(table)
        self.offset_ = -threshold_at(self.training_scores_, 100 * (1 - self.contamination))
        return self

    def _train_one(
        self,
        data: np.ndarray | TableSource,
        units: list[int],
        seed: int,
        cap: int,
        scaling: tuple[np.ndarray, np.ndarray] | None,
    ) -> TabularNetwork:
        """One network: on the rows in memory, or on samples of a table with `scaling`."""
        if isinstance(data, np.ndarray):
            recipe: TabularRecipe | SampledRecipe = TabularRecipe.of(
                data, seed, self.batch_size, self.epochs, self.validation_fraction, self.patience
            )
        else:
            recipe = SampledRecipe.of(
                data,
                cap,
                seed,
                self.batch_size,
                self.epochs,
                self.validation_fraction,
                self.patience,
            )
        with tempfile.TemporaryDirectory(prefix="aekit-outliers-") as model_dir:
            est = tabular_estimator(
                int(self.n_features_in_),
                units,
                self.learning_rate,
                model_dir=model_dir,
                config=tabular_config(seed, self.device),
            )
            if isinstance(data, np.ndarray):
                set_scaling(est.network, data, self.scaling)
            else:
                assert scaling is not None
                load_scaling(est.network, *scaling)
            est.train(recipe.input_fn(), hooks=recipe.hooks(), verbose=self.verbose)
            est.event_writers.close()
        network = est.network
        assert isinstance(network, TabularNetwork)
        # Scoring in float64 on the CPU: a row's score does not depend on the rows scored with
        # it (float32 sums in another order differ in the last bits), and the model pickles.
        return network.cpu().double().eval()

    def score_samples(self, X: Any) -> np.ndarray:
        """Minus each row's reconstruction error plus its code's distances: lower is more
        abnormal.

        Each part is divided by its mean over rows the model did not train on; the members'
        and the ensemble's scores are averaged. X: an array, a table file's path or a
        TableSource, scored a chunk at a time.
        """
        check_is_fitted(self, "scores_")
        with ThreadCount(1):  # as fit scores
            return self._score_table(self._table(X, reset=False))

    def _score_table(self, table: TableSource) -> np.ndarray:
        chunk = chunk_rows(table, row_cap(table.n_features, self.max_rows))
        parts = [self._score_rows(rows) for rows in table.batches(chunk)]
        return np.concatenate(parts) if parts else np.empty(0)

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        total = np.zeros(len(rows))
        for network, score in zip(self.networks_, self.scores_, strict=True):
            total += score(network, rows)
        scores: np.ndarray = -total / len(self.networks_)
        return scores

    def decision_function(self, X: Any) -> np.ndarray:
        """score_samples shifted so that the `contamination` share of new normal rows is < 0."""
        check_is_fitted(self, "offset_")
        decision: np.ndarray = self.score_samples(X) - self.offset_
        return decision

    def predict(self, X: Any) -> np.ndarray:
        """-1 for an outlier, 1 for a normal row."""
        labels: np.ndarray = np.where(self.decision_function(X) < 0, -1, 1)
        return labels

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
        ErrorAndCodeScore(self.code_weight, self.n_neighbors)  # checks both
        Optional(Integer(0, below=2**32))("random_state", self.random_state)
        Integer(0, below=3)("verbose", self.verbose)
        Optional(Integer(1))("max_rows", self.max_rows)

    def _table(self, X: Any, reset: bool) -> TableSource:
        """X as a TableSource, its width checked against the fitted one (and its names)."""
        if is_table_path(X):
            X = open_table(X)
        if not isinstance(X, TableSource):
            if reset:
                self.table_columns_: tuple[str, ...] | None = None
            return ArrayTable(self._validate(X, reset))
        if reset:
            if not X.n_rows:
                raise InputError(f"{X.name}: no rows to train on; give a table with rows")
            self.n_features_in_ = X.n_features
            # Not scikit-learn's feature_names_in_: that would warn at every array scored after.
            self.table_columns_ = X.feature_names if X.named else None
            return X
        if X.n_features != self.n_features_in_:
            raise ValueError(
                f"X has {X.n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        fitted = getattr(self, "table_columns_", None)
        if X.named and fitted is not None and fitted != X.feature_names:
            raise InputError(
                f"{X.name}: columns {list(X.feature_names)} differ from the fitted ones "
                f"{list(fitted)}; give the same columns in the same order"
            )
        return X

    def _validate(self, X: Any, reset: bool) -> np.ndarray:
        # float32 and float64 are kept as they are (a memory map stays one); NaN and infinite
        # values are looked for a chunk at a time as the rows are read (ArrayTable).
        checked: np.ndarray = validate_data(
            self, X, dtype=(np.float64, np.float32), reset=reset, **_NO_FINITE_CHECK
        )
        return checked
