"""Checkpoint files: `ckpt-<step>.pt` in a model_dir, written atomically, read safely.

A checkpoint is a plain dict of tensors, numbers and strings. Reading uses
`torch.load(weights_only=True)`, which refuses any pickled object other than
those, so opening a checkpoint can never run code from it.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from aekit._io import atomic_write
from aekit.errors import CheckpointError

FORMAT = "aekit-checkpoint"
VERSION = 1
_NAME = re.compile(r"^ckpt-(\d+)\.pt$")
_TEMPORARY = re.compile(r"^\.ckpt-\d+\.pt\.tmp-(\d+)$")
_log = logging.getLogger("aekit")


def checkpoint_path(model_dir: str | Path, step: int) -> Path:
    """Path of the checkpoint for `step` in `model_dir`."""
    return Path(model_dir) / f"ckpt-{step}.pt"


def step_of(path: str | Path) -> int:
    """The global step a checkpoint's file name records."""
    match = _NAME.match(Path(path).name)
    if match is None:
        raise CheckpointError(f"{path} is not named ckpt-<step>.pt; pass a checkpoint file")
    return int(match.group(1))


def list_checkpoints(model_dir: str | Path) -> list[Path]:
    """Checkpoints in `model_dir`, oldest step first."""
    directory = Path(model_dir)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _NAME.match(p.name) and p.is_file()]
    return sorted(found, key=step_of)


def latest_checkpoint(model_dir: str | Path) -> Path | None:
    """The checkpoint with the highest step, or None."""
    found = list_checkpoints(model_dir)
    return found[-1] if found else None


def save(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically: a reader sees the old file or the new one, whole."""
    payload = {"format": FORMAT, "version": VERSION, **state}
    try:
        atomic_write(path, lambda f: torch.save(payload, f))
    except OSError as exc:
        raise CheckpointError(
            f"cannot write checkpoint {path}: {exc.strerror or exc}; free disk space or "
            "make the model_dir writable (earlier checkpoints are untouched)"
        ) from exc


def load(path: str | Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a checkpoint, refusing anything but tensors and plain data."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path or model_dir")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or hostile files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not an aekit checkpoint ({reason[:200]}); "
            "delete it to resume from an earlier one"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an aekit checkpoint (no '{FORMAT}' marker); pass a file "
            "written by aekit"
        )
    if state.get("version", 0) > VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {state['version']}, newer than this "
            f"aekit reads ({VERSION}); upgrade aekit"
        )
    return state


def load_latest(
    model_dir: str | Path, map_location: torch.device | str = "cpu"
) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint, skipping (and reporting) corrupt newer ones."""
    for path in reversed(list_checkpoints(model_dir)):
        try:
            return path, load(path, map_location)
        except CheckpointError as exc:
            _log.warning("skipping unreadable checkpoint: %s", exc)
    return None


def remove_stale_temporaries(model_dir: str | Path) -> list[Path]:
    """Delete half-written checkpoint files left by processes that no longer run."""
    directory = Path(model_dir)
    if not directory.is_dir():
        return []
    stale = [
        p
        for p in directory.iterdir()
        if (match := _TEMPORARY.match(p.name)) and not _running(int(match.group(1)))
    ]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prune(model_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the `keep` newest checkpoints (keep=0 keeps all); returns what went."""
    if keep <= 0:
        return []
    old = list_checkpoints(model_dir)[:-keep]
    for path in old:
        path.unlink(missing_ok=True)
    return old
