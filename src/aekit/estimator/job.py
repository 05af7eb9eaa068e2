"""What the launcher (torchrun) told this process, read from the environment.

Kept apart from `aekit.estimator.distributed`, which imports torch: the command line asks
these before it knows whether it will train at all.
"""

from __future__ import annotations

import os


def launched() -> bool:
    """Whether this process is one of several started by torchrun (or another launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def launched_world_size() -> int:
    """Number of processes the launcher started (1 without one), known before joining."""
    return int(os.environ["WORLD_SIZE"]) if launched() else 1


def launched_as_chief() -> bool:
    """Whether this process is rank 0 of its launch (or not launched): it writes the files."""
    return not launched() or os.environ.get("RANK") == "0"
