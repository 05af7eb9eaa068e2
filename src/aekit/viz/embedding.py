"""Embeddings as numbers to draw: an (N, D) matrix of finite values, projected to 2-D."""

from __future__ import annotations

import importlib
from typing import Literal

import numpy as np
import torch

from aekit.errors import ConfigError, InputError

ArrayLike = np.ndarray | torch.Tensor


def float_matrix(x: ArrayLike, what: str) -> np.ndarray:
    """`x` as (N, D) float64 of finite values; InputError naming `what` otherwise.

    (N,) is one number per point; (N, C, H, W) feature maps are read as flat vectors.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x)
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise InputError(f"{what} must be numbers, not {a.dtype}")
    if a.ndim == 0 or a.size == 0:
        raise InputError(f"{what} must be (N, D) with N, D >= 1, not shape {a.shape}")
    a = a.astype(np.float64).reshape(len(a), -1)
    if not np.isfinite(a).all():
        bad = int((~np.isfinite(a)).any(axis=1).sum())
        raise InputError(f"{bad} of {len(a)} {what} hold NaN or infinite values")
    return a


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
    x = float_matrix(embeddings, "embeddings")
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
