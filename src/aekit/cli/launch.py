"""`aekit train --nproc-per-node N`: the same command run by N processes of this machine.

The job goes through torch's own launcher, `torch.distributed.run` (torchrun's Python entry),
called here in this process: `--standalone` rendezvous on this machine, each process running
`python -m aekit.cli.main` with this command's arguments less the launch flag. The processes
then join as they would under a torchrun typed by hand (aekit.estimator.distributed). No
shell is involved.

Typed by hand, `torchrun ... aekit train ...` fails before any aekit code runs: torchrun
hands `aekit` to Python as a script path, and Python finds no such file. Only torchrun's
own flags make that form work (`--no-python` runs the `aekit` executable itself; `-m
aekit.cli.main` the module), which is what the flag's help and docs/distributed.md say.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aekit.checks import Integer
from aekit.errors import ConfigError
from aekit.estimator.job import launched

if TYPE_CHECKING:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

FLAG = "--nproc-per-node"
ERRORS = "AEKIT_JOB_ERRORS"  # a folder where the processes of a job started here leave errors
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
PROCESSES = Integer(1, below=CORES + 1, why="the cores this process may use, one per process")
HELP = (
    "train on N processes of this machine, data-parallel (torchrun --standalone, started by "
    "aekit; each process takes --batch-size examples a step); 1: this process alone. Under a "
    "torchrun of your own give no --nproc-per-node, and start `torchrun --no-python aekit "
    "train ...` or `torchrun -m aekit.cli.main train ...` (torchrun reads a bare `aekit` as a "
    "script file)"
)


def under_a_launcher() -> bool:
    """Whether torchrun (or another launcher that sets RANK and WORLD_SIZE) started us."""
    return "TORCHELASTIC_RUN_ID" in os.environ or launched()


def train_on(processes: int, argv: Sequence[str], verbose: bool = False) -> int | None:
    """Run `aekit ARGV` on `processes` processes and return the job's exit status.

    None when `processes` is 1: this process trains alone, as without the flag.
    ConfigError when this process is itself one of a launched job.
    """
    if under_a_launcher():
        raise ConfigError(
            f"{FLAG} starts the processes itself, and this process is already one of a "
            f"torchrun job; drop {FLAG}, or run `aekit train ... {FLAG} N` without torchrun"
        )
    if processes == 1:
        return None
    from torch.distributed import run
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    command = [
        "--standalone", FLAG, str(processes), "-m", "aekit.cli.main", *without_the_flag(argv),
    ]  # fmt: skip
    # The cores shared out among the processes unless the user chose (torchrun would give
    # each one thread, and print a banner saying so).
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, CORES // processes))
    with tempfile.TemporaryDirectory(prefix="aekit-errors-") as errors:
        try:
            with _environ("OMP_NUM_THREADS", threads), _environ(ERRORS, errors), _quiet(verbose):
                run.main(command)
        except ChildFailedError as failed:
            _print_once(Path(errors))  # every rank hit the same bad input: one line, not N
            return _status_of(failed, processes)
        except SignalException as stopped:  # the launcher stopped every process first
            if stopped.sigval != signal.SIGINT:  # Ctrl-C: the processes said "interrupted"
                print(f"aekit: stopped by {stopped.sigval.name}", file=sys.stderr)
            return 128 + int(stopped.sigval)
    return 0


def report(line: str) -> None:
    """Say a process's error line: on stderr, or, in a job started here, to the launcher,
    which prints each distinct line once when the job has ended."""
    folder = os.environ.get(ERRORS)
    if folder is None or not Path(folder).is_dir():
        print(line, file=sys.stderr)
        return
    (Path(folder) / f"rank-{os.environ.get('RANK', '0')}.txt").write_text(line + "\n")


def _print_once(errors: Path) -> None:
    seen: dict[str, None] = {}
    for file in sorted(errors.glob("rank-*.txt"), key=lambda f: int(f.stem.split("-")[1])):
        seen.setdefault(file.read_text().rstrip("\n"))
    for line in seen:
        print(line, file=sys.stderr)


def without_the_flag(argv: Sequence[str]) -> list[str]:
    """`argv` less every --nproc-per-node and its value, however spelt (--x=N, --x N, --x_y).

    argparse itself finds them, as `aekit`'s parser found them: the same abbreviations,
    the same `--flag=value` forms.
    """
    picker = argparse.ArgumentParser(add_help=False)
    picker.add_argument(FLAG, "--nproc_per_node")
    return picker.parse_known_args(list(argv))[1]


def _status_of(failed: ChildFailedError, processes: int) -> int:
    """The exit status of a failed job: its first failed process's, the cause of the rest."""
    rank, failure = failed.get_first_failure()
    code = failure.exitcode
    if code == 2:  # aekit's own error, which the process printed in its one line
        return 2
    what = f"exit status {code}" if code >= 0 else f"signal {failure.signal_name()}"
    print(
        f"aekit: error: rank {rank} of {processes} ended with {what}, and the job was stopped "
        "(any output of it is above); the same command resumes from the model dir's last "
        "checkpoint, if it has one",
        file=sys.stderr,
    )
    return code if code >= 0 else 128 - code


@contextlib.contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    """`name` set to `value` in the environment the processes inherit, restored after."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


@contextlib.contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    """Without -v, no launcher log lines: a failed process's own line says what went wrong."""
    loggers = [logging.getLogger(f"torch.distributed.elastic.{name}.api")
               for name in ("multiprocessing", "agent.server")]  # fmt: skip
    before = [logger.level for logger in loggers]
    for logger in loggers if not verbose else []:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, before, strict=True):
            logger.setLevel(level)
