"""Random-number state of torch, numpy and random, as checkpointable tensors."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed torch (every device), numpy's global generator and random.

    Rank r > 0 of a data-parallel job gets a stream of its own derived from `seed`, so
    the ranks draw different dropout masks and noise; rank 0 (and a lone process) uses
    `seed` itself. Shuffles stay shared: they draw from `distributed.shared_random_int`.
    """
    if rank:
        seed = (seed + rank * 0x9E3779B97F4A7C15) % 2**63  # a large odd step: far-apart seeds
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_state() -> dict[str, Any]:
    """Every generator's state in a form `torch.load(weights_only=True)` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
    }
    initialized = torch.cuda.is_initialized()  # type: ignore[no-untyped-call]
    if torch.cuda.is_available() and initialized:
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_state(state: dict[str, Any]) -> None:
    """Restore what `get_state` captured (parts it lacks are left alone)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        n = state["numpy"]
        keys = n["keys"].cpu().numpy().astype(np.uint32)
        np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [s.cpu() for s in state["cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def set_rank_state(states: list[dict[str, Any]], rank: int) -> None:
    """Rank `rank`'s state out of a checkpoint's per-rank states.

    A rank the checkpoint holds no state for (the job grew) continues rank 0's stream
    re-seeded by its rank, so it still draws noise of its own.
    """
    set_state(states[min(rank, len(states) - 1)])
    if rank >= len(states):
        seed_everything(int(torch.randint(0, 2**62, ())), rank)
