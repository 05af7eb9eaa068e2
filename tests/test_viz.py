"""Image grids, captions, GIFs and 2-D projections, checked pixel by pixel with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# Imported up front: scikit-learn's one-off import (about a second) would otherwise be timed
# as part of the first t-SNE test, whose fit takes a tenth of that.
import sklearn.manifold  # noqa: F401
import torch
from PIL import GifImagePlugin, Image

from aekit import viz
from aekit.errors import ConfigError, InputError
from aekit.viz import caption, image_grid, plots, project_2d, save_gif, save_png

rng = np.random.default_rng(0)


def pixels(image: Image.Image) -> np.ndarray:
    return np.array(image)


# --------------------------------------------------------------------------- image_grid


def test_grid_size_is_tiles_plus_padding() -> None:
    rows = [rng.random((5, 28, 28)) for _ in range(3)]
    grid = image_grid(rows, padding=2)
    assert grid.size == (5 * 28 + 6 * 2, 3 * 28 + 4 * 2)
    assert grid.mode == "L"
    assert image_grid(rows, padding=0).size == (5 * 28, 3 * 28)
    assert image_grid(rows, padding=2, scale=3).size == (3 * 152, 3 * 92)


def test_tiles_land_where_expected() -> None:
    black = np.zeros((4, 6, 5))
    row = black.copy()
    row[2] = 1.0  # a white third image in the second row
    a = pixels(image_grid([black, row], padding=3, pad_value=0.5))
    top, left = 3 + 6 + 3, 3 + 2 * (5 + 3)
    assert (a[top : top + 6, left : left + 5] == 255).all()
    a[top : top + 6, left : left + 5] = 0
    tiles = np.zeros_like(a, dtype=bool)
    for r in range(2):
        for c in range(4):
            tiles[3 + r * 9 : 3 + r * 9 + 6, 3 + c * 8 : 3 + c * 8 + 5] = True
    assert (a[tiles] == 0).all()  # every other tile stays black
    assert (a[~tiles] == 128).all()  # the gaps are grey


def test_scale_enlarges_without_smoothing() -> None:
    image = np.zeros((1, 2, 2))
    image[0, 0, 1] = 1.0
    a = pixels(image_grid([image], padding=0, scale=4))
    assert a.shape == (8, 8)
    assert (a[:4, 4:] == 255).all() and (a[:4, :4] == 0).all() and (a[4:] == 0).all()


def test_layouts_and_types_give_the_same_picture() -> None:
    floats = rng.random((3, 7, 9))
    uint8 = np.round(floats * 255).astype(np.uint8)
    expected = pixels(image_grid([floats]))
    for row in (
        floats[:, None],  # (N, 1, H, W)
        floats[..., None],  # (N, H, W, 1)
        torch.from_numpy(floats).float(),
        uint8,
        torch.from_numpy(uint8),
    ):
        assert np.array_equal(pixels(image_grid([row])), expected)
    flat = floats.reshape(3, 63)
    assert np.array_equal(pixels(image_grid([flat], image_shape=(1, 7, 9))), expected)
    assert np.array_equal(pixels(image_grid([flat], image_shape=(7, 9))), expected)


def test_flat_rows_take_the_shape_of_the_others() -> None:
    # A fully-connected model's (N, 784) output under its (N, 28, 28) input.
    images = rng.random((4, 28, 28))
    grid = image_grid([images, images.reshape(4, 784)])
    a = pixels(grid)
    assert grid.size == (4 * 30 + 2, 2 * 30 + 2)
    assert np.array_equal(a[2:30, :], a[32:60, :])
    # Alone, a flat row of square images needs no shape either.
    assert image_grid([images.reshape(4, 784)]).size == (4 * 30 + 2, 32)


def test_values_outside_zero_one_are_clipped() -> None:
    a = pixels(image_grid([np.array([[[-1.0, 2.0]]])], padding=0))
    assert a.tolist() == [[0, 255]]


def test_rgb_when_any_row_has_colour() -> None:
    red = np.zeros((2, 3, 4, 4))
    red[:, 0] = 1.0
    grey = np.full((2, 4, 4), 1.0)
    grid = image_grid([red, grey], padding=1)
    assert grid.mode == "RGB"
    a = pixels(grid)
    assert a[1:5, 1:5].reshape(-1, 3).tolist() == [[255, 0, 0]] * 16
    assert a[6:10, 1:5].reshape(-1, 3).tolist() == [[255, 255, 255]] * 16  # grey in all channels
    # Channels last is read as well.
    assert np.array_equal(pixels(image_grid([red.transpose(0, 2, 3, 1), grey], padding=1)), a)


@pytest.mark.parametrize(
    "rows",
    [
        [np.zeros((5, 8, 8)), np.zeros((4, 8, 8))],  # different counts
        [np.zeros((5, 8, 8)), np.zeros((5, 9, 8))],  # different sizes
        [np.zeros((5, 2, 8, 8))],  # two channels
        [np.zeros((5, 1, 1, 8, 8))],  # five dimensions
        [np.zeros((5, 60))],  # flat, not square, no image_shape
        [np.zeros(8)],  # one dimension
        [np.zeros((0, 8, 8))],  # no images
        [np.zeros((2, 8, 8), dtype=np.int64)],  # neither uint8 nor float
        [np.full((2, 8, 8), np.nan)],
        [],
    ],
)
def test_bad_rows_are_refused(rows: list[np.ndarray]) -> None:
    with pytest.raises(InputError):
        image_grid(rows)


def test_a_bare_batch_is_refused() -> None:
    with pytest.raises(InputError, match="list of rows"):
        image_grid(np.zeros((3, 8, 8)))  # type: ignore[arg-type]


def test_bad_arguments_are_refused() -> None:
    rows = [np.zeros((2, 4, 4))]
    with pytest.raises(InputError, match="image_shape"):
        image_grid([np.zeros((2, 17))], image_shape=(1, 4, 4))
    for kwargs in ({"padding": -1}, {"scale": 0}, {"image_shape": (2, 4, 4)}, {"pad_value": 2.0}):
        with pytest.raises(ConfigError):
            image_grid(rows, **kwargs)


# --------------------------------------------------------------------------- files


def test_save_png_creates_folders_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    grid = image_grid([rng.random((3, 5, 5))])
    path = save_png(grid, tmp_path / "a" / "b" / "grid.png")
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert np.array_equal(pixels(im), pixels(grid))
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]


def test_gif_holds_every_frame(tmp_path: Path) -> None:
    frames: list[Image.Image | str | Path] = []
    for i in range(4):
        frame = image_grid([np.full((2, 6, 6), i / 3)])
        if i % 2:  # half as files, as a training run leaves them
            frames.append(save_png(frame, tmp_path / f"step-{i}.png"))
        else:
            frames.append(frame)
    path = save_gif(frames, tmp_path / "out" / "progress.gif", duration_ms=200)
    with Image.open(path) as gif:
        assert isinstance(gif, GifImagePlugin.GifImageFile)
        assert gif.n_frames == 4
        assert gif.size == (2 * 6 + 3 * 2, 6 + 2 * 2)
        assert gif.info["loop"] == 0
        assert gif.info["duration"] == 200
        gif.seek(3)
        assert pixels(gif.convert("L"))[5, 5] == 255


def test_gif_plays_once_without_loop(tmp_path: Path) -> None:
    frames = [Image.new("L", (4, 4), v) for v in (0, 255)]
    with Image.open(save_gif(frames, tmp_path / "once.gif", loop=None)) as gif:
        assert isinstance(gif, GifImagePlugin.GifImageFile)
        assert gif.n_frames == 2
        assert "loop" not in gif.info


def test_bad_gifs_are_refused(tmp_path: Path) -> None:
    small, large = Image.new("L", (4, 4)), Image.new("L", (5, 4))
    with pytest.raises(InputError, match="one size"):
        save_gif([small, large], tmp_path / "x.gif")
    with pytest.raises(InputError):
        save_gif([], tmp_path / "x.gif")
    with pytest.raises(InputError, match="does not exist"):
        save_gif([tmp_path / "missing.png"], tmp_path / "x.gif")
    with pytest.raises(ConfigError):
        save_gif([small], tmp_path / "x.gif", duration_ms=0)
    assert not (tmp_path / "x.gif").exists()


# --------------------------------------------------------------------------- captions


def test_caption_puts_the_step_above_the_grid() -> None:
    grid = image_grid([rng.random((4, 8, 8))] * 2, scale=2)
    first, later = caption(grid, "step 100"), caption(grid, "step 2000")
    assert first.mode == "L" and first.width == grid.width
    strip = first.height - grid.height
    assert 10 <= strip <= 30
    # The grid itself is untouched below a white strip holding black text.
    assert np.array_equal(pixels(first)[strip:], pixels(grid))
    text = pixels(first)[:strip]
    assert (text == 255).mean() > 0.5 and (text < 64).sum() > 20
    # Another step: the same size (GIF frames need one size), other text in the strip only.
    assert later.size == first.size
    assert not np.array_equal(pixels(later)[:strip], text)
    assert np.array_equal(pixels(later)[strip:], pixels(grid))


def test_captioned_frames_make_a_gif(tmp_path: Path) -> None:
    red = np.zeros((2, 3, 8, 8))
    red[:, 0] = 1.0
    frames: list[Image.Image | str | Path] = [
        caption(image_grid([red * v]), f"step {i}") for i, v in enumerate((0.5, 1.0))
    ]
    first = frames[0]
    assert isinstance(first, Image.Image) and first.mode == "RGB"
    strip = first.height - image_grid([red]).height
    assert tuple(pixels(first)[1, -1]) == (255, 255, 255)  # the strip is white in colour too
    with Image.open(save_gif(frames, tmp_path / "progress.gif")) as gif:
        assert isinstance(gif, GifImagePlugin.GifImageFile)
        assert gif.n_frames == 2 and gif.size == first.size
        gif.seek(1)
        assert tuple(pixels(gif.convert("RGB"))[strip + 5, 5]) == (255, 0, 0)


def test_plots_are_those_of_aekit_plots() -> None:
    # Callers that import the plots from aekit.viz get the matplotlib ones.
    assert viz.scatter_plot is plots.scatter_plot
    assert viz.histogram_plot is plots.histogram_plot
    assert viz.manifold_plot is plots.manifold_plot
    assert viz.PALETTE is plots.PALETTE


# --------------------------------------------------------------------------- project_2d


def test_pca_finds_the_line() -> None:
    position = np.linspace(-3, 5, 50)
    direction = rng.normal(size=6)
    points = 2.0 + position[:, None] * direction + rng.normal(scale=1e-3, size=(50, 6))
    projected = project_2d(points, "pca")
    assert projected.shape == (50, 2)
    assert abs(np.corrcoef(projected[:, 0], position)[0, 1]) > 0.9999
    assert np.abs(projected[:, 1]).max() < 0.01
    # The signs are pinned: the same data, shuffled, gives the same coordinates.
    order = rng.permutation(50)
    assert np.allclose(project_2d(points[order]), projected[order])


def test_small_and_large_embeddings() -> None:
    line = np.arange(4.0)
    assert project_2d(line).tolist() == [[0, 0], [1, 0], [2, 0], [3, 0]]
    assert project_2d(line[:, None], "tsne").tolist() == [[0, 0], [1, 0], [2, 0], [3, 0]]
    plane = rng.random((4, 2))
    assert np.array_equal(project_2d(plane), plane)
    maps = torch.rand(6, 2, 3, 3)  # a convolutional model's feature maps
    assert project_2d(maps).shape == (6, 2)
    assert np.allclose(project_2d(rng.random((1, 5))), 0.0)


def test_tsne_keeps_clusters_apart() -> None:
    far = np.zeros(8)
    far[5] = 20.0
    points = np.concatenate([rng.normal(size=(20, 8)), far + rng.normal(size=(20, 8))])
    projected = project_2d(points, "tsne", seed=1)
    assert projected.shape == (40, 2)
    assert np.isfinite(projected).all()
    a, b = projected[:20], projected[20:]
    gap = np.linalg.norm(a.mean(axis=0) - b.mean(axis=0))
    assert gap > 3 * max(a.std(axis=0).max(), b.std(axis=0).max())


def test_projection_refuses_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="umap"):
        project_2d(rng.random((5, 3)), "umap")
    with pytest.raises(InputError):
        project_2d(rng.random((1, 3)), "tsne")
    with pytest.raises(InputError):
        project_2d(np.zeros((0, 3)))
    with pytest.raises(InputError, match="NaN"):
        project_2d(np.array([[1.0, np.inf, 0.0]]))
