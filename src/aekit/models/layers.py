"""Building blocks shared by the zoo: initialisation, activations, Encoder and Decoder."""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from aekit import summary
from aekit.errors import ConfigError, InputError

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


class ActivationLayer(summary.WatchedActivation):
    """An activation function as a module: summary steps record its output (histogram, zeros)."""

    def __init__(self, name_or_fn: Activation) -> None:
        super().__init__()
        self.fn = activation(name_or_fn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def activations(name_or_fn: Activation, count: int) -> nn.ModuleList:
    """`count` ActivationLayer modules of one function, one per place it is applied."""
    return nn.ModuleList(ActivationLayer(name_or_fn) for _ in range(count))


def _positive_ints(values: Sequence[int]) -> list[int] | None:
    """`values` as Python ints when all are positive integers (numpy's too), else None."""
    try:
        out = [operator.index(v) for v in values if not isinstance(v, bool)]
    except TypeError:
        return None
    return out if out and len(out) == len(list(values)) and min(out) > 0 else None


def check_shape(name: str, shape: Sequence[int]) -> tuple[int, ...]:
    """The shape of one example as a tuple of positive integers, or a ConfigError."""
    dims = _positive_ints(shape) if isinstance(shape, Sequence) else None
    if dims is None:
        raise ConfigError(
            f"{name} must be the shape of one example, positive integers such as (28, 28), "
            f"got {shape!r}"
        )
    return tuple(dims)


def image_shape(example_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of an example given as (H, W) or (C, H, W); ConfigError for anything else."""
    if len(example_shape) == 2:
        return (1, example_shape[0], example_shape[1])
    if len(example_shape) == 3:
        return (example_shape[0], example_shape[1], example_shape[2])
    raise ConfigError(
        f"this model needs images, but the examples have shape {example_shape}; use images "
        "(H, W) or (C, H, W), or the fully_connected model"
    )


def check_example_size(x: torch.Tensor, size: int, shape: Sequence[int]) -> None:
    """InputError unless every example of the batch `x` holds `size` values."""
    if x.dim() < 2 or x.shape[1:].numel() != size:
        got = tuple(x.shape[1:]) if x.dim() else "a single number"
        raise InputError(
            f"examples of shape {got} do not fit the model's input shape {tuple(shape)}; "
            "give a batch of such examples, or build the model with the data's shape"
        )


def check_drop_rate(rate: float) -> float:
    """A dropout probability in [0, 1) as a float, or a ConfigError."""
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < 1:
        raise ConfigError(f"dropout is a drop rate in [0, 1), got {rate!r}")
    return float(rate)


def check_units(name: str, units: Sequence[int]) -> list[int]:
    """A non-empty list of positive layer sizes (numpy integers too), or a ConfigError."""
    sizes = _positive_ints(units) if isinstance(units, Sequence | np.ndarray) else None
    if sizes is None:
        raise ConfigError(f"{name} must be a non-empty list of positive integers, got {units!r}")
    return sizes


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
        code_activation_fn: Activation | None = None,
    ) -> None:
        super().__init__()
        units = check_units("hidden_units", hidden_units)
        sizes = [in_features, *units]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.act = activations(activation_fn, len(units) - 1)
        self.act.append(ActivationLayer(code_activation_fn or activation_fn))
        self.dropout = _dropout(keep_prob)
        self.out_features = units[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, act in zip(self.layers, self.act, strict=True):
            x = self.dropout(act(layer(x)))
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
        output_activation_fn: Activation | None = None,
    ) -> None:
        super().__init__()
        sizes = [in_features, *hidden_units, out_features]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.act = activations(activation_fn, len(sizes) - 2)
        self.output_activation = activation(output_activation_fn) if output_activation_fn else None
        self.dropout = _dropout(keep_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, last = self.layers
        for layer, act in zip(hidden, self.act, strict=True):
            x = self.dropout(act(layer(x)))
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
        raise ConfigError(f"keep_prob is a keep probability in (0, 1], got {keep_prob!r}")
    return nn.Dropout(p=1.0 - keep_prob) if keep_prob < 1 else nn.Identity()
