"""aekit's autoencoders as a scikit-learn transformer: fit, transform, inverse_transform, score.

`AutoencoderTransformer` trains an aekit estimator inside `fit` and keeps the trained network;
`transform` gives the codes, `inverse_transform` decodes codes back to feature space, and
`score` is the negative mean squared reconstruction error (higher is better, as scikit-learn
expects), so a `GridSearchCV` over the transformer alone picks the best reconstruction. It
works as a step of a `Pipeline`, e.g. before a classifier.

Features are scaled to [0, 1] per feature with the training minimum and range, because the
decoder's sigmoid output lives there; `inverse_transform` undoes the scaling.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted

from aekit.data.input_fn import numpy_input_fn
from aekit.errors import ConfigError
from aekit.estimator import Estimator, RunConfig
from aekit.estimator import rng as rng_state
from aekit.models.heads import ReconstructionNetwork

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data
except ImportError:  # older versions validate through a method of BaseEstimator

    def validate_data(estimator: Any, X: Any, **kwargs: Any) -> Any:
        return estimator._validate_data(X, **kwargs)


MODELS = ("fully_connected", "variational")
_BATCH = 4096  # rows per forward pass in transform: bounds memory on large inputs


class AutoencoderTransformer(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """A fully-connected (or variational) autoencoder as a scikit-learn transformer.

    Args:
        hidden_units: encoder layer sizes; the last is the size of the code `transform` gives.
            For the variational model the last entry is the latent size and at least one
            hidden layer must come before it.
        model: "fully_connected" (seed 000's autoencoder) or "variational" (a VAE; its
            codes are the posterior means).
        activation: hidden-layer activation (relu, elu, leaky_relu, gelu, tanh, sigmoid).
        learning_rate: Adam's rate.
        weight_decay: L2 on the weights (fully_connected only; None for none).
        noise_factor: Gaussian input noise while training: a denoising autoencoder
            (fully_connected only).
        batch_size, epochs: the training schedule.
        random_state: seed of initial weights and shuffling; None draws them at random.
        device: where to train, e.g. "cpu" or "cuda" ("auto" takes a GPU when present).
        model_dir: keep the fit's checkpoints and TensorBoard events there (None: a
            temporary directory, removed after `fit`).
    """

    def __init__(
        self,
        hidden_units: Sequence[int] = (64, 16),
        model: str = "fully_connected",
        activation: str = "relu",
        learning_rate: float = 1e-2,
        weight_decay: float | None = None,
        noise_factor: float | None = None,
        batch_size: int = 64,
        epochs: int = 20,
        random_state: int | None = None,
        device: str = "cpu",
        model_dir: str | None = None,
    ) -> None:
        self.hidden_units = hidden_units
        self.model = model
        self.activation = activation
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.noise_factor = noise_factor
        self.batch_size = batch_size
        self.epochs = epochs
        self.random_state = random_state
        self.device = device
        self.model_dir = model_dir

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None) -> AutoencoderTransformer:
        """Train an autoencoder on the rows of X (y is ignored)."""
        X = validate_data(self, X, dtype=np.float64)
        self._check_params()
        self.data_min_ = X.min(axis=0)
        data_range = X.max(axis=0) - self.data_min_
        # A constant feature has no range; 1 keeps it at 0 after scaling instead of dividing by 0.
        self.data_range_ = np.where(data_range > 0, data_range, 1.0)
        scaled = self._scale(X).astype(np.float32)
        # Training seeds the global generators; a library call should leave the caller's alone.
        saved = rng_state.get_state()
        try:
            if self.model_dir is not None:
                network = self._train(scaled, Path(self.model_dir))
            else:
                with tempfile.TemporaryDirectory(prefix="aekit-sklearn-") as tmp:
                    network = self._train(scaled, Path(tmp))
        finally:
            rng_state.set_state(saved)
        # Inference in float64 on the CPU: a row's code does not depend on the batch around it
        # (float32 sums in a different order differ in the last bits), and the results pickle.
        self.network_ = network.cpu().double().eval()
        self.n_components_ = int(list(self.hidden_units)[-1])
        return self

    def _check_params(self) -> None:
        units = list(self.hidden_units) if isinstance(self.hidden_units, Sequence) else []
        if not units or any(isinstance(u, bool) or not isinstance(u, int) or u <= 0 for u in units):
            raise ConfigError(
                f"hidden_units must be a non-empty list of positive integers, got "
                f"{self.hidden_units!r}"
            )
        if self.model not in MODELS:
            raise ConfigError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.model == "variational" and len(units) < 2:
            raise ConfigError(
                "the variational model needs hidden_units with a hidden layer and the latent "
                f"size, e.g. (64, 2), got {self.hidden_units!r}"
            )
        for name in ("batch_size", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")

    def _train(self, scaled: np.ndarray, model_dir: Path) -> ReconstructionNetwork:
        config = RunConfig(
            random_seed=self.random_state,
            device=self.device,
            log_step_count_steps=0,
            save_summary_steps=0 if self.model_dir is None else 100,
            save_checkpoints_secs=None,
        )
        estimator = self._estimator(scaled.shape[1], model_dir, config)
        try:
            estimator.train(
                numpy_input_fn(
                    scaled,
                    batch_size=self.batch_size,
                    num_epochs=self.epochs,
                    seed=self.random_state,
                )
            )
        finally:
            estimator.event_writers.close()
        network = estimator.network
        assert isinstance(network, ReconstructionNetwork)
        return network

    def _estimator(self, n_features: int, model_dir: Path, config: RunConfig) -> Estimator:
        units = list(self.hidden_units)
        if self.model == "variational":
            from aekit.models.variational import VariationalAutoencoder

            return VariationalAutoencoder(
                latent_dim=units[-1],
                hidden_units=units[:-1],
                activation_fn=self.activation,
                learning_rate=self.learning_rate,
                input_shape=(n_features,),
                model_dir=model_dir,
                config=config,
            )
        from aekit.models.fully_connected import AutoEncoder

        return AutoEncoder(
            hidden_units=units,
            activation_fn=self.activation,
            weight_decay=self.weight_decay,
            learning_rate=self.learning_rate,
            noise_factor=self.noise_factor,
            input_shape=(n_features,),
            model_dir=model_dir,
            config=config,
        )

    # -- using the fitted model ------------------------------------------------------------

    def transform(self, X: Any) -> np.ndarray:
        """The code of each row of X, shape (n_samples, hidden_units[-1])."""
        check_is_fitted(self, "network_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._map(self._scale(X), self.network_.encode)

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Rows in feature space decoded from codes X, shape (n_samples, n_features_in_)."""
        check_is_fitted(self, "network_")
        codes = check_array(X, dtype=np.float64)
        if codes.shape[1] != self.n_components_:
            raise ValueError(
                f"X has {codes.shape[1]} columns but the code has {self.n_components_}; "
                "give the output of transform"
            )
        decoded = self._map(codes, lambda z: torch.sigmoid(self.network_.decode(z)))
        rows: np.ndarray = decoded.reshape(len(codes), -1) * self.data_range_ + self.data_min_
        return rows

    def score_samples(self, X: Any) -> np.ndarray:
        """Negative squared reconstruction error of each row, averaged over its features."""
        check_is_fitted(self, "network_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        decoded = self.inverse_transform(self.transform(X))
        errors: np.ndarray = ((decoded - X) ** 2).mean(axis=1)
        return -errors

    def score(self, X: Any, y: Any = None) -> float:
        """Negative mean squared reconstruction error of X in its own units: higher is better."""
        return float(self.score_samples(X).mean())

    def _scale(self, X: np.ndarray) -> np.ndarray:
        scaled: np.ndarray = (X - self.data_min_) / self.data_range_
        return scaled

    def _map(self, rows: np.ndarray, fn: Any) -> np.ndarray:
        outputs = []
        with torch.no_grad():
            for start in range(0, len(rows), _BATCH):
                chunk = torch.from_numpy(np.ascontiguousarray(rows[start : start + _BATCH]))
                outputs.append(fn(chunk).reshape(len(chunk), -1).numpy())
        if not outputs:
            return np.zeros((0, 0))
        return np.concatenate(outputs)
