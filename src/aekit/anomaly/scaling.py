"""Each feature's center and scale: from rows in memory, or from a table in one streaming pass.

Both divide each feature by a power of two near its largest magnitude before any sum and
multiply back at the end: exact in floating point, and values near 1e300 do not overflow.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

from aekit.errors import ConfigError, InputError

SCALINGS = ("standard", "robust", "minmax")


def check_method(method: str) -> None:
    if method not in SCALINGS:
        raise ConfigError(f"scaling must be one of {', '.join(SCALINGS)}, got {method!r}")


def power_of_two_unit(largest: np.ndarray) -> np.ndarray:
    """A power of two at or above each feature's largest magnitude (1 for a zero feature)."""
    unit: np.ndarray = np.exp2(
        np.minimum(np.ceil(np.log2(np.where(largest > 0, largest, 1.0))), 1023)
    )
    return unit


def fit_scaling(rows: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """The (center, scale) of each feature: standard, robust (median, IQR) or min-max.

    The statistics are taken of each feature divided by a power of two near its largest
    value, then multiplied back: exact in floating point, and a variance of values near
    1e300 does not overflow. A constant feature keeps scale 1; a feature whose scale is
    beyond float64 itself (a range over 1.8e308) is refused with an InputError naming it.
    """
    check_method(method)
    unit = power_of_two_unit(np.abs(rows).max(axis=0))
    scaled = rows / unit
    if method == "standard":
        standard = StandardScaler().fit(scaled)
        center, scale = standard.mean_, standard.scale_
    elif method == "robust":
        robust = RobustScaler().fit(scaled)
        center, scale = robust.center_, robust.scale_
    else:
        minmax = MinMaxScaler().fit(scaled)
        center, scale = minmax.data_min_, minmax.data_range_
    return _finish(center, scale, unit, method, rows.min(axis=0), rows.max(axis=0))


def _finish(
    center: np.ndarray,
    scale: np.ndarray,
    unit: np.ndarray,
    method: str,
    low: np.ndarray,
    high: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Statistics in units of `unit` back in the features' own, refusing an infinite scale."""
    scale = np.where(scale > 0, scale, 1.0 / unit)  # a constant feature: scale 1, once multiplied
    with np.errstate(over="ignore"):
        center, scale = center * unit, scale * unit
    if not np.isfinite(scale).all():
        worst = int(np.argmin(np.isfinite(scale)))
        raise InputError(
            f"feature {worst} spans {low[worst]:.3g} to {high[worst]:.3g}, too large to "
            f"{method}-scale in float64; divide the data by a power of ten first"
        )
    return center, scale


class StreamingScaling:
    """Standard and min-max statistics of rows given a batch at a time (`add`).

    Each batch's mean and sum of squared deviations are merged into the running ones with
    Chan, Golub and LeVeque's pairwise formula, which stays accurate where a running sum of
    squares would cancel. All sums are kept in units of a power of two at or above the
    largest magnitude seen so far; when a batch raises it, the running sums are rescaled by
    a power of two, which is exact.
    """

    def __init__(self, n_features: int) -> None:
        self.count = 0
        self.unit = np.ones(n_features)
        self.mean = np.zeros(n_features)
        self.squares = np.zeros(n_features)  # the sum of squared deviations from the mean
        self.low = np.full(n_features, np.inf)
        self.high = np.full(n_features, -np.inf)

    def add(self, rows: np.ndarray) -> None:
        """Merge a batch of rows (n, n_features), finite float64, into the statistics."""
        if not len(rows):
            return
        self.low = np.minimum(self.low, rows.min(axis=0))
        self.high = np.maximum(self.high, rows.max(axis=0))
        unit = np.maximum(self.unit, power_of_two_unit(np.abs(rows).max(axis=0)))
        ratio = self.unit / unit
        self.mean, self.squares, self.unit = self.mean * ratio, self.squares * ratio**2, unit
        scaled = rows / unit
        n, mean = len(rows), scaled.mean(axis=0)
        squares = ((scaled - mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.squares = self.squares + squares + delta**2 * (self.count * n / total)
        self.count = total

    def result(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        """(center, scale) by `method`: "standard" (mean, standard deviation) or "minmax"."""
        if method not in ("standard", "minmax"):
            raise ConfigError(f"streaming statistics give standard or minmax, not {method!r}")
        if not self.count:
            raise InputError("no rows to scale by; give at least one row")
        if method == "standard":
            center, scale = self.mean, np.sqrt(self.squares / self.count)
        else:
            # min and max are exact as they are; their span is taken in units, never overflowing
            center = self.low / self.unit
            scale = self.high / self.unit - center
        return _finish(center, scale, self.unit, method, self.low, self.high)


def stream_scaling(
    batches: Iterable[np.ndarray], n_features: int, method: str
) -> tuple[np.ndarray, np.ndarray]:
    """(center, scale) of every row in `batches`, read once: standard or minmax."""
    check_method(method)
    statistics = StreamingScaling(n_features)
    for rows in batches:
        statistics.add(rows)
    return statistics.result(method)
