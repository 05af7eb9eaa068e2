"""Checks of settings and arguments, one per kind of value, each naming the fix.

A `Check` validates a value given in Python, a settings file or `hparams.json`
(`check(name, value)`, ConfigError naming `name`), and reads one given as text on the
command line (`check.parse(text)`). RunConfig, the command line's settings and the
library's constructors validate with the same objects, so a setting's rule is written once.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from aekit.errors import ConfigError

if TYPE_CHECKING:
    import torch

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 40
MAX_LIST = 64
"""The most items of a list setting (layers, filters, rates): real runs use a handful."""
MAX_CODE_WEIGHT = 1e6
"""The largest weight of the code distance in an anomaly score: beyond, it drowns the other
parts, and scores overflow float64."""
MAX_TEXT = 4096
"""The longest name or path: the operating system takes no longer path."""


def shown(value: object) -> str:
    """A short one-line repr of a bad value for an error message (arrays repr over lines)."""
    return " ".join(_SHORT.repr(value).split())


def is_integer(value: object) -> bool:
    """An int or numpy integer, not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def is_number(value: object) -> bool:
    """A real int or float (numpy's too), not a bool."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


class Check:
    """A kind of value: `check(name, value)` returns it (normalised) or raises ConfigError."""

    choices: tuple[str, ...] | None = None

    def __call__(self, name: str, value: Any) -> Any:
        raise NotImplementedError

    def parse(self, text: str) -> Any:
        """The value a command-line word stands for (ValueError when it stands for none)."""
        return text

    def describe(self) -> str:
        """What the check accepts, for help texts."""
        return ""


class Integer(Check):
    """An integer in [least, below); `why` names what sets the upper bound."""

    def __init__(self, least: int, below: int = 2**31, why: str | None = None) -> None:
        # Counts stay below 2**31 by default: steps and batch sizes reach torch as products.
        self.least, self.below, self.why = least, below, why

    def __call__(self, name: str, value: Any) -> int:
        if not is_integer(value) or value < self.least:
            raise ConfigError(f"{name} must be an integer >= {self.least}, got {shown(value)}")
        if value >= self.below:
            if self.why:
                raise ConfigError(
                    f"{name} must be at most {self.below - 1} ({self.why}), got {shown(value)}"
                )
            raise ConfigError(f"{name} must be below {self.below}, got {shown(value)}; give less")
        return int(value)

    def parse(self, text: str) -> int:
        return int(text)


class Number(Check):
    """A finite number >= 0 (> 0 when `positive`), at most `most` when given."""

    def __init__(self, positive: bool = False, most: float | None = None) -> None:
        self.positive, self.most = positive, most

    def __call__(self, name: str, value: Any) -> float:
        # `not value >= 0` also refuses NaN, which every comparison answers with False.
        if (
            not is_number(value)
            or not math.isfinite(value)
            or not value >= 0
            or (self.positive and value == 0)
        ):
            bound = "> 0" if self.positive else ">= 0"
            raise ConfigError(f"{name} must be a finite number {bound}, got {shown(value)}")
        if self.most is not None and value > self.most:
            raise ConfigError(f"{name} must be at most {self.most:g}, got {shown(value)}")
        return float(value)

    def parse(self, text: str) -> float:
        return float(text)


class Text(Check):
    """A non-empty name or path of at most MAX_TEXT characters, without NUL."""

    def __call__(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name} must be a non-empty string, got {shown(value)}; quote it")
        if "\0" in value or len(value) > MAX_TEXT:
            raise ConfigError(
                f"{name} must be a name or path of at most {MAX_TEXT} characters without NUL, "
                f"got {shown(value)}"
            )
        return value


class Choice(Check):
    """One of a few words."""

    def __init__(self, *choices: str) -> None:
        self.choices = choices

    def __call__(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in (self.choices or ()):
            raise ConfigError(
                f"{name} must be one of {', '.join(self.choices or ())}, got {shown(value)}"
            )
        return value


class Flag(Check):
    """True or false."""

    def __call__(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool | np.bool_):
            raise ConfigError(f"{name} must be true or false, got {shown(value)}")
        return bool(value)


class Sizes(Check):
    """A list of 1 to MAX_LIST positive integers, such as layer widths."""

    def __call__(self, name: str, value: Any) -> list[int]:
        items = _items(value)
        if (
            items is None
            or not 0 < len(items) <= MAX_LIST
            or not all(is_integer(v) and v > 0 for v in items)
        ):
            raise ConfigError(
                f"{name} must be a list of 1 to {MAX_LIST} positive integers like [128, 64, 32], "
                f"got {shown(value)}"
            )
        return [int(v) for v in items]

    def parse(self, text: str) -> list[int]:
        values = [int(v) for v in text.replace(",", " ").split()]
        if not values:
            raise ValueError(text)
        return values


class Labels(Check):
    """A list of integer class labels (at most 1,000)."""

    def __call__(self, name: str, value: Any) -> list[int]:
        items = _items(value)
        if items is None or len(items) > 1000 or not all(is_integer(v) for v in items):
            raise ConfigError(
                f"{name} must be a list of integer class labels like [9] or [3, 5], "
                f"got {shown(value)}"
            )
        return [int(v) for v in items]

    parse = Sizes.parse


class Names(Check):
    """A list of distinct names (a table's columns), each a `Text`."""

    def __call__(self, name: str, value: Any) -> list[str]:
        items = _items(value)
        if (
            items is None
            or not all(isinstance(v, str) for v in items)
            or len(set(items)) < len(items)
        ):
            raise ConfigError(f"{name} must be a list of distinct names, got {shown(value)}")
        return [Text()(name, v) for v in items]


class Rates(Check):
    """One positive number, or a list of 1 to MAX_LIST of them (one per layer)."""

    def __call__(self, name: str, value: Any) -> float | list[float]:
        items = _items(value)
        if items is None:
            return Number(positive=True)(name, value)
        if not 0 < len(items) <= MAX_LIST:
            raise ConfigError(f"{name} must be a number or a list of 1 to {MAX_LIST} numbers")
        return [Number(positive=True)(name, v) for v in items]

    def parse(self, text: str) -> float | list[float]:
        values = [float(v) for v in text.replace(",", " ").split()]
        if not values:
            raise ValueError(text)
        return values[0] if len(values) == 1 else values


class Device(Check):
    """auto, cpu, cuda, cuda:N or mps."""

    def __call__(self, name: str, value: Any) -> str:
        Text()(name, value)
        if value == "auto":
            return str(value)
        import torch  # on use: the command line's help reads these checks without torch

        try:
            kind: str | None = torch.device(value).type
        except (RuntimeError, ValueError):
            kind = None
        if kind not in ("cpu", "cuda", "mps"):
            raise ConfigError(f"{name} must be auto, cpu, cuda or cuda:N, got {shown(value)}")
        return str(value)


def resolve_device(name: str) -> torch.device:
    """Turn "auto" or a device string into a torch.device that exists here."""
    import torch  # on use: the command line's help reads these checks without torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"unknown device {name!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from None
    if device.type == "meta":
        raise ConfigError(
            f"device {name!r} holds shapes, not data, and cannot train; use 'cpu' or 'cuda'"
        )
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but no CUDA GPU is available; use 'cpu'")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device {name!r} asked for, but this machine has {count} GPU(s)")
    elif device.type != "cpu":
        available = getattr(getattr(torch, device.type, None), "is_available", None)
        if not callable(available) or not available():
            raise ConfigError(f"device {name!r} is not available here; use 'cpu' or 'auto'")
    return device


class Optional(Check):
    """None, or what `inner` accepts."""

    def __init__(self, inner: Check) -> None:
        self.inner, self.choices = inner, inner.choices

    def __call__(self, name: str, value: Any) -> Any:
        return None if value is None else self.inner(name, value)

    def parse(self, text: str) -> Any:
        return None if text.lower() in ("none", "null") else self.inner.parse(text)


class OrAuto(Check):
    """The word "auto" (chosen once the data are seen), or what `inner` accepts."""

    def __init__(self, inner: Check) -> None:
        self.inner = inner

    def __call__(self, name: str, value: Any) -> Any:
        return value if value == "auto" else self.inner(name, value)

    def parse(self, text: str) -> Any:
        return text if text == "auto" else self.inner.parse(text)


def _items(value: Any) -> Sequence[Any] | None:
    """The items of a list, tuple or 1-D array; None for anything else."""
    if isinstance(value, list | tuple):
        return value
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return list(value)
    return None


def check_int(name: str, value: Any, *, low: int, high: int | None = None) -> int:
    """`value` as an int (numpy integers too) in [low, high], else a ConfigError."""
    if not is_integer(value):
        raise ConfigError(f"{name} must be an integer, got {shown(value)}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"{name} must be an integer {bound}, got {shown(value)}")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """`value` as a bool (numpy's too), else a ConfigError."""
    if not isinstance(value, bool | np.bool_):
        raise ConfigError(f"{name} must be True or False, got {shown(value)}")
    return bool(value)
