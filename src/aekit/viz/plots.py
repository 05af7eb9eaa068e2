"""Plots with axes: embedding scatter plots, score histograms, VAE latent manifolds.

Drawn with matplotlib's object API on its Agg canvas: no pyplot, no display, and no
rcParams changed, so a user's own matplotlib settings and figures are left alone. Every
function returns a `Plot` (a matplotlib Figure) and, given a path, writes it as a PNG
atomically; `log_figure` puts any Figure into TensorBoard.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from aekit.errors import ConfigError, InputError
from aekit.files import atomic_write, ensure_dir
from aekit.summary import EventWriters
from aekit.viz.embedding import float_matrix
from aekit.viz.images import tile_images

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = [
    "PALETTE",
    "Plot",
    "figure_pixels",
    "histogram_plot",
    "label_color",
    "log_figure",
    "manifold_plot",
    "save_figure",
    "scatter_plot",
]

ArrayLike = np.ndarray | torch.Tensor

# matplotlib's "tab10": ten colours told apart easily, also by most colour-blind readers.
# Spelled out rather than read from rcParams so a user's style cannot recolour the classes.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)
THRESHOLD_COLOR = PALETTE[3]
DPI = 100
# More legend entries than this make the legend taller than the plot; the palette repeats
# after ten colours anyway.
MAX_LEGEND_ENTRIES = 20


class Plot(Figure):
    """A matplotlib Figure on its own Agg canvas, `dpi` 100, sized in pixels.

    Use it as any Figure (`savefig`, `axes`, ...). `size` and `np.asarray(plot)` give the
    pixels as written to PNG, as the Pillow pictures these functions returned before did.
    """

    def __init__(self, width: int, height: int) -> None:
        # A hair over the exact size: some matplotlib versions truncate w/dpi*dpi to pixels.
        super().__init__(
            figsize=((width + 1e-3) / DPI, (height + 1e-3) / DPI), dpi=DPI, layout="constrained"
        )
        FigureCanvasAgg(self)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, as PIL's Image.size."""
        width, height = self.canvas.get_width_height(physical=True)
        return width, height

    def to_image(self) -> Image.Image:
        """The rendered figure as an RGB Pillow image."""
        return Image.fromarray(figure_pixels(self))

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:
            raise ValueError("a Plot's pixels are rendered anew on each call: a copy is made")
        pixels = figure_pixels(self)
        return pixels if dtype is None else pixels.astype(dtype)


def figure_pixels(figure: Figure) -> np.ndarray:
    """(H, W, 3) uint8 pixels of any Figure, rendered by Agg at the figure's dpi.

    A figure shown by a GUI keeps its own canvas: Agg renders it on a borrowed canvas,
    as matplotlib's own savefig does.
    """
    canvas = figure.canvas
    agg = canvas if isinstance(canvas, FigureCanvasAgg) else FigureCanvasAgg(figure)
    try:
        agg.draw()  # type: ignore[no-untyped-call]
        rgba = np.array(agg.buffer_rgba())  # type: ignore[no-untyped-call]
    finally:
        figure.set_canvas(canvas)
    alpha = rgba[:, :, 3:].astype(np.float32) / 255.0
    if (alpha == 1.0).all():
        return np.ascontiguousarray(rgba[:, :, :3])
    # A transparent figure (a user's style) is shown on white, as image viewers do.
    rgb: np.ndarray = np.round(rgba[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return rgb


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Write `figure` as a PNG at `path` atomically, creating its folder; returns the path.

    The pixels are those of `figure_pixels`: the figure's own size and dpi, whatever a
    user's savefig rcParams say.
    """
    image = Image.fromarray(figure_pixels(figure))
    path = Path(path)
    ensure_dir(path.parent)
    # The format is explicit: the temporary file's name has no ".png" to guess it from.
    atomic_write(path, lambda f: image.save(f, format="PNG"))
    return path


def log_figure(
    writers: EventWriters | SummaryWriter,
    tag: str,
    figure: Figure,
    step: int,
    subdir: str = "eval",
) -> None:
    """Write `figure` as an image summary `tag` at `step`, for TensorBoard's Images tab.

    `writers` is an Estimator's `event_writers` (written to `model_dir/subdir`; nothing on
    ranks that write no events) or a torch SummaryWriter. The figure is rendered here with
    Agg: torch's add_figure would import pyplot, and with it a display backend.
    """
    if isinstance(writers, EventWriters):
        if not writers.enabled:
            return
        writer = writers.writer(subdir)
    else:
        writer = writers
    writer.add_image(tag, figure_pixels(figure), step, dataformats="HWC")


# --------------------------------------------------------------------------- values and labels


def label_color(label: object, labels: Sequence[object] = ()) -> tuple[int, int, int]:
    """The palette colour of a label: whole numbers by value (digit 3 is always the same
    colour), anything else by its place among the sorted distinct `labels`."""
    if isinstance(label, int | np.integer) and not isinstance(label, bool):
        return PALETTE[int(label) % len(PALETTE)]
    keys = sorted({str(x) for x in labels})
    index = keys.index(str(label)) if str(label) in keys else 0
    return PALETTE[index % len(PALETTE)]


def _label_keys(labels: ArrayLike | Sequence[object], n: int) -> list[object]:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    values = np.asarray(labels, dtype=object) if not isinstance(labels, np.ndarray) else labels
    if values.ndim != 1 or len(values) != n:
        raise InputError(f"labels must be one per point, shape ({n},), not {values.shape}")
    if np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_:
        return [int(v) for v in values]
    return [
        v if isinstance(v, int | np.integer) and not isinstance(v, bool) else str(v) for v in values
    ]


def _sort_key(key: object) -> tuple[int, float, str]:
    # Numbers in numeric order before strings in text order.
    if isinstance(key, int | np.integer):
        return 0, float(key), ""
    return 1, 0.0, str(key)


def _rgb(color: tuple[int, int, int]) -> tuple[float, float, float]:
    return color[0] / 255, color[1] / 255, color[2] / 255


def _check_pixels(value: object, what: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{what} must be a whole number of pixels >= {least}, not {value!r}")
    return value


_Z_TICKS = (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5)


def _decorate(plot: Plot, ax: Axes, xlabel: str, ylabel: str, title: str | None) -> float:
    """Label the axes in a font that fits the figure; returns that font size (points)."""
    # 10 pt (matplotlib's default) from 500 pixels up, smaller below: at 200 pixels a
    # 10-entry legend in 10 pt would run off the figure.
    fontsize = min(10.0, max(5.0, min(plot.size) / 50))
    ax.set_xlabel(xlabel, fontsize=fontsize)
    ax.set_ylabel(ylabel, fontsize=fontsize)
    ax.tick_params(labelsize=fontsize)
    if title:
        ax.set_title(title, fontsize=fontsize * 1.2)
    return fontsize


def _finish(plot: Plot, path: str | Path | None) -> Plot:
    if path is not None:
        save_figure(plot, path)
    return plot


# --------------------------------------------------------------------------- plots


def scatter_plot(
    points: ArrayLike,
    labels: ArrayLike | Sequence[object] | None,
    path: str | Path | None,
    size: int = 600,
    title: str | None = None,
    *,
    axis_labels: tuple[str, str] = ("component 1", "component 2"),
) -> Plot:
    """2-D `points` (N, 2) as dots coloured by `labels`, a size x size PNG at `path`.

    The legend, right of the axes, names the labels (the first 20 of many). `path` None
    writes nothing. Returns the figure.
    """
    _check_pixels(size, "size", 200)
    xy = float_matrix(points, "points")
    if xy.shape[1] != 2:
        raise InputError(f"points must have shape (N, 2), not {xy.shape}; see project_2d")
    keys = _label_keys(labels, len(xy)) if labels is not None else None

    plot = Plot(size, size)
    ax = plot.add_subplot()
    legend = sorted(set(keys), key=_sort_key) if keys is not None else []
    colors = np.array(
        [_rgb(label_color(k, legend)) for k in keys]
        if keys is not None
        else [_rgb(PALETTE[0])] * len(xy)
    )
    # A fixed shuffle: drawing class by class would bury the first classes under the last.
    order = np.random.default_rng(0).permutation(len(xy))
    marker_size = max(4.0, min(25.0, 4000.0 / len(xy)))  # smaller dots as they crowd
    ax.scatter(xy[order, 0], xy[order, 1], s=marker_size, c=colors[order], linewidths=0)
    fontsize = _decorate(plot, ax, axis_labels[0], axis_labels[1], title)
    if legend:
        handles = [
            Line2D(
                [], [], linestyle="", marker="o", color=_rgb(label_color(k, legend)), label=str(k)
            )
            for k in legend[:MAX_LEGEND_ENTRIES]
        ]
        if len(legend) > MAX_LEGEND_ENTRIES:
            more = f"… {len(legend) - MAX_LEGEND_ENTRIES} more"
            handles.append(Line2D([], [], linestyle="", label=more))
        plot.legend(
            handles=handles,
            title="label",
            loc="outside right upper",
            fontsize=fontsize,
            title_fontsize=fontsize,
        )
    return _finish(plot, path)


def histogram_plot(
    groups: Mapping[str, ArrayLike],
    path: str | Path | None,
    *,
    threshold: float | None = None,
    bins: int = 40,
    size: tuple[int, int] = (640, 400),
    title: str | None = None,
    xlabel: str = "value",
) -> Plot:
    """Histograms of one or more groups of values on shared bins, a PNG at `path`.

    Each group is a step outline normalised to its own total (groups of different sizes
    compare by shape: the y axis is the share of the group in each bin); `threshold` is a
    dashed vertical line. The legend, right of the axes, names the groups and the
    threshold's value, so no label is drawn over the data. Returns the figure.
    """
    if not groups:
        raise InputError("histogram_plot needs at least one group of values")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ConfigError(f"bins must be a whole number >= 1, not {bins!r}")
    width, height = size
    whole = all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    if not whole or width < 200 or height < 150:
        raise ConfigError(f"size must be at least 200 x 150 whole pixels, not {size!r}")
    data = {
        name: float_matrix(values, f"group {name!r}").reshape(-1) for name, values in groups.items()
    }
    everything = np.concatenate(list(data.values()))
    low, high = float(everything.min()), float(everything.max())
    if threshold is not None:
        low, high = min(low, threshold), max(high, threshold)
    if high <= low:
        high = low + 1.0
    edges = np.linspace(low, high, bins + 1)

    plot = Plot(width, height)
    ax = plot.add_subplot()
    # Red marks the threshold alone: the groups take the other colours.
    colors = [c for c in PALETTE if c != THRESHOLD_COLOR]
    for index, (name, values) in enumerate(data.items()):
        share = np.histogram(values, edges)[0] / len(values)
        ax.stairs(share, edges, color=_rgb(colors[index % len(colors)]), linewidth=2, label=name)
    if threshold is not None:
        ax.axvline(
            threshold,
            color=_rgb(THRESHOLD_COLOR),
            linestyle="--",
            linewidth=2,
            label=f"threshold {threshold:.4g}",
        )
    ax.set_xlim(low, high)
    ax.set_ylim(bottom=0)
    fontsize = _decorate(plot, ax, xlabel, "share of group", title)
    plot.legend(loc="outside right upper", fontsize=fontsize)
    return _finish(plot, path)


def manifold_plot(
    images: ArrayLike,
    path: str | Path | None = None,
    *,
    image_shape: Sequence[int] | None = None,
    quantiles: tuple[float, float] = (0.05, 0.95),
    size: int | None = None,
    title: str | None = "latent manifold",
) -> Plot:
    """A VAE's decoded grid (as `VariationalAutoencoder.manifold` returns it) on z axes.

    `images` are per_side² images, row by row, decoded at evenly spaced `quantiles` of the
    N(0, 1) prior on each axis, z₁ growing to the right and z₂ upwards; the ticks name
    those z values. `size` defaults to room for every pixel of the mosaic. Returns the figure.
    """

    n = len(images)
    per_side = math.isqrt(n)
    if n < 4 or per_side * per_side != n:
        raise InputError(f"a manifold is a square grid of at least 2x2 images, not {n} images")
    low, high = quantiles
    if not 0.0 < low < high < 1.0:
        raise ConfigError(f"quantiles must be (low, high) with 0 < low < high < 1, not {quantiles}")
    mosaic = np.asarray(tile_images(images, per_side, image_shape=image_shape, padding=0))
    if size is None:
        size = max(400, mosaic.shape[1] + 200)
    _check_pixels(size, "size", 200)

    plot = Plot(size, size)
    ax = plot.add_subplot()
    grey = mosaic.ndim == 2
    # One unit of axis per image: tile centres sit at 0.5, 1.5, ...; row 0 (top) is largest z₂.
    ax.imshow(
        mosaic,
        cmap="gray" if grey else None,
        vmin=0 if grey else None,
        vmax=255 if grey else None,
        extent=(0, per_side, 0, per_side),
        interpolation="nearest",
    )
    # Ticks at round z values, placed where the grid holds them: image i of n is decoded at
    # the quantile low + i (high - low) / (n - 1) and centred at i + 0.5 on the axis.
    prior = statistics.NormalDist()
    spots = {z: (prior.cdf(z) - low) / (high - low) * (per_side - 1) + 0.5 for z in _Z_TICKS}
    shown = {z: t for z, t in spots.items() if 0.0 <= t <= per_side}
    labels = [f"{z:g}".replace("-", "−") for z in shown]
    ax.set_xticks(list(shown.values()), labels)
    ax.set_yticks(list(shown.values()), labels)
    _decorate(plot, ax, "z₁", "z₂", title)
    return _finish(plot, path)
