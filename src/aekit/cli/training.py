"""`aekit train`: the settings resolved from the data, the run trained and evaluated per epoch."""

from __future__ import annotations

import logging
import math
import shutil
import sys
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.contrib.logging import logging_redirect_tqdm

from aekit.anomaly.tabular import TabularRecipe, set_scaling, sized_hidden_units
from aekit.cli import config, limits, registry
from aekit.cli.data import (
    Splits,
    anomaly_labels,
    check_pixels,
    describe,
    load_images,
    shown,
    table_or_images,
)
from aekit.cli.progress import EpochProgress
from aekit.cli.run import build, eval_input_fn, reconstruction_grid
from aekit.cli.settings import check_for_a_table
from aekit.cli.streamed import FolderImages, stream_input_fn
from aekit.data.context import InputContext
from aekit.data.input_fn import numpy_input_fn
from aekit.data.sampler import Sampler
from aekit.data.sources import table_columns
from aekit.errors import AekitError, ConfigError, InputError
from aekit.estimator import Estimator, EvalSpec, TrainSpec, train_and_evaluate
from aekit.estimator import checkpoint as ckpt
from aekit.estimator.job import launched_world_size
from aekit.estimator.lock import RunLock
from aekit.files import check_output_dir, writing
from aekit.hooks import CheckpointSaverListener, Hook, RunContext
from aekit.models.layers import image_shape
from aekit.models.stacked import StackedDenoisingAutoencoder

_log = logging.getLogger("aekit")


def train(settings: dict[str, Any], model_dir: str | Path) -> dict[str, float]:
    """Train and evaluate after every epoch; resumes the run in `model_dir`."""
    entry = registry.get(settings["model"])
    splits, recipe, said = _from_the_data(settings, load_images(settings, stream=True))
    (x_train, y_train), (_, y_test) = splits
    if settings.get("stream") == "always" and not isinstance(x_train, FolderImages):
        raise ConfigError(
            f"--stream always streams a folder of images, and {settings['dataset']} is not one "
            "(a .npy file is memory-mapped anyway); give --stream auto"
        )
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
    # Every input function checks its data and arguments as it is made: before anything is
    # written, so that a refused command leaves no model dir behind.
    inputs = _Inputs.of(settings, splits, recipe, entry.supervised)
    # Validates every hyper-parameter; the network's size is checked before it is allocated.
    estimator = build(settings, model_dir, inputs.steps_per_epoch)
    limits.check_batch_size(settings, shape)
    before = _found(model_dir)
    try:
        # Locked before the settings are written: a second run must not touch a running one's.
        with ExitStack() as locked:
            with writing(model_dir):  # taking the lock creates the dir and its lock file
                if estimator.strategy.is_chief:  # the process that writes the dir
                    locked.enter_context(RunLock(model_dir))
            _check_checkpoint_fits(estimator, settings, model_dir)
            # Said once every check has passed: a refused command prints its error line alone.
            _log.info("%s", said)
            _say_the_job(estimator, settings, inputs.steps_per_epoch)
            return _train(estimator, settings, model_dir, inputs, splits)
    except AekitError:
        if estimator.strategy.is_chief and estimator.latest_checkpoint() is None:
            _as_found(model_dir, before)  # refused before a first checkpoint: not claimed
        raise


def _found(model_dir: str | Path) -> set[str] | None:
    """The names in the model dir before a run (None: no such dir)."""
    path = Path(model_dir)
    return {p.name for p in path.iterdir()} if path.is_dir() else None


def _as_found(model_dir: str | Path, before: set[str] | None) -> None:
    """Remove what a refused run added to its model dir, leaving what was there."""
    path = Path(model_dir)
    if not path.is_dir():
        return
    for added in sorted({p.name for p in path.iterdir()} - (before or set())):
        target = path / added
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    if before is None and not any(path.iterdir()):
        path.rmdir()


def _from_the_data(
    settings: dict[str, Any], splits: Splits
) -> tuple[Splits, TabularRecipe | None, str]:
    """Resolve the settings that are "auto" until the data are seen; the splits to train on.

    Rows of a table (values beyond [0, 1]) get the outlier detector's model and recipe:
    scaled features, hidden units, batch size and epochs sized from the table, early
    stopping on held-out rows (the recipe, returned). When the table has labels, those other
    than 0 mark anomalies, left out of training (as --exclude-classes would) and scored by
    `score`. Images get seed 000's defaults. The line that says what the data are comes
    last, for the caller to log once nothing refuses the run.
    """
    (x_train, y_train), (x_test, y_test) = splits
    guess = ""  # why the data are taken as a table or as images, when the file leaves it open
    if "scaling" in settings:  # a model that takes tables: which are the data, and why
        table, why = table_or_images(settings["dataset"], x_train)
        if settings["scaling"] == "auto":
            settings["scaling"] = "standard" if table else "none"
        if why is not None:  # read from a file, whose kind is a guess: say it
            kind = "a table" if registry.is_table_run(settings) else "images"
            other = "none" if kind == "a table" else "standard"
            guess = f"; {why}: trained as {kind} (--scaling {other} says otherwise)"
    table = registry.is_table_run(settings)
    if not table:
        for name, x in (("the training set", x_train), ("the test set", x_test)):
            check_pixels(x, name, "scaling" in settings)
    if settings.get("hidden_units") == "auto":
        n_features = math.prod(x_train.shape[1:])
        settings["hidden_units"] = sized_hidden_units(n_features) if table else registry.IMAGE_UNITS
    if settings.get("weight_decay") == "auto":
        settings["weight_decay"] = None if table else registry.IMAGE_WEIGHT_DECAY
    if settings.get("learning_rate") == "auto":  # saved as the number it stands for
        settings["learning_rate"] = registry.learning_rate(settings)
    if not table:
        for key, value in (("batch_size", registry.IMAGE_BATCH), ("epochs", registry.IMAGE_EPOCHS)):
            if settings.get(key) == "auto":
                settings[key] = value
        # The line every command gives of these data (aekit.cli.run), and why.
        return (
            splits,
            None,
            describe(settings, splits, left_out=settings.get("exclude_classes")) + guess,
        )
    return _as_a_table(settings, (y_train, y_test), guess)


def _as_a_table(
    settings: dict[str, Any], labels: tuple[np.ndarray | None, np.ndarray | None], guess: str
) -> tuple[Splits, TabularRecipe, str]:
    """A table's run: its columns, the anomalies its labels mark, its normal rows, its recipe."""
    y_train, y_test = labels
    if settings.get("columns") is None:  # later commands match a table's columns by name
        settings["columns"] = table_columns(settings["dataset"], settings.get("label_column"))
    check_for_a_table(settings)
    anomalies = (
        anomaly_labels(y_train, y_test)
        if y_train is not None and y_test is not None and not settings.get("exclude_classes")
        else []
    )
    if anomalies:
        if y_train is not None and np.isin(y_train, anomalies).all():
            raise InputError(
                f"every training row of {settings['dataset']} has a label other than 0, which "
                "marks an anomaly on a table, so no normal row is left to train on; give normal "
                "rows (label 0), or --label-column naming another column"
            )
        settings["exclude_classes"] = anomalies
        guess += f"; labels {', '.join(map(str, anomalies))} mark anomalies"
    splits = load_images(settings)  # the normal rows, as numbers (not pixels)
    said = describe(settings, splits, left_out=settings.get("exclude_classes")) + guess
    recipe = TabularRecipe.of(
        np.asarray(splits[0][0]),  # a table's rows: float64 in memory already (load_images)
        settings["seed"],
        None if settings["batch_size"] == "auto" else settings["batch_size"],
        None if settings["epochs"] == "auto" else settings["epochs"],
    )
    settings["batch_size"], settings["epochs"] = recipe.batch_size, recipe.epochs
    return splits, recipe, said


def _say_the_job(estimator: Estimator, settings: Mapping[str, Any], steps_per_epoch: int) -> None:
    """On rank 0 of a job of several processes: how many, their backend, the global batch."""
    strategy = estimator.strategy
    if strategy.active and strategy.is_chief:
        batch, processes = settings["batch_size"], strategy.world_size
        _log.info(
            "%d processes (%s): global batch %d (%d per process), %d steps an epoch",
            processes,
            strategy.backend,
            batch * processes,
            batch,
            steps_per_epoch,
        )


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


@dataclass(frozen=True)
class _Inputs:
    """What a run trains and evaluates on, its input functions made (and so checked)."""

    train: Any
    evaluate: Any
    pretrain: Any | None  # the stacked model's layer-wise phases
    steps_per_epoch: int
    max_steps: int
    hooks: list[Hook]
    recipe: TabularRecipe | None  # a table's

    @classmethod
    def of(
        cls,
        settings: Mapping[str, Any],
        splits: Splits,
        recipe: TabularRecipe | None,
        supervised: bool,
    ) -> _Inputs:
        (x_train, y_train), (x_test, y_test) = splits
        labels = (y_train, y_test) if supervised else (None, None)
        evaluate = eval_input_fn(settings, x_test, labels[1])
        if recipe is not None:  # the outlier detector's recipe: its batches and early stopping
            steps = recipe.steps_per_epoch
            return cls(
                recipe.input_fn(), evaluate, None, steps, recipe.max_steps, recipe.hooks(), recipe
            )
        batch_size = settings["batch_size"]
        steps_per_epoch = steps_per_epoch_of(len(x_train), batch_size)

        def endless(y: np.ndarray | None, resume: bool = True) -> Any:
            if isinstance(x_train, FolderImages):  # decoded as training reaches each batch
                return stream_input_fn(
                    x_train,
                    labels=y is not None,
                    batch_size=batch_size,
                    seed=settings["seed"],
                    binarize=settings.get("binarize"),
                    train=True,
                    resume=resume,
                )
            return numpy_input_fn(
                x_train,
                y,
                batch_size=batch_size,
                num_epochs=None,
                seed=settings["seed"],
                binarize=settings.get("binarize"),
                resume=resume,
            )

        # Each pretraining phase starts at the first example, as an in-memory one does.
        pretrain = endless(None, resume=False) if settings["model"] == "stacked" else None
        max_steps = steps_per_epoch * settings["epochs"]
        return cls(endless(labels[0]), evaluate, pretrain, steps_per_epoch, max_steps, [], None)


def _train(
    estimator: Estimator,
    settings: dict[str, Any],
    model_dir: str | Path,
    inputs: _Inputs,
    splits: Splits,
) -> dict[str, float]:
    entry = registry.get(settings["model"])
    (x_train, _), (x_test, _) = splits
    if estimator.strategy.is_chief:
        config.save(model_dir, settings)
    listeners: list[CheckpointSaverListener] = []
    if settings.get("save_images") and not entry.supervised:
        listeners.append(
            ReconstructionSnapshots(
                estimator, shown(x_test, None, 10)[0], settings["save_images"], settings
            )
        )
    if inputs.recipe is not None and estimator.latest_checkpoint() is None:
        # A table's rows: float64 in memory already (load_images), so no copy here.
        set_scaling(estimator.network, np.asarray(x_train), settings["scaling"])
    if isinstance(estimator, StackedDenoisingAutoencoder) and inputs.pretrain is not None:
        estimator.pretrain(
            inputs.pretrain,
            steps=settings["pretrain_epochs"] * inputs.steps_per_epoch,
            verbose=1 if sys.stderr.isatty() else 0,  # off a terminal: the step log lines
        )
    latest = estimator.latest_checkpoint()
    if latest is not None and ckpt.step_of(latest) >= inputs.max_steps:
        _log.info(
            "nothing to train: %s has trained its %d epochs (step %d); raise --epochs to "
            "train longer",
            model_dir,
            settings["epochs"],
            ckpt.step_of(latest),
        )
    progress = EpochProgress(
        inputs.steps_per_epoch,
        settings["epochs"],
        bar=None if estimator.strategy.is_chief else False,
    )
    # Log lines (a checkpoint's, a warning) go above the bar instead of through it.
    with logging_redirect_tqdm():
        result = train_and_evaluate(
            estimator,
            TrainSpec(
                inputs.train,
                max_steps=inputs.max_steps,
                hooks=[progress, *inputs.hooks],
                saving_listeners=listeners,
            ),
            EvalSpec(inputs.evaluate),  # at the end of every epoch
            verbose=0,  # the run's bar and epoch lines are EpochProgress's
        )
    note = registry.short_run_note(settings, result)  # far fewer epochs than the model needs
    if note is not None and estimator.strategy.is_chief:
        _log.warning(note)
    return result


def steps_per_epoch_of(examples: int, batch_size: int) -> int:
    """Steps to show every example once: under torchrun each process its equal share."""
    processes = launched_world_size()
    context = InputContext(num_shards=processes, equal_shards=True)
    return Sampler.of(examples, batch_size, True, False, context).steps_per_epoch


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
