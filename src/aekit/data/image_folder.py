"""Folders of images (class sub-folders as labels): listed, then decoded to uint8 arrays.

`list_image_folder` reads every file's header (Pillow opens lazily): the sizes are compared
and each image's decoding size checked, but no pixels are decoded. `load_image_folder` then
decodes all of them into one array; `folder_stream` decodes them batch by batch instead.
Both decode through `ImageFolderFiles.read`, so they give the same pixels.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from aekit.checks import shown
from aekit.data.arrays import check_size, existing_path
from aekit.errors import ConfigError, InputError
from aekit.files import reading

__all__ = ["IMAGE_SUFFIXES", "ImageFolderFiles", "list_image_folder", "load_image_folder"]

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"}
)
"""File name endings `load_image_folder` reads (case-insensitive)."""

# Pillow modes with more than 8 bits a sample: converting them to "L"/"RGB" clips (a 16-bit
# 1000 becomes 255), so they are refused rather than read wrong.
_WIDE_MODES = ("I", "F")

Array = npt.NDArray[Any]


@dataclass(frozen=True, eq=False)
class ImageFolderFiles:
    """A folder's images, listed and checked but not decoded: what both loaders read.

    Attributes:
        root: the folder.
        paths: the files in name order, as file-system bytes in one numpy array (compact,
            and a forked worker reads it without copying pages, unlike a list of objects).
        labels: int64 class ids from the sub-folders' names, or None for a flat folder.
        height, width: every image's size once read.
        mode: "L" (grayscale) or "RGB".
        resize: whether images are resized to (height, width); else all already are.
    """

    root: Path
    paths: npt.NDArray[np.bytes_]
    labels: npt.NDArray[np.int64] | None
    height: int
    width: int
    mode: str
    resize: bool

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, ...]:
        """One decoded image's shape: (H, W) for "L", (H, W, 3) for "RGB"."""
        return (self.height, self.width) + ((3,) if self.mode == "RGB" else ())

    def path(self, i: int) -> Path:
        """The i-th file."""
        return Path(os.fsdecode(self.paths[i]))

    def subset(self, index: npt.ArrayLike) -> ImageFolderFiles:
        """These files only (e.g. a split), in the order of `index`."""
        rows = np.asarray(index, dtype=np.int64)
        labels = None if self.labels is None else self.labels[rows]
        return ImageFolderFiles(
            self.root, self.paths[rows], labels, self.height, self.width, self.mode, self.resize
        )

    def read(self, i: int) -> npt.NDArray[np.uint8]:
        """The i-th image as uint8 pixels of `shape`; an InputError naming an unreadable file."""
        file = self.path(i)
        image = _decode(file, self.mode)
        target = (self.width, self.height)
        if image.size != target:
            if not self.resize:  # replaced since it was listed: never a silent resize
                raise InputError(
                    f"{file} is {_hw(image.size)} but the folder's images are {_hw(target)}: it "
                    f"changed after the folder was listed; restore it, or give size=(height, "
                    f"width) to resize every image"
                )
            image = image.resize(target, Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)

    def read_batch(self, index: npt.ArrayLike) -> npt.NDArray[np.uint8]:
        """The images at `index`, stacked into one uint8 array."""
        rows = np.asarray(index, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), *self.shape), dtype=np.uint8)  # filled in place
        for k, i in enumerate(rows):
            out[k] = self.read(int(i))
        return out


def list_image_folder(
    path: str | os.PathLike[str],
    size: int | tuple[int, int] | None = None,
    mode: str = "L",
) -> ImageFolderFiles:
    """List and check a folder of images the way `load_image_folder` reads it, decoding none.

    Every file's header is read: an unreadable file, a wide (16-bit, float) image, one too
    large to decode, or (without `size`) one of another size is an InputError naming it.
    """
    root = existing_path(path, "folder")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder; give a folder of images (or of class folders)")
    if mode not in ("L", "RGB"):
        raise ConfigError(f"mode={shown(mode)} is not supported; use 'L' (grayscale) or 'RGB'")
    target = _target_size(size)
    files, labelled = _files(root)
    sizes = [_header_size(file) for file, _ in files]
    resize = target is not None
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
    paths = np.array([os.fsencode(file) for file, _ in files], dtype=np.bytes_)
    labels = np.array([label for _, label in files], dtype=np.int64) if labelled else None
    return ImageFolderFiles(root, paths, labels, height, width, mode, resize)


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
    files = list_image_folder(path, size, mode)
    shape = (len(files), *files.shape)
    check_size(f"{files.root}: {len(files)} images", shape, 1, "use fewer or smaller images")
    return files.read_batch(np.arange(len(files))), files.labels


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


def _files(root: Path) -> tuple[list[tuple[str, int]], bool]:
    """(file, label) pairs in name order, and whether the labels come from class folders.

    Names are plain strings, each folder read once: a folder of a million files is listed
    without a million Path objects.
    """
    top_level, subfolders = _scan(root)
    classes = [images for images in (_scan(d)[0] for d in subfolders) if images]
    if classes and top_level:
        raise InputError(
            f"{root}: holds both images and class sub-folders; move the {len(top_level)} "
            f"top-level images into a class folder, or load one layout at a time"
        )
    if classes:
        return [(f, label) for label, images in enumerate(classes) for f in images], True
    if not top_level:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise InputError(
            f"{root}: no images found ({suffixes}); put images in the folder or in one "
            f"sub-folder per class"
        )
    return [(f, 0) for f in top_level], False


def _scan(folder: Path) -> tuple[list[str], list[Path]]:
    """The folder's image files and its sub-folders, each in name order."""
    images, folders = [], []
    with reading(folder, "this folder"), os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):  # .DS_Store, ._x.png from macOS archives: not data
                continue
            with reading(entry.path):  # a link that loops, say: one line naming it
                if entry.is_dir():
                    folders.append(entry.name)
                elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                    if entry.is_file():
                        images.append(entry.name)
                    else:  # a link to nothing raises here, its reason in reading's message
                        os.stat(entry.path)  # (a FIFO or a device named like an image is skipped)
    images.sort()
    folders.sort()
    return [os.path.join(folder, name) for name in images], [folder / name for name in folders]


def _hw(size: tuple[int, int]) -> str:
    return f"{size[1]}x{size[0]} (height x width)"


def _unreadable(file: str | Path, exc: BaseException) -> InputError:
    return InputError(f"{file}: cannot read this image ({exc}); remove or replace it")


def _header_size(file: str) -> tuple[int, int]:
    """The image's (width, height) from its header, without decoding the pixels."""
    try:
        with warnings.catch_warnings():
            # Our own size limit decides what is too large, with a message naming it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                _refuse_wide(file, image)
                width, height = image.size
                bands = len(image.getbands())
    except InputError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise _unreadable(file, exc) from None
    # Decoding it takes this much, whatever size it is resized to afterwards.
    check_size(f"{file}: decoding it", (height, width, bands), 1, "use a smaller image")
    return width, height


def _refuse_wide(file: str | Path, image: Image.Image) -> None:
    if image.mode.startswith(_WIDE_MODES):
        raise InputError(
            f"{file}: a {image.mode} image (more than 8 bits a sample) would be clipped to 8 "
            f"bits; convert it to 8-bit grey or RGB first"
        )


def _decode(file: Path, mode: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                # Checked again: a file streamed long after the listing may have been replaced.
                _refuse_wide(file, image)
                return image.convert(mode)
    except InputError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise _unreadable(file, exc) from None
