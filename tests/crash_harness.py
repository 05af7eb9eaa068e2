"""Kill `aekit train` / `aekit export` with SIGKILL at random points, rerun, check the model dir.

A fork server (`Zygote`) imports torch and aekit once and forks one child per run, so a kill
point costs a fraction of a second instead of a fresh interpreter. A child runs the real
command line (`aekit.cli.main.main`) and carries one trap: at the n-th occurrence of an event
(an optimizer step, a checkpoint or export being written, an fsync, a rename, a TensorBoard
record being appended) it writes a random fraction of what it was writing and sends itself
SIGKILL; a "timer" point is instead killed by the server after a random delay. After each kill
the same command runs again without a trap and `check_*` verify that it resumed from the last
complete checkpoint, finished at the requested step, and left every file whole.

Used by tests/reliability/test_crash_points.py and benchmarks/crash_points.py.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

TRAIN_KINDS = ("step-before-update", "step-after-update", "checkpoint-write", "fsync", "rename",
               "summary-record", "timer")  # fmt: skip
EXPORT_KINDS = ("export-write", "fsync", "rename", "timer")

# Runs in the server: imports everything once, then forks a child per request line.
SERVER = textwrap.dedent(
    r"""
    import io, json, os, random, signal, struct, sys, time
    import torch
    from torch.optim import optimizer
    import aekit.cli.main, aekit.cli.commands
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401 (imported before forking)
    from tensorboard.summary.writer import record_writer
    import sklearn.datasets  # noqa: F401

    def install(trap, counts):
        trap = trap or {}
        kind, n, fraction = trap.get("kind"), trap.get("n", 0), trap.get("fraction", 0.5)

        def hit(name):
            counts[name] = counts.get(name, 0) + 1
            return name == kind and counts[name] == n

        def die():
            os.kill(os.getpid(), signal.SIGKILL)

        def partial(f, data):
            f.write(data[: int(len(data) * fraction)])
            f.flush()
            die()

        optimizer.register_optimizer_step_pre_hook(
            lambda *a: die() if hit("step-before-update") else None)
        optimizer.register_optimizer_step_post_hook(
            lambda *a: die() if hit("step-after-update") else None)
        def torn(real_save, point):
            def save(obj, f, *args, **kwargs):
                if hit(point):
                    buf = io.BytesIO()
                    real_save(obj, buf, *args, **kwargs)
                    partial(f, buf.getvalue())
                return real_save(obj, f, *args, **kwargs)
            return save

        torch.save = torn(torch.save, "checkpoint-write")
        torch.jit.save = torn(torch.jit.save, "export-write")
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd):
            real_fsync(fd)
            if hit("fsync"):
                die()

        def replace(src, dst, *args, **kwargs):
            real_replace(src, dst, *args, **kwargs)
            if hit("rename"):
                die()

        os.fsync, os.replace = fsync, replace
        real_record = record_writer.RecordWriter.write

        def record(self, data):
            if hit("summary-record"):
                header = struct.pack("<Q", len(data))
                framed = (header + struct.pack("<I", record_writer.masked_crc32c(header)) + data
                          + struct.pack("<I", record_writer.masked_crc32c(data)))
                partial(self._writer, framed)
            return real_record(self, data)

        record_writer.RecordWriter.write = record

    def warm_up():
        # One untrapped run in the server itself, so every lazy import (torch._dynamo for
        # the optimizer, the tracer for export) is done once here and not in every child.
        # One thread: no OpenMP pool exists to be broken by fork().
        import contextlib, gc, logging, tempfile
        torch.set_num_threads(1)
        with tempfile.TemporaryDirectory() as d, contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            aekit.cli.main.main(["train", "fully_connected", "--dataset", "digits",
                                 "--hidden-units", "4", "--epochs", "1", "--model-dir", d])
            aekit.cli.main.main(["export", "--model-dir", d, "--format", "torchscript"])
            for obj in gc.get_objects():  # stop TensorBoard's writer threads before forking
                if isinstance(obj, SummaryWriter):
                    obj.close()
        logging.getLogger().handlers.clear()  # each child logs to its own stderr

    warm_up()
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(log, 1)
                os.dup2(log, 2)
                torch.set_num_threads(1)
                counts = {}
                install(request.get("trap"), counts)
                status = aekit.cli.main.main(request["argv"])
                with open(request["counts"], "w") as f:
                    json.dump(counts, f)
            except BaseException as exc:
                print(f"harness child: {exc!r}", file=sys.stderr)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        if request.get("delay") is not None:
            time.sleep(request["delay"])  # the random kill time of a "timer" point
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, wait_status, usage = os.wait4(pid, 0)
        killed = os.WIFSIGNALED(wait_status)
        code = -os.WTERMSIG(wait_status) if killed else os.WEXITSTATUS(wait_status)
        cpu = usage.ru_utime + usage.ru_stime
        print(json.dumps({"status": code, "cpu": cpu}), flush=True)
    """
)


class Zygote:
    """The fork server: `run(argv, trap)` runs the aekit command line in a fresh child."""

    def __init__(self, work: Path) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        script = work / "zygote.py"
        script.write_text(SERVER)
        self.process = subprocess.Popen(
            [sys.executable, str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            # Children are forked, and a forked child cannot use CUDA: the CPU only.
            env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""},
        )
        try:
            assert self._line() == "ready"
        except BaseException:  # a server that failed to start leaves nothing running
            self.process.kill()
            self.close()
            raise
        self.runs = 0
        self.cpu_seconds = 0.0  # CPU time of all children: a load-independent cost

    def _line(self) -> str:
        stdout = self.process.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server died (status {self.process.poll()})")
        return line.strip()

    def run(
        self, argv: list[str], trap: dict[str, Any] | None = None, delay: float | None = None
    ) -> Run:
        """Run `aekit argv` in a forked child; returns its status, output and event counts."""
        self.runs += 1
        log, counts = self.work / f"run-{self.runs}.log", self.work / f"run-{self.runs}.json"
        request = {"argv": argv, "trap": trap, "delay": delay, "log": str(log),
                   "counts": str(counts)}  # fmt: skip
        stdin: IO[str] | None = self.process.stdin
        assert stdin is not None
        stdin.write(json.dumps(request) + "\n")
        stdin.flush()
        reply = json.loads(self._line())
        output = log.read_text(errors="replace")
        events = json.loads(counts.read_text()) if counts.is_file() else {}
        self.cpu_seconds += reply["cpu"]
        return Run(reply["status"], output, events, reply["cpu"])

    def close(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self.process.wait(timeout=60)


@dataclass
class Run:
    """What one child did: exit status (-9 when killed), its output, events it counted."""

    status: int
    output: str
    events: dict[str, int] = field(default_factory=dict)
    cpu: float = 0.0


@dataclass
class Outcome:
    """One kill point: where it was, whether the kill happened, what the rerun resumed from."""

    kind: str
    n: int
    fraction: float
    killed: bool
    resumed_from: int | None
    problems: list[str]


@dataclass
class Scenario:
    """A command to kill and rerun, and what a finished run looks like."""

    name: str
    final_step: int
    kinds: tuple[str, ...]
    events: dict[str, int]
    seconds: float


EPOCHS, BATCH = 5, 256  # digits: 1,437 training images -> 6 steps an epoch, 30 in all


def train_argv(model_dir: Path) -> list[str]:
    return ["train", "fully_connected", "--dataset", "digits", "--hidden-units", "16,4",
            "--epochs", str(EPOCHS), "--batch-size", str(BATCH), "--model-dir", str(model_dir),
            "--log-every", "2"]  # fmt: skip


def export_argv(model_dir: Path) -> list[str]:
    return ["export", "--model-dir", str(model_dir), "--format", "torchscript"]


def dry_runs(zygote: Zygote, work: Path) -> tuple[Scenario, Scenario, Path]:
    """Run each command once untouched: counts its events, times it, gives a trained dir."""
    import time

    trained = work / "reference"
    start = time.perf_counter()
    train = zygote.run(train_argv(trained))
    train_secs = time.perf_counter() - start
    assert train.status == 0, train.output
    start = time.perf_counter()
    export = zygote.run(export_argv(trained))
    export_secs = time.perf_counter() - start
    assert export.status == 0, export.output
    steps = EPOCHS * -(-1437 // BATCH)
    return (
        Scenario("train", steps, TRAIN_KINDS, train.events, train_secs),
        Scenario("export", 0, EXPORT_KINDS, export.events, export_secs),
        trained,
    )


def kill_point(
    zygote: Zygote, scenario: Scenario, model_dir: Path, rng: random.Random, trained: Path
) -> Outcome:
    """Kill one run at a random point of `scenario`, rerun it, and check the model dir."""
    import shutil

    kind = rng.choice(scenario.kinds)
    fraction = rng.random()
    n = 0 if kind == "timer" else rng.randint(1, max(1, scenario.events.get(kind, 1)))
    delay = rng.uniform(0, scenario.seconds) if kind == "timer" else None
    trap = None if kind == "timer" else {"kind": kind, "n": n, "fraction": fraction}
    if scenario.name == "export":
        shutil.copytree(trained, model_dir, ignore=shutil.ignore_patterns("export"))
        argv = export_argv(model_dir)
    else:
        argv = train_argv(model_dir)
    first = zygote.run(argv, trap, delay)
    problems: list[str] = []
    killed = first.status == -9
    if not killed and first.status != 0:
        problems.append(f"first run ended with status {first.status}: {first.output[-500:]}")
    problems += check_model_dir(model_dir, after_rerun=False)
    resume = last_complete_step(model_dir)
    again = zygote.run(argv)
    if again.status != 0:
        problems.append(f"rerun failed with status {again.status}: {again.output[-800:]}")
    if scenario.name == "train":
        problems += check_resumed(again.output, resume, scenario.final_step)
    else:
        problems += check_export(model_dir / "export")
    problems += check_model_dir(model_dir, after_rerun=True)
    return Outcome(kind, n, round(fraction, 3), killed, resume, problems)


def last_complete_step(model_dir: Path) -> int | None:
    from aekit.estimator import checkpoint as ckpt

    found = ckpt.load_latest(model_dir)
    return None if found is None else int(found[1]["global_step"])


_RESTORED = re.compile(r"restored \S+ \(step (\d+)\)")


def check_resumed(output: str, resume: int | None, final_step: int) -> list[str]:
    """The rerun restored exactly the last complete checkpoint and trained to the end."""
    problems = []
    match = _RESTORED.search(output)
    restored = None if match is None else int(match.group(1))
    if restored != resume:
        problems.append(f"rerun restored step {restored}, the last complete checkpoint is {resume}")
    if f"global_step={final_step}" not in output.replace(".0 ", " "):
        problems.append(f"rerun did not end at step {final_step}: {output[-300:]}")
    return problems


def check_model_dir(model_dir: Path, after_rerun: bool) -> list[str]:
    """Every checkpoint loads, hparams.json parses, event files read back whole."""
    from aekit.errors import CheckpointError
    from aekit.estimator import checkpoint as ckpt
    from aekit.estimator.lock import LOCK_FILE
    from aekit.summary import whole_records_end

    problems: list[str] = []
    if not model_dir.exists():
        return problems
    for path in ckpt.list_checkpoints(model_dir):
        try:
            ckpt.load(path)
        except CheckpointError as exc:
            problems.append(f"half-written checkpoint: {exc}")
    hparams = model_dir / "hparams.json"
    if hparams.exists():
        try:
            json.loads(hparams.read_text())
        except ValueError as exc:
            problems.append(f"half-written hparams.json: {exc}")
    for events in sorted(model_dir.rglob("events.out.tfevents.*")):
        torn = whole_records_end(events)
        whole = events.stat().st_size if torn is None else torn
        read = read_events(events)
        if read is None or read[1] != whole:
            problems.append(f"TensorBoard cannot read {events.relative_to(model_dir)}: {read}")
        if after_rerun and torn is not None:  # the rerun cuts what a killed writer tore
            problems.append(f"torn record left in {events.relative_to(model_dir)} after a rerun")
    if after_rerun:
        leftovers = [p for p in model_dir.rglob("*") if ".tmp-" in p.name or p.name == LOCK_FILE]
        problems += [f"left behind: {p.relative_to(model_dir)}" for p in leftovers]
        if not (model_dir / "train").is_dir() and model_dir.joinpath("hparams.json").exists():
            problems.append("no train/ events after a finished run")
    return problems


def read_events(path: Path) -> tuple[int, int] | None:
    """(events, bytes they span) as TensorBoard's own loader reads the file; None if it fails."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto import event_pb2

    try:
        records = list(RawEventFileLoader(str(path)).Load())
        for record in records:
            event_pb2.Event.FromString(record)
    except Exception:  # any failure to read is what this check reports
        return None
    return len(records), sum(len(r) + 16 for r in records)


def check_export(export_dir: Path) -> list[str]:
    """The three TorchScript files load and run; nothing half-written is left."""
    import torch

    problems = []
    for part in ("encoder", "decoder", "autoencoder"):
        path = export_dir / f"{part}.pt"
        try:
            with warnings.catch_warnings():  # deprecated in torch 2.13, still the way to serve
                warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated")
                module = torch.jit.load(str(path))  # type: ignore[no-untyped-call]
            module(torch.rand(2, 4) if part == "decoder" else torch.rand(2, 64))
        except Exception as exc:  # a torn file surfaces as any of torch's error types
            problems.append(f"export {path.name} unreadable: {str(exc)[:200]}")
    problems += [f"left behind: {p.name}" for p in export_dir.iterdir() if ".tmp-" in p.name]
    return problems


def run_points(work: Path, points: int, seed: int) -> tuple[list[Outcome], dict[str, Any]]:
    """Run `points` kill points (about one in six in export, the rest in training)."""
    rng = random.Random(seed)
    zygote = Zygote(work / "server")
    try:
        train, export, trained = dry_runs(zygote, work)
        outcomes = []
        for i in range(points):
            scenario = export if i % 6 == 5 else train
            outcomes.append(kill_point(zygote, scenario, work / f"point-{i}", rng, trained))
    finally:
        zygote.close()
    info = {"train_events": train.events, "export_events": export.events,
            "train_seconds": round(train.seconds, 2), "final_step": train.final_step}  # fmt: skip
    return outcomes, info
