"""Training on a CPU that other work shares: malloc's page reuse, and threads under load.

Several threads that each wait for the others at every operation collapse when one of them
is descheduled: with one competing process the FC model kept 24% of its idle speed on 2
pinned threads and 63% when training dropped to one thread while the other work ran
(docs/benchmarks/speed.md). `ThreadCount` does that for the training loop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import time
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
_log = logging.getLogger("aekit")
# When the last run in this process found the cores busy: the next one starts on one thread.
_busy_at: float | None = None
_REMEMBER_SECS = 10.0
_explained = False  # the notice of a drop to one thread is given once per process
# A library's caller (a grid search fitting many models) did not ask to be told about the
# thread count: the notice is DEBUG unless the command line called announce_thread_changes.
_announced = False


def announce_thread_changes() -> None:
    """Log the first drop to one training thread at INFO instead of DEBUG, in the CLI's terms.

    The command line calls it once at start-up, so that its user learns why training slowed
    down; a program using aekit as a library is told only when it logs DEBUG.
    """
    global _announced
    _announced = True


def reuse_heap_pages() -> bool:
    """Raise glibc malloc's mmap and trim thresholds, once per process; True if done.

    With glibc's defaults, a tensor of more than a few MB is mmapped when allocated and
    unmapped when freed, so every training step first-touches its activations' pages
    again: page faults that measured 1.4-1.7x of the convolutional model's step
    (docs/benchmarks/speed.md). Left alone where the user tuned malloc (MALLOC_* or
    GLIBC_TUNABLES) or preloaded another allocator, and off glibc.
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


class ThreadCount:
    """PyTorch's CPU threads during one training loop: pinned, or adapted to other load.

    `threads="auto"` keeps torch's count while the cores are free; when other work uses
    more than half a core that training's threads need, it trains on one thread until the
    others have (almost) stopped. An integer pins that many; None leaves the count as it
    is. Use it as a context manager
    around the loop (the count in force before comes back however the loop ends) and call
    `after_step` after every step: it looks at the cores after `first_secs`, then every
    `every_secs`.
    """

    def __init__(
        self, threads: int | str | None = "auto", first_secs: float = 0.25, every_secs: float = 1.0
    ) -> None:
        self.threads = threads
        self.first_secs = first_secs  # short runs (a fast model, one epoch) need a quick look
        self.every_secs = every_secs
        self._watch: CoreWatch | None = None
        self._before = torch.get_num_threads()
        self._next = 0.0

    def __enter__(self) -> ThreadCount:
        self._before = torch.get_num_threads()
        self._watch = None
        if isinstance(self.threads, int):
            torch.set_num_threads(self.threads)
        elif self.threads == "auto" and self._before > 1:
            self._watch = CoreWatch()
            self._next = time.monotonic() + self.first_secs
            if _busy_at is not None and time.monotonic() - _busy_at < _REMEMBER_SECS:
                torch.set_num_threads(1)
                _log.debug(
                    "the cores were busy %.1f s ago: starting on 1 thread",
                    time.monotonic() - _busy_at,
                )
        return self

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self._before)

    def after_step(self) -> None:
        """Drop to one thread while other work keeps the cores busy, and back after."""
        global _busy_at
        if self._watch is None or time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.every_secs
        others = self._watch.others()
        if others is None:
            self._watch = None  # no way to tell on this system
            return
        spare = len(self._watch.cores) - self._before  # cores training leaves free
        busy = others > spare + (0.25 if torch.get_num_threads() == 1 else 0.5)
        _busy_at = time.monotonic() if busy else None
        if busy and torch.get_num_threads() > 1:
            torch.set_num_threads(1)
            self._explain(others, len(self._watch.cores))
        elif not busy and torch.get_num_threads() == 1:
            torch.set_num_threads(self._before)
            _log.debug("the cores are free again: training on %d threads", self._before)

    def _explain(self, others: float, cores: int) -> None:
        """Say why training dropped to one thread: once per process, later drops at DEBUG."""
        global _explained
        level = logging.INFO if _announced and not _explained else logging.DEBUG
        _explained = True
        # Only the library's callers can pin the count: the command line has no flag for it.
        pin = "" if _announced else f" (RunConfig(cpu_threads={self._before}) pins it)"
        _log.log(
            level,
            "other work is using %.1f of the %d cores: training on 1 thread instead of %d "
            "while it does, since waiting threads would spin against it%s",
            others,
            cores,
            self._before,
            pin,
        )


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
