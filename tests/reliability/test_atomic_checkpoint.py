"""A write that fails midway leaves the earlier file whole: files go through a rename.

A child process lowers its file-size limit (RLIMIT_FSIZE, no privileges needed) below the
size of a file it wrote, with SIGXFSZ ignored so that writing past the limit fails with
EFBIG instead of killing it, then writes the same file again. Written in place, the file
would be cut at the limit (or gone); written beside it and renamed, it is untouched.
One child does both writers (a checkpoint, `aekit train`'s hparams.json): most of its
time is importing torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tiny import quiet_estimator

TESTS = Path(__file__).resolve().parents[1]

# argv: the model dir of the checkpoint, the model dir of the command line's run.
# Prints one JSON line on stdout; "--- resume" on stderr before the failing `aekit train`.
CHILD = textwrap.dedent(
    """
    import hashlib, json, resource, signal, sys
    from pathlib import Path

    import aekit
    from aekit.cli.main import main
    from tiny import batches, quiet_estimator, tiny_data

    def snapshot(directory):
        # Every file, dot files (a half-written temporary) included, with its digest.
        return {
            str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()
        }

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process

    def limited(size, write):
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
        try:
            return write()
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    def save_again(est):
        try:
            est.save_checkpoint()  # the same step: the same file name
        except aekit.AekitError as exc:
            return {
                "mro": [c.__name__ for c in type(exc).__mro__],
                "checkpoint_error": isinstance(exc, aekit.CheckpointError),
                "message": str(exc),
            }
        return None

    ckpt_dir, run_dir = Path(sys.argv[1]), Path(sys.argv[2])
    est = quiet_estimator(ckpt_dir)
    est.train(batches(tiny_data()), steps=1)
    path = est.save_checkpoint()
    size, before = path.stat().st_size, snapshot(ckpt_dir)
    error = limited(size // 2, lambda: save_again(est))
    checkpoint = {"name": path.name, "size": size, "before": before,
                  "after": snapshot(ckpt_dir), "error": error}

    train = ["train", "fully_connected", "--dataset", "digits", "--hidden-units", "8,2",
             "--batch-size", "512", "--model-dir", str(run_dir)]
    assert main([*train, "--epochs", "1"]) == 0
    size, before = (run_dir / "hparams.json").stat().st_size, snapshot(run_dir)
    print("--- resume", file=sys.stderr, flush=True)
    status = limited(size // 2, lambda: main([*train, "--epochs", "2"]))  # rewrites hparams
    settings = {"size": size, "before": before, "after": snapshot(run_dir), "status": status}
    print(json.dumps({"checkpoint": checkpoint, "settings": settings}), flush=True)
    """
)


@pytest.fixture(scope="module")
def child(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], list[str]]:
    """(folder, the child's report, its stderr lines after "--- resume")."""
    folder = tmp_path_factory.mktemp("atomic")
    script = folder / "child.py"
    script.write_text(CHILD)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(script), str(folder / "ckpt"), str(folder / "run")],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    resumed = done.stderr.split("--- resume\n", 1)[-1].strip().splitlines()
    return folder, report, resumed


@pytest.mark.slow
def test_failed_checkpoint_write_leaves_the_earlier_file_whole(
    child: tuple[Path, dict[str, Any], list[str]],
) -> None:
    folder, report, _ = child
    saved = report["checkpoint"]
    error = saved["error"]
    assert error is not None, "save_checkpoint wrote past the file-size limit"
    assert "StorageError" in error["mro"] and error["checkpoint_error"], error
    assert "\n" not in error["message"] and "File too large" in error["message"], error
    assert saved["name"] == "ckpt-1.pt"
    # The earlier checkpoint byte for byte; no other file, half-written or not.
    assert saved["after"] == saved["before"]
    model_dir = folder / "ckpt"
    assert [p.name for p in model_dir.glob("ckpt-*.pt")] == ["ckpt-1.pt"]
    assert (model_dir / "ckpt-1.pt").stat().st_size == saved["size"]
    again = quiet_estimator(model_dir)
    assert again.restore() and again.global_step == 1


@pytest.mark.slow
def test_failed_settings_write_leaves_hparams_json_whole(
    child: tuple[Path, dict[str, Any], list[str]],
) -> None:
    """`aekit train` rewrites hparams.json on a resume; cut short, the old one stays."""
    folder, report, err = child
    settings = report["settings"]
    assert settings["status"] == 2, err
    # the data line of a run that got as far as writing, then the one error line
    errors = [line for line in err if not line.startswith("data: ")]
    assert len(errors) == 1 and "File too large" in errors[0] and "hparams.json" in errors[0], err
    assert settings["after"] == settings["before"]
    assert json.loads((folder / "run" / "hparams.json").read_text())["epochs"] == 1
