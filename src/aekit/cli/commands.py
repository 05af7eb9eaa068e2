"""The library functions behind `aekit evaluate`, `reconstruct`, `embed` and `export`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aekit.cli import limits, registry
from aekit.cli.data import Splits, loaded, shown
from aekit.cli.run import eval_input_fn, open_run, reconstruction_grid
from aekit.data.input_fn import predict_input_fn
from aekit.errors import ConfigError, InputError
from aekit.estimator import Estimator
from aekit.files import check_output_dir, check_output_file, writing
from aekit.models.heads import ReconstructionNetwork

_log = logging.getLogger("aekit")


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
        model_dir,
        precheck,
        dataset,
        data_dir,
        distributed=True,
        stream=not linear_probe,  # the probe fits on the training split's embeddings in memory
    )
    supervised = registry.get(settings["model"]).supervised
    result = estimator.evaluate(
        eval_input_fn(settings, x_test, y_test if supervised else None), name="test"
    )
    if linear_probe:
        from aekit.evaluation import linear_probe as probe

        result["linear_probe_accuracy"] = probe(
            estimator, loaded(x_train), y_train, loaded(x_test), y_test
        )
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
        count = min(images, len(data[1][0]))
        limits.check_picture("--images", 3 * count, data[1][0].shape[1:], scale=2)  # 3 rows

    settings, estimator, (_, (x_test, _)) = open_run(
        model_dir, precheck, dataset, data_dir, stream=True
    )
    grid = reconstruction_grid(estimator, shown(x_test, None, images)[0], settings)
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
    if output is not None and not plot:
        raise ConfigError(
            "--output names the scatter PNG that --plot draws, and no --plot is given; give "
            "--plot pca or tsne, or drop --output (the projector run goes into the model dir)"
        )
    path = Path(output or Path(model_dir) / f"embedding_{plot}.png") if plot else None

    def precheck(*_: object) -> None:
        check_output_dir("--model-dir", projector)
        if path is not None:
            check_output_file("--output", path)

    settings, estimator, (_, (x_test, y_test)) = open_run(
        model_dir, precheck, dataset, data_dir, stream=True
    )
    x, labels = shown(x_test, y_test, images)
    batches = estimator.predict(
        predict_input_fn(x, estimator.network),
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
    """TorchScript and ONNX files of the encoder, decoder and whole model; their paths.

    `spec.json` beside them says what each takes and gives; it is logged in a few lines, so
    that the paths returned (and printed) stay the model files alone.
    """
    from aekit.export import SPEC_FILE, describe_spec, export_model, onnx_missing, read_spec

    out = Path(output or Path(model_dir) / "export")

    def precheck(settings: dict[str, Any], estimator: Estimator, _: Splits) -> None:
        missing = onnx_missing() if "onnx" in formats else None
        if missing is not None:  # said in the command line's words, not the library's
            raise ConfigError(
                f"ONNX export needs onnx and onnxscript ({missing}); `pip install "
                "'aekit[export]'`, or give --format torchscript"
            )
        if not isinstance(estimator.network, ReconstructionNetwork):  # before export/ is made
            raise ConfigError(
                f"{model_dir} holds a {settings['model']} model, which has no encoder and "
                "decoder to export; export an autoencoder (fully_connected, convolutional, "
                "variational)"
            )
        check_output_dir("--output", out)

    settings, estimator, _ = open_run(model_dir, precheck, read_data=False)  # reads no data
    network = estimator.network
    assert isinstance(network, ReconstructionNetwork)  # the precheck refused anything else
    with writing(out):
        paths = export_model(
            network, out, tuple(formats), settings=settings, step=estimator.global_step
        )
    first, *rest = describe_spec(read_spec(out))
    for line in (f"{out / SPEC_FILE}: {first}", *rest):  # stdout keeps the files alone
        _log.info("%s", line)
    return [path for name, path in paths.items() if name != SPEC_FILE]
