"""The fully-connected autoencoder of seed 000 (222,384 weights with [128, 64, 32] on MNIST)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from aekit.errors import ConfigError, InputError
from aekit.estimator import RunConfig
from aekit.models.heads import ReconstructionEstimator, ReconstructionNetwork
from aekit.models.layers import (
    Activation,
    Decoder,
    Encoder,
    check_example_size,
    check_shape,
    check_units,
    variance_scaling_,
)


def _image_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) == 2:
        return (1, shape[0], shape[1])
    if len(shape) == 3:
        return (shape[0], shape[1], shape[2])
    return (1, 1, math.prod(shape))


SCALINGS = ("standard", "robust", "minmax")


def sized_hidden_units(n_features: int) -> list[int]:
    """Twice the features wide (8 to 128), then a code of about 2·√features, under the features.

    Chosen over the whole ADBench benchmark (README): a code of a quarter of the features
    starved the tables with few of them (5 to 10 features), and half of them let the wide
    ones (64 and more) copy their input.
    """
    code = max(1, min(n_features - 1, round(2 * math.sqrt(n_features))))
    return [int(np.clip(2 * n_features, 8, 128)), code]


class FullyConnectedAutoencoder(ReconstructionNetwork):
    """Encoder of `hidden_units`, mirrored decoder back to the input size, linear output.

    With `scaled`, inputs are rows of a table: `encode` first scales each feature as
    (x - center) / scale (buffers, so checkpoints keep the fitted scaling) and the decoder
    gives the reconstruction in that scaled space.
    """

    center: torch.Tensor
    scale: torch.Tensor

    def __init__(
        self,
        input_shape: Sequence[int] = (28, 28),
        hidden_units: Sequence[int] = (128, 64, 32),
        activation_fn: Activation = "relu",
        keep_prob: float | None = None,
        scaled: bool = False,
    ) -> None:
        super().__init__()
        units = check_units("hidden_units", hidden_units)
        self.input_shape = check_shape("input_shape", input_shape)
        self.image_shape = _image_shape(self.input_shape)
        n_features = math.prod(self.input_shape)
        self.n_features = n_features
        self.scaled = scaled
        if scaled:
            self.register_buffer("center", torch.zeros(n_features))
            self.register_buffer("scale", torch.ones(n_features))
        self.encoder = Encoder(n_features, units, activation_fn, keep_prob)
        self.decoder = Decoder(units[-1], units[-2::-1], n_features, activation_fn, keep_prob)
        variance_scaling_(self)

    def scale_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Rows in the space the network works in: scaled when `scaled`, as given otherwise."""
        check_example_size(x, self.n_features, self.input_shape)
        rows = x.flatten(1)
        return (rows - self.center) / self.scale if self.scaled else rows

    def unscale_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """The inverse of `scale_rows`: scaled rows back in the features' own units."""
        return rows * self.scale + self.center if self.scaled else rows

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        code: torch.Tensor = self.encoder(self.scale_rows(x))
        return code

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.decoder(code)
        return logits


class AutoEncoder(ReconstructionEstimator):
    """Seed 000's estimator: FC autoencoder, sigmoid cross-entropy, Adam with staircase decay.

    Args:
        hidden_units: encoder layer sizes; the decoder mirrors them.
        activation_fn: name or callable for every hidden layer.
        dropout: the probability of KEEPING a unit (seed 000's `keep_prob`, as in
            `tf.nn.dropout`), not PyTorch's drop rate: 0.9 drops 10% of the units after
            each hidden layer; None: no dropout. The name is kept from the seed; the
            command line calls it `--keep-prob` and reads `--dropout` as the drop rate.
        weight_decay: L2 factor on weights (not biases), training loss only.
        learning_rate: Adam's initial rate, ×0.96 every 1000 steps.
        input_shape: shape of one example, e.g. (28, 28) for MNIST.
        noise_factor: train as a denoising autoencoder with this Gaussian noise.
        noise: ("gaussian" | "masking" | "salt_and_pepper", amount) instead of noise_factor.
        scaling: None for pixels in [0, 1] (sigmoid cross-entropy), or "standard", "robust"
            or "minmax" for rows of a table: features scaled by `fit_scaling`'s statistics,
            a linear reconstruction and the squared error in the scaled space.
    """

    def __init__(
        self,
        hidden_units: Sequence[int] = (128, 64, 32),
        activation_fn: Activation = "relu",
        dropout: float | None = None,
        weight_decay: float | None = 1e-5,
        learning_rate: float = 1e-3,
        model_dir: str | Path | None = None,
        config: RunConfig | None = None,
        input_shape: Sequence[int] = (28, 28),
        noise_factor: float | None = None,
        noise: tuple[str, float] | None = None,
        scaling: str | None = None,
    ) -> None:
        units = check_units("hidden_units", hidden_units)
        if scaling is not None and scaling not in SCALINGS:
            raise ConfigError(f"scaling must be None or one of {SCALINGS}, got {scaling!r}")
        if scaling is not None and (noise_factor is not None or noise is not None):
            raise ConfigError(
                "input noise corrupts pixels in [0, 1]; a table's scaled rows train without it, "
                "drop the noise or the scaling"
            )
        super().__init__(
            lambda: FullyConnectedAutoencoder(
                input_shape, units, activation_fn, dropout, scaled=scaling is not None
            ),
            learning_rate,
            weight_decay,
            ("gaussian", noise_factor) if noise_factor is not None else noise,
            model_dir,
            config,
            extra_params={
                "hidden_units": units,
                "activation_fn": activation_fn,
                "dropout": dropout,
                "input_shape": list(input_shape),
                "scaling": scaling,
            },
        )

    def fit_scaling(self, x: np.ndarray) -> None:
        """Fit the features' scaling (the `scaling` setting) on training rows x, (N, features).

        Call it once before training; checkpoints keep it. Constant features keep scale 1.
        """
        method = self.params.get("scaling")
        network = self.network
        if method is None or not isinstance(network, FullyConnectedAutoencoder):
            raise ConfigError("fit_scaling needs an AutoEncoder built with scaling=...")
        rows = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        if rows.shape[1] != network.n_features or not len(rows):
            raise InputError(
                f"fit_scaling got rows of shape {rows.shape}; give (N, {network.n_features})"
            )
        if method == "standard":
            center, scale = rows.mean(0), rows.std(0)
        elif method == "robust":
            low, center, high = np.percentile(rows, [25, 50, 75], axis=0)
            scale = high - low
        else:
            center, scale = rows.min(0), rows.max(0) - rows.min(0)
        scale = np.where(scale > 0, scale, 1.0)
        with torch.no_grad():
            network.center.copy_(torch.from_numpy(center))
            network.scale.copy_(torch.from_numpy(scale))
