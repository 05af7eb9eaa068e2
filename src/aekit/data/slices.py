"""The arrays a `Dataset` is sliced from: their structure (a tensor, a tuple or a dict of
them), gathered by row index into batches or examples, and moved to a device."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from aekit.data.rows import Rows, read_rows
from aekit.data.stages import apply

Array = torch.Tensor | np.ndarray | Rows


class Source:
    """The arrays of from_tensor_slices, flattened, with how to rebuild the structure."""

    def __init__(self, leaves: list[Array], rebuild: Callable[[list[Any]], Any]) -> None:
        self.leaves = leaves
        self.rebuild = rebuild
        self.length = len(leaves[0])

    def to(self, device: torch.device) -> Source:
        leaves: list[Array] = [
            (
                torch.from_numpy(np.ascontiguousarray(a)) if not isinstance(a, torch.Tensor) else a
            ).to(device)
            for a in self.leaves
        ]
        return Source(leaves, self.rebuild)

    def gather(self, index: np.ndarray) -> list[torch.Tensor]:
        out = []
        for leaf in self.leaves:
            if isinstance(leaf, torch.Tensor):
                # index_select copies rows ~10x faster than advanced indexing on CPU
                # (benchmarks/bench_kernels.py).
                out.append(leaf.index_select(0, _index_on(leaf.device, index)))
            else:  # numpy, a memory map or Rows: read just these rows
                out.append(torch.from_numpy(np.ascontiguousarray(read_rows(leaf, index))))
        return out


def _index_on(device: torch.device, index: np.ndarray) -> torch.Tensor:
    """Row indices on `device`; to a GPU through pinned memory, so the host does not wait."""
    host = torch.from_numpy(index)
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


def flatten(tensors: Any) -> tuple[list[Array], Callable[[list[Any]], Any]]:
    if isinstance(tensors, Mapping):
        keys = list(tensors)
        return [tensors[k] for k in keys], lambda leaves: dict(zip(keys, leaves, strict=True))
    if isinstance(tensors, tuple | list):
        return list(tensors), tuple
    return [tensors], lambda leaves: leaves[0]


def elements(
    source: Source, index: np.ndarray, fns: tuple[Callable[..., Any], ...]
) -> Iterator[Any]:
    """The examples at `index`, one by one, each passed through the element-wise maps."""
    rows = source.gather(index)
    for i in range(len(index)):
        element = source.rebuild([row[i] for row in rows])
        for fn in fns:
            element = apply(fn, element)
        yield element


def stack(elements: list[Any]) -> Any:
    first = elements[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(elements)
    if isinstance(first, Mapping):
        return {k: stack([e[k] for e in elements]) for k in first}
    if isinstance(first, tuple | list):
        return tuple(stack(list(parts)) for parts in zip(*elements, strict=True))
    return torch.as_tensor(elements)


def move(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {k: move(v, device) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return tuple(move(v, device) for v in value)
    return value
