"""Anomaly detection on tables: an autoencoder sized from the data, in scikit-learn's outlier API.

`AutoencoderOutlierDetector` scales the features (standardise, robust or min-max, fitted on
the training rows and kept with the model) and trains a fully-connected autoencoder with a
linear output on the scaled rows through an aekit Estimator. A row's score adds two parts,
each in units of its mean over the training rows: the mean squared reconstruction error in
the scaled space (so that no feature dominates by its units), and the Mahalanobis distance
of the row's code from the training rows' codes. The first finds rows off the pattern of the
normal ones; the second finds rows that follow it to values the normal ones never reach,
which an autoencoder reconstructs well. Width, batch size and number of epochs follow from
the table's shape, and training stops early once the error on a held-out tenth of the
training rows stops falling.

It follows scikit-learn's outlier convention: `score_samples` is higher for normal rows,
`decision_function` is negative for outliers, and `predict` gives -1 (outlier) or 1, with the
threshold at the `contamination` share of the training rows.
"""

from __future__ import annotations

import itertools
import math
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler
from sklearn.utils.validation import check_is_fitted
from torch import nn

from aekit.anomaly.scores import ErrorAndCodeScore
from aekit.data.checks import shown
from aekit.data.input_fn import numpy_input_fn
from aekit.errors import ConfigError
from aekit.estimator import Estimator, EstimatorSpec, ModeKeys, RunConfig
from aekit.estimator import rng as rng_state
from aekit.hooks.base import Hook, RunContext, StepResult
from aekit.models.fully_connected import sized_hidden_units

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as validate_data
except ImportError:  # older versions validate through a method of BaseEstimator

    def validate_data(estimator: Any, X: Any, **kwargs: Any) -> Any:
        return estimator._validate_data(X, **kwargs)


SCALERS = {"standard": StandardScaler, "robust": RobustScaler, "minmax": MinMaxScaler}
SCORE_KEY = "reconstruction_error"
_CLIP = 1e4  # scaled values beyond this (a heavy tail after robust scaling) are clipped
_BATCH = 8192  # rows per forward pass when scoring


class TabularAutoencoder(nn.Module):
    """Fully-connected encoder and mirrored decoder with a linear output, for scaled rows."""

    def __init__(self, n_features: int, hidden_units: Sequence[int]) -> None:
        super().__init__()
        widths = [n_features, *hidden_units]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.encoder = nn.Sequential(*layers[:-1])  # the code is linear
        layers = []
        for a, b in itertools.pairwise(widths[::-1]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.decoder = nn.Sequential(*layers[:-1])  # and so is the reconstruction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reconstruction: torch.Tensor = self.decoder(self.encoder(x))
        return reconstruction


def row_errors(network: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """Mean squared reconstruction error of each row."""
    reconstruction: torch.Tensor = network(rows)
    return (reconstruction.to(rows.dtype) - rows).square().mean(dim=1)


def tabular_model_fn(
    network: nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor | None,
    mode: ModeKeys,
    params: Mapping[str, Any],
) -> EstimatorSpec:
    """Mean squared reconstruction error of scaled rows; predicts it per row."""
    errors = row_errors(network, features)
    if mode is ModeKeys.PREDICT:
        return EstimatorSpec(mode, predictions={SCORE_KEY: errors})
    return EstimatorSpec(mode, loss=errors.mean())


def sized_batch(n_rows: int) -> int:
    """About 64 steps per epoch, in powers of two from 16 to 512 rows."""
    return int(np.clip(2 ** round(np.log2(max(n_rows, 1) / 64)), 16, 512))


def sized_epochs(n_rows: int, batch_size: int) -> int:
    """At most 100 epochs and about 10,000 steps (at least 5 epochs); early stopping ends most."""
    steps_per_epoch = max(1, -(-n_rows // batch_size))
    return int(np.clip(10_000 // steps_per_epoch, 5, 100))


class KeepBestOnHeldOut(Hook):
    """Early stopping: the held-out error every `every_n_steps` (an epoch), the best weights kept.

    Asks the Estimator to stop once `patience` checks in a row have not improved on the best
    error by 0.01%; `best_state` is then the weights of the best check.
    """

    def __init__(self, held: torch.Tensor, every_n_steps: int, patience: int) -> None:
        self.held, self.every_n_steps, self.patience = held, every_n_steps, patience
        self.best = math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self.waited = 0

    def after_run(self, context: RunContext, result: StepResult) -> None:
        if context.global_step % self.every_n_steps:
            return
        network = context.estimator.network
        with torch.no_grad():
            network.eval()
            error = float(row_errors(network, self.held).mean())
            network.train()
        if error < self.best * (1 - 1e-4):
            self.best, self.waited = error, 0
            self.best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
        else:
            self.waited += 1
            if self.waited >= self.patience:
                context.request_stop()


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

    def fit(self, X: Any, y: Any = None) -> AutoencoderOutlierDetector:
        """Train on the rows of X, taken as (mostly) normal; y is ignored."""
        self._check_params()
        X = self._validate(X, reset=True)
        self.scaler_ = SCALERS[self.scaling]().fit(X)
        rows = self._scaled(X).astype(np.float32)
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
        order = np.random.default_rng(seed).permutation(len(rows))
        n_held = int(len(rows) * self.validation_fraction) if len(rows) >= 20 else 0
        held, train = rows[order[:n_held]], rows[order[n_held:]]
        batch = self.batch_size or sized_batch(len(train))
        epochs = self.epochs or sized_epochs(len(train), batch)
        saved = rng_state.get_state()  # training seeds the global generators; restore the caller's
        try:
            self.networks_ = [
                self._train_one(train, held, units, batch, epochs, seed + i)
                for i in range(self.n_estimators)
            ]
        finally:
            rng_state.set_state(saved)
        self.hidden_units_ = units
        scaled = torch.from_numpy(self._scaled(X))
        self.scorers_ = [
            ErrorAndCodeScore(self.code_weight).fit(*self._errors_and_codes(network, scaled))
            for network in self.networks_
        ]
        self.offset_ = float(np.percentile(self.score_samples(X), 100 * self.contamination))
        return self

    @staticmethod
    def _errors_and_codes(
        network: TabularAutoencoder, rows: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each row's reconstruction error and code, in batches of `_BATCH` rows."""
        errors, codes = [], []
        with torch.no_grad():
            for i in range(0, len(rows), _BATCH):
                code = network.encoder(rows[i : i + _BATCH])
                reconstruction = network.decoder(code)
                errors.append((reconstruction - rows[i : i + _BATCH]).square().mean(dim=1))
                codes.append(code)
        return torch.cat(errors).numpy(), torch.cat(codes).numpy()

    def _train_one(
        self,
        train: np.ndarray,
        held: np.ndarray,
        units: list[int],
        batch: int,
        epochs: int,
        seed: int,
    ) -> TabularAutoencoder:
        config = RunConfig(
            random_seed=seed,
            device=self.device,
            log_step_count_steps=0,
            save_summary_steps=0,
            save_checkpoints_secs=None,
            save_checkpoints_steps=10**9,
            progress_bar=False,
            # One thread: with more, float sums run in another order, early stopping can end
            # at another epoch and the same random_state gives other scores. These networks
            # are too small for a second thread to pay (12% faster on the largest tables).
            cpu_threads=1,
        )
        torch.manual_seed(seed)  # the initial weights too follow random_state (fit restores)
        network = TabularAutoencoder(train.shape[1], units)
        with tempfile.TemporaryDirectory(prefix="aekit-outliers-") as model_dir:
            est = Estimator(
                tabular_model_fn,
                network,
                model_dir=model_dir,
                params={"learning_rate": self.learning_rate},
                config=config,
            )
            steps_per_epoch = -(-len(train) // batch)
            keep = KeepBestOnHeldOut(torch.from_numpy(held).to(est.device), steps_per_epoch,
                                     self.patience)  # fmt: skip
            est.train(
                numpy_input_fn(train, batch_size=batch, num_epochs=epochs, seed=seed),
                hooks=[keep] if len(held) else [],
            )
            est.event_writers.close()
        if keep.best_state is not None:
            network.load_state_dict(keep.best_state)
        # Scoring in float64 on the CPU: a row's score does not depend on the rows scored with
        # it (float32 sums in another order differ in the last bits), and the model pickles.
        return network.cpu().double().eval()

    def score_samples(self, X: Any) -> np.ndarray:
        """Minus each row's reconstruction error plus its code's distance: lower is more abnormal.

        Each part is divided by its mean over the training rows; the ensemble's scores are
        averaged.
        """
        check_is_fitted(self, "scorers_")
        rows = torch.from_numpy(self._scaled(self._validate(X, reset=False)))
        total = np.zeros(len(rows))
        for network, scorer in zip(self.networks_, self.scorers_, strict=True):
            total += scorer(*self._errors_and_codes(network, rows))
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

    def _check_params(self) -> None:
        if self.scaling not in SCALERS:
            raise ConfigError(f"scaling must be one of {list(SCALERS)}, got {shown(self.scaling)}")
        if self.hidden_units is not None and (
            isinstance(self.hidden_units, str)
            or not len(self.hidden_units)
            or any(
                isinstance(u, bool) or not isinstance(u, int | np.integer) or u <= 0
                for u in self.hidden_units
            )
        ):
            raise ConfigError(
                "hidden_units must be None or a non-empty list of positive integers, got "
                f"{shown(self.hidden_units)}"
            )
        for name, optional in (("epochs", True), ("batch_size", True), ("patience", False),
                               ("n_estimators", False)):  # fmt: skip
            value = getattr(self, name)
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
                allowed = "None or a positive integer" if optional else "a positive integer"
                raise ConfigError(f"{name} must be {allowed}, got {shown(value)}")
        for name, low, high in (("contamination", 0.0, 0.5), ("validation_fraction", 0.0, 0.5)):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (
                    low <= value <= high if name == "validation_fraction" else low < value <= high
                )
            ):
                raise ConfigError(f"{name} must be a number in ({low}, {high}], got {shown(value)}")
        rate = self.learning_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
            raise ConfigError(f"learning_rate must be a positive number, got {shown(rate)}")
        ErrorAndCodeScore(self.code_weight)  # checks the weight
        seed = self.random_state
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int | np.integer)
            or not 0 <= seed < 2**32
        ):  # fmt: skip
            raise ConfigError(
                f"random_state must be None or an int in [0, 2**32), got {shown(seed)}"
            )

    def _validate(self, X: Any, reset: bool) -> np.ndarray:
        checked: np.ndarray = validate_data(self, X, dtype=np.float64, reset=reset)
        return checked

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        scaled: np.ndarray = np.clip(self.scaler_.transform(X), -_CLIP, _CLIP)
        return scaled
