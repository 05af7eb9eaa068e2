"""Binarized images for generative models: each pixel a Bernoulli draw with its intensity as p.

Likelihoods of MNIST are compared on binary pixels. Two conventions exist: *fixed*, where
the data set is drawn once (with a seed, so every run sees the same zeros and ones), and
*dynamic*, where each batch is drawn anew every time it is made, which acts as a
regulariser in training. Evaluation uses a fixed draw so that two checkpoints are scored
on the same images.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from aekit.checks import shown
from aekit.data.arrays import as_array, check_values, to_float
from aekit.data.rows import Rows
from aekit.errors import ConfigError, InputError

Binarization = Literal["dynamic", "fixed"]
BINARIZATIONS = ("dynamic", "fixed")
# Rows converted at a time: the full MNIST as float32 at once would take 188 MB.
_ROWS_PER_CHUNK = 4096


def check_binarization(value: object) -> Binarization | None:
    """`value` if it names a binarization (or is None); ConfigError otherwise."""
    if value is None or value in BINARIZATIONS:
        return value  # type: ignore[return-value]
    raise ConfigError(
        f"binarize must be 'dynamic', 'fixed' or None, got {shown(value)}; 'dynamic' draws "
        "the pixels anew for every batch, 'fixed' once"
    )


def bernoulli_pixels(features: torch.Tensor) -> torch.Tensor:
    """A fresh draw of 0/1 pixels (float32), from torch's generator on the batch's device.

    Seeded by RunConfig.random_seed and restored with checkpoints, as input noise is.
    """
    probs = to_float(features)
    if probs.device.type != "cpu":
        # Checking the range would read a value back every batch; an accelerator's
        # bernoulli would assert on the device instead, so out-of-range values are clipped.
        return torch.bernoulli(probs.clamp(0.0, 1.0))
    if probs.numel() and not bool(((probs >= 0) & (probs <= 1)).all()):
        raise InputError(
            "binarized features must be intensities in [0, 1] (or uint8 pixels); scale the "
            "data first"
        )
    return torch.bernoulli(probs)


def binarize(x: np.ndarray | torch.Tensor | Rows, seed: int = 0) -> np.ndarray:
    """One fixed draw of `x` (uint8 pixels or floats in [0, 1]) as a bool array of its shape.

    The same `seed` gives the same draw on every machine: the draw uses numpy's PCG64.
    """
    array = as_array(x, "x")
    check_values(array, "x")
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    rng = np.random.default_rng(seed)
    out = np.empty(array.shape, dtype=bool)
    scale = 1 / 255 if array.dtype == np.uint8 else 1.0
    for start in range(0, len(array), _ROWS_PER_CHUNK):
        rows = np.asarray(array[start : start + _ROWS_PER_CHUNK], dtype=np.float64) * scale
        if rows.size and (rows.min() < 0 or rows.max() > 1):
            raise InputError(
                f"x holds values from {rows.min():g} to {rows.max():g}; binarizing needs "
                "intensities in [0, 1] (or uint8 pixels), so scale the data first"
            )
        out[start : start + _ROWS_PER_CHUNK] = rng.random(rows.shape) < rows
    return out
