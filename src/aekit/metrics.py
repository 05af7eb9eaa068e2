"""Streaming metrics as per-batch sums the Estimator adds up.

A model_fn returns, per batch, a MetricUpdate holding a sum and a count; the
Estimator adds them over the whole evaluation (and, in a distributed run, over the
ranks) before finishing. Sums make the result exact, never an average of averages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

Finish = Literal["mean", "sqrt_mean"]


@dataclass(frozen=True)
class MetricUpdate:
    """One batch's contribution to a metric: total / count, finished by `finish`."""

    total: torch.Tensor
    count: torch.Tensor
    finish: Finish = "mean"

    def result(self) -> float:
        """The metric's value for the sums held here."""
        count = float(self.count)
        if count == 0:
            return math.nan
        value = float(self.total) / count
        return math.sqrt(value) if self.finish == "sqrt_mean" else value

    def __add__(self, other: MetricUpdate) -> MetricUpdate:
        if other.finish != self.finish:
            raise ValueError("cannot add metric updates of different kinds")
        return MetricUpdate(self.total + other.total, self.count + other.count, self.finish)


def _as_float64(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to(torch.float64)


def mean(values: torch.Tensor, weights: torch.Tensor | None = None) -> MetricUpdate:
    """Mean of all elements of `values` (weighted when `weights` is given)."""
    values = _as_float64(values)
    if weights is None:
        count = torch.tensor(values.numel(), dtype=torch.float64, device=values.device)
        return MetricUpdate(values.sum(), count)
    weights = _as_float64(weights).expand_as(values)
    return MetricUpdate((values * weights).sum(), weights.sum())


def mean_squared_error(labels: torch.Tensor, predictions: torch.Tensor) -> MetricUpdate:
    """Mean over all elements of (labels - predictions)²."""
    return mean((_as_float64(labels) - _as_float64(predictions)).square())


def root_mean_squared_error(labels: torch.Tensor, predictions: torch.Tensor) -> MetricUpdate:
    """Square root of the mean squared error over the whole evaluation."""
    update = mean_squared_error(labels, predictions)
    return MetricUpdate(update.total, update.count, "sqrt_mean")


def mean_absolute_error(labels: torch.Tensor, predictions: torch.Tensor) -> MetricUpdate:
    """Mean over all elements of |labels - predictions|."""
    return mean((_as_float64(labels) - _as_float64(predictions)).abs())


def accuracy(labels: torch.Tensor, predictions: torch.Tensor) -> MetricUpdate:
    """Fraction of positions where predictions equal labels."""
    if labels.shape != predictions.shape:
        raise ValueError(
            f"accuracy needs labels and predictions of one shape, got "
            f"{tuple(labels.shape)} and {tuple(predictions.shape)}"
        )
    return mean((labels == predictions).to(torch.float64))


def example_mse(labels: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
    """Each example's mean squared error over all its values (at least float32): (N,).

    Not a streaming metric but a score per example: the reconstruction error that anomaly
    detection ranks examples by.
    """
    difference = predictions.flatten(1) - labels.flatten(1)
    if difference.dtype not in (torch.float32, torch.float64):
        difference = difference.float()  # a low-precision forward still sums in float32
    return difference.square().mean(dim=1)
