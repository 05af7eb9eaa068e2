"""What a setting will allocate, checked against this machine's memory before allocating."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import torch

from aekit.errors import ConfigError

M = TypeVar("M", bound=torch.nn.Module)

# Training holds every parameter four times over in float32: the weight, its gradient and
# Adam's two moment estimates.
_TRAINING_COPIES = 4


def physical_memory() -> int | None:
    """Bytes of RAM on this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def check_fits(what: str, nbytes: int, fix: str) -> None:
    """ConfigError naming `what` and its size when `nbytes` exceed this machine's memory."""
    total = physical_memory()
    if total is not None and nbytes > total:
        raise ConfigError(
            f"{what} needs {_size(nbytes)}, more than this machine's {_size(total)} of memory; "
            f"{fix}"
        )


def build_within_memory(factory: Callable[[], M], settings: str) -> M:
    """`factory()`, after checking on the meta device that training it fits in memory.

    The meta device allocates nothing and draws no random numbers, so the check costs
    a shape computation and the real build gets the same initial weights.
    """
    with torch.device("meta"):
        probe = factory()
    count = sum(p.numel() for p in probe.parameters())
    check_fits(
        f"a network of {count:,} parameters ({settings})",
        count * 4 * _TRAINING_COPIES,
        "choose smaller layers",
    )
    return factory()


def _size(nbytes: int) -> str:
    value = float(nbytes)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:,.0f} {unit}" if unit == "bytes" else f"{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
