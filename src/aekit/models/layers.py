"""Building blocks shared by the zoo: initialisation, activations, Encoder and Decoder."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from aekit import summary
from aekit.errors import ConfigError

Activation = str | Callable[[torch.Tensor], torch.Tensor]

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "elu": nn.functional.elu,
    "leaky_relu": nn.functional.leaky_relu,
    "gelu": nn.functional.gelu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}


def activation(name_or_fn: Activation) -> Callable[[torch.Tensor], torch.Tensor]:
    """An activation function: itself, or its name (relu, elu, leaky_relu, gelu, tanh, sigmoid)."""
    if callable(name_or_fn):
        return name_or_fn
    try:
        return _ACTIVATIONS[name_or_fn]
    except KeyError:
        raise ConfigError(
            f"unknown activation {name_or_fn!r}; use one of {sorted(_ACTIVATIONS)}"
        ) from None


def variance_scaling_(module: nn.Module) -> None:
    """He initialisation as TF-slim's variance_scaling_initializer: truncated normal, fan-in, ×2.

    Weights ~ N(0, 1.3·2/fan_in) cut at two standard deviations (1.3 makes up for
    the cut); biases 0.
    """
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            weight = m.weight
            if isinstance(m, nn.ConvTranspose2d):
                # A transposed convolution's fan-in is its out_channels × kernel area.
                fan_in = weight.shape[1] * weight[0, 0].numel()
            else:
                fan_in = weight[0].numel()
            std = math.sqrt(1.3 * 2.0 / fan_in)
            nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def record_activation(name: str, value: torch.Tensor) -> None:
    """On summary steps: histogram of a layer's output and its fraction of zeros."""
    if summary.should_record():
        summary.histogram(f"{name}/activation", value)
        summary.scalar(f"{name}/zero_fraction", (value == 0).float().mean())


def check_units(name: str, units: Sequence[int]) -> list[int]:
    """A non-empty list of positive layer sizes, or a ConfigError."""
    units = list(units)
    if not units or any(isinstance(u, bool) or not isinstance(u, int) or u <= 0 for u in units):
        raise ConfigError(f"{name} must be a non-empty list of positive integers, got {units!r}")
    return units


class Encoder(nn.Module):
    """Fully-connected layers of decreasing size: `in_features` → hidden_units[-1].

    Every layer applies `activation_fn`, the last one `code_activation_fn` when
    given; with `keep_prob` < 1, dropout follows each layer in training mode.
    """

    def __init__(
        self,
        in_features: int,
        hidden_units: Sequence[int],
        activation_fn: Activation = "relu",
        keep_prob: float | None = None,
        name: str = "encoder",
        code_activation_fn: Activation | None = None,
    ) -> None:
        super().__init__()
        units = check_units("hidden_units", hidden_units)
        sizes = [in_features, *units]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.activation = activation(activation_fn)
        self.code_activation = activation(code_activation_fn or activation_fn)
        self.dropout = _dropout(keep_prob)
        self.name = name
        self.out_features = units[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = (self.code_activation if i == last else self.activation)(layer(x))
            record_activation(f"{self.name}/layer{i}", x)
            x = self.dropout(x)
        return x


class Decoder(nn.Module):
    """Fully-connected layers `in_features` → hidden_units → `out_features`.

    The output layer is linear (logits, for a loss that applies the sigmoid) unless
    `output_activation_fn` is given.
    """

    def __init__(
        self,
        in_features: int,
        hidden_units: Sequence[int],
        out_features: int,
        activation_fn: Activation = "relu",
        keep_prob: float | None = None,
        name: str = "decoder",
        output_activation_fn: Activation | None = None,
    ) -> None:
        super().__init__()
        sizes = [in_features, *hidden_units, out_features]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.activation = activation(activation_fn)
        self.output_activation = activation(output_activation_fn) if output_activation_fn else None
        self.dropout = _dropout(keep_prob)
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, last = self.layers
        for i, layer in enumerate(hidden):
            x = self.activation(layer(x))
            record_activation(f"{self.name}/layer{i}", x)
            x = self.dropout(x)
        out: torch.Tensor = last(x)
        return self.output_activation(out) if self.output_activation else out


def _dropout(keep_prob: float | None) -> nn.Module:
    if keep_prob is None:
        return nn.Identity()
    if (
        isinstance(keep_prob, bool)
        or not isinstance(keep_prob, int | float)
        or not 0 < keep_prob <= 1
    ):
        raise ConfigError(f"dropout is a keep probability in (0, 1], got {keep_prob!r}")
    return nn.Dropout(p=1.0 - keep_prob) if keep_prob < 1 else nn.Identity()
