"""A run of the command line: its estimator built from the settings, opened from a model dir."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from aekit.cli import config, limits, registry
from aekit.cli.data import (
    Split,
    Splits,
    describe,
    load_images,
    with_data,
)
from aekit.cli.settings import run_config_args
from aekit.cli.streamed import FolderImages, stream_input_fn
from aekit.data.binarize import Binarization
from aekit.data.corruption import make_corruption
from aekit.data.input_fn import numpy_input_fn, to_float
from aekit.errors import CheckpointError, ConfigError, InputError
from aekit.estimator import Estimator, RunConfig
from aekit.files import writable

_log = logging.getLogger("aekit")
Precheck = Callable[[dict[str, Any], Estimator, Splits], None]
"""A command's own checks, run by `open_run` once the run is open but before its restore."""


def build(
    settings: Mapping[str, Any],
    model_dir: str | Path,
    steps_per_epoch: int = 100,
    distributed: bool = True,
) -> Estimator:
    """The estimator the settings describe, in `model_dir` (alone without `distributed`)."""
    entry = registry.get(settings["model"])
    config = RunConfig(
        model_dir=str(model_dir),
        save_checkpoints_steps=steps_per_epoch,
        log_step_count_steps=settings.get("log_every") or min(100, steps_per_epoch),
        distributed=distributed,
        **run_config_args(settings),
    )
    return entry.build(settings, tuple(settings["example_shape"]), config)


def eval_input_fn(
    settings: Mapping[str, Any], x: Split, y: np.ndarray | None = None
) -> Callable[[], Any]:
    """The test data in order, in batches of 1,000; drawn once (seed 0) if the run binarizes.

    A streamed folder's test split is read whole, as a loaded one: the same figures.

    A table's rows come in float64, which its model scales before anything else.
    """
    if isinstance(x, FolderImages):  # the whole test split, decoded batch by batch
        return stream_input_fn(
            x,
            labels=y is not None,
            batch_size=limits.EVAL_BATCH,
            seed=0,
            binarize=settings.get("binarize"),
            train=False,
        )
    binarize: Binarization | None = "fixed" if settings.get("binarize") else None
    dtype = torch.float64 if registry.is_table_run(settings) else None
    return numpy_input_fn(
        x, y, batch_size=limits.EVAL_BATCH, shuffle=False, binarize=binarize, dtype=dtype
    )


_NO_DATA: Splits = ((np.zeros((0,)), None), (np.zeros((0,)), None))


def open_run(
    model_dir: str | Path,
    precheck: Precheck | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    read_data: bool = True,
    distributed: bool = False,
    stream: bool = False,
) -> tuple[dict[str, Any], Estimator, Splits]:
    """Settings, estimator and data of a trained model dir.

    `dataset` and `data_dir` replace the saved ones (data moved since training, or other
    data of the same example shape). Commands that need no data pass `read_data=False` and
    get empty splits. Those that read the test split by slices or through `eval_input_fn`
    pass `stream`: a folder the run streams is then listed, not loaded. Only `evaluate`
    runs on every process of a torchrun job (`distributed`); the other commands run on
    rank 0 alone. `precheck` sees all three
    before the checkpoint is restored (slow, and logged), so that a command's own bad input
    is refused first, in one line.
    """
    settings = config.saved_settings(model_dir)
    if settings is None:
        raise ConfigError(
            f"{model_dir} holds no aekit run (no {config.HPARAMS_FILE}); train one with "
            f"`aekit train MODEL --model-dir {model_dir}`"
        )
    if "example_shape" not in settings:
        raise ConfigError(
            f"{model_dir}/{config.HPARAMS_FILE} lacks example_shape; it was not written "
            "by `aekit train`, train the model again"
        )
    # saved_settings checked every value; the file may still describe a huge network.
    # The network's size is checked before it is allocated.
    estimator = build(settings, model_dir, distributed=distributed)
    limits.check_batch_size(settings, settings["example_shape"])
    if estimator.latest_checkpoint() is None:
        raise ConfigError(f"{model_dir} holds no checkpoint yet; train it first")
    if estimator.event_writers.enabled and not writable(model_dir):
        # The command's own outputs go elsewhere (checked by its precheck); TensorBoard's
        # events have nowhere else to go.
        estimator.event_writers.enabled = False
        _log.info("%s cannot be written: no TensorBoard events for this command", model_dir)
    data = _NO_DATA
    if read_data:
        settings = with_data(settings, dataset, data_dir)
        data = load_images(settings, stream=stream)
        shape = list(data[0][0].shape[1:])
        if shape != settings["example_shape"]:  # other data, or files changed since training
            raise InputError(
                f"{model_dir} was trained on examples of shape {settings['example_shape']}, "
                f"{settings['dataset']} holds {shape}; give data of the shape it was trained on"
            )
    if precheck is not None:
        precheck(settings, estimator, data)
    if read_data:  # said once the command's checks have passed
        _log.info("%s", describe(settings, data, left_out=settings.get("exclude_classes")))
    if not estimator.restore():  # all unreadable: never go on with untrained weights
        raise CheckpointError(
            f"no checkpoint in {model_dir} can be read (see the warnings above); train again "
            "or restore a good ckpt-<step>.pt"
        )
    return settings, estimator, data


def reconstruction_grid(
    estimator: Estimator, images: np.ndarray, settings: Mapping[str, Any], seed: int = 0
) -> Image.Image:
    """Rows of inputs, corrupted inputs (denoising models) and reconstructions."""
    from aekit.viz import image_grid

    clean = to_float(torch.from_numpy(np.ascontiguousarray(images)))
    inputs = clean
    rows = [clean]
    if settings.get("noise_factor"):
        # The same corruption every time, without touching the training RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            inputs = make_corruption("gaussian", settings["noise_factor"]).corrupt(clean)
        rows.append(inputs)
    outputs = estimator.predict([inputs], predict_keys=["prediction"], yield_single_examples=False)
    rows.append(torch.from_numpy(next(iter(outputs))["prediction"]))
    shape = getattr(estimator.network, "image_shape", None)
    return image_grid(rows, image_shape=shape, scale=2)
