"""aekit in scikit-learn: `AutoencoderTransformer`, and the outlier detector re-exported.

`AutoencoderTransformer` trains an aekit estimator inside `fit` and keeps the trained network;
`transform` gives the codes, `inverse_transform` decodes codes back to feature space, and
`score` is the negative mean squared reconstruction error (higher is better, as scikit-learn
expects), so a `GridSearchCV` over the transformer alone picks the best reconstruction. It
works as a step of a `Pipeline`, e.g. before a classifier. For an anomaly score per row use
`AutoencoderOutlierDetector` (aekit.anomaly), whose model and score are built for that.

Features are scaled to [0, 1] per feature with the training minimum and range (min-max, the
one scaling of aekit.anomaly.tabular), because the decoder's sigmoid output lives there;
`inverse_transform` undoes the scaling. A memory map (`np.load(..., mmap_mode="r")`) is never
copied whole: it is validated, scaled and encoded a few MB of rows at a time, and training
reads it batch by batch, with the same figures as the same rows in memory.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted

from aekit import metrics
from aekit.anomaly.outliers import AutoencoderOutlierDetector, validate_data
from aekit.anomaly.tabular import fit_scaling
from aekit.checks import Choice, Integer, Sizes, resolve_device, shown
from aekit.data.dataset import Dataset
from aekit.data.input_fn import numpy_input_fn, shard_for_estimator
from aekit.data.rows import Rows, is_mapped, row_chunks
from aekit.errors import ConfigError
from aekit.estimator import Estimator, RunConfig
from aekit.estimator import rng as rng_state
from aekit.models.heads import ReconstructionNetwork

__all__ = ["AutoencoderOutlierDetector", "AutoencoderTransformer"]

MODELS = ("fully_connected", "variational")
_BATCH = 4096  # rows per forward pass in transform: bounds memory on large inputs
_MAX_SEED = 2**32 - 1  # numpy's RandomState takes seeds in [0, 2**32 - 1], as scikit-learn does
_CHUNK_FLOATS = 2 << 20  # values of a memory map validated (as float64) at a time: 16 MB


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
        batch_size: examples per training step.
        epochs: passes over the training rows.
        random_state: seed of initial weights and shuffling: an int in [0, 2**32 - 1], a
            numpy RandomState (it draws the seed) or None (drawn at random).
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
        random_state: int | np.random.RandomState | None = None,
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
        # Settings first: a bad one is reported before the data are validated or copied.
        units, seed = self._check_params()
        if _mapped(X):  # data on disk, maybe larger than memory: in chunks, never a copy
            lows, highs = self._check_chunks(X, reset=True)
            # Min-max scaling depends on each feature's extremes alone: those two rows give
            # fit_scaling the same figures (and the same checks) as every row would.
            self.center_, self.scale_ = fit_scaling(np.stack([lows, highs]), "minmax")
            inputs = self._mapped_input(X, seed)
        else:
            X = self._validate(X, reset=True)
            self.center_, self.scale_ = fit_scaling(X, "minmax")
            scaled = self._scale(X).astype(np.float32)
            inputs = numpy_input_fn(
                scaled, batch_size=self.batch_size, num_epochs=self.epochs, seed=seed
            )
        # Training seeds the global generators; a library call should leave the caller's alone.
        saved = rng_state.get_state()
        try:
            if self.model_dir is not None:
                network = self._train(inputs, X.shape[1], Path(self.model_dir), units, seed)
            else:
                with tempfile.TemporaryDirectory(prefix="aekit-sklearn-") as tmp:
                    network = self._train(inputs, X.shape[1], Path(tmp), units, seed)
        finally:
            rng_state.set_state(saved)
        # Inference in float64 on the CPU: a row's code does not depend on the batch around it
        # (float32 sums in a different order differ in the last bits), and the results pickle.
        self.network_ = network.cpu().double().eval()
        self.n_components_ = units[-1]
        return self

    def _check_params(self) -> tuple[list[int], int | None]:
        """The layer sizes as Python ints and the seed, or a ConfigError for a bad setting."""
        units = Sizes()("hidden_units", self.hidden_units)
        Choice(*MODELS)("model", self.model)
        if self.model == "variational" and len(units) < 2:
            raise ConfigError(
                "the variational model needs hidden_units with a hidden layer and the latent "
                f"size, e.g. (64, 2), got {shown(self.hidden_units)}"
            )
        for name in ("batch_size", "epochs"):
            Integer(1)(name, getattr(self, name))
        if not isinstance(self.device, str | torch.device):
            raise ConfigError(
                f"device must be a device string such as 'cpu', got {shown(self.device)}"
            )
        resolve_device(str(self.device))  # a ConfigError for devices that cannot train here
        if self.model_dir is not None and not isinstance(self.model_dir, str | os.PathLike):
            raise ConfigError(
                f"model_dir must be a folder's path or None, got {shown(self.model_dir)}"
            )
        return units, self._seed()

    def _seed(self) -> int | None:
        """The training seed from random_state, validated as scikit-learn validates it."""
        state = self.random_state
        if state is None:
            return None
        if isinstance(state, int | np.integer) and not isinstance(state, bool | np.bool_):
            if not 0 <= state <= _MAX_SEED:
                raise ConfigError(
                    f"random_state must be None, an integer in [0, {_MAX_SEED}] or a "
                    f"numpy RandomState, got {shown(state)}"
                )
            return int(state)
        try:
            if isinstance(state, bool | np.bool_):  # a flag, not a seed (sklearn takes it as 1)
                raise ValueError(state)
            generator = check_random_state(state)
        except ValueError:
            raise ConfigError(
                f"random_state must be None, an integer in [0, {_MAX_SEED}] or a numpy "
                f"RandomState, got {shown(state)}"
            ) from None
        # A RandomState is consumed the scikit-learn way: it gives the seed it is asked for.
        return int(generator.randint(0, 2**31 - 1))

    def _train(
        self, inputs: Any, n_features: int, model_dir: Path, units: list[int], seed: int | None
    ) -> ReconstructionNetwork:
        config = RunConfig(
            random_seed=seed,
            device=self.device,
            log_step_count_steps=0,
            save_summary_steps=0 if self.model_dir is None else 100,
            save_checkpoints_secs=None,
        )
        estimator = self._estimator(n_features, model_dir, config, units)
        try:
            estimator.train(inputs, verbose=0)
        finally:
            estimator.event_writers.close()
        network = estimator.network
        assert isinstance(network, ReconstructionNetwork)
        return network

    def _estimator(
        self, n_features: int, model_dir: Path, config: RunConfig, units: list[int]
    ) -> Estimator:
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
        if _mapped(X):
            parts = [
                self._map(self._scale(self._validate(part, reset=False)), self.network_.encode)
                for _, part in self._chunks(X)
            ]
            if not parts:
                self._validate(np.asarray(X), reset=False)  # no rows: scikit-learn's own message
            return np.concatenate(parts)
        X = self._validate(X, reset=False)
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
        rows: np.ndarray = decoded.reshape(len(codes), -1) * self.scale_ + self.center_
        return rows

    def score(self, X: Any, y: Any = None) -> float:
        """Negative mean squared reconstruction error of X in its own units: higher is better."""
        check_is_fitted(self, "network_")
        if not _mapped(X):
            X = self._validate(X, reset=False)
            rebuilt = torch.from_numpy(self.inverse_transform(self.transform(X)))
            return -float(metrics.example_mse(torch.from_numpy(X), rebuilt).mean())
        errors = []
        for _, part in self._chunks(X):  # per-row errors of each chunk, their mean at the end
            rows = self._validate(part, reset=False)
            rebuilt = torch.from_numpy(self.inverse_transform(self.transform(rows)))
            errors.append(metrics.example_mse(torch.from_numpy(rows), rebuilt))
        if not errors:
            self._validate(X, reset=False)  # no rows: scikit-learn's own message
        return -float(torch.cat(errors).mean())

    def _validate(self, X: Any, reset: bool) -> np.ndarray:
        # scikit-learn's finiteness check sums X first: finite data near ±1e308 make that sum
        # inf - inf, a harmless warning (it then checks element by element).
        with np.errstate(over="ignore", invalid="ignore"):
            checked: np.ndarray = validate_data(self, X, dtype=np.float64, reset=reset)
        return checked

    def _chunks(self, X: Any) -> Any:
        """(offset, rows) of a memory map, sized so that a chunk in float64 takes ~16 MB."""
        row_values = max(1, int(np.prod(X.shape[1:], dtype=np.int64)))
        return row_chunks(X, max(1, _CHUNK_FLOATS // row_values) * row_values * X.dtype.itemsize)

    def _check_chunks(self, X: Any, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        """scikit-learn's checks of a memory map, chunk by chunk; each feature's min and max."""
        lows: np.ndarray | None = None
        highs: np.ndarray | None = None
        for start, part in self._chunks(X):
            rows = self._validate(part, reset=reset and start == 0)
            low, high = rows.min(axis=0), rows.max(axis=0)
            lows = low if lows is None else np.minimum(lows, low)
            highs = high if highs is None else np.maximum(highs, high)
        if lows is None or highs is None:  # no rows: scikit-learn's own message
            self._validate(np.asarray(X), reset=reset)
            raise AssertionError("unreachable: scikit-learn refuses an empty X")
        return lows, highs

    def _mapped_input(self, X: Any, seed: int | None) -> Any:
        """numpy_input_fn's batches (the same order) over a memory map, scaled per batch."""
        center, scale = self.center_, self.scale_
        batch_size, epochs = self.batch_size, self.epochs

        def scaled(rows: torch.Tensor) -> tuple[torch.Tensor, None]:
            values = (rows.numpy().astype(np.float64) - center) / scale
            return torch.from_numpy(values.astype(np.float32)), None

        def input_fn() -> Dataset:
            data = Dataset.from_tensor_slices((X,)).shuffle(len(X), seed=seed)
            return shard_for_estimator(data.repeat(epochs)).batch(batch_size).map(scaled)

        return input_fn

    def _scale(self, X: np.ndarray) -> np.ndarray:
        scaled: np.ndarray = (X - self.center_) / self.scale_
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


def _mapped(X: Any) -> bool:
    """Whether X reads a file (a memory map, or `Rows` of one): streamed, never copied whole."""
    return isinstance(X, np.memmap | Rows) or is_mapped(X)
