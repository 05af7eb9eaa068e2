"""Pictures: image grids and GIFs (Pillow), plots (matplotlib), TensorBoard's projector."""

from aekit.viz.embedding import float_matrix, project_2d
from aekit.viz.images import caption, image_grid, save_gif, save_png, tile_images
from aekit.viz.plots import (
    PALETTE,
    Plot,
    figure_pixels,
    histogram_plot,
    label_color,
    log_figure,
    manifold_plot,
    save_figure,
    scatter_plot,
)
from aekit.viz.projector import write_projector

__all__ = [
    "PALETTE",
    "Plot",
    "caption",
    "figure_pixels",
    "float_matrix",
    "histogram_plot",
    "image_grid",
    "label_color",
    "log_figure",
    "manifold_plot",
    "project_2d",
    "save_figure",
    "save_gif",
    "save_png",
    "scatter_plot",
    "tile_images",
    "write_projector",
]
