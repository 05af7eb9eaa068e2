"""The fully-connected autoencoder of seed 000 (222,384 weights with [128, 64, 32] on MNIST)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

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


class FullyConnectedNetwork(ReconstructionNetwork):
    """Encoder of `hidden_units`, mirrored decoder back to the input size, linear output."""

    def __init__(
        self,
        input_shape: Sequence[int] = (28, 28),
        hidden_units: Sequence[int] = (128, 64, 32),
        activation_fn: Activation = "relu",
        keep_prob: float | None = None,
    ) -> None:
        super().__init__()
        units = check_units("hidden_units", hidden_units)
        self.input_shape = check_shape("input_shape", input_shape)
        self.image_shape = _image_shape(self.input_shape)
        n_features = math.prod(self.input_shape)
        self.n_features = n_features
        self.encoder = Encoder(n_features, units, activation_fn, keep_prob)
        self.decoder = Decoder(units[-1], units[-2::-1], n_features, activation_fn, keep_prob)
        variance_scaling_(self)

    @property
    def example_shape(self) -> tuple[int, ...]:
        return (self.n_features,)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        check_example_size(x, self.n_features, self.input_shape)
        code: torch.Tensor = self.encoder(x.flatten(1))
        return code

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.decoder(code)
        return logits


class AutoEncoder(ReconstructionEstimator):
    """Seed 000's estimator: FC autoencoder, sigmoid cross-entropy, Adam with staircase decay.

    Args:
        hidden_units: encoder layer sizes; the decoder mirrors them.
        activation_fn: name or callable for every hidden layer.
        keep_prob: the probability of keeping a unit (seed 000's, as in `tf.nn.dropout`):
            0.9 drops 10% of the units after each hidden layer; None: no dropout. The
            other models' `dropout` is the drop rate; `--dropout D` on the command line
            gives `keep_prob = 1 - D`.
        weight_decay: L2 factor on weights (not biases), training loss only.
        learning_rate: Adam's initial rate, ×0.96 every 1000 steps.
        input_shape: shape of one example, e.g. (28, 28) for MNIST.
        noise_factor: train as a denoising autoencoder with this Gaussian noise.
        noise: ("gaussian" | "masking" | "salt_and_pepper", amount) instead of noise_factor.

    For the rows of a table (features in their own units) use
    `aekit.anomaly.AutoencoderOutlierDetector`, whose model scales each feature.
    """

    def __init__(
        self,
        hidden_units: Sequence[int] = (128, 64, 32),
        activation_fn: Activation = "relu",
        keep_prob: float | None = None,
        weight_decay: float | None = 1e-5,
        learning_rate: float = 1e-3,
        model_dir: str | Path | None = None,
        config: RunConfig | None = None,
        input_shape: Sequence[int] = (28, 28),
        noise_factor: float | None = None,
        noise: tuple[str, float] | None = None,
    ) -> None:
        units = check_units("hidden_units", hidden_units)
        super().__init__(
            lambda: FullyConnectedNetwork(input_shape, units, activation_fn, keep_prob),
            learning_rate,
            weight_decay,
            ("gaussian", noise_factor) if noise_factor is not None else noise,
            model_dir,
            config,
            extra_params={
                "hidden_units": units,
                "activation_fn": activation_fn,
                "keep_prob": keep_prob,
                "input_shape": list(input_shape),
            },
        )
