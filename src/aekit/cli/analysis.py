"""The library functions behind `aekit sample` and `aekit score`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aekit.cli.commands import load_images, open_run
from aekit.errors import ConfigError, InputError

MANIFOLD_FILE = "manifold.png"


def sample(
    model_dir: str | Path,
    images: int = 64,
    output: str | Path | None = None,
    seed: int = 0,
    manifold_size: int = 20,
) -> list[Path]:
    """A PNG grid of `images` samples; for a 2-D code also the latent manifold beside it."""
    from aekit.models.variational import VariationalAutoencoder
    from aekit.viz import save_png, tile_images

    settings, estimator, _ = open_run(model_dir)
    if not isinstance(estimator, VariationalAutoencoder):
        raise ConfigError(
            f"{model_dir} holds a {settings['model']} model, which cannot generate images; "
            "train one with `aekit train variational`"
        )
    if images <= 0:
        raise ConfigError(f"--images must be positive, got {images}")
    path = Path(output) if output else Path(model_dir) / "samples.png"
    if estimator.vae.latent_dim == 2 and manifold_size < 2:
        raise ConfigError(f"--manifold-size must be at least 2, got {manifold_size}")
    shape = estimator.vae.image_shape
    scale = max(1, math.ceil(28 / shape[1]))  # small images (8x8 digits) enlarged to be seen
    grid = tile_images(estimator.sample(images, seed), image_shape=shape, scale=scale)
    written = [save_png(grid, path)]
    if estimator.vae.latent_dim == 2:
        grid = tile_images(
            estimator.manifold(manifold_size), manifold_size, image_shape=shape, scale=scale
        )
        written.append(save_png(grid, path.with_name(MANIFOLD_FILE)))
    return written


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

    def summary(self) -> str:
        """One line for the terminal."""
        text = (
            f"threshold={self.threshold:.5g} (percentile {self.percentile:g} of training errors) "
            f"flagged={self.flagged}/{self.examples}"
        )
        return text + (f" auroc={self.auroc:.4f}" if self.auroc is not None else "")


def score(
    model_dir: str | Path,
    percentile: float = 99.0,
    dataset: str | None = None,
    data_dir: str | None = None,
    output: str | Path | None = None,
) -> ScoreReport:
    """Anomaly scores of a data set: a CSV, a histogram PNG, the threshold, maybe the AUROC.

    The threshold is the `percentile` of the errors on the run's own training data. Scored
    are the run's test split with every class (those left out by `--exclude-classes`
    included), or every example of `dataset`. When the run left classes out and the scored
    data have labels, those classes count as the anomalies for the AUROC.
    """
    from aekit.anomaly import AnomalyDetector, auroc, write_scores_csv
    from aekit.viz import histogram_plot

    settings, estimator, ((x_train, _), _) = open_run(model_dir)
    detector = AnomalyDetector(estimator, percentile).calibrate(x_train)
    assert detector.threshold is not None and detector.training_errors is not None
    if dataset is None:
        _, (x, y) = load_images(settings, with_excluded=True)
    else:
        # Every example of the given data set, read and checked as training data are.
        other = {**settings, "dataset": dataset, "data_dir": data_dir}
        (x_a, y_a), (x_b, y_b) = load_images(other, with_excluded=True)
        x = np.concatenate([np.asarray(x_a), np.asarray(x_b)])
        y = None if y_a is None or y_b is None else np.concatenate([y_a, y_b])
        if math.prod(x.shape[1:]) != math.prod(x_train.shape[1:]):
            raise InputError(
                f"{dataset} holds examples of shape {list(x.shape[1:])}, the model takes "
                f"{list(x_train.shape[1:])}; score data shaped like the training data"
            )
    scores = detector.score(x)
    out = Path(output) if output else Path(model_dir) / "scores"
    labels = None if y is None else np.asarray(y)
    csv_path = write_scores_csv(out / "scores.csv", scores, detector.threshold, labels)
    excluded = settings.get("exclude_classes")
    area = None
    groups = {"training": detector.training_errors}
    if excluded and labels is not None:
        anomalous = np.isin(labels, excluded)
        if anomalous.any() and not anomalous.all():
            area = auroc(scores, anomalous)
            groups |= {"scored, normal": scores[~anomalous], "scored, anomalous": scores[anomalous]}
    if len(groups) == 1:
        groups["scored"] = scores
    histogram_plot(
        groups, out / "histogram.png", threshold=detector.threshold, title="reconstruction error"
    )
    return ScoreReport(
        csv=csv_path,
        histogram=out / "histogram.png",
        threshold=detector.threshold,
        percentile=detector.percentile,
        examples=len(scores),
        flagged=int((scores > detector.threshold).sum()),
        auroc=area,
    )
