"""Embeddings for TensorBoard's embedding projector (`tensorboard --logdir LOG_DIR`, "Projector").

torch's `SummaryWriter.add_embedding` writes the files; this module checks the inputs first,
so a bad batch is a clear `InputError` instead of an assertion deep in torch or a projector
tab that silently shows nothing, and it keeps earlier embeddings of the same log dir listed.
"""

from __future__ import annotations

import importlib
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aekit.errors import ConfigError, InputError, StorageError
from aekit.files import (
    atomic_write_text,
    ensure_dir,
    os_reason,
    publish_dir,
    remove_stale_temporaries,
)
from aekit.summary import EventWriters
from aekit.viz.embedding import float_matrix

__all__ = ["CONFIG_FILENAME", "MAX_SPRITE_SIDE", "write_projector"]

CONFIG_FILENAME = "projector_config.pbtxt"
# The projector's front end refuses sprite images larger than this on either side.
MAX_SPRITE_SIDE = 8192

ArrayLike = np.ndarray | torch.Tensor


def write_projector(
    log_dir: str | Path,
    embeddings: ArrayLike,
    labels: ArrayLike | Sequence[object] | None = None,
    images: ArrayLike | None = None,
    tag: str = "embedding",
    step: int = 0,
) -> Path:
    """Write `embeddings` (N, D) as a projector run in `log_dir`; returns the folder of tensors.tsv.

    `labels` (N,) become the metadata column the projector colours and searches by; `images`
    (N, H, W), (N, C, H, W) or (N, H, W, C) with C in {1, 3}, uint8 or floats in [0, 1], become
    the sprite shown at each point. On disk (torch's layout):
    `log_dir/projector_config.pbtxt` and `log_dir/<step, 5 digits>/<tag, "/" as %2f>/` holding
    `tensors.tsv`, `metadata.tsv` and `sprite.png`. Writing the same tag and step again
    replaces that embedding; other embeddings already in the config stay listed.
    """
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    # Through importlib: protobuf ships no type stubs, and this keeps mypy quiet without them.
    text_format = importlib.import_module("google.protobuf.text_format")

    _check_tag_and_step(tag, step)
    matrix = float_matrix(embeddings, "embeddings")
    n = len(matrix)
    metadata = _metadata(labels, n)
    label_img = _sprite_images(images, n)

    log_dir = Path(log_dir)
    config_path = log_dir / CONFIG_FILENAME
    config = ProjectorConfig()
    if config_path.exists():
        try:
            text_format.Parse(config_path.read_text(encoding="utf-8"), config)
        except (text_format.ParseError, UnicodeDecodeError) as e:
            raise InputError(
                f"{config_path} is not a projector config ({e}); move it away or pick another "
                "log dir"
            ) from None
    name = f"{tag}:{step:05d}"
    kept = [e for e in config.embeddings if e.tensor_name != name]
    try:
        new = _write_staged(log_dir, matrix, metadata, label_img, tag, step, name)
        # List the earlier embeddings too, and replace the config atomically so that
        # TensorBoard never reads half of it.
        merged = ProjectorConfig()
        merged.CopyFrom(config)
        del merged.embeddings[:]
        merged.embeddings.extend([*kept, new])
        atomic_write_text(config_path, text_format.MessageToString(merged))
    except OSError as exc:
        raise StorageError(
            f"cannot write the projector run in {log_dir} ({os_reason(exc)}); free disk "
            "space or make it writable (the embeddings already there are untouched)"
        ) from exc
    return log_dir / Path(new.tensor_path).parent


def _write_staged(
    log_dir: Path,
    matrix: np.ndarray,
    metadata: list[str] | None,
    label_img: torch.Tensor | None,
    tag: str,
    step: int,
    name: str,
) -> Any:
    """Have torch write the embedding into a new folder, then move its files into `log_dir`.

    Returns the EmbeddingInfo torch wrote. A failure leaves `log_dir` as it was: the
    embedding's folder is swapped in whole, replacing an earlier one of the same tag and step.
    """
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    text_format = importlib.import_module("google.protobuf.text_format")
    ensure_dir(log_dir)
    remove_stale_temporaries(log_dir)  # folders of a run killed while writing
    staging = log_dir / f".projector.tmp-{os.getpid()}"
    # EventWriters opens torch's SummaryWriter in the caller's thread and has its writer
    # thread report disk errors to us, instead of dying with a printed traceback.
    writers = EventWriters(staging)
    try:
        writer = writers.writer(".")
        writer.add_embedding(
            matrix, metadata=metadata, label_img=label_img, global_step=step, tag=tag
        )
        writers.flush()
        writers.close()
        written = ProjectorConfig()
        text_format.Parse((staging / CONFIG_FILENAME).read_text(encoding="utf-8"), written)
        (new,) = (e for e in written.embeddings if e.tensor_name == name)
        folder = Path(new.tensor_path).parent
        ensure_dir((log_dir / folder).parent)
        publish_dir(staging / folder, log_dir / folder)
        # The event file makes TensorBoard list log_dir as a run with a projector tab.
        for events in staging.glob("events.out.tfevents.*"):
            os.replace(events, log_dir / events.name)
    finally:
        writers.close()
        shutil.rmtree(staging, ignore_errors=True)
    return new


def _check_tag_and_step(tag: str, step: int) -> None:
    if not isinstance(tag, str) or tag in ("", ".", "..") or not tag.isprintable():
        # "." or ".." would put the files into (or above) the step's folder itself.
        raise ConfigError(f"tag must be a printable name other than '.' and '..', not {tag!r}")
    if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
        raise ConfigError(f"step must be a whole number >= 0, not {step!r}")


def _metadata(labels: ArrayLike | Sequence[object] | None, n: int) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    array = labels if isinstance(labels, np.ndarray) else np.asarray(list(labels), dtype=object)
    if array.ndim != 1 or len(array) != n:
        raise InputError(f"labels must be one per embedding, shape ({n},), not {array.shape}")
    values = array.tolist()
    text = [str(v) for v in values]
    for i, t in enumerate(text):
        # A tab would make the projector read the first line as column headers, a newline
        # would shift every later label onto the wrong point.
        if "\t" in t or "\n" in t or "\r" in t:
            raise InputError(f"label {i} ({t!r}) holds a tab or line break; remove it")
    return text


def _sprite_images(images: ArrayLike | None, n: int) -> torch.Tensor | None:
    """Float (N, C, H, W) in [0, 1] with H <= W, as torch's sprite writer needs."""
    if images is None:
        return None
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu()
        images = images.float().numpy() if images.is_floating_point() else images.numpy()
    a = np.asarray(images)
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4 and a.shape[1] not in (1, 3) and a.shape[3] in (1, 3):
        a = a.transpose(0, 3, 1, 2)
    if a.ndim != 4 or a.shape[1] not in (1, 3) or 0 in a.shape[2:]:
        raise InputError(
            f"images must be (N, H, W), (N, C, H, W) or (N, H, W, C) with C 1 or 3, not {a.shape}"
        )
    if len(a) != n:
        raise InputError(f"{len(a)} images for {n} embeddings; give one image per embedding")
    if a.dtype == np.uint8:
        x = a.astype(np.float32) / 255.0
    elif np.issubdtype(a.dtype, np.floating) or a.dtype == np.bool_:
        x = a.astype(np.float32)
        if not np.isfinite(x).all():
            raise InputError("images hold NaN or infinite pixels")
        x = np.clip(x, 0.0, 1.0)
    else:
        raise InputError(f"images have pixels of type {a.dtype}; give uint8 or floats in [0, 1]")
    h, w = x.shape[2:]
    if h > w:
        # torch lays the sprite out on a square as wide as its columns of tiles, which
        # overflows for tall images: pad them to square, centred.
        left = (h - w) // 2
        x = np.pad(x, ((0, 0), (0, 0), (0, 0), (left, h - w - left)))
    side = math.ceil(math.sqrt(n)) * max(h, w)
    if side > MAX_SPRITE_SIDE:
        raise InputError(
            f"{n} images of {h}x{w} make a sprite {side} pixels wide; the projector shows at "
            f"most {MAX_SPRITE_SIDE}: pass fewer or smaller images"
        )
    return torch.from_numpy(np.ascontiguousarray(x))
