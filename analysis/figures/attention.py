"""Attention heatmaps."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.figures.style import RC, SEQUENTIAL


def attention_heatmap(matrix: np.ndarray, tokens: Sequence[str], *, ax: Axes | None = None,
                      title: str = "", cmap: str | None = None, vmin: float | None = None,
                      vmax: float | None = None, colorbar: bool = True) -> Figure:
    """Draw an ``n x n`` attention matrix (rows: queries, columns: keys) with token labels.

    Signed matrices (efficient or null-space parts) get a diverging map centred on 0.
    """
    matrix = np.asarray(matrix, dtype=float)
    n = len(tokens)
    if matrix.shape != (n, n):
        raise ValueError(f"matrix has shape {matrix.shape} but there are {n} tokens")
    with plt.rc_context(RC):
        if ax is None:
            side = min(8.0, 1.6 + 0.22 * n)
            fig, ax = plt.subplots(figsize=(side + 0.8, side))
        fig = ax.figure
        signed = matrix.min() < -1e-9
        if signed:
            bound = float(np.abs(matrix).max()) or 1.0
            vmin, vmax, cmap = -bound if vmin is None else vmin, bound if vmax is None else vmax, cmap or "RdBu_r"
        image = ax.imshow(matrix, cmap=cmap or SEQUENTIAL, vmin=vmin if vmin is not None else 0.0,
                          vmax=vmax, aspect="equal", interpolation="nearest")
        step = max(1, n // 40)
        ticks = np.arange(0, n, step)
        ax.set_xticks(ticks, [tokens[i] for i in ticks], rotation=90)
        ax.set_yticks(ticks, [tokens[i] for i in ticks])
        ax.set_xlabel("key (attended to)")
        ax.set_ylabel("query")
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        if title:
            ax.set_title(title)
        if colorbar:
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return fig
