"""Folders of images (class sub-folders as labels) as uint8 arrays.

Every file's header is read first (Pillow opens lazily): the sizes are compared and the
array's size checked against the limit before any image is decoded.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from aekit.checks import shown
from aekit.data.checks import check_size, existing_path
from aekit.errors import ConfigError, InputError

__all__ = ["IMAGE_SUFFIXES", "load_image_folder"]

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"}
)
"""File name endings `load_image_folder` reads (case-insensitive)."""

# Pillow modes with more than 8 bits a sample: converting them to "L"/"RGB" clips (a 16-bit
# 1000 becomes 255), so they are refused rather than read wrong.
_WIDE_MODES = ("I", "F")

Array = npt.NDArray[Any]


def load_image_folder(
    path: str | os.PathLike[str],
    size: int | tuple[int, int] | None = None,
    mode: str = "L",
) -> tuple[Array, Array | None]:
    """Load the images in a folder as uint8 ``(N, H, W)`` ("L") or ``(N, H, W, 3)`` ("RGB").

    With sub-folders, each non-hidden sub-folder holding images is a class, labelled 0, 1, ...
    in name order (like Keras' ``image_dataset_from_directory``); a flat folder gives y=None.
    Files are read in name order; any 8-bit image mode (grey, palette, RGBA, CMYK, ...) is
    converted to `mode`. With `size` — ``(height, width)`` like the array shape, or an int
    for a square — every image is resized to it; without, the images must all have one size
    (an image of another size is an InputError naming it, never a silent resize).
    """
    root = existing_path(path, "folder")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder; give a folder of images (or of class folders)")
    if mode not in ("L", "RGB"):
        raise ConfigError(f"mode={shown(mode)} is not supported; use 'L' (grayscale) or 'RGB'")
    target = _target_size(size)
    files, labelled = _files(root)
    sizes = [_header_size(file) for file, _ in files]
    if target is None:
        # The most common size is the norm (ties: the first file's), so the odd file is named
        # even when it comes first.
        counts = Counter(sizes)
        target = max(counts, key=lambda s: (counts[s], -sizes.index(s)))
        odd = next((i for i, s in enumerate(sizes) if s != target), None)
        if odd is not None:
            example = files[sizes.index(target)][0]
            raise InputError(
                f"{files[odd][0]} is {_hw(sizes[odd])} but {counts[target]} of the {len(files)} "
                f"images are {_hw(target)} (e.g. {example}): the images differ in size; resize "
                f"them to one size, or load them with load_image_folder(path, size=(height, "
                f"width)) to resize every image"
            )
    width, height = target
    shape = (len(files), height, width) + ((3,) if mode == "RGB" else ())
    check_size(f"{root}: {len(files)} images", shape, 1, "use fewer or smaller images")
    x = np.empty(shape, dtype=np.uint8)  # filled in place: no list of arrays to stack
    for i, (file, _) in enumerate(files):
        image = _decode(file, mode)
        if image.size != target:
            image = image.resize(target, Image.Resampling.BILINEAR)
        x[i] = np.asarray(image, dtype=np.uint8)
    y = np.array([label for _, label in files], dtype=np.int64) if labelled else None
    return x, y


def _target_size(size: Any) -> tuple[int, int] | None:
    """`size` as Pillow's (width, height), or None; a ConfigError when it is not 1-2 ints."""
    if size is None:
        return None
    parts = (size, size) if isinstance(size, int | np.integer) else size
    if (
        not isinstance(parts, tuple | list)
        or len(parts) != 2
        or any(isinstance(p, bool) or not isinstance(p, int | np.integer) or p < 1 for p in parts)
    ):
        raise ConfigError(
            f"size={shown(size)} must be positive integers (height, width), or one int for a square"
        )
    height, width = (int(p) for p in parts)
    return width, height


def _files(root: Path) -> tuple[list[tuple[Path, int]], bool]:
    """(file, label) pairs in name order, and whether the labels come from class folders."""
    classes = [d for d in _sorted_entries(root) if d.is_dir() and _images_in(d)]
    top_level = _images_in(root)
    if classes and top_level:
        raise InputError(
            f"{root}: holds both images and class sub-folders; move the {len(top_level)} "
            f"top-level images into a class folder, or load one layout at a time"
        )
    if classes:
        return [(f, label) for label, d in enumerate(classes) for f in _images_in(d)], True
    if not top_level:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise InputError(
            f"{root}: no images found ({suffixes}); put images in the folder or in one "
            f"sub-folder per class"
        )
    return [(f, 0) for f in top_level], False


def _sorted_entries(folder: Path) -> list[Path]:
    # Hidden entries (.DS_Store, ._x.png from macOS archives) are never data.
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return [
        p for p in _sorted_entries(folder) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    ]


def _hw(size: tuple[int, int]) -> str:
    return f"{size[1]}x{size[0]} (height x width)"


def _unreadable(file: Path, exc: BaseException) -> InputError:
    return InputError(f"{file}: cannot read this image ({exc}); remove or replace it")


def _header_size(file: Path) -> tuple[int, int]:
    """The image's (width, height) from its header, without decoding the pixels."""
    try:
        with warnings.catch_warnings():
            # Our own size limit decides what is too large, with a message naming it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                if image.mode.startswith(_WIDE_MODES):
                    raise InputError(
                        f"{file}: a {image.mode} image (more than 8 bits a sample) would be "
                        f"clipped to 8 bits; convert it to 8-bit grey or RGB first"
                    )
                width, height = image.size
                bands = len(image.getbands())
    except InputError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise _unreadable(file, exc) from None
    # Decoding it takes this much, whatever size it is resized to afterwards.
    check_size(f"{file}: decoding it", (height, width, bands), 1, "use a smaller image")
    return width, height


def _decode(file: Path, mode: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                return image.convert(mode)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise _unreadable(file, exc) from None
