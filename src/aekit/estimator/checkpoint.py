"""Checkpoints: the format, built from a training state, validated, restored; the files.

A checkpoint is `ckpt-<step>.pt` in a model_dir: a plain dict of tensors, numbers and
strings (`build` lists its fields), written atomically. Reading uses
`torch.load(weights_only=True)`, which refuses any pickled object other than those, so
opening a checkpoint can never run code from it; `load` then checks every field `restore`
reads, so a damaged or crafted file is one CheckpointError.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aekit.errors import CheckpointError, CheckpointWriteError, ConfigError
from aekit.estimator import params as run_params
from aekit.estimator import rng
from aekit.files import atomic_write, os_reason
from aekit.files import remove_stale_temporaries as remove_stale_temporaries_in

FORMAT = "aekit-checkpoint"
VERSION = 1
_NAME = re.compile(r"^ckpt-(\d+)\.pt$")
_log = logging.getLogger("aekit")


@dataclass
class TrainingState:
    """The live objects a checkpoint saves and restores, and the global step."""

    network: torch.nn.Module
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any  # a torch LR scheduler, or None
    grad_scaler: torch.amp.GradScaler | None  # float16 training only
    shuffle_rng: torch.Generator  # what shuffles without a seed draw from, in step on every rank
    global_step: int = 0


def build(
    state: TrainingState,
    params: Mapping[str, Any],
    hooks: Mapping[str, dict[str, Any]],
    rng_by_rank: list[dict[str, Any]],
) -> dict[str, Any]:
    """The checkpoint of `state`: every field `load` checks and `restore` reads."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "global_step": state.global_step,
        "network": state.network.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "lr_scheduler": state.lr_scheduler.state_dict() if state.lr_scheduler else None,
        "grad_scaler": state.grad_scaler.state_dict() if state.grad_scaler else None,
        "rng": rng_by_rank[0],
        "rng_by_rank": rng_by_rank,
        "shuffle_rng": state.shuffle_rng.get_state(),
        "hooks": dict(hooks),
        "params": run_params.recorded(params),
    }


def restore(
    checkpoint: dict[str, Any],
    state: TrainingState,
    params: run_params.ParamRules,
    path: Path,
    rank: int | None = None,
) -> dict[str, Any]:
    """Load a checkpoint that `load` returned into `state`; returns the hooks' states.

    Refuses a checkpoint trained with other params (a new learning rate is applied) or
    holding NaN weights. `rank` (training) also restores that rank's random generators.
    """
    changed_rate = params.compare(checkpoint.get("params"), path)
    if not run_params.weights_finite(checkpoint["network"]):
        raise CheckpointError(
            f"checkpoint {path} holds NaN or infinite weights; delete it to go back to an "
            "earlier checkpoint, or train from scratch in a new model_dir"
        )
    try:
        state.network.load_state_dict(checkpoint["network"])
        state.optimizer.load_state_dict(checkpoint["optimizer"])
        _check_optimizer_state(state.optimizer, path)
        if state.lr_scheduler is not None and checkpoint.get("lr_scheduler") is not None:
            state.lr_scheduler.load_state_dict(checkpoint["lr_scheduler"])
        if state.grad_scaler is not None and checkpoint.get("grad_scaler"):
            state.grad_scaler.load_state_dict(checkpoint["grad_scaler"])
        if changed_rate is not None:
            run_params.scale_learning_rate(state.optimizer, state.lr_scheduler, *changed_rate)
    except CheckpointError:
        raise
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise ConfigError(
            f"checkpoint {path} does not fit this model ({str(exc).splitlines()[0][:200]}); "
            "use a fresh model_dir or the model settings it was trained with"
        ) from exc
    state.global_step = int(checkpoint["global_step"])
    if rank is not None and checkpoint.get("rng"):
        try:
            rng.set_rank_state(checkpoint.get("rng_by_rank") or [checkpoint["rng"]], rank)
            if checkpoint.get("shuffle_rng") is not None:
                # Loaded onto the training device; generators take their state from the CPU.
                state.shuffle_rng.set_state(checkpoint["shuffle_rng"].cpu())
        except (AttributeError, KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"checkpoint {path} holds a damaged random-generator state ({exc}); "
                "delete it to resume from an earlier one"
            ) from exc
    return dict(checkpoint.get("hooks") or {})


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


def save(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Write what `build` made to `path` atomically: a reader sees the old or the new file."""
    payload = {"format": FORMAT, "version": VERSION, **checkpoint}
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
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not an aekit checkpoint ({_one_line(exc)}); "
            "delete it to resume from an earlier one"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an aekit checkpoint (no '{FORMAT}' marker); pass a file "
            "written by aekit"
        )
    version = state.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise CheckpointError(
            f"checkpoint {path} has no valid format version (got {_kind(version)}); delete "
            "it to resume from an earlier one"
        )
    if version > VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}, newer than this "
            f"aekit reads ({VERSION}); upgrade aekit"
        )
    try:
        _check_fields(state)
    except _BadField as bad:
        raise CheckpointError(
            f"checkpoint {path} is damaged: {bad}; delete it to resume from an earlier one"
        ) from None
    return state


class _BadField(Exception):
    """A field of a checkpoint that the Estimator could not use; the message names it."""


def _kind(value: object) -> str:
    return "None" if value is None else type(value).__name__


def _check_fields(state: dict[str, Any]) -> None:
    # A file can carry the marker and still be crafted or damaged: check every field
    # `restore` reads, so that a bad one is this one error,
    # and load_latest falls back to an earlier checkpoint, instead of a TypeError mid-restore.
    step = state.get("global_step")
    if isinstance(step, torch.Tensor) and step.numel() == 1 and not step.is_floating_point():
        step = int(step)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise _BadField(f"global_step is {_kind(step)}, not a whole number >= 0")
    state["global_step"] = step
    _check_tensors("network", state.get("network"))
    _check_optimizer(state.get("optimizer"))
    for key in ("lr_scheduler", "grad_scaler"):
        if state.get(key) is not None:
            _check_str_keys(key, state[key])
    if state.get("rng") is not None:
        _check_rng("rng", state["rng"])
    by_rank = state.get("rng_by_rank")
    if by_rank is not None:
        if not isinstance(by_rank, list) or not by_rank:
            raise _BadField(f"rng_by_rank is {_kind(by_rank)}, not a list of states")
        for rank, rank_state in enumerate(by_rank):
            _check_rng(f"rng_by_rank[{rank}]", rank_state)
    if state.get("shuffle_rng") is not None:
        _check_generator("shuffle_rng", state["shuffle_rng"])
    hooks = state.get("hooks")
    if hooks is not None:
        _check_str_keys("hooks", hooks)
        for key, hook_state in hooks.items():
            _check_str_keys(f"hooks[{key!r}]", hook_state)


def _check_str_keys(name: str, value: object) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _BadField(f"{name} is {_kind(value)}, not a dict with text keys")


def _check_tensors(name: str, value: object) -> None:
    _check_str_keys(name, value)
    assert isinstance(value, dict)
    for key, tensor in value.items():
        if not isinstance(tensor, torch.Tensor):
            raise _BadField(f"{name}[{key!r}] is {_kind(tensor)}, not a tensor")


def _check_optimizer(value: object) -> None:
    # The layout torch.optim.Optimizer.state_dict() writes: per-parameter state by index,
    # and groups of hyper-parameters naming their parameters by index.
    _check_str_keys("optimizer", value)
    assert isinstance(value, dict)
    per_param, groups = value.get("state"), value.get("param_groups")
    if not isinstance(per_param, dict) or not isinstance(groups, list):
        raise _BadField("optimizer lacks the state dict and param_groups list of a torch optimizer")
    for index, entry in per_param.items():
        if isinstance(index, bool) or not isinstance(index, int):
            raise _BadField(f"optimizer state is keyed by {_kind(index)}, not parameter indices")
        _check_str_keys(f"optimizer state[{index}]", entry)
        for key, value in entry.items():
            sound = _number(value) if key == "step" else _state_value(value)
            if not sound:
                raise _BadField(f"optimizer state[{index}][{key!r}] is {_kind(value)}")
    for i, group in enumerate(groups):
        _check_str_keys(f"optimizer param_groups[{i}]", group)
        params = group.get("params")
        if not isinstance(params, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) for p in params
        ):
            raise _BadField(f"optimizer param_groups[{i}] has no list of parameter indices")
        for key, value in group.items():
            if key != "params" and not _hyperparameter(key, value):
                raise _BadField(f"optimizer param_groups[{i}][{key!r}] is {_kind(value)}")


# Hyper-parameters that optimizers and schedulers compute with: anything but a number there
# fails mid-step (a text, a list, a bool where torch unpacks two betas).
_NUMERIC = frozenset(
    {"lr", "initial_lr", "eps", "weight_decay", "momentum", "dampening", "alpha", "rho",
     "lr_decay", "initial_accumulator_value", "max_lr", "min_lr", "base_lr"}
)  # fmt: skip


def _number(value: object) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and not value.is_complex() and value.dtype != torch.bool
    return isinstance(value, int | float) and not isinstance(value, bool)


def _state_value(value: object) -> bool:
    # Tensors and numbers; None where an optimizer keeps no buffer (SGD's momentum_buffer).
    return value is None or isinstance(value, torch.Tensor) or _number(value)


def _hyperparameter(key: str, value: object) -> bool:
    if key == "betas":
        return isinstance(value, tuple | list) and len(value) == 2 and all(map(_number, value))
    if key in _NUMERIC:
        return _number(value)
    if isinstance(value, tuple | list):
        return all(_number(v) for v in value)
    return value is None or isinstance(value, bool | str) or _number(value)


def _check_rng(name: str, value: object) -> None:
    """Each generator's state must be one its library takes: tried on a throwaway generator."""
    _check_str_keys(name, value)
    assert isinstance(value, dict)
    if value.get("torch") is not None:
        _check_generator(f"{name}['torch']", value["torch"])
    try:
        if value.get("python") is not None:
            version, internal, gauss = value["python"]
            random.Random().setstate((version, tuple(internal), gauss))
        if value.get("numpy") is not None:
            n = value["numpy"]
            keys = n["keys"].cpu().numpy().astype(np.uint32)
            np.random.RandomState().set_state(
                (n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"])
            )
        cuda = value.get("cuda")
        if cuda is not None and not (
            isinstance(cuda, list) and all(isinstance(t, torch.Tensor) for t in cuda)
        ):
            raise TypeError(f"cuda is {_kind(cuda)}, not a list of tensors")
    except (
        AttributeError, KeyError, IndexError, TypeError, ValueError, OverflowError,
        RuntimeError,  # a tensor where a number belongs: its truth value is ambiguous
    ) as exc:  # fmt: skip
        raise _BadField(f"{name} is not a random-generator state ({_one_line(exc)})") from None


def _check_generator(name: str, value: object) -> None:
    if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8:
        raise _BadField(f"{name} is {_kind(value)}, not a random-generator state (uint8 tensor)")
    try:
        torch.Generator().set_state(value.cpu())
    except (RuntimeError, TypeError, ValueError) as exc:
        raise _BadField(f"{name} is not a random-generator state ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


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


def _check_optimizer_state(optimizer: torch.optim.Optimizer, path: str | Path) -> None:
    """CheckpointError when a loaded optimizer's per-parameter state does not fit its parameter.

    `Optimizer.load_state_dict` copies moment estimates of any shape; a damaged file
    would otherwise fail only in the next step, with a shape error from deep inside it.
    """
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            for key, value in optimizer.state.get(parameter, {}).items():
                if not isinstance(value, torch.Tensor) and value is not None and key != "step":
                    continue
                if value is None or (value.dim() > 0 and value.shape != parameter.shape):
                    raise CheckpointError(
                        f"checkpoint {path} holds an optimizer state {key!r} that does not fit "
                        f"a parameter of shape {tuple(parameter.shape)}; delete it to resume "
                        "from an earlier checkpoint"
                    )
