"""A training process killed with SIGKILL resumes from its last complete checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aekit.estimator import checkpoint as ckpt

CHILD = textwrap.dedent(
    """
    import sys
    import torch
    import aekit
    from aekit.hooks import CheckpointSaverListener, Hook
    from tiny import tiny_autoencoder_fn, tiny_network

    class Announce(CheckpointSaverListener):
        def after_save(self, estimator, step, path):
            print(f"saved {step}", flush=True)

    class Started(Hook):
        def after_create_session(self, context):
            print(f"start {context.global_step}", flush=True)

    def batches():
        while True:
            yield torch.rand(16, 8)

    est = aekit.Estimator(
        tiny_autoencoder_fn,
        tiny_network(),
        model_dir=sys.argv[1],
        config=aekit.RunConfig(save_checkpoints_steps=5, log_step_count_steps=0),
    )
    est.train(
        batches, hooks=[Started()], max_steps=int(sys.argv[2]), saving_listeners=[Announce()]
    )
    print(f"done {est.global_step}", flush=True)
    """
)


def run_child(script: Path, model_dir: Path, max_steps: int) -> subprocess.Popen[str]:
    tests_dir = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tests_dir), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, str(script), str(model_dir), str(max_steps)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(CHILD)
    model_dir = tmp_path / "model"
    child = run_child(script, model_dir, max_steps=10**9)
    assert child.stdout is not None
    saves = 0
    for line in child.stdout:
        if line.startswith("saved"):
            saves += 1
            if saves == 3:
                os.kill(child.pid, signal.SIGKILL)  # mid-run: it keeps training after a save
                break
    child.wait()
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    latest = ckpt.latest_checkpoint(model_dir)
    assert latest is not None
    killed_at = ckpt.step_of(latest)
    assert killed_at >= 15
    ckpt.load(latest)  # whole and readable

    target = killed_at + 12
    again = run_child(script, model_dir, max_steps=target)
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0, out
    assert f"start {killed_at}" in out  # resumed, not started over
    assert f"done {target}" in out
    final = ckpt.latest_checkpoint(model_dir)
    assert final is not None and ckpt.step_of(final) == target
    assert ckpt.load(final)["global_step"] == target
    assert not [p.name for p in model_dir.iterdir() if p.name.startswith(".")]
