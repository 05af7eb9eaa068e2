"""Input corruption for denoising autoencoders: the clean input stays the target.

Each corruption is callable as a Dataset `map` function: `noise(features)` or
`noise(features, labels)` returns `(corrupted_features, target)`, the target being
`labels` when given and the clean features otherwise. `noise.corrupt(x)` returns the
corrupted tensor alone. Noise is drawn with torch's generator on the tensor's own
device, so it is seeded by RunConfig.random_seed and restored with checkpoints.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from aekit.checks import shown
from aekit.data.arrays import to_float
from aekit.errors import ConfigError


def _is_number(value: object) -> bool:
    # numbers.Real covers numpy's floats and integers too; a bool is a flag, not an amount.
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _check_fraction(name: str, value: float, upper_inclusive: bool = True) -> None:
    if not _is_number(value) or not (
        0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0
    ):
        raise ConfigError(f"{name} must be a number in [0, 1], got {shown(value)}")


def _as_float(x: torch.Tensor) -> torch.Tensor:
    # The same conversion as the input functions': uint8 scaled, 0/1 integers, floats kept.
    return to_float(x)


class Corruption:
    """Base of the corruptions: subclasses implement `corrupt`."""

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """The corrupted copy of `x` (float in [0, 1])."""
        raise NotImplementedError

    def __call__(
        self, features: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        clean = _as_float(features)
        return self.corrupt(clean), clean if labels is None else labels


@dataclass(frozen=True)
class GaussianNoise(Corruption):
    """Adds `noise_factor` × N(0, 1) to every pixel, then clips to [0, 1] (seed 000)."""

    noise_factor: float = 0.5
    clip: bool = True

    def __post_init__(self) -> None:
        if not _is_number(self.noise_factor):
            raise ConfigError(f"noise_factor must be a number, got {shown(self.noise_factor)}")
        if not math.isfinite(self.noise_factor) or self.noise_factor < 0:
            raise ConfigError(f"noise_factor must be a finite number >= 0, got {self.noise_factor}")

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_float(x)
        noisy = x + self.noise_factor * torch.randn_like(x)
        return noisy.clamp_(0.0, 1.0) if self.clip else noisy


@dataclass(frozen=True)
class MaskingNoise(Corruption):
    """Sets a random `fraction` of the pixels to 0 (seed 002)."""

    fraction: float = 0.3

    def __post_init__(self) -> None:
        _check_fraction("masking fraction", self.fraction)

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_float(x)
        keep = torch.rand_like(x) >= self.fraction
        return x * keep


@dataclass(frozen=True)
class SaltAndPepper(Corruption):
    """Sets a random `fraction` of the pixels to 0 or 1, half each on average."""

    fraction: float = 0.1

    def __post_init__(self) -> None:
        _check_fraction("salt-and-pepper fraction", self.fraction)

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_float(x)
        u = torch.rand_like(x)
        hit = u < self.fraction
        salt = u < self.fraction / 2  # the lower half of the hits become white
        return torch.where(hit, salt.to(x.dtype), x)


def make_corruption(kind: str, amount: float) -> Corruption:
    """Build a corruption by name: "gaussian", "masking" or "salt_and_pepper"."""
    if not isinstance(kind, str):
        raise ConfigError(f"noise kind must be a name such as 'masking', got {shown(kind)}")
    if kind == "gaussian":
        return GaussianNoise(amount)
    if kind == "masking":
        return MaskingNoise(amount)
    if kind in ("salt_and_pepper", "salt-and-pepper"):
        return SaltAndPepper(amount)
    raise ConfigError(
        f"unknown noise {shown(kind)}; use 'gaussian', 'masking' or 'salt_and_pepper'"
    )
