"""Plain pictures with Pillow: image grids, captions, GIFs of training progress.

Plots with axes are matplotlib's, in `aekit.viz.plots`. Every file is written atomically:
a viewer polling a training run sees the previous picture or the new one, never half of one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from aekit.errors import ConfigError, InputError
from aekit.files import atomic_write, ensure_dir

__all__ = ["caption", "image_grid", "save_gif", "save_png", "tile_images"]

ArrayLike = np.ndarray | torch.Tensor


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


# --------------------------------------------------------------------------- tiles and captions


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


CAPTION_PIXELS = 14  # text height: readable on a 28x28 digit grid, small beside a large one


def caption(image: Image.Image, text: str) -> Image.Image:
    """`image` under a white strip with `text` in black, e.g. "step 1200" on a training frame.

    The strip's height depends on the font alone, never on `text`, so captioned frames of
    one size stay one size (a GIF needs that); text wider than the image is cut at its edge.
    """
    font = _font(CAPTION_PIXELS)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    # Measured on letters with ascenders and descenders: the same strip for any text.
    _, top, _, bottom = probe.textbbox((0, 0), "Ag0", font=font)
    strip = math.ceil(bottom - top) + 6
    white: int | tuple[int, ...] = 255 if image.mode in ("L", "1") else (255,) * len(image.mode)
    captioned = Image.new(image.mode, (image.width, image.height + strip), white)
    captioned.paste(image, (0, strip))
    draw = ImageDraw.Draw(captioned)
    black: int | tuple[int, ...] = 0 if image.mode in ("L", "1") else (0,) * len(image.mode)
    if image.mode == "RGBA":
        black = (0, 0, 0, 255)
    draw.text((3, 3 - top), text, fill=black, font=font)
    return captioned


def _font(pixels: int) -> Any:
    # Pillow >= 10.1 with FreeType scales its default font; otherwise one fixed bitmap size.
    try:
        return ImageFont.load_default(size=pixels)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()
