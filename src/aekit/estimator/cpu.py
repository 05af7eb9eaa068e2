"""Training on a CPU that other work shares: malloc's page reuse and who else uses the cores."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# A block this large or larger comes from mmap and goes back to the system when freed;
# smaller ones are reused from the heap. 64 MiB holds the activations of the zoo's models
# at batch 256 many times over, while a data set of hundreds of MB stays mmapped.
MMAP_THRESHOLD = 64 << 20
# Free memory at the top of the heap beyond this is returned to the system.
TRIM_THRESHOLD = 256 << 20
_heap_tuned = False


def reuse_heap_pages() -> bool:
    """Raise glibc malloc's mmap and trim thresholds, once per process; True if done.

    With glibc's defaults, a tensor of more than a few MB is mmapped when allocated and
    unmapped when freed, so every training step first-touches its activations' pages
    again: page faults that measured 1.4-1.7x of the convolutional model's step (README,
    Speed). Left alone where the user tuned malloc (MALLOC_* or GLIBC_TUNABLES) or
    preloaded another allocator, and off glibc.
    """
    global _heap_tuned
    if _heap_tuned:
        return True
    if any(k.startswith("MALLOC_") for k in os.environ) or "malloc" in os.environ.get(
        "GLIBC_TUNABLES", ""
    ):
        return False
    if os.environ.get("LD_PRELOAD") or os.uname().sysname != "Linux":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt  # glibc only
    except (OSError, AttributeError, TypeError):
        return False
    _heap_tuned = bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _heap_tuned


@contextlib.contextmanager
def thread_count_kept() -> Iterator[None]:
    """Restore torch's CPU thread count on the way out, however training ends."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class _Sample:
    wall: float
    own: float  # CPU seconds of this process, every thread
    busy: float | None  # busy CPU seconds of the cores this process may run on


class CoreWatch:
    """How many of this process's cores other work has used since the last look.

    From /proc/stat (Linux): the busy time of the cores in this process's affinity set,
    less this process's own CPU time; hypervisor steal counts as other work. Elsewhere
    `others()` is None.
    """

    def __init__(self) -> None:
        self.cores = _affinity()
        self._last = self._sample()

    def _sample(self) -> _Sample:
        return _Sample(time.monotonic(), time.process_time(), _busy_seconds(self.cores))

    def others(self) -> float | None:
        """Cores' worth of other work since the previous call (or since made)."""
        now = self._sample()
        last, self._last = self._last, now
        wall = now.wall - last.wall
        if now.busy is None or last.busy is None or wall <= 0:
            return None
        return max(0.0, (now.busy - last.busy) - (now.own - last.own)) / wall


def _affinity() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def _busy_seconds(cores: set[int]) -> float | None:
    """Busy seconds (all but idle and iowait) of `cores` since boot, or None off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cores:
            continue
        values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        busy += sum(values) - values[3] - values[4]
    return busy / ticks
