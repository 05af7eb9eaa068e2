"""The params a checkpoint was trained with, and what a restore does when they change.

A model's params (layer sizes, activation, dropout, noise, ...) define it: resuming or
evaluating a checkpoint under other values would silently mix two models, so that is
refused. The learning rate may change between runs: the optimizer takes the new one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import torch

from aekit.errors import ConfigError

_log = logging.getLogger("aekit")


def recorded(params: Mapping[str, Any]) -> dict[str, Any]:
    """`params` as plain data a checkpoint can hold (and `torch.load(weights_only=True)` read)."""
    return {str(key): _plain(value) for key, value in params.items()}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if callable(value):  # an activation function: its name identifies it
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
    return repr(value)


@dataclass(frozen=True)
class ParamRules:
    """A model's params, and which of them a resumed run may change.

    `mutable` params may differ from the checkpoint's (logged); the optimizer's rate
    follows `rate_key`'s. Any other difference is refused.
    """

    params: Mapping[str, Any]
    mutable: frozenset[str]
    rate_key: str
    model_dir: str

    def compare(self, saved: Any, path: str | Path) -> tuple[float, float] | None:
        """Refuse a checkpoint trained with other params; the (old, new) rate if it moved.

        Checkpoints written before params were recorded (None) are taken as they are.
        """
        if not isinstance(saved, Mapping):
            return None
        now = recorded(self.params)
        changed = sorted(k for k in set(saved) | set(now) if _differ(saved.get(k), now.get(k)))
        fixed = [k for k in changed if k not in self.mutable]
        if fixed:
            listed = ", ".join(f"{k}={saved.get(k)!r} (now {now.get(k)!r})" for k in fixed[:4])
            raise ConfigError(
                f"{self.model_dir} holds a model trained with {listed}; build the estimator "
                f"with the settings of {Path(path).name}, or use a new model_dir for the new "
                "settings"
            )
        for key in changed:
            _log.info("%s changed on resume: %r -> %r", key, saved.get(key), now.get(key))
        old, new = saved.get(self.rate_key), now.get(self.rate_key)
        if self.rate_key in changed and _number(old) and _number(new):
            return float(old), float(new)
        return None


def _differ(a: Any, b: Any) -> bool:
    if _number(a) and _number(b):
        return not math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return bool(a != b)


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def scale_learning_rate(
    optimizer: torch.optim.Optimizer, scheduler: Any, old: float, new: float
) -> None:
    """Move the optimizer (and its schedule) from rate `old` to `new`, where the schedule is."""
    factor = new / old
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * factor
        if "initial_lr" in group:
            group["initial_lr"] = group["initial_lr"] * factor
    if scheduler is not None and hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = [rate * factor for rate in scheduler.base_lrs]


def weights_finite(network_state: Mapping[str, Any]) -> bool:
    """Whether every floating tensor of a network's state_dict is finite."""
    return all(
        bool(torch.isfinite(t).all())
        for t in network_state.values()
        if isinstance(t, torch.Tensor) and t.is_floating_point()
    )
