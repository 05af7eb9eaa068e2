"""The library functions behind each `aekit` sub-command."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.contrib.logging import logging_redirect_tqdm

from aekit.anomaly.tabular import TabularRecipe, set_scaling, sized_hidden_units
from aekit.cli import config, limits, registry
from aekit.cli.data import Splits, anomaly_labels, is_table, with_data
from aekit.cli.data import load_images as load_images  # re-exported: tests call it here
from aekit.cli.progress import EpochProgress
from aekit.cli.settings import run_config_args
from aekit.data.binarize import Binarization
from aekit.data.corruption import make_corruption
from aekit.data.input_fn import numpy_input_fn, to_float
from aekit.errors import CheckpointError, ConfigError, InputError
from aekit.estimator import Estimator, EvalSpec, RunConfig, TrainSpec, train_and_evaluate
from aekit.estimator import checkpoint as ckpt
from aekit.estimator.distributed import launched_world_size
from aekit.estimator.lock import RunLock
from aekit.files import check_output_dir, check_output_file, writing
from aekit.hooks import CheckpointSaverListener, RunContext
from aekit.models.heads import ReconstructionNetwork
from aekit.models.layers import image_shape
from aekit.models.stacked import StackedDenoisingAutoencoder

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


def train(settings: dict[str, Any], model_dir: str | Path) -> dict[str, float]:
    """Train and evaluate after every epoch; resumes the run in `model_dir`."""
    entry = registry.get(settings["model"])
    splits, recipe = _from_the_data(settings, load_images(settings))
    (x_train, y_train), (_, y_test) = splits
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
        image_shape(tuple(shape))  # refuse flat data before anything is written
    settings["example_shape"] = shape
    check_output_dir("--model-dir", model_dir)
    if settings.get("save_images") and not entry.supervised:
        check_output_dir("--save-images", settings["save_images"])
    steps_per_epoch = (
        recipe.steps_per_epoch if recipe else _steps_per_epoch(len(x_train), settings["batch_size"])
    )
    # Validates every hyper-parameter; the network's size is checked before it is allocated.
    estimator = build(settings, model_dir, steps_per_epoch)
    limits.check_batch_size(settings, shape)
    # Locked before the settings are written: a second run must not touch a running one's dir.
    with ExitStack() as locked:
        with writing(model_dir):  # taking the lock creates the dir and its lock file
            if estimator.strategy.is_chief:  # the process that writes the dir
                locked.enter_context(RunLock(model_dir))
        _check_checkpoint_fits(estimator, settings, model_dir)
        return _train(estimator, settings, model_dir, steps_per_epoch, recipe, splits)


def _from_the_data(settings: dict[str, Any], splits: Splits) -> tuple[Splits, TabularRecipe | None]:
    """Resolve the settings that are "auto" until the data are seen; the splits to train on.

    Rows of a table (values beyond [0, 1]) get the outlier detector's model and recipe:
    scaled features, hidden units, batch size and epochs sized from the table, early
    stopping on held-out rows (the recipe, returned). When the table has labels, those other
    than 0 mark anomalies, left out of training (as --exclude-classes would) and scored by
    `score`. Images get seed 000's defaults.
    """
    (x_train, y_train), (x_test, y_test) = splits
    if settings.get("scaling") == "auto":
        settings["scaling"] = "standard" if is_table(x_train) or is_table(x_test) else "none"
    table = registry.is_table_run(settings)
    if settings.get("hidden_units") == "auto":
        n_features = math.prod(x_train.shape[1:])
        settings["hidden_units"] = sized_hidden_units(n_features) if table else registry.IMAGE_UNITS
    if settings.get("weight_decay") == "auto":
        settings["weight_decay"] = None if table else registry.IMAGE_WEIGHT_DECAY
    if not table:
        for key, value in (("batch_size", registry.IMAGE_BATCH), ("epochs", registry.IMAGE_EPOCHS)):
            if settings.get(key) == "auto":
                settings[key] = value
        return splits, None
    if settings.get("save_images"):
        raise ConfigError("--save-images draws images, and this run's rows are a table; drop it")
    anomalies = (
        anomaly_labels(y_train, y_test)
        if y_train is not None and y_test is not None and not settings.get("exclude_classes")
        else []
    )
    if anomalies:
        settings["exclude_classes"] = anomalies
        _log.info("labels %s mark anomalies: training leaves them out", anomalies)
    splits = load_images(settings)  # the normal rows, as numbers (not pixels)
    recipe = TabularRecipe.of(
        splits[0][0],
        settings["seed"],
        None if settings["batch_size"] == "auto" else settings["batch_size"],
        None if settings["epochs"] == "auto" else settings["epochs"],
    )
    settings["batch_size"], settings["epochs"] = recipe.batch_size, recipe.epochs
    return splits, recipe


def _check_checkpoint_fits(
    estimator: Estimator, settings: Mapping[str, Any], model_dir: str | Path
) -> None:
    """ConfigError, before the settings are written, when the dir's checkpoint is another model.

    A dir trained through the Python API has checkpoints but no hparams.json: its model
    need not be the one these settings describe.
    """
    if estimator.latest_checkpoint() is None:
        return
    found = ckpt.load_latest(model_dir, "cpu")
    if found is None:
        return  # none readable: training starts afresh, as the estimator would
    path, state = found
    saved = state.get("network")
    own = estimator.network.state_dict()
    problem = None
    if not isinstance(saved, Mapping):
        problem = "it holds no network weights"
    elif set(saved) != set(own):
        names = sorted(set(saved) ^ set(own))
        problem = f"its parameters differ: {', '.join(names[:3])}"
    else:
        for name, tensor in own.items():
            theirs = tuple(getattr(saved[name], "shape", ()))
            if theirs != tuple(tensor.shape):
                problem = (
                    f"{name} has shape {list(theirs)}, these settings give {list(tensor.shape)}"
                )
                break
    if problem is not None:
        raise ConfigError(
            f"checkpoint {path} does not fit the {settings['model']} model of these settings "
            f"({problem}); give the settings it was trained with or use a new --model-dir"
        )


def _train(
    estimator: Estimator,
    settings: dict[str, Any],
    model_dir: str | Path,
    steps_per_epoch: int,
    recipe: TabularRecipe | None,
    splits: Splits,
) -> dict[str, float]:
    entry = registry.get(settings["model"])
    (x_train, y_train), (x_test, y_test) = splits
    if estimator.strategy.is_chief:
        config.save(model_dir, settings)
    listeners: list[CheckpointSaverListener] = []
    if settings.get("save_images") and not entry.supervised:
        listeners.append(
            ReconstructionSnapshots(estimator, x_test[:10], settings["save_images"], settings)
        )
    labels = (y_train, y_test) if entry.supervised else (None, None)
    batch_size, epochs = settings["batch_size"], settings["epochs"]
    if recipe is not None and estimator.latest_checkpoint() is None:
        set_scaling(estimator.network, x_train, settings["scaling"])  # checkpoints keep it
    if isinstance(estimator, StackedDenoisingAutoencoder):
        estimator.pretrain(
            numpy_input_fn(
                x_train,
                batch_size=batch_size,
                num_epochs=None,
                seed=settings["seed"],
                binarize=settings.get("binarize"),
            ),
            steps=settings["pretrain_epochs"] * steps_per_epoch,
        )
    progress = EpochProgress(
        steps_per_epoch, epochs, bar=None if estimator.strategy.is_chief else False
    )
    if recipe is not None:  # the outlier detector's recipe: its batches and early stopping
        train_input, max_steps, hooks = recipe.input_fn(), recipe.max_steps, recipe.hooks()
    else:
        train_input = numpy_input_fn(
            x_train,
            labels[0],
            batch_size=batch_size,
            num_epochs=None,
            seed=settings["seed"],
            binarize=settings.get("binarize"),
        )
        max_steps, hooks = steps_per_epoch * epochs, []
    # Log lines (a checkpoint's, a warning) go above the bar instead of through it.
    with logging_redirect_tqdm():
        return train_and_evaluate(
            estimator,
            TrainSpec(
                train_input,
                max_steps=max_steps,
                hooks=[progress, *hooks],
                saving_listeners=listeners,
            ),
            EvalSpec(
                eval_input_fn(settings, x_test, labels[1]),
                every_n_steps=steps_per_epoch,
                report=progress.report,
            ),
        )


def eval_input_fn(
    settings: Mapping[str, Any], x: np.ndarray, y: np.ndarray | None = None
) -> Callable[[], Any]:
    """The test data in order, in batches of 1,000; drawn once (seed 0) if the run binarizes."""
    binarize: Binarization | None = "fixed" if settings.get("binarize") else None
    return numpy_input_fn(x, y, batch_size=1000, shuffle=False, binarize=binarize)


def _steps_per_epoch(examples: int, batch_size: int) -> int:
    """Steps to show every example once: under torchrun each process takes its own batch."""
    return math.ceil(examples / (batch_size * launched_world_size()))


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


_NO_DATA: Splits = ((np.zeros((0,)), None), (np.zeros((0,)), None))


def open_run(
    model_dir: str | Path,
    precheck: Precheck | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    read_data: bool = True,
    distributed: bool = False,
) -> tuple[dict[str, Any], Estimator, Splits]:
    """Settings, estimator and data of a trained model dir.

    `dataset` and `data_dir` replace the saved ones (data moved since training, or other
    data of the same example shape). Commands that need no data pass `read_data=False` and
    get empty splits. Only `evaluate` runs on every process of a torchrun job
    (`distributed`); the other commands run on rank 0 alone. `precheck` sees all three
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
    data = _NO_DATA
    if read_data:
        settings = with_data(settings, dataset, data_dir)
        data = load_images(settings)
        shape = list(data[0][0].shape[1:])
        if shape != settings["example_shape"]:  # other data, or files changed since training
            raise InputError(
                f"{model_dir} was trained on examples of shape {settings['example_shape']}, "
                f"{settings['dataset']} holds {shape}; give data of the shape it was trained on"
            )
    if precheck is not None:
        precheck(settings, estimator, data)
    if not estimator.restore():  # all unreadable: never go on with untrained weights
        raise CheckpointError(
            f"no checkpoint in {model_dir} can be read (see the warnings above); train again "
            "or restore a good ckpt-<step>.pt"
        )
    return settings, estimator, data


def evaluate(
    model_dir: str | Path,
    linear_probe: bool = False,
    dataset: str | None = None,
    data_dir: str | None = None,
) -> dict[str, float]:
    """Metrics of the latest checkpoint on the test set; optionally a linear probe's accuracy.

    `dataset`/`data_dir` replace the run's saved ones (see `open_run`).
    """

    def precheck(settings: dict[str, Any], _: Estimator, data: Splits) -> None:
        if not linear_probe:
            return
        if registry.get(settings["model"]).supervised:
            raise ConfigError(
                "--linear-probe measures an autoencoder's embedding; this is a classifier"
            )
        _check_probe_labels(data[0][1], data[1][1], settings["dataset"])

    settings, estimator, ((x_train, y_train), (x_test, y_test)) = open_run(
        model_dir, precheck, dataset, data_dir, distributed=True
    )
    supervised = registry.get(settings["model"]).supervised
    result = estimator.evaluate(
        eval_input_fn(settings, x_test, y_test if supervised else None), name="test"
    )
    if linear_probe:
        from aekit.evaluation import linear_probe as probe

        result["linear_probe_accuracy"] = probe(estimator, x_train, y_train, x_test, y_test)
    return result


def _check_probe_labels(
    y_train: np.ndarray | None, y_test: np.ndarray | None, dataset: str
) -> None:
    """InputError unless each split has one finite label per example, of two classes or more."""
    for name, y in (("training", y_train), ("test", y_test)):
        if y is None:
            raise InputError(f"--linear-probe needs labels, and {dataset} has none; drop it")
        y = np.asarray(y)
        if y.ndim != 1:
            raise InputError(
                f"--linear-probe needs one label per example; the {name} labels of {dataset} "
                f"have shape {list(y.shape)}"
            )
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise InputError(f"the {name} labels of {dataset} hold NaN or infinite values")
        if y.dtype.kind not in "biufUS":
            raise InputError(f"the {name} labels of {dataset} are {y.dtype}, not class labels")
    if len(np.unique(np.asarray(y_train))) < 2:
        raise InputError(
            f"--linear-probe needs two classes or more, and the training labels of {dataset} "
            "hold one; give labelled data of several classes"
        )


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
        self,
        estimator: Estimator,
        images: np.ndarray,
        out_dir: str | Path,
        settings: Mapping[str, Any],
    ) -> None:
        self.estimator = estimator
        self.images = images
        self.out_dir = Path(out_dir)
        self.settings = settings

    def after_save(self, context: RunContext, step: int, path: Path) -> None:
        from aekit.viz import caption, save_png

        if not context.is_chief:  # predict needs no other rank: rank 0 draws alone
            return
        grid = reconstruction_grid(self.estimator, self.images, self.settings)
        with writing(self._frame(step)):
            save_png(caption(grid, f"step {step}"), self._frame(step))

    def end(self, context: RunContext, step: int) -> None:
        from aekit.viz import save_gif

        if not context.is_chief:
            return
        frames = sorted(self.out_dir.glob("step-*.png"))
        if frames:
            with writing(self.out_dir / "reconstructions.gif"):
                save_gif(frames, self.out_dir / "reconstructions.gif")

    def _frame(self, step: int) -> Path:
        return self.out_dir / f"step-{step:07d}.png"


def reconstruct(
    model_dir: str | Path,
    images: int,
    output: str | Path | None,
    dataset: str | None = None,
    data_dir: str | None = None,
) -> Path:
    """A PNG grid of `images` test images and their reconstructions (data: see `open_run`)."""
    from aekit.viz import save_png

    path = Path(output or Path(model_dir) / "reconstruction.png")

    def precheck(settings: dict[str, Any], __: Estimator, data: Splits) -> None:
        if registry.is_table_run(settings):
            raise ConfigError(
                f"{model_dir} models the rows of a table, which are not images to draw; "
                "`aekit score` gives each row's reconstruction error"
            )
        check_output_file("--output", path)
        x = data[1][0][: _count(images)]
        limits.check_picture("--images", 3 * len(x), x.shape[1:], scale=2)  # 3 rows at most

    settings, estimator, (_, (x_test, _)) = open_run(model_dir, precheck, dataset, data_dir)
    grid = reconstruction_grid(estimator, x_test[:images], settings)
    with writing(path):
        save_png(grid, path)
    return path


def embed(
    model_dir: str | Path,
    images: int,
    plot: str | None = None,
    output: str | Path | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
) -> list[Path]:
    """The embedding of `images` test images as a projector run; optionally a 2-D scatter PNG.

    `dataset`/`data_dir` replace the run's saved ones (see `open_run`).
    """
    from aekit.viz import log_figure, project_2d, scatter_plot, write_projector

    projector = Path(model_dir) / "projector"
    path = Path(output or Path(model_dir) / f"embedding_{plot}.png") if plot else None

    def precheck(*_: object) -> None:
        _count(images)
        check_output_dir("--model-dir", projector)
        if path is not None:
            check_output_file("--output", path)

    settings, estimator, (_, (x_test, y_test)) = open_run(model_dir, precheck, dataset, data_dir)
    x = x_test[:images]
    labels = None if y_test is None else y_test[: len(x)]
    batches = estimator.predict(
        numpy_input_fn(x, batch_size=1000, shuffle=False),
        predict_keys=["embedding"],
        yield_single_examples=False,
    )
    embedding = np.concatenate([b["embedding"] for b in batches])
    with writing(projector):
        sprite = None if registry.is_table_run(settings) else x  # a table's rows have no picture
        written = [write_projector(projector, embedding, labels, sprite)]
    if plot and path is not None:
        points = project_2d(embedding, plot)
        with writing(path):
            figure = scatter_plot(
                points,
                labels,
                path,
                title=f"{plot} of the embedding",
                axis_labels=(f"{plot} 1", f"{plot} 2"),
            )
            log_figure(estimator.event_writers, f"embedding/{plot}", figure, estimator.global_step)
            estimator.event_writers.flush()
        written.append(path)
    return written


def export(model_dir: str | Path, output: str | Path | None, formats: Sequence[str]) -> list[Path]:
    """TorchScript and ONNX files of the encoder, decoder and whole model."""
    from aekit.export import export_model

    out = Path(output or Path(model_dir) / "export")

    def precheck(settings: dict[str, Any], estimator: Estimator, _: Splits) -> None:
        if not isinstance(estimator.network, ReconstructionNetwork):  # before export/ is made
            raise ConfigError(
                f"{model_dir} holds a {settings['model']} model, which has no encoder and "
                "decoder to export; export an autoencoder (fully_connected, convolutional, "
                "variational)"
            )
        check_output_dir("--output", out)

    _, estimator, _ = open_run(model_dir, precheck, read_data=False)  # export reads no data
    network = estimator.network
    assert isinstance(network, ReconstructionNetwork)  # the precheck refused anything else
    with writing(out):
        return list(export_model(network, out, formats=tuple(formats)).values())


def _count(images: int) -> int:
    if images <= 0:
        raise ConfigError(f"--images must be positive, got {images}")
    return images
