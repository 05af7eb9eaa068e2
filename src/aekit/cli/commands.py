"""The library functions behind each `aekit` sub-command."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from aekit.cli import settings as run_settings
from aekit.data.corruption import make_corruption
from aekit.data.input_fn import numpy_input_fn, to_float
from aekit.data.sources import load_dataset
from aekit.errors import CheckpointError, ConfigError, InputError
from aekit.estimator import (
    Estimator,
    EvalSpec,
    RunConfig,
    TrainSpec,
    distributed,
    train_and_evaluate,
)
from aekit.estimator.lock import writer_lock
from aekit.hooks import CheckpointSaverListener
from aekit.models import registry
from aekit.models.stacked import StackedDenoisingAutoencoder

_log = logging.getLogger("aekit")
Splits = tuple[tuple[np.ndarray, np.ndarray | None], tuple[np.ndarray, np.ndarray | None]]


def load_images(settings: Mapping[str, Any], with_excluded: bool = False) -> Splits:
    """The run's data set, images as (N, H, W) or (N, C, H, W), pixels checked.

    The classes in the setting `exclude_classes` are left out of both splits (a model of
    the normal classes, for anomaly detection) unless `with_excluded` is true.
    """
    data_dir = settings["data_dir"]
    if data_dir is not None and not Path(data_dir).is_dir():
        raise InputError(f"data dir {data_dir} does not exist; check --data-dir")
    (x_train, y_train), (x_test, y_test) = load_dataset(settings["dataset"], settings["data_dir"])
    excluded = settings.get("exclude_classes")
    if excluded and not with_excluded:
        if y_train is None or y_test is None:
            raise InputError(
                f"--exclude-classes needs labels, and {settings['dataset']} has none; drop it"
            )
        keep_train = ~np.isin(np.asarray(y_train), excluded)
        keep_test = ~np.isin(np.asarray(y_test), excluded)
        x_train, y_train = x_train[keep_train], np.asarray(y_train)[keep_train]
        x_test, y_test = x_test[keep_test], np.asarray(y_test)[keep_test]
    x_train, x_test = _channels_first(x_train), _channels_first(x_test)
    for name, x in (("training", x_train), ("test", x_test)):
        if len(x) == 0:
            raise InputError(f"the {name} set of {settings['dataset']} is empty; give more data")
        if x.ndim < 2:
            raise InputError(
                f"the {name} set of {settings['dataset']} has shape {x.shape}, one number per "
                "example; give examples as rows (N, features) or images (N, H, W)"
            )
        if x.dtype != np.uint8:
            if not np.isfinite(x).all():
                raise InputError(f"the {name} set holds NaN or infinite pixels; clean the data")
            if x.min() < 0 or x.max() > 1:
                raise InputError(
                    f"the {name} set's pixels run from {x.min():g} to {x.max():g}; give uint8 "
                    "(0..255) or floats in [0, 1]"
                )
    return (x_train, y_train), (x_test, y_test)


def _channels_first(x: np.ndarray) -> np.ndarray:
    # Image folders give (N, H, W, 3); the models take channels first.
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def build(
    settings: Mapping[str, Any], model_dir: str | Path, steps_per_epoch: int = 100
) -> Estimator:
    """The estimator the settings describe, in `model_dir`."""
    entry = registry.get(settings["model"])
    config = RunConfig(
        model_dir=str(model_dir),
        random_seed=settings["seed"],
        device=settings["device"],
        save_checkpoints_steps=steps_per_epoch,
        log_step_count_steps=settings.get("log_every") or min(100, steps_per_epoch),
        clip_grad_norm=settings.get("clip_grad_norm"),
    )
    return entry.build(settings, tuple(settings["example_shape"]), config)


def train(settings: dict[str, Any], model_dir: str | Path) -> dict[str, float]:
    """Train and evaluate after every epoch; resumes the run in `model_dir`."""
    entry = registry.get(settings["model"])
    (x_train, y_train), (x_test, y_test) = load_images(settings)
    if entry.supervised and (y_train is None or y_test is None):
        raise InputError(f"the {entry.name} model needs labels, and {settings['dataset']} has none")
    if entry.supervised:
        for name, y in (("training", y_train), ("test", y_test)):
            _check_class_ids(y, settings["n_classes"], f"the {name} labels")
    shape = list(x_train.shape[1:])
    if settings.get("example_shape") not in (None, shape):
        raise ConfigError(
            f"{model_dir} was trained on examples of shape {settings['example_shape']}, this data "
            f"set has {shape}; use the same data or a new --model-dir"
        )
    if entry.needs_images:
        registry.image_shape(tuple(shape))  # refuse flat data before anything is written
    settings["example_shape"] = shape
    steps_per_epoch = _steps_per_epoch(len(x_train), settings["batch_size"])
    estimator = build(settings, model_dir, steps_per_epoch)  # validates every hyper-parameter
    # Locked before the settings are written: a second run must not touch a running one's dir.
    with writer_lock(model_dir):
        return _train(
            estimator, settings, model_dir, steps_per_epoch, x_train, y_train, x_test, y_test
        )


def _train(
    estimator: Estimator,
    settings: dict[str, Any],
    model_dir: str | Path,
    steps_per_epoch: int,
    x_train: np.ndarray,
    y_train: np.ndarray | None,
    x_test: np.ndarray,
    y_test: np.ndarray | None,
) -> dict[str, float]:
    entry = registry.get(settings["model"])
    batch_size, epochs = settings["batch_size"], settings["epochs"]
    if distributed.is_chief():
        run_settings.save(model_dir, settings)
    listeners: list[CheckpointSaverListener] = []
    if settings.get("save_images") and not entry.supervised:
        listeners.append(ReconstructionSnapshots(x_test[:10], settings["save_images"], settings))
    labels = (y_train, y_test) if entry.supervised else (None, None)
    if isinstance(estimator, StackedDenoisingAutoencoder):
        estimator.pretrain(
            numpy_input_fn(x_train, batch_size=batch_size, num_epochs=None, seed=settings["seed"]),
            steps=settings["pretrain_epochs"] * steps_per_epoch,
        )
    return train_and_evaluate(
        estimator,
        TrainSpec(
            numpy_input_fn(
                x_train, labels[0], batch_size=batch_size, num_epochs=None, seed=settings["seed"]
            ),
            max_steps=steps_per_epoch * epochs,
            saving_listeners=listeners,
        ),
        EvalSpec(
            numpy_input_fn(x_test, labels[1], batch_size=1000, shuffle=False),
            every_n_steps=steps_per_epoch,
        ),
    )


def _steps_per_epoch(examples: int, batch_size: int) -> int:
    """Steps to show every example once: under torchrun each process takes its own batch."""
    return math.ceil(examples / (batch_size * distributed.launched_world_size()))


def _check_class_ids(y: np.ndarray | None, n_classes: int, name: str) -> None:
    """Refuse labels a classifier cannot take, before anything is written or trained."""
    if y is None:
        return
    if y.ndim != 1 or y.dtype.kind not in "biuf":
        raise InputError(
            f"{name} have shape {y.shape} and dtype {y.dtype}; give one integer class id per "
            "example"
        )
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise InputError(f"{name} hold non-integer values; give integer class ids")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise InputError(
            f"{name} run from {y.min():g} to {y.max():g}, outside 0..{n_classes - 1}; set "
            f"--n-classes to match the data or fix the labels"
        )


def open_run(model_dir: str | Path) -> tuple[dict[str, Any], Estimator, Splits]:
    """Settings, estimator and data of a trained model dir."""
    settings = run_settings.saved_settings(model_dir)
    if settings is None:
        raise ConfigError(
            f"{model_dir} holds no aekit run (no {run_settings.HPARAMS_FILE}); train one with "
            f"`aekit train MODEL --model-dir {model_dir}`"
        )
    run_settings.check_values(settings)  # the file may have been edited or crafted
    if "example_shape" not in settings:
        raise ConfigError(
            f"{model_dir}/{run_settings.HPARAMS_FILE} lacks example_shape; it was not written "
            "by `aekit train`, train the model again"
        )
    estimator = build(settings, model_dir)
    if estimator.latest_checkpoint() is None:
        raise ConfigError(f"{model_dir} holds no checkpoint yet; train it first")
    if not estimator.restore():  # all unreadable: never go on with untrained weights
        raise CheckpointError(
            f"no checkpoint in {model_dir} can be read (see the warnings above); train again "
            "or restore a good ckpt-<step>.pt"
        )
    return settings, estimator, load_images(settings)


def evaluate(model_dir: str | Path, linear_probe: bool = False) -> dict[str, float]:
    """Metrics of the latest checkpoint on the test set; optionally a linear probe's accuracy."""
    settings, estimator, ((x_train, y_train), (x_test, y_test)) = open_run(model_dir)
    supervised = registry.get(settings["model"]).supervised
    result = estimator.evaluate(
        numpy_input_fn(x_test, y_test if supervised else None, batch_size=1000, shuffle=False),
        name="test",
    )
    if linear_probe:
        if supervised:
            raise ConfigError(
                "--linear-probe measures an autoencoder's embedding; this is a classifier"
            )
        from aekit.evaluation import linear_probe as probe

        result["linear_probe_accuracy"] = probe(estimator, x_train, y_train, x_test, y_test)
    return result


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


class ReconstructionSnapshots(CheckpointSaverListener):
    """After every checkpoint, a PNG grid of the same test images; at the end, a GIF of them all."""

    def __init__(
        self, images: np.ndarray, out_dir: str | Path, settings: Mapping[str, Any]
    ) -> None:
        self.images = images
        self.out_dir = Path(out_dir)
        self.settings = settings

    def after_save(self, estimator: Estimator, step: int, path: Path) -> None:
        from aekit.viz import save_png

        if not distributed.is_chief():  # predict needs no other rank: rank 0 draws alone
            return
        save_png(reconstruction_grid(estimator, self.images, self.settings), self._frame(step))

    def end(self, estimator: Estimator, step: int) -> None:
        from aekit.viz import save_gif

        if not distributed.is_chief():
            return
        frames = sorted(self.out_dir.glob("step-*.png"))
        if frames:
            save_gif(frames, self.out_dir / "reconstructions.gif")

    def _frame(self, step: int) -> Path:
        return self.out_dir / f"step-{step:07d}.png"


def reconstruct(model_dir: str | Path, images: int, output: str | Path | None) -> Path:
    """A PNG grid of `images` test images and their reconstructions."""
    from aekit.viz import save_png

    settings, estimator, (_, (x_test, _)) = open_run(model_dir)
    path = Path(output) if output else Path(model_dir) / "reconstruction.png"
    save_png(reconstruction_grid(estimator, x_test[: _count(images)], settings), path)
    return path


def embed(
    model_dir: str | Path, images: int, plot: str | None = None, output: str | Path | None = None
) -> list[Path]:
    """The embedding of `images` test images as a projector run; optionally a 2-D scatter PNG."""
    from aekit.projector import write_projector
    from aekit.viz import project_2d, scatter_plot

    _, estimator, (_, (x_test, y_test)) = open_run(model_dir)
    x = x_test[: _count(images)]
    labels = None if y_test is None else y_test[: len(x)]
    batches = estimator.predict(
        numpy_input_fn(x, batch_size=1000, shuffle=False),
        predict_keys=["embedding"],
        yield_single_examples=False,
    )
    embedding = np.concatenate([b["embedding"] for b in batches])
    written = [write_projector(Path(model_dir) / "projector", embedding, labels, x)]
    if plot:
        path = Path(output) if output else Path(model_dir) / f"embedding_{plot}.png"
        scatter_plot(project_2d(embedding, plot), labels, path, title=f"{plot} of the embedding")
        written.append(path)
    return written


def export(model_dir: str | Path, output: str | Path | None, formats: Sequence[str]) -> list[Path]:
    """TorchScript and ONNX files of the encoder, decoder and whole model."""
    from aekit.export import export_model

    _, estimator, _ = open_run(model_dir)
    out = Path(output) if output else Path(model_dir) / "export"
    return list(export_model(estimator.network, out, formats=tuple(formats)).values())  # type: ignore[arg-type]


def _count(images: int) -> int:
    if images <= 0:
        raise ConfigError(f"--images must be positive, got {images}")
    return images
