"""Training on a shared CPU: heap page reuse, other work on the cores, the thread count."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import aekit
from aekit.estimator import cpu
from aekit.hooks import Hook, RunContext, StepResult
from tiny import tiny_autoencoder_fn, tiny_network

linux_only = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads /proc/stat")

FAULTS = """
import resource, sys, torch
from aekit.estimator import cpu
print(cpu.reuse_heap_pages())
for _ in range(10):  # until the heap settles: its first blocks may split a freed one
    torch.ones(4 << 20).sum()  # 16 MB, freed at once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.ones(4 << 20).sum()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def faults_per_allocation(env: dict[str, str]) -> tuple[bool, float]:
    done = subprocess.run(
        [sys.executable, "-c", FAULTS], env=env, capture_output=True, text=True, check=True
    )
    tuned, faults = done.stdout.split()
    return tuned == "True", float(faults)


@pytest.mark.slow
@linux_only
def test_a_freed_block_is_reused_instead_of_faulted_in_again() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    tuned, faults = faults_per_allocation(env)
    if not tuned:
        pytest.skip("not glibc")
    # glibc's default mmaps the 16 MB block each time: ~4,000 faults of 4 KiB pages.
    _, untuned = faults_per_allocation({**env, "MALLOC_TOP_PAD_": "0"})
    assert faults < 50 < untuned


@linux_only
def test_a_user_tuned_malloc_is_left_alone() -> None:
    tuned, _ = faults_per_allocation({**os.environ, "MALLOC_ARENA_MAX": "2"})
    assert not tuned


@contextmanager
def competing_process_on_two_cores() -> Iterator[None]:
    """This process and a CPU-bound child share cores 0 and 1 (restored after)."""
    before = os.sched_getaffinity(0)
    if len(before) < 2:
        pytest.skip("needs two cores")
    os.sched_setaffinity(0, sorted(before)[:2])
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        # Until the child has started and burnt CPU: a slow start (a cold cache on a fresh
        # machine) would otherwise leave the cores free at the watch's first look.
        while _cpu_seconds(child.pid) < 0.1 and child.poll() is None:
            spin(0.01)
        yield
    finally:
        child.kill()
        child.wait()
        os.sched_setaffinity(0, before)


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process `pid` so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spin(seconds: float) -> None:
    """Work on this process's own thread for `seconds` of wall time."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(1000))


@linux_only
def test_core_watch_sees_another_process_and_not_its_own_work() -> None:
    with competing_process_on_two_cores():
        watch = cpu.CoreWatch()
        spin(0.4)
        others = watch.others()
    assert watch.cores and others is not None
    # The child had at least a third of the two cores; this process's spinning is its own.
    assert 0.5 <= others <= 1.5


class ThreadsSeen(Hook):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def after_run(self, context: RunContext, result: StepResult) -> None:
        self.seen.append(torch.get_num_threads())
        spin(0.01)  # a step long enough for the watch to measure


def estimator(model_dir: Path, **config: object) -> aekit.Estimator:
    settings = {"device": "cpu", "log_step_count_steps": 0, "save_summary_steps": 0, **config}
    return aekit.Estimator(
        tiny_autoencoder_fn,
        tiny_network(),
        model_dir=model_dir,
        config=aekit.RunConfig(**settings),  # type: ignore[arg-type]
    )


def batches() -> list[torch.Tensor]:
    return [torch.rand(4, 8) for _ in range(1000)]


@linux_only
def test_training_drops_to_one_thread_while_another_process_is_busy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An earlier run in this process that found the cores busy would start this one on 1.
    monkeypatch.setattr(cpu, "_busy_at", None)
    monkeypatch.setattr(cpu, "_explained", False)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = ThreadsSeen()  # the default hook looks after 0.25 s, then every second
        # A library's caller hears of it at DEBUG only.
        with competing_process_on_two_cores(), caplog.at_level(logging.DEBUG, logger="aekit"):
            estimator(tmp_path).train(batches, hooks=[seen], max_steps=60)
        assert seen.seen[0] == 2 and seen.seen[-1] == 1
        assert torch.get_num_threads() == 2  # restored when training ends
        assert any("training on 1 thread" in r.getMessage() for r in caplog.records)
    finally:
        torch.set_num_threads(threads)


def test_a_pinned_count_holds_while_training_and_is_restored_after_a_failure(
    tmp_path: Path,
) -> None:
    threads = torch.get_num_threads()
    seen = ThreadsSeen()
    estimator(tmp_path, cpu_threads=1).train(batches, hooks=[seen], max_steps=3)
    assert seen.seen == [1, 1, 1] and torch.get_num_threads() == threads

    def failing() -> list[torch.Tensor]:
        raise RuntimeError("the input broke")

    with pytest.raises(RuntimeError, match="the input broke"):
        estimator(tmp_path / "other", cpu_threads=1).train(failing, max_steps=3)
    assert torch.get_num_threads() == threads


class _Busy:
    """A CoreWatch that always sees `others` cores of other work on two cores."""

    def __init__(self, others: float) -> None:
        self.cores = {0, 1}
        self.others_ = others

    def others(self) -> float:
        return self.others_


def _drops(count: int) -> None:
    """`count` times: a ThreadCount on 2 threads that finds the cores busy and drops to 1."""
    threads = torch.get_num_threads()
    try:
        for _ in range(count):
            cpu._busy_at = None  # else a run right after a busy one starts on 1 thread
            torch.set_num_threads(2)
            watch = cpu.ThreadCount("auto", first_secs=0.0)
            with watch:
                watch._watch = _Busy(1.8)  # type: ignore[assignment]
                watch.after_step()
                assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("command_line", [False, True])
def test_the_drop_to_one_thread_is_told_once_and_quietly_to_a_library(
    command_line: bool, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpu, "_busy_at", None)
    monkeypatch.setattr(cpu, "_explained", False)
    monkeypatch.setattr(cpu, "_announced", False)
    if command_line:
        cpu.announce_thread_changes()
    with caplog.at_level(logging.DEBUG, logger="aekit"):
        _drops(3)  # a grid search's fits, or a stacked model's phases
    notices = [r for r in caplog.records if r.getMessage().startswith("other work is using 1.8")]
    assert len(notices) == 3
    levels = [r.levelno for r in notices]
    if command_line:  # once at INFO, with no advice the command line cannot follow
        assert levels == [logging.INFO, logging.DEBUG, logging.DEBUG]
        assert "RunConfig" not in notices[0].getMessage()
    else:
        assert levels == [logging.DEBUG] * 3
        assert "RunConfig(cpu_threads=2) pins it" in notices[0].getMessage()


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "many"])
def test_cpu_threads_must_be_auto_or_a_positive_integer(bad: object) -> None:
    with pytest.raises(aekit.ConfigError, match="cpu_threads"):
        aekit.RunConfig(cpu_threads=bad)  # type: ignore[arg-type]
