"""The library functions behind `aekit sample`, `aekit likelihood` and `aekit score`."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aekit.cli import limits, registry
from aekit.cli.data import Examples, Split, Splits, describe, load_images, loaded, with_data
from aekit.cli.run import eval_input_fn, open_run
from aekit.data.rows import concat_rows, first_rows
from aekit.errors import ConfigError, InputError
from aekit.estimator import Estimator
from aekit.files import check_output_dir, check_output_file, writing

if TYPE_CHECKING:
    from aekit.models.variational import VariationalAutoencoder

MANIFOLD_FILE = "manifold.png"
MAX_CODES = 2**31
"""The most codes `aekit likelihood` draws in all, images × samples (the standard full-MNIST
figure, 10,000 × 5,000, took 6 minutes on 2 cores; this is 40 times that)."""
_log = logging.getLogger("aekit")


def sample(
    model_dir: str | Path,
    images: int = 64,
    output: str | Path | None = None,
    seed: int = 0,
    manifold_size: int = 20,
) -> list[Path]:
    """A PNG grid of `images` samples; for a 2-D code also the latent manifold beside it."""
    from aekit.models.variational import VariationalAutoencoder
    from aekit.viz import log_figure, manifold_plot, save_png, tile_images

    path = Path(output or Path(model_dir) / "samples.png")

    def precheck(settings: dict[str, Any], estimator: Estimator, _: Splits) -> None:
        # Both pictures are sized and their paths checked before the first one is drawn.
        # The counts and the seed are bounded where the command line declares its options.
        vae = _variational(settings, estimator, model_dir, "generate images")
        shape = vae.vae.image_shape
        limits.check_picture("--images", images, shape, _scale(shape))
        check_output_file("--output", path)
        if vae.vae.latent_dim == 2:
            limits.check_picture("--manifold-size", manifold_size**2, shape, _scale(shape))
            check_output_file("--output", path.with_name(MANIFOLD_FILE))

    _, estimator, _ = open_run(model_dir, precheck, read_data=False)  # samples need no data
    assert isinstance(estimator, VariationalAutoencoder)  # the precheck refused anything else
    with_manifold = estimator.vae.latent_dim == 2
    shape = estimator.vae.image_shape
    scale = _scale(shape)
    grid = tile_images(estimator.sample(images, seed), image_shape=shape, scale=scale)
    with writing(path):
        written = [save_png(grid, path)]
    if with_manifold:
        manifold = path.with_name(MANIFOLD_FILE)
        with writing(manifold):
            figure = manifold_plot(estimator.manifold(manifold_size), manifold, image_shape=shape)
            log_figure(estimator.event_writers, "vae/manifold", figure, estimator.global_step)
            estimator.event_writers.flush()
        written.append(manifold)
    return written


def likelihood(
    model_dir: str | Path,
    samples: int = 5000,
    images: int | None = None,
    seed: int = 0,
    dataset: str | None = None,
    data_dir: str | None = None,
) -> dict[str, float]:
    """The test images' mean log p(x), importance-weighted with `samples` codes each, in nats.

    Also the ELBO of the same images, and `nll`, minus the log-likelihood, the figure papers
    report. A run trained on binarized pixels is scored on the test images drawn once.
    """
    from aekit.models.variational import VariationalAutoencoder

    def precheck(settings: dict[str, Any], estimator: Estimator, data: Splits) -> None:
        # The counts and the seed are bounded where the command line declares its options.
        _variational(settings, estimator, model_dir, "give a likelihood")
        codes = samples * len(data[1][0][:images])
        if codes > MAX_CODES:
            raise ConfigError(
                f"--samples {samples:,} for {len(data[1][0][:images]):,} images draws "
                f"{codes:,} codes, over the limit of {MAX_CODES:,}; give fewer --samples or "
                "--images"
            )

    settings, estimator, (_, (x_test, _)) = open_run(model_dir, precheck, dataset, data_dir)
    assert isinstance(estimator, VariationalAutoencoder)  # the precheck refused anything else
    scored = first_rows(x_test, images)  # read batch by batch, not copied here
    data = eval_input_fn(settings, scored)
    log_px = estimator.log_likelihood(data, samples=samples, seed=seed, expected=len(scored))
    elbo = estimator.evaluate(data, name="likelihood")["elbo"]
    return {"log_likelihood": log_px, "nll": -log_px, "elbo": elbo, "samples": samples,
            "images": len(scored)}  # fmt: skip


def _variational(
    settings: dict[str, Any], estimator: Estimator, model_dir: str | Path, action: str
) -> VariationalAutoencoder:
    """`estimator` if it is a VAE; a ConfigError saying it cannot `action` otherwise."""
    from aekit.models.variational import VariationalAutoencoder

    if not isinstance(estimator, VariationalAutoencoder):
        raise ConfigError(
            f"{model_dir} holds a {settings['model']} model, which cannot {action}; "
            "train one with `aekit train variational`"
        )
    return estimator


def _scale(shape: Sequence[int]) -> int:
    """How much to enlarge pictures: small images (8x8 digits) are enlarged to be seen."""
    return max(1, math.ceil(28 / shape[1]))


def _scored_data(
    settings: dict[str, Any], x_train: Split, dataset: str | None, data_dir: str | None
) -> tuple[Examples, np.ndarray | None]:
    """The examples `score` scores: the run's test split with every class, or all of `dataset`."""
    if dataset is None:
        _, (x, y) = load_images(settings, with_excluded=True)
        return x, y
    # Every example of the given data set, read and checked as training data are.
    other = with_data(settings, dataset, data_dir)
    (x_a, y_a), (x_b, y_b) = load_images(other, with_excluded=True)
    x = concat_rows(x_a, x_b)  # the training then the test rows, as indices: nothing is copied
    y = None if y_a is None or y_b is None else np.concatenate([y_a, y_b])
    if math.prod(x.shape[1:]) != math.prod(x_train.shape[1:]):
        raise InputError(
            f"{dataset} holds examples of shape {list(x.shape[1:])}, the model takes "
            f"{list(x_train.shape[1:])}; score data shaped like the training data"
        )
    return x, y


@dataclass(frozen=True)
class ScoreReport:
    """What `aekit score` found: files written, threshold, counts and, with labels, the AUROC."""

    csv: Path
    histogram: Path
    threshold: float
    percentile: float
    examples: int
    flagged: int
    auroc: float | None
    normal_flagged: float | None = None  # the share of the labelled normal rows flagged

    def summary(self) -> str:
        """One line for the terminal."""
        text = (
            f"threshold={self.threshold:.5g} (percentile {self.percentile:g} of training scores) "
            f"flagged={self.flagged}/{self.examples}"
        )
        if self.normal_flagged is not None:  # what the percentile promised, and what it did
            text += (
                f" ({100 * self.normal_flagged:.1f}% of the normal rows; percentile "
                f"{self.percentile:g} aims at {100 - self.percentile:.3g}%)"
            )
        return text + (f" auroc={self.auroc:.4f}" if self.auroc is not None else "")


def score(
    model_dir: str | Path,
    percentile: float = 99.0,
    dataset: str | None = None,
    data_dir: str | None = None,
    output: str | Path | None = None,
    code_weight: float | None = None,
    neighbors: int | None = None,
) -> ScoreReport:
    """Anomaly scores of a data set: a CSV, a histogram PNG, the threshold, maybe the AUROC.

    The threshold is the `percentile` of the scores of the run's own training data (on a
    table, each row scored by the members of the model that never trained on it, so that
    about 100 - percentile % of new normal rows lie above it). Scored
    are the run's test split with every class (those left out by `--exclude-classes`
    included), or every example of `dataset`. When the run left classes out and the scored
    data have labels, those classes count as the anomalies for the AUROC. The score is the
    reconstruction error, or with a `code_weight` or `neighbors` `ErrorAndCodeScore`; by
    default on a table the outlier detector's (the same figures for the same seed), on
    images the error alone.
    """
    from aekit.anomaly import AnomalyDetector, auroc, write_scores_csv
    from aekit.anomaly.table_score import TABLE_CODE_WEIGHT, TABLE_NEIGHBORS
    from aekit.viz import histogram_plot, log_figure

    # Without `dataset`, `data_dir` is where the run's own data now live (both the threshold's
    # training split and the scored test split); with it, where `dataset` lives.
    run_data_dir = data_dir if dataset is None else None

    out = Path(output or Path(model_dir) / "scores")
    scored: list[tuple[Examples, np.ndarray | None]] = []

    weights: list[tuple[float, int]] = []

    def precheck(settings: dict[str, Any], estimator: Estimator, data: Splits) -> None:
        table = registry.is_table_run(settings)
        weights.append(
            (
                (TABLE_CODE_WEIGHT if table else 0.0) if code_weight is None else code_weight,
                (TABLE_NEIGHBORS if table else 0) if neighbors is None else neighbors,
            )
        )
        AnomalyDetector(estimator, percentile, *weights[0])  # checks them
        check_output_dir("--output", out)
        scored.append(_scored_data(settings, data[0][0], dataset, data_dir))

    settings, estimator, ((x_train, _), _) = open_run(model_dir, precheck, data_dir=run_data_dir)
    x, y = scored[0]
    if dataset is not None:  # other data than the run's, whose line open_run gave
        _log.info("%s", describe(with_data(settings, dataset, data_dir), [(x, y)], ["scored"]))
    detector = AnomalyDetector(estimator, percentile, *weights[0]).calibrate(loaded(x_train))
    assert detector.threshold is not None and detector.training_scores is not None
    scores = detector.score(x)
    labels = None if y is None else np.asarray(y)
    with writing(out / "scores.csv"):
        csv_path = write_scores_csv(out / "scores.csv", scores, detector.threshold, labels)
    anomalous = None
    if settings.get("exclude_classes") and labels is not None:
        anomalous = np.isin(labels, settings["exclude_classes"])  # the classes left out
    groups = {"training": detector.training_scores, **_scored_groups(scores, anomalous)}
    area = normal_flagged = None
    if anomalous is not None and not anomalous.all():
        normal_flagged = float((scores[~anomalous] > detector.threshold).mean())
        area = auroc(scores, anomalous) if anomalous.any() else None
    with writing(out / "histogram.png"):
        figure = histogram_plot(
            groups,
            out / "histogram.png",
            threshold=detector.threshold,
            title="anomaly scores",
            xlabel=_score_name(detector.code_weight, detector.neighbors),
        )
        log_figure(estimator.event_writers, "anomaly/histogram", figure, estimator.global_step)
        estimator.event_writers.flush()
    return ScoreReport(
        csv=csv_path,
        histogram=out / "histogram.png",
        threshold=detector.threshold,
        percentile=detector.percentile,
        examples=len(scores),
        flagged=int((scores > detector.threshold).sum()),
        auroc=area,
        normal_flagged=normal_flagged,
    )


def _scored_groups(scores: np.ndarray, anomalous: np.ndarray | None) -> dict[str, np.ndarray]:
    """The scored examples for the histogram: normal and anomalous apart when both occur."""
    if anomalous is None or anomalous.all() or not anomalous.any():
        return {"scored": scores}
    return {"scored, normal": scores[~anomalous], "scored, anomalous": scores[anomalous]}


def _score_name(code_weight: float, neighbors: int) -> str:
    """What the score adds up, for the histogram's axis."""
    if not (code_weight or neighbors):
        return "reconstruction error (mean squared)"
    parts = ["error"]
    if code_weight:
        parts.append(f"{code_weight:g} × code distance")
    if neighbors:
        parts.append(f"{neighbors}-nearest codes' distance")
    return " + ".join(parts) + " (in training means)"
