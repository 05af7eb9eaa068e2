"""Pictures for people: image grids, GIFs of training progress, 2-D scatter plots of embeddings.

Drawn with Pillow alone, so plotting needs no matplotlib. Every file is written atomically:
a viewer polling a training run sees the previous picture or the new one, never half of one.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from aekit._io import atomic_write, ensure_dir
from aekit.errors import ConfigError, InputError

__all__ = [
    "PALETTE",
    "histogram_plot",
    "image_grid",
    "label_color",
    "project_2d",
    "save_gif",
    "save_png",
    "scatter_plot",
    "tile_images",
]

ArrayLike = np.ndarray | torch.Tensor

# matplotlib's "tab10": ten colours told apart easily, also by most colour-blind readers.
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


# --------------------------------------------------------------------------- image grids


def image_grid(
    rows: Sequence[ArrayLike],
    padding: int = 2,
    scale: int = 1,
    *,
    image_shape: Sequence[int] | None = None,
    pad_value: float = 0.5,
) -> Image.Image:
    """One picture of several batches of images, a batch per row (e.g. inputs over reconstructions).

    A row is (N, H, W) grayscale, (N, C, H, W) or (N, H, W, C) with C in {1, 3}, or flattened
    (N, C*H*W) with `image_shape` (C, H, W) or (H, W); a flattened row without `image_shape`
    takes the shape of the other rows. Pixels are floats in [0, 1] (clipped) or uint8. Tiles
    are `padding` pixels apart, on a `pad_value` grey; the whole picture is then enlarged
    `scale` times without smoothing. The result is "L" when every image has one channel, else
    "RGB".
    """
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ConfigError(f"padding must be a whole number of pixels >= 0, not {padding!r}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ConfigError(f"scale must be a whole number >= 1, not {scale!r}")
    if not 0.0 <= pad_value <= 1.0:
        raise ConfigError(f"pad_value must be in [0, 1], not {pad_value!r}")
    if isinstance(rows, np.ndarray | torch.Tensor) or len(rows) == 0:
        raise InputError(
            "image_grid takes a list of rows, each a batch of images; wrap a single batch in a list"
        )
    shape = _check_image_shape(image_shape) if image_shape is not None else None
    arrays = [_to_numpy(row, f"row {i}") for i, row in enumerate(rows)]
    if shape is None:
        # A model's flat output (N, 784) beside its (N, 28, 28) input is the usual case.
        shape = next((_infer_shape(a) for a in arrays if a.ndim > 2), None)
    images = [_as_nhwc(a, shape, f"row {i}") for i, a in enumerate(arrays)]

    n, h, w, _ = images[0].shape
    for i, im in enumerate(images[1:], start=1):
        if im.shape[:3] != (n, h, w):
            raise InputError(
                f"row {i} holds {im.shape[0]} images of {im.shape[1]}x{im.shape[2]} but row 0 "
                f"holds {n} of {h}x{w}; every row needs the same number of images of one size"
            )
    channels = max(im.shape[3] for im in images)
    pad = round(pad_value * 255)
    canvas = np.full(
        (len(images) * (h + padding) + padding, n * (w + padding) + padding, channels),
        pad,
        dtype=np.uint8,
    )
    for r, row_images in enumerate(images):
        top = padding + r * (h + padding)
        for c in range(n):
            left = padding + c * (w + padding)
            # A grey tile in an RGB picture broadcasts to its three channels.
            canvas[top : top + h, left : left + w, :] = row_images[c]
    picture = Image.fromarray(canvas[:, :, 0] if channels == 1 else canvas)
    if scale > 1:
        picture = picture.resize(
            (picture.width * scale, picture.height * scale), Image.Resampling.NEAREST
        )
    return picture


def _check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    dims = tuple(image_shape)
    if len(dims) == 2:
        dims = (1, *dims)
    if (
        len(dims) != 3
        or not all(isinstance(d, int | np.integer) and d > 0 for d in dims)
        or dims[0] not in (1, 3)
    ):
        raise ConfigError(
            f"image_shape must be (C, H, W) with C 1 or 3, or (H, W), not {tuple(image_shape)!r}"
        )
    return int(dims[0]), int(dims[1]), int(dims[2])


def _to_numpy(x: Any, what: str) -> np.ndarray:
    """A CPU numpy array of uint8 or float pixels, refusing anything else."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        # numpy has no bfloat16; every float type becomes float32 first.
        x = x.float().numpy() if x.is_floating_point() else x.numpy()
    a = np.asarray(x)
    if a.dtype == np.bool_:
        a = a.astype(np.float32)
    if a.dtype != np.uint8 and not np.issubdtype(a.dtype, np.floating):
        raise InputError(
            f"{what} has pixels of type {a.dtype}; give uint8 (0..255) or floats in [0, 1]"
        )
    if a.dtype != np.uint8 and not np.isfinite(a).all():
        raise InputError(f"{what} holds NaN or infinite pixels")
    return a


def _infer_shape(a: np.ndarray) -> tuple[int, int, int] | None:
    """(C, H, W) of a batch of images, or None when it is not one."""
    try:
        return _layout(a)
    except InputError:
        return None


def _layout(a: np.ndarray) -> tuple[int, int, int]:
    if a.ndim == 3:
        return 1, a.shape[1], a.shape[2]
    if a.ndim == 4:
        # Channels first wins a tie such as (N, 3, 5, 3): it is torch's layout.
        if a.shape[1] in (1, 3):
            return a.shape[1], a.shape[2], a.shape[3]
        if a.shape[3] in (1, 3):
            return a.shape[3], a.shape[1], a.shape[2]
    raise InputError(
        f"a batch of shape {a.shape} is not images: give (N, H, W), (N, C, H, W) or "
        "(N, H, W, C) with C 1 or 3"
    )


def _as_nhwc(a: np.ndarray, shape: tuple[int, int, int] | None, what: str) -> np.ndarray:
    """uint8 (N, H, W, C) images of a row."""
    if a.ndim == 2:
        if shape is None:
            side = math.isqrt(a.shape[1])
            if side * side != a.shape[1] or side == 0:
                raise InputError(
                    f"{what} is flattened, {a.shape}; pass image_shape=(C, H, W) to say its size"
                )
            shape = (1, side, side)
        c, h, w = shape
        if a.shape[1] != c * h * w:
            raise InputError(
                f"{what} has {a.shape[1]} values per image; image_shape {shape} needs {c * h * w}"
            )
        a = a.reshape(a.shape[0], c, h, w)
    if a.ndim in (3, 4) and a.shape[0] == 0:
        raise InputError(f"{what} holds no images")
    c, h, w = _layout(a)
    if a.ndim == 3:
        a = a[:, :, :, None]
    elif a.shape[1:] == (c, h, w):
        a = a.transpose(0, 2, 3, 1)
    if a.dtype != np.uint8:
        a = np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(a)


# --------------------------------------------------------------------------- files


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Write `image` as a PNG at `path` atomically, creating its folder; returns the path."""
    path = Path(path)
    ensure_dir(path.parent)
    # The format is explicit: the temporary file's name has no ".png" to guess it from.
    atomic_write(path, lambda f: image.save(f, format="PNG"))
    return path


def save_gif(
    frames: Sequence[Image.Image | str | Path],
    path: str | Path,
    duration_ms: int = 500,
    loop: int | None = 0,
) -> Path:
    """Write an animated GIF of `frames` (images or image files) at `path` atomically.

    Each frame shows for `duration_ms` (GIFs count in hundredths of a second); `loop` 0
    repeats forever, None plays once. All frames must have one size. Pillow merges identical
    consecutive frames into one longer frame, so the file may hold fewer frames than given.
    """
    if isinstance(duration_ms, bool) or not isinstance(duration_ms, int) or duration_ms <= 0:
        raise ConfigError(f"duration_ms must be a whole number > 0, not {duration_ms!r}")
    if loop is not None and (isinstance(loop, bool) or not isinstance(loop, int) or loop < 0):
        raise ConfigError(f"loop must be 0 (forever), a count > 0 or None (once), not {loop!r}")
    if isinstance(frames, str | Path) or len(frames) == 0:
        raise InputError("save_gif needs a list of at least one frame (images or image files)")
    images = [_load_frame(frame) for frame in frames]
    size = images[0].size
    for i, im in enumerate(images):
        if im.size != size:
            raise InputError(
                f"frame {i} is {im.size[0]}x{im.size[1]} but frame 0 is {size[0]}x{size[1]}; "
                "every frame of a GIF needs one size"
            )
    options: dict[str, Any] = {"save_all": True, "append_images": images[1:]}
    options["duration"] = duration_ms
    if loop is not None:
        options["loop"] = loop
    path = Path(path)
    ensure_dir(path.parent)
    atomic_write(path, lambda f: images[0].save(f, format="GIF", **options))
    return path


def _load_frame(frame: Image.Image | str | Path) -> Image.Image:
    if isinstance(frame, Image.Image):
        return frame
    try:
        # Loaded in full and closed here: an open file per frame would leak handles.
        with Image.open(frame) as im:
            im.load()
            return im.copy()
    except FileNotFoundError:
        raise InputError(f"frame {frame} does not exist") from None
    except OSError as e:
        raise InputError(f"frame {frame} is not an image Pillow can read: {e}") from None


# --------------------------------------------------------------------------- scatter plots


def label_color(label: object, labels: Sequence[object] = ()) -> tuple[int, int, int]:
    """The palette colour of a label: whole numbers by value (digit 3 is always the same
    colour), anything else by its place among the sorted distinct `labels`."""
    if isinstance(label, int | np.integer) and not isinstance(label, bool):
        return PALETTE[int(label) % len(PALETTE)]
    keys = sorted({str(x) for x in labels})
    index = keys.index(str(label)) if str(label) in keys else 0
    return PALETTE[index % len(PALETTE)]


def scatter_plot(
    points: ArrayLike,
    labels: ArrayLike | Sequence[object] | None,
    path: str | Path,
    size: int = 600,
    title: str | None = None,
) -> Image.Image:
    """Draw 2-D `points` (N, 2) as a size x size PNG at `path`, coloured by `labels`.

    Each axis is stretched to fill the plot area, inside a margin; a legend of coloured boxes
    names the labels (as many as fit). Returns the picture written.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 100:
        raise ConfigError(f"size must be a whole number of pixels >= 100, not {size!r}")
    xy = _float_matrix(points, "points")
    if xy.shape[1] != 2:
        raise InputError(f"points must have shape (N, 2), not {xy.shape}; see project_2d")
    keys = _label_keys(labels, len(xy))

    font = _font(max(10, size // 45))
    margin = max(10, size // 25)
    picture, draw, top = _canvas(size, size, margin, title, font)

    legend = sorted(set(keys), key=_sort_key) if labels is not None else []
    legend_width = 0
    box = max(8, size // 60)
    if legend:
        legend_width = box + 6 + max(_text_width(draw, str(k), font) for k in legend) + margin

    left, right, bottom = margin, size - margin - legend_width, size - margin
    if right - left < 20 or bottom - top < 20:
        raise ConfigError(
            f"size {size} leaves no room to plot; make it larger or the labels shorter"
        )
    draw.rectangle((left, top, right, bottom), outline=(200, 200, 200))

    radius = max(2, size // 200)
    inner = radius + 2  # keeps every dot inside the frame
    px = _rescale(xy[:, 0], left + inner, right - inner)
    # Image rows grow downwards; the y axis grows upwards.
    py = _rescale(xy[:, 1], bottom - inner, top + inner)
    colors = [label_color(k, legend) for k in keys] if labels is not None else None
    # A fixed shuffle: drawing class by class would bury the first classes under the last.
    for i in np.random.default_rng(0).permutation(len(xy)):
        color = colors[i] if colors is not None else PALETTE[0]
        x, y = float(px[i]), float(py[i])
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=color)

    line = max(box, _text_height(draw, "0", font)) + 4
    for row, key in enumerate(legend):
        y = top + row * line
        if y + line > bottom:
            break  # the rest would not fit; their colours repeat the palette anyway
        x = right + margin // 2 + 4
        draw.rectangle((x, y, x + box, y + box), fill=label_color(key, legend))
        text_y = y + (box - _text_height(draw, str(key), font)) / 2
        draw.text((x + box + 6, text_y), str(key), "black", font)

    save_png(picture, path)
    return picture


def _label_keys(labels: ArrayLike | Sequence[object] | None, n: int) -> list[object]:
    if labels is None:
        return [0] * n
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


def _is_whole(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _sort_key(key: object) -> tuple[int, float, str]:
    # Numbers in numeric order before strings in text order.
    if isinstance(key, int | np.integer):
        return 0, float(key), ""
    return 1, 0.0, str(key)


def _rescale(v: np.ndarray, start: float, end: float) -> np.ndarray:
    low, high = float(v.min()), float(v.max())
    if high - low <= 1e-12 * max(1.0, abs(low), abs(high)):
        # One value: the middle, not a division by zero.
        return np.full(v.shape, (start + end) / 2)
    result: np.ndarray = start + (v - low) / (high - low) * (end - start)
    return result


def _font(pixels: int) -> Any:
    # Pillow >= 10.1 with FreeType scales its default font; otherwise one fixed bitmap size.
    try:
        return ImageFont.load_default(size=pixels)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _canvas(
    width: int, height: int, margin: int, title: str | None, font: Any
) -> tuple[Image.Image, ImageDraw.ImageDraw, int]:
    """A white picture with `title` centred at the top; also the y where the plot may start."""
    picture = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(picture)
    top = margin
    if title:
        draw.text(((width - _text_width(draw, title, font)) / 2, margin / 2), title, "black", font)
        top = margin + _text_height(draw, title, font)
    return picture, draw, top


def _text_width(draw: ImageDraw.ImageDraw, text: str, font: Any) -> int:
    x0, _, x1, _ = draw.textbbox((0, 0), text, font=font)
    return math.ceil(x1 - x0)


def _text_height(draw: ImageDraw.ImageDraw, text: str, font: Any) -> int:
    _, y0, _, y1 = draw.textbbox((0, 0), text, font=font)
    return math.ceil(y1 - y0)


# --------------------------------------------------------------------------- projections


def project_2d(
    embeddings: ArrayLike, method: Literal["pca", "tsne"] | str = "pca", seed: int = 0
) -> np.ndarray:
    """(N, 2) coordinates of `embeddings` for a scatter plot: PCA or t-SNE.

    Embeddings are (N, D); (N,) counts as D = 1 and (N, C, H, W) is flattened. With D <= 2
    there is nothing to project: the points come back as they are, padded with zeros to two
    columns. PCA's signs are fixed (largest loading positive) so reruns agree; t-SNE is
    scikit-learn's, started from PCA, with perplexity min(30, (N - 1) / 3) and `seed`.
    """
    if method not in ("pca", "tsne"):
        raise ConfigError(f"unknown projection {method!r}; use 'pca' or 'tsne'")
    x = _float_matrix(embeddings, "embeddings")
    if x.shape[1] <= 2:
        return np.pad(x, ((0, 0), (0, 2 - x.shape[1])))
    if method == "pca":
        return _pca(x)
    if len(x) < 2:
        raise InputError("t-SNE needs at least 2 points; use method='pca' for one")
    from sklearn.manifold import TSNE  # imported here: it takes a second and few calls need it

    tsne = TSNE(
        n_components=2, init="pca", perplexity=min(30.0, (len(x) - 1) / 3), random_state=seed
    )
    # threadpoolctl comes with scikit-learn; imported by name as it ships no type hints.
    threadpoolctl = importlib.import_module("threadpoolctl")
    # t-SNE's OpenMP threads meet at a barrier every iteration; on a busy machine those waits
    # made 60 points take 40 s instead of 0.3 s (2 cores, load 4). Below a few thousand points
    # one thread takes seconds at most, so only larger sets get the parallel version.
    threads = 1 if len(x) <= _TSNE_SERIAL_POINTS else None
    with threadpoolctl.threadpool_limits(limits=threads, user_api="openmp"):
        result = np.asarray(tsne.fit_transform(x), dtype=np.float64)
    return result


_TSNE_SERIAL_POINTS = 2000


def _pca(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    # An SVD's singular vectors have arbitrary signs; pin them so reruns plot the same picture.
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    signs[signs == 0] = 1.0
    coords = (u * s * signs)[:, :2]
    # Fewer than two points leave fewer than two components.
    result: np.ndarray = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    return result


def _float_matrix(x: ArrayLike, what: str) -> np.ndarray:
    """(N, D) float64 of finite values."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x)
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise InputError(f"{what} must be numbers, not {a.dtype}")
    a = a.astype(np.float64)
    if a.ndim == 0 or a.size == 0:
        raise InputError(f"{what} must be (N, D) with N, D >= 1, not {a.shape}")
    # (N,) is one number per point; (N, C, H, W) feature maps are read as flat vectors.
    a = a.reshape(len(a), -1)
    if not np.isfinite(a).all():
        raise InputError(f"{what} hold NaN or infinite values")
    return a


# --------------------------------------------------------------------------- tiles and histograms


def tile_images(
    images: ArrayLike,
    columns: int | None = None,
    *,
    image_shape: Sequence[int] | None = None,
    padding: int = 2,
    scale: int = 1,
) -> Image.Image:
    """One picture of a batch of images in rows of `columns` (default: as square as possible).

    Images take the layouts `image_grid` takes; a last row that is not full is padded with
    tiles of the padding's grey.
    """
    batch = _to_numpy(images, "images")
    if batch.ndim < 2 or len(batch) == 0:
        raise InputError(f"images must be a non-empty batch, not an array of shape {batch.shape}")
    n = len(batch)
    if columns is None:
        columns = math.ceil(math.sqrt(n))
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ConfigError(f"columns must be a whole number >= 1, not {columns!r}")
    columns = min(columns, n)
    missing = -n % columns
    if missing:
        # Blank tiles in the padding's grey: they vanish into the background.
        blank = np.full((missing, *batch.shape[1:]), 0.5 if batch.dtype != np.uint8 else 128)
        batch = np.concatenate([batch, blank.astype(batch.dtype)])
    rows = [batch[i : i + columns] for i in range(0, len(batch), columns)]
    return image_grid(rows, padding, scale, image_shape=image_shape)


def histogram_plot(
    groups: Mapping[str, ArrayLike],
    path: str | Path,
    *,
    threshold: float | None = None,
    bins: int = 40,
    size: tuple[int, int] = (640, 400),
    title: str | None = None,
) -> Image.Image:
    """Histograms of one or more groups of values on shared bins, written as a PNG at `path`.

    Each group is drawn as a step outline in its palette colour and normalised to its own
    total (groups of different sizes compare by shape); `threshold`, when given, is a dashed
    vertical line. The axis below names the lowest and highest value. Returns the picture.
    """
    if not groups:
        raise InputError("histogram_plot needs at least one group of values")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ConfigError(f"bins must be a whole number >= 1, not {bins!r}")
    width, height = size
    if width < 200 or height < 150:
        raise ConfigError(f"size must be at least 200 x 150 pixels, not {size!r}")
    data = {
        name: _float_matrix(values, f"group {name!r}").reshape(-1)
        for name, values in groups.items()
    }
    everything = np.concatenate(list(data.values()))
    low, high = float(everything.min()), float(everything.max())
    if threshold is not None:
        low, high = min(low, threshold), max(high, threshold)
    if high <= low:
        high = low + 1.0
    edges = np.linspace(low, high, bins + 1)
    shares = {name: np.histogram(v, edges)[0] / len(v) for name, v in data.items()}
    peak = max(float(s.max()) for s in shares.values()) or 1.0

    font = _font(max(10, height // 30))
    margin = max(10, height // 20)
    picture, draw, top = _canvas(width, height, margin, title, font)
    label_height = _text_height(draw, "0", font) + 6
    left, right, bottom = margin, width - margin, height - margin - label_height
    draw.rectangle((left, top, right, bottom), outline=(200, 200, 200))

    def x_of(value: float) -> float:
        return left + (value - low) / (high - low) * (right - left)

    for index, (name, share) in enumerate(shares.items()):
        color = PALETTE[index % len(PALETTE)]
        points: list[tuple[float, float]] = [(x_of(low), bottom)]
        for b, value in enumerate(share):
            y = bottom - float(value) / peak * (bottom - top - 4)
            points += [(x_of(float(edges[b])), y), (x_of(float(edges[b + 1])), y)]
        points.append((x_of(high), bottom))
        draw.line(points, fill=color, width=2)
        legend_y = top + 4 + index * (label_height + 2)
        text_x = right - 6 - _text_width(draw, name, font)
        draw.rectangle((text_x - 16, legend_y + 2, text_x - 6, legend_y + 12), fill=color)
        draw.text((text_x, legend_y), name, "black", font)
    if threshold is not None:
        x = x_of(threshold)
        for y in range(int(top), int(bottom), 8):  # dashed: 4 pixels on, 4 off
            draw.line((x, y, x, min(y + 4, bottom)), fill=(214, 39, 40), width=2)
        draw.text((x + 4, top + 4), f"threshold {threshold:.4g}", (214, 39, 40), font)
    for value, anchor_x in ((low, left), (high, right - _text_width(draw, f"{high:.4g}", font))):
        draw.text((anchor_x, bottom + 4), f"{value:.4g}", "black", font)
    save_png(picture, path)
    return picture
