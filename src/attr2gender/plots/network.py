"""Figures of what the CNN computes inside: its first-layer filters and a layer's feature maps for one image.

They take arrays; the arrays come from :mod:`attr2gender.models.internals` (``first_conv``,
``feature_maps_of``), which runs the forward pass. Used by ``experiments.route_run``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..metrics import to_numpy
from ._style import (
    _grid_shape,
    _message_figure,
    _new_figure,
    _show_image,
    _to_display_image,
    save_figure,
)


def plot_conv_filters(
    conv_weight: Any,
    path: str | Path | None = None,
    max_filters: int = 64,
    title: str = "First convolution layer filters",
) -> Figure:
    """First-layer filters ``(out, in, k, k)`` as small tiles, min-max scaled per filter: RGB when
    ``in == 3``, otherwise input channel 0 in grayscale."""
    w = to_numpy(conv_weight).astype(np.float32)
    if w.ndim != 4:
        raise ValueError(f"expected a conv weight of shape (out, in, k, k), got {w.shape}")
    out_ch, in_ch, kh, kw = w.shape
    n = min(out_ch, max_filters)
    if n == 0:
        return _message_figure(title, "no filters", path)
    rows, cols = _grid_shape(n, max_cols=8)
    fig = _new_figure(1.15 * cols, 1.15 * rows + 0.7)
    rgb = in_ch == 3
    for i in range(n):
        f = w[i].transpose(1, 2, 0) if rgb else w[i, 0]
        lo, hi = float(f.min()), float(f.max())
        f = (f - lo) / (hi - lo) if hi > lo else np.full_like(f, 0.5)
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(f, cmap=None if rgb else "gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(str(i), fontsize=7, pad=1.5)
    kind = "RGB" if rgb else f"input channel 0 of {in_ch}, grayscale"
    fig.suptitle(
        f"{title}\n{n} of {out_ch} filters, {kh}×{kw} kernels, {kind}, min–max scaled per filter",
        fontsize=10.5,
    )
    return save_figure(fig, path)


def plot_feature_maps(
    feature_maps: Any,
    image: Any = None,
    path: str | Path | None = None,
    max_maps: int = 16,
    title: str = "Feature maps of the first convolution layer",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Figure:
    """The input ``image`` (optional; same formats as :func:`plot_prediction_grid`) followed by the first
    ``max_maps`` channels of ``feature_maps`` ``(C, H, W)`` (a leading batch dim of 1 is dropped), each in
    viridis with its own colour scale (yellow = strong activation)."""
    fm = to_numpy(feature_maps).astype(np.float32)
    if fm.ndim == 4 and fm.shape[0] == 1:
        fm = fm[0]
    if fm.ndim == 2:
        fm = fm[None]
    if fm.ndim != 3:
        raise ValueError(f"expected feature maps of shape (C, H, W), got {fm.shape}")
    n = min(fm.shape[0], max_maps)
    tiles = n + (image is not None)
    if tiles == 0:
        return _message_figure(title, "no feature maps", path)
    rows, cols = _grid_shape(tiles, max_cols=6)
    fig = _new_figure(2.0 * cols, 2.1 * rows + 0.6)
    pos = 1
    if image is not None:
        ax = fig.add_subplot(rows, cols, pos)
        _show_image(ax, _to_display_image(image, mean, std))
        ax.set_title("input image", fontsize=9, fontweight="bold")
        pos += 1
    for c in range(n):
        ax = fig.add_subplot(rows, cols, pos)
        ax.imshow(fm[c], cmap="viridis", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"channel {c}", fontsize=9)
        pos += 1
    fig.suptitle(
        f"{title}\n{n} of {fm.shape[0]} channels, {fm.shape[1]}×{fm.shape[2]}, "
        "each scaled to its own range (yellow = strongest)",
        fontsize=10.5,
    )
    return save_figure(fig, path)
