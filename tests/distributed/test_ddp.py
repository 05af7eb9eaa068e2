"""Data-parallel training with real processes started by torchrun (gloo, CPU)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from aekit.data import numpy_input_fn
from aekit.estimator import checkpoint as ckpt

JOB = Path(__file__).with_name("ddp_job.py")
pytestmark = pytest.mark.slow


def _job_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ddp_job", JOB)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _torchrun(
    model_dir: Path, steps: int, batch: int, *extra: str, restarts: int = 0
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        f"--max-restarts={restarts}", str(JOB), str(model_dir), str(steps), str(batch), *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    network: dict[str, torch.Tensor] = ckpt.load(path)["network"]
    return network


def test_two_processes_match_one_on_the_global_batch_and_write_once(tmp_path: Path) -> None:
    job = _job_module()
    run = _torchrun(tmp_path / "ddp", 8, 4)
    assert run.returncode == 0, run.stderr[-2000:]
    single = job.estimator(str(tmp_path / "single"))
    x = job.images()
    single.train(numpy_input_fn(x, batch_size=8, num_epochs=None, seed=3), max_steps=8)
    ddp_weights = _weights(tmp_path / "ddp" / "ckpt-8.pt")
    for name, value in single.network.state_dict().items():
        torch.testing.assert_close(ddp_weights[name], value, rtol=1e-5, atol=1e-6)
    # Evaluation adds both processes' sums: the same figures as one process over all 37.
    expected = single.evaluate(numpy_input_fn(x[:37], batch_size=5, shuffle=False))
    got = json.loads((tmp_path / "ddp" / "eval.json").read_text())
    assert got == pytest.approx(expected, rel=1e-6)
    # One writer: one set of checkpoints and one event file per directory.
    assert sorted(p.name for p in (tmp_path / "ddp").glob("ckpt-*")) == ["ckpt-4.pt", "ckpt-8.pt"]
    for sub in ("train", "eval"):
        assert len(list((tmp_path / "ddp" / sub).glob("events.out.tfevents.*"))) == 1
    # The run goes on in one process from the two processes' checkpoint.
    resumed = job.estimator(str(tmp_path / "ddp"))
    resumed.train(numpy_input_fn(x, batch_size=8, num_epochs=None), max_steps=10)
    assert resumed.global_step == 10 and (tmp_path / "ddp" / "ckpt-10.pt").exists()


def test_a_killed_rank_ends_the_job_and_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    run = _torchrun(tmp_path / "run", 8, 4, "--kill", "1", "7")
    assert run.returncode != 0
    assert "ddp_job.py FAILED" in run.stderr or "lost the other processes" in run.stderr
    latest = ckpt.latest_checkpoint(tmp_path / "run")
    assert latest is not None and latest.name == "ckpt-4.pt"
    assert ckpt.load(latest)["global_step"] == 4
    assert not (tmp_path / "run" / "eval.json").exists()
