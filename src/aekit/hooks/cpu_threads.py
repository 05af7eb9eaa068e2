"""Train on one thread while other work keeps the cores busy, and on all of them after."""

from __future__ import annotations

import logging
import time

import torch

from aekit.estimator.cpu import CoreWatch
from aekit.hooks.base import Hook, RunContext, StepResult

_log = logging.getLogger("aekit")
_said = False  # the explanation is given once per process, later switches are logged briefly
# When the last run in this process found the cores busy: the next one starts on one thread.
_busy_at: float | None = None
_REMEMBER_SECS = 10.0


class CpuThreadsHook(Hook):
    """PyTorch's CPU threads for a training run: pinned, or adapted to other load.

    `threads="auto"` keeps torch's thread count while the cores are free; when other
    work uses more than half a core that training's threads need, it trains on one
    thread until the others have (almost) stopped. Several threads that each wait for
    the others at every operation collapse when one of them is descheduled: with one
    competing process the FC model kept 24% of its idle speed on 2 pinned threads and
    63% with this hook (README, Speed). An integer sets that many threads instead.
    The count in force before training is restored at the end.
    """

    def __init__(
        self, threads: int | str = "auto", first_secs: float = 0.25, every_secs: float = 1.0
    ) -> None:
        self.threads = threads
        self.first_secs = first_secs  # short runs (a fast model, one epoch) need a quick look
        self.every_secs = every_secs
        self._watch: CoreWatch | None = None

    def after_create_session(self, context: RunContext) -> None:
        self._before = torch.get_num_threads()
        self._watch = None
        if isinstance(self.threads, int):
            torch.set_num_threads(self.threads)
        elif self._before > 1:
            self._watch = CoreWatch()
            self._next = time.monotonic() + self.first_secs
            if _busy_at is not None and time.monotonic() - _busy_at < _REMEMBER_SECS:
                torch.set_num_threads(1)

    def after_run(self, context: RunContext, result: StepResult) -> None:
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
            self._explain(others)
        elif not busy and torch.get_num_threads() == 1:
            torch.set_num_threads(self._before)
            _log.info("the cores are free again: training on %d threads", self._before)

    def _explain(self, others: float) -> None:
        global _said
        cores = len(self._watch.cores) if self._watch else 0
        if _said:
            _log.info("other work uses %.1f of %d cores: training on 1 thread", others, cores)
            return
        _said = True
        _log.warning(
            "other work is using %.1f of the %d cores: training on 1 thread instead of %d "
            "while it does, since waiting threads would spin against it "
            "(RunConfig(cpu_threads=%d) keeps %d)",
            others,
            cores,
            self._before,
            self._before,
            self._before,
        )

    def end(self, context: RunContext) -> None:
        torch.set_num_threads(self._before)  # the Estimator also restores it after a failure
