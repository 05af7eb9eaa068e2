"""Checkpoint files: `ckpt-<step>.pt` in a model_dir, written atomically, read safely.

A checkpoint is a plain dict of tensors, numbers and strings. Reading uses
`torch.load(weights_only=True)`, which refuses any pickled object other than
those, so opening a checkpoint can never run code from it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from aekit._io import atomic_write, os_reason
from aekit._io import remove_stale_temporaries as remove_stale_temporaries_in
from aekit.errors import CheckpointError, CheckpointWriteError

FORMAT = "aekit-checkpoint"
VERSION = 1
_NAME = re.compile(r"^ckpt-(\d+)\.pt$")
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
        raise CheckpointWriteError(
            f"cannot write checkpoint {path}: {os_reason(exc)}; free disk space or "
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
    _check_fields(path, state)
    return state


def _check_fields(path: Path, state: dict[str, Any]) -> None:
    # A file can carry the marker and still be crafted or damaged: check what the Estimator
    # reads, so a bad field is this one error and not a KeyError deep in a restore.
    step = state.get("global_step")
    if isinstance(step, torch.Tensor) and step.numel() == 1 and not step.is_floating_point():
        step = int(step)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(
            f"checkpoint {path} has no valid global_step (got {type(step).__name__}); "
            "delete it to resume from an earlier one"
        )
    for key in ("network", "optimizer"):
        if key in state and not isinstance(state[key], dict):
            raise CheckpointError(
                f"checkpoint {path}: {key!r} is a {type(state[key]).__name__}, not a state "
                "dict; delete it to resume from an earlier one"
            )
    state["global_step"] = step


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
    """Delete half-written files (checkpoints, settings, exports) of dead processes."""
    return remove_stale_temporaries_in(model_dir, recursive=True)


def prune(model_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the `keep` newest checkpoints (keep=0 keeps all); returns what went."""
    if keep <= 0:
        return []
    old = list_checkpoints(model_dir)[:-keep]
    for path in old:
        path.unlink(missing_ok=True)
    return old
