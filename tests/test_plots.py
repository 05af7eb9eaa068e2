"""matplotlib plots: the figures' axes, ticks and legends, their PNGs read back, and the
images TensorBoard's own reader finds in the event files."""

from __future__ import annotations

import io
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.figure import Figure
from matplotlib.patches import StepPatch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from aekit.errors import ConfigError, InputError
from aekit.summary import EventWriters
from aekit.viz.plots import (
    PALETTE,
    Plot,
    figure_pixels,
    histogram_plot,
    log_figure,
    manifold_plot,
    save_figure,
    scatter_plot,
)

rng = np.random.default_rng(0)


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as png:
        assert png.format == "PNG"
        return np.array(png.convert("RGB"))


def colours(pixels: np.ndarray) -> set[tuple[int, int, int]]:
    rgb = pixels.reshape(-1, 3).astype(np.int32)
    packed = np.unique(rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2])
    return {(int(v >> 16), int(v >> 8 & 255), int(v & 255)) for v in packed}


def only_axes(figure: Figure) -> Axes:
    assert len(figure.axes) == 1
    return figure.axes[0]


def legend_texts(figure: Figure) -> list[str]:
    assert len(figure.legends) == 1
    return [t.get_text() for t in figure.legends[0].get_texts()]


def tick_labels(ax: Axes, axis: str) -> list[str]:
    """The labels of the ticks drawn inside the axis' view (the figure must be drawn)."""
    low, high = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    ticks = ax.get_xticks() if axis == "x" else ax.get_yticks()
    labels = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    return [lab.get_text() for t, lab in zip(ticks, labels, strict=True) if low <= t <= high]


def rgb(color: np.ndarray) -> tuple[int, int, int]:
    r, g, b = (round(float(c) * 255) for c in color[:3])
    return r, g, b


def dot_colours(figure: Figure) -> list[tuple[int, int, int]]:
    """The fill colour of every dot of a scatter plot, in drawing order."""
    faces = np.asarray(only_axes(figure).collections[0].get_facecolor())
    return [rgb(c) for c in faces]


# --------------------------------------------------------------------------- scatter_plot


def test_scatter_has_labelled_axes_ticks_and_a_legend(tmp_path: Path) -> None:
    labels = np.repeat(np.array([7, 0, 3], dtype=np.uint8), 10)
    points = rng.normal(size=(30, 2)) + labels[:, None]
    path = tmp_path / "plots" / "s.png"
    figure = scatter_plot(points, labels, path, size=300, title="pca of the embedding")
    assert isinstance(figure, Figure)
    written = read_png(path)
    assert written.shape == (300, 300, 3) and figure.size == (300, 300)
    assert np.array_equal(written, np.asarray(figure))
    assert [p.name for p in path.parent.iterdir()] == ["s.png"]  # no temporary file left

    ax = only_axes(figure)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("component 1", "component 2")
    assert ax.get_title() == "pca of the embedding"
    assert legend_texts(figure) == ["0", "3", "7"]  # numbers in numeric order
    assert figure.legends[0].get_title().get_text() == "label"
    # Real ticks: several labelled ones along each axis, not just its two ends.
    assert len(tick_labels(ax, "x")) >= 3 and all(tick_labels(ax, "x"))
    assert len(tick_labels(ax, "y")) >= 3 and all(tick_labels(ax, "y"))
    # Each dot in its label's colour, and no other colour used.
    dots = ax.collections[0]
    offsets = np.asarray(dots.get_offsets())
    faces = dot_colours(figure)
    for (x, y), face in zip(offsets, faces, strict=True):
        label = int(labels[np.flatnonzero((points == (x, y)).all(axis=1))[0]])
        assert face == PALETTE[label]
    drawn = colours(written)
    assert {PALETTE[0], PALETTE[3], PALETTE[7]} <= drawn


def test_scatter_legend_fits_a_small_figure(tmp_path: Path) -> None:
    labels = np.arange(200) % 10
    figure = scatter_plot(rng.normal(size=(200, 2)), labels, tmp_path / "s.png", size=200)
    figure_pixels(figure)  # lays the figure out
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    legend = figure.legends[0].get_window_extent(renderer)
    plot_area = only_axes(figure).get_window_extent(renderer)
    assert legend_texts(figure) == [str(d) for d in range(10)]
    assert legend.y0 >= 0 and legend.y1 <= 200 and legend.x1 <= 200  # every entry is seen
    assert legend.x0 >= plot_area.x1  # beside the dots, not over them


def test_scatter_without_labels_or_path(tmp_path: Path) -> None:
    figure = scatter_plot(np.array([[0.0, 0.0], [1.0, 1.0]]), None, None, size=200)
    assert list(tmp_path.iterdir()) == []
    assert figure.legends == []
    faces = set(dot_colours(figure))
    assert faces == {PALETTE[0]}


def test_scatter_text_labels_and_many_labels() -> None:
    figure = scatter_plot(np.array([[1.0, 2.0]] * 3), ["dog", "cat", "dog"], None)
    assert legend_texts(figure) == ["cat", "dog"]
    faces = dot_colours(figure)
    assert set(faces) == {PALETTE[0], PALETTE[1]}  # sorted: cat first, dog second
    many = scatter_plot(rng.normal(size=(25, 2)), np.arange(25), None)
    assert legend_texts(many) == [str(i) for i in range(20)] + ["… 5 more"]


def test_scatter_refuses_bad_inputs(tmp_path: Path) -> None:
    path = tmp_path / "s.png"
    with pytest.raises(InputError, match=r"\(N, 2\)"):
        scatter_plot(np.zeros((5, 3)), None, path)
    with pytest.raises(InputError, match="one per point"):
        scatter_plot(np.zeros((5, 2)), [1, 2], path)
    with pytest.raises(InputError, match="NaN"):
        scatter_plot(np.array([[0.0, np.nan]]), None, path)
    for size in (20, 199, 300.0, True):
        with pytest.raises(ConfigError, match="size"):
            scatter_plot(np.zeros((5, 2)), None, path, size=size)  # type: ignore[arg-type]
    assert not path.exists()


# --------------------------------------------------------------------------- histogram_plot


def test_histogram_axes_shares_and_threshold_in_the_legend(tmp_path: Path) -> None:
    groups = {"training": rng.random(500), "scored": rng.random(40) + 0.5}
    path = tmp_path / "h.png"
    figure = histogram_plot(
        groups, path, threshold=0.95, bins=10, title="anomaly scores", xlabel="error"
    )
    written = read_png(path)
    assert written.shape == (400, 640, 3)
    assert np.array_equal(written, np.asarray(figure))
    ax = only_axes(figure)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == (
        "error",
        "share of group",
        "anomaly scores",
    )
    assert len(tick_labels(ax, "x")) >= 3 and len(tick_labels(ax, "y")) >= 3
    # One outline per group on shared bins, each summing to the whole group.
    steps = [p for p in ax.patches if isinstance(p, StepPatch)]
    assert [s.get_label() for s in steps] == ["training", "scored"]
    for step in steps:
        values, edges, _ = step.get_data()
        assert values.sum() == pytest.approx(1.0)
        assert len(edges) == 11
        assert edges[0] == min(v.min() for v in groups.values())
        assert edges[-1] == max(v.max() for v in groups.values())
    assert [rgb(np.asarray(s.get_edgecolor())) for s in steps] == [PALETTE[0], PALETTE[1]]
    # The threshold's label is a legend entry, not text drawn over the bars or the legend.
    assert legend_texts(figure) == ["training", "scored", "threshold 0.95"]
    assert len(ax.texts) == 0 and len(figure.texts) == 0
    line = ax.lines[0]
    assert list(line.get_xdata()) == [0.95, 0.95]  # type: ignore[arg-type]
    assert line.get_linestyle() == "--"
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    legend = figure.legends[0].get_window_extent(renderer)
    assert legend.x0 >= ax.get_window_extent(renderer).x1
    assert {(214, 39, 40), PALETTE[0], PALETTE[1]} <= colours(written)


def test_histogram_of_equal_values_and_path_none(tmp_path: Path) -> None:
    figure = histogram_plot({"one value": np.full(5, 2.0)}, None, size=(300, 200))
    assert list(tmp_path.iterdir()) == [] and figure.size == (300, 200)
    assert only_axes(figure).get_xlim() == (2.0, 3.0)  # a unit-wide range, not a zero-wide one
    assert legend_texts(figure) == ["one value"]


def test_histogram_refuses_bad_inputs(tmp_path: Path) -> None:
    path = tmp_path / "h.png"
    with pytest.raises(InputError, match="at least one group"):
        histogram_plot({}, path)
    with pytest.raises(InputError, match="NaN"):
        histogram_plot({"a": np.array([1.0, np.nan])}, path)
    with pytest.raises(ConfigError, match="bins"):
        histogram_plot({"a": np.ones(3)}, path, bins=0)
    for size in ((100, 400), (640, 100), (640.0, 400)):
        with pytest.raises(ConfigError, match="size"):
            histogram_plot({"a": np.ones(3)}, path, size=size)  # type: ignore[arg-type]
    assert not path.exists()


# --------------------------------------------------------------------------- manifold_plot


def test_manifold_ticks_name_the_prior_quantiles(tmp_path: Path) -> None:
    # Nine images, each one grey level, row by row as VariationalAutoencoder.manifold gives.
    images = np.repeat(np.linspace(0, 1, 9), 16).reshape(9, 4, 4)
    figure = manifold_plot(images, tmp_path / "m.png", title="manifold")
    assert read_png(tmp_path / "m.png").shape == (400, 400, 3)
    ax = only_axes(figure)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("z₁", "z₂", "manifold")
    picture = ax.images[0]
    assert tuple(picture.get_extent()) == (0, 3, 0, 3)
    mosaic = np.asarray(picture.get_array())
    assert mosaic.shape == (12, 12)
    assert mosaic[0, 0] == 0 and mosaic[0, 11] == round(2 / 8 * 255) and mosaic[11, 11] == 255
    # Tick positions: z = 0 is the prior's median, the middle image; every tick sits where
    # the grid's quantile spacing puts its z value.
    ticks = dict(zip(tick_labels(ax, "x"), ax.get_xticks(), strict=True))
    assert ticks["0"] == pytest.approx(1.5)
    prior = statistics.NormalDist()
    for text, place in ticks.items():
        z = float(text.replace("−", "-"))
        assert place == pytest.approx((prior.cdf(z) - 0.05) / 0.9 * 2 + 0.5)
    assert list(ticks) == ["−1.5", "−1", "−0.5", "0", "0.5", "1", "1.5"]
    assert tick_labels(ax, "y") == list(ticks)


def test_manifold_refuses_bad_grids() -> None:
    with pytest.raises(InputError, match="square grid"):
        manifold_plot(np.zeros((5, 4, 4)))
    with pytest.raises(InputError, match="square grid"):
        manifold_plot(np.zeros((1, 4, 4)))
    with pytest.raises(ConfigError, match="quantiles"):
        manifold_plot(np.zeros((4, 4, 4)), quantiles=(0.9, 0.1))


# --------------------------------------------------------------------------- files and TensorBoard


def test_any_figure_renders_and_keeps_its_canvas(tmp_path: Path) -> None:
    figure = Figure(figsize=(2, 1), dpi=50, facecolor="none")  # transparent, as some styles
    figure.add_subplot().plot([0, 1], [1, 0])
    canvas = figure.canvas
    assert type(canvas) is FigureCanvasBase
    pixels = figure_pixels(figure)
    assert figure.canvas is canvas  # a GUI figure keeps its window's canvas
    assert pixels.shape == (50, 100, 3) and pixels.dtype == np.uint8
    assert tuple(pixels[0, 0]) == (255, 255, 255)  # transparency shown on white
    path = save_figure(figure, tmp_path / "a" / "f.png")
    assert np.array_equal(read_png(path), pixels)
    plot = scatter_plot(np.zeros((3, 2)), None, None, size=200)
    assert isinstance(plot, Plot)
    assert np.array_equal(np.asarray(plot.to_image()), np.asarray(plot))


def test_log_figure_is_an_image_tensorboard_reads(tmp_path: Path) -> None:
    figure = histogram_plot({"training": rng.random(50)}, None, threshold=0.5, size=(320, 200))
    writers = EventWriters(tmp_path / "run")
    log_figure(writers, "anomaly/histogram", figure, step=7)
    writers.close()
    events = EventAccumulator(str(tmp_path / "run" / "eval"), size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == ["anomaly/histogram"]
    (image,) = events.Images("anomaly/histogram")
    assert (image.step, image.width, image.height) == (7, 320, 200)
    with Image.open(io.BytesIO(image.encoded_image_string)) as png:
        assert np.array_equal(np.array(png.convert("RGB")), np.asarray(figure))

    # A torch SummaryWriter works as well; a writer of a non-chief rank writes nothing.
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "plain"))
    log_figure(writer, "plot", figure, step=3)
    writer.close()
    events = EventAccumulator(str(tmp_path / "plain"), size_guidance={"images": 0})
    events.Reload()
    assert [i.step for i in events.Images("plot")] == [3]
    log_figure(EventWriters(tmp_path / "quiet", enabled=False), "plot", figure, step=1)
    assert not (tmp_path / "quiet").exists()


def test_plotting_changes_no_global_matplotlib_state() -> None:
    # In a fresh interpreter: another test may have imported pyplot in this one.
    code = """
import json, sys
import matplotlib
# "backend" is left out: reading it picks a backend, importing pyplot.
def settings():
    return {k: repr(matplotlib.rcParams[k]) for k in matplotlib.rcParams if k != "backend"}
before = settings()
import numpy as np
from aekit.viz import histogram_plot, manifold_plot, scatter_plot
scatter_plot(np.arange(6.0).reshape(3, 2), [1, 2, 1], None)
histogram_plot({"a": np.arange(5.0)}, None, threshold=2.0)
manifold_plot(np.zeros((4, 3, 3)))
after = settings()
print(json.dumps({"pyplot": "matplotlib.pyplot" in sys.modules,
                  "changed": sorted(k for k in before if before[k] != after[k])}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"pyplot": False, "changed": []}
