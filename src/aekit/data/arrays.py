"""What data given as arrays must be, for every loader and input function.

(The checks of settings and arguments are `aekit.checks`; these look at the data.)

One mechanism per kind of problem, whatever the container (numpy array, memory map, torch
tensor): a size is checked before it is allocated, integer data other than uint8 must hold
0/1 only, floating data must be finite, and every argument is type-checked up front.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aekit.data.rows import Rows, is_mapped, row_chunks
from aekit.errors import ConfigError, InputError

__all__ = [
    "MAX_BYTES_ENV",
    "as_array",
    "check_size",
    "check_values",
    "existing_path",
    "format_bytes",
    "max_load_bytes",
    "to_float",
]

MAX_BYTES_ENV = "AEKIT_MAX_DATA_BYTES"
"""Environment variable raising (or lowering) the most bytes one loaded array may take."""

_DEFAULT_MAX_BYTES = 8 << 30  # 8 GiB: MNIST takes 47 MB; beyond this, memory-map the data


def max_load_bytes() -> int:
    """The most bytes a loader may allocate for one array: 8 GiB, at most half of the RAM.

    `AEKIT_MAX_DATA_BYTES` overrides it (for a machine with more memory, or to test).
    """
    override = os.environ.get(MAX_BYTES_ENV)
    if override:
        try:
            return int(override)
        except ValueError:
            raise ConfigError(
                f"{MAX_BYTES_ENV}={override!r} is not a whole number of bytes; set it to e.g. "
                f"{_DEFAULT_MAX_BYTES}"
            ) from None
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return _DEFAULT_MAX_BYTES
    return min(_DEFAULT_MAX_BYTES, ram // 2)


def format_bytes(nbytes: int) -> str:
    """`nbytes` in the largest binary unit below it, e.g. '40.2 GiB'."""
    value = float(nbytes)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:,.0f} {unit}" if unit == "bytes" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} TiB"


def check_size(what: str, shape: tuple[int, ...], itemsize: int, fix: str) -> None:
    """InputError naming the size and the limit when an array of `shape` would exceed it."""
    nbytes = int(np.prod(shape, dtype=object)) * itemsize  # Python ints: no overflow
    limit = max_load_bytes()
    if nbytes > limit:
        dims = " x ".join(str(d) for d in shape)
        raise InputError(
            f"{what} needs an array of {dims} ({format_bytes(nbytes)}), over the limit of "
            f"{format_bytes(limit)}; {fix} (or raise the limit with {MAX_BYTES_ENV})"
        )


def existing_path(path: Any, kind: str) -> Path:
    """`path` (str or os.PathLike) as a Path that exists, else a ConfigError or InputError."""
    if not isinstance(path, str | os.PathLike):
        raise ConfigError(f"give the {kind}'s path as a str or Path, got {path!r}")
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise InputError(f"{resolved}: no such {kind}; check the path")
    return resolved


def as_array(value: Any, name: str) -> np.ndarray | torch.Tensor | Rows:
    """A numpy array, torch tensor or `Rows` as it is; a nested list or tuple as a numpy array."""
    if isinstance(value, np.ndarray | torch.Tensor | Rows):
        return value
    # Lists, numpy scalars and array-likes (pandas, xarray) through numpy, as scikit-learn does.
    if isinstance(value, list | tuple | np.generic | int | float | complex) or hasattr(
        value, "__array__"
    ):
        try:
            return np.asarray(value)
        except ValueError as exc:  # ragged nesting
            raise InputError(
                f"{name} is a list numpy cannot make one array of ({exc}); give rows of "
                f"equal length, or a numpy array"
            ) from None
    raise InputError(
        f"{name} is a {type(value).__name__}; give a numpy array or a torch tensor of examples"
    )


def check_values(x: np.ndarray | torch.Tensor | Rows, name: str) -> None:
    """Refuse data that would be read wrong, without loading a memory map whole.

    Numbers only; integers other than uint8 (which is scaled by 1/255) hold 0/1 only, since
    they are used as they are; floating values are finite.
    """
    kind = _kind(x)
    if kind not in "biuf":
        raise InputError(
            f"{name} has dtype {x.dtype}, not real numbers; give uint8 pixels or float features"
        )
    if kind in "iu" and x.dtype not in (np.uint8, torch.uint8):
        low, high = _extremes(x)
        if low < 0 or high > 1:
            raise InputError(
                f"{name} is {x.dtype} with values from {low} to {high}; only uint8 is scaled "
                f"to [0, 1], so give pixels as uint8 or floats in [0, 1]"
            )
    elif kind == "f":
        bad = sum(_count_nonfinite(part) for part in _chunks(x))
        if bad:
            raise InputError(f"{name} holds {bad} NaN or infinite values; clean the data first")


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to float32 in [0, 1]; bool and 0/1 integers to float32; floats to float32.

    float32 and bfloat16 keep their type: a batch already in bfloat16 feeds a network that
    runs in bfloat16 without a round trip through float32. float64 (numpy's default) and
    float16 become float32, the networks' type. Other integer types are not pixels: values
    beyond 0/1 are an InputError, not silent targets above 1.
    """
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)
    if x.is_floating_point():
        return x if x.dtype in (torch.float32, torch.bfloat16) else x.to(torch.float32)
    if x.is_complex():
        raise InputError(f"features are {x.dtype}, not real numbers; give uint8 or float data")
    if x.dtype != torch.bool:
        check_values(x, "a batch")
    return x.to(torch.float32)


# --- helpers -------------------------------------------------------------------------------


def _kind(x: np.ndarray | torch.Tensor | Rows) -> str:
    if isinstance(x, np.ndarray | Rows):
        return str(x.dtype.kind)
    if x.dtype == torch.bool:
        return "b"
    if x.is_floating_point():
        return "f"
    if x.is_complex():
        return "c"
    return "i" if x.dtype.is_signed else "u"


def _chunks(x: np.ndarray | torch.Tensor | Rows) -> Iterator[np.ndarray | torch.Tensor]:
    """`x` whole, or a memory map (or `Rows`) a few MB of rows at a time, never read whole."""
    if (
        isinstance(x, torch.Tensor)
        or x.ndim == 0
        or not (isinstance(x, np.memmap | Rows) or is_mapped(x))
    ):
        yield x if isinstance(x, np.ndarray | torch.Tensor) else np.asarray(x)
        return
    for _, part in row_chunks(x):
        yield part


def _extremes(x: np.ndarray | torch.Tensor | Rows) -> tuple[int, int]:
    low: int | None = None
    high: int | None = None
    for part in _chunks(x):
        if part.numel() == 0 if isinstance(part, torch.Tensor) else part.size == 0:
            continue
        if isinstance(part, torch.Tensor):
            try:
                lo, hi = (int(v) for v in torch.aminmax(part))
            except (NotImplementedError, RuntimeError):  # uint16/32/64 lack the CPU kernel
                array = part.cpu().numpy()
                lo, hi = int(array.min()), int(array.max())
        else:
            lo, hi = int(part.min()), int(part.max())
        low = lo if low is None else min(low, lo)
        high = hi if high is None else max(high, hi)
    return (0, 0) if low is None or high is None else (low, high)


def _count_nonfinite(part: np.ndarray | torch.Tensor) -> int:
    if isinstance(part, torch.Tensor):
        return int((~torch.isfinite(part)).sum())
    return int((~np.isfinite(part)).sum())
