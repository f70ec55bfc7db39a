"""Turning figures into PNG bytes for ``ipywidgets.Image``, and a heatmap that redraws fast.

Panels draw with the figure functions of ``analysis.figures`` and show the result as PNG
bytes: no pyplot window, no front-end extension, nothing from a CDN. Figures made through
pyplot are closed as soon as they are rendered.
"""
from __future__ import annotations

import io
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from analysis.figures import attention_heatmap
from analysis.figures.style import PALETTE

SCREEN_DPI = 96


def figure_png(fig: Figure, *, dpi: int = SCREEN_DPI, tight: bool = True) -> bytes:
    """PNG bytes of ``fig`` at screen resolution; the figure is closed afterwards."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None, facecolor="white")
    finally:
        plt.close(fig)
    return buf.getvalue()


def _encode(rgba: np.ndarray) -> bytes:
    """Fast PNG of an RGBA buffer (low zlib level: the images are small and local)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba[..., :3])).save(buf, format="png", compress_level=1)
    return buf.getvalue()


class HeatmapCanvas:
    """An attention heatmap drawn once for a fixed token list; each later frame redraws only
    the image, its colour bar, the title and the query-row marker (blitting), then encodes.

    ``signed`` picks a diverging map centred on 0 (efficient / null parts).
    """

    def __init__(self, tokens: Sequence[str], *, signed: bool = False, dpi: int = SCREEN_DPI) -> None:
        n = len(tokens)
        self.tokens, self.signed = tuple(tokens), signed
        side = min(7.0, 2.2 + 0.22 * n)
        self.fig = Figure(figsize=(side + 1.0, side + 0.3), dpi=dpi)
        FigureCanvasAgg(self.fig)
        ax = self.fig.add_subplot()
        start = np.full((n, n), 1.0 / n)
        attention_heatmap(start, tokens, ax=ax, title="layer 00, head 00 (mean over heads)",
                          cmap="RdBu_r" if signed else None, vmin=-1.0 if signed else 0.0, vmax=1.0)
        self.ax, self.image, self.cbar_ax = ax, ax.images[0], self.fig.axes[-1]
        self.marker = Rectangle((-0.5, -0.5), n, 1.0, fill=False, edgecolor=PALETTE[3], linewidth=1.6)
        ax.add_patch(self.marker)
        self.fig.tight_layout()
        self._animated = [self.image, ax.title, self.marker, self.cbar_ax]
        for artist in self._animated:
            artist.set_animated(True)
        self.fig.canvas.draw()
        self._background = self.fig.canvas.copy_from_bbox(self.fig.bbox)

    def frame(self, matrix: np.ndarray, title: str, query: int | None = None, bound: float | None = None) -> bytes:
        """PNG of the heatmap showing ``matrix`` [n, n], with ``title`` and row ``query`` outlined;
        ``bound``: the colour scale's largest magnitude (default: the matrix's)."""
        m = np.asarray(matrix, dtype=float)
        if m.shape != (len(self.tokens),) * 2:
            raise ValueError(f"matrix has shape {m.shape}, the canvas was built for {len(self.tokens)} tokens")
        self.image.set_data(m)
        if self.signed:
            bound = float(bound or np.abs(m).max()) or 1.0
            self.image.set_clim(-bound, bound)
        else:
            self.image.set_clim(0.0, float(bound or m.max()) or 1.0)
        self.ax.set_title(title)
        self.marker.set_visible(query is not None)
        if query is not None:
            self.marker.set_y(query - 0.5)
        canvas = self.fig.canvas
        canvas.restore_region(self._background)
        for artist in self._animated:
            self.fig.draw_artist(artist)
        return _encode(np.asarray(canvas.buffer_rgba()))


class GridCanvas:
    """Every head of a layer as a grid of heatmaps, drawn once for a fixed token list and head
    count; each later frame redraws only the images and their titles (blitting)."""

    def __init__(self, tokens: Sequence[str], n_heads: int, *, signed: bool = False, dpi: int = SCREEN_DPI) -> None:
        from analysis.figures import attention_grid

        n = len(tokens)
        self.tokens, self.n_heads, self.signed = tuple(tokens), n_heads, signed
        cols = min(n_heads, 4)
        rows = -(-n_heads // cols)
        self.fig = Figure(figsize=(9.0, 9.0 / cols * rows * 1.05), dpi=dpi)
        FigureCanvasAgg(self.fig)
        placeholder = ["layer 00, head 00, efficient (nullity 00)"] * n_heads
        attention_grid(np.full((n_heads, n, n), 1.0 / n), tokens, titles=placeholder, fig=self.fig, signed=signed,
                       bound=1.0)
        self.axes = [ax for ax in self.fig.axes if ax.images]
        self.fig.tight_layout()
        self._animated = [a for ax in self.axes for a in (ax.images[0], ax.title)]
        for artist in self._animated:
            artist.set_animated(True)
        self.fig.canvas.draw()
        self._background = self.fig.canvas.copy_from_bbox(self.fig.bbox)

    def frame(self, matrices: np.ndarray, titles: Sequence[str], bound: float | None = None) -> bytes:
        """PNG of the grid showing ``matrices`` [H, n, n] on one colour scale (``bound``)."""
        mats = np.asarray(matrices, dtype=float)
        if mats.shape != (self.n_heads, len(self.tokens), len(self.tokens)):
            raise ValueError(f"matrices have shape {mats.shape}, the canvas was built for "
                             f"{self.n_heads} heads x {len(self.tokens)} tokens")
        top = float(bound or np.abs(mats).max()) or 1.0
        for ax, m, title in zip(self.axes, mats, titles):
            ax.images[0].set_data(m)
            ax.images[0].set_clim(-top if self.signed else 0.0, top)
            ax.set_title(title, fontsize=7)
        canvas = self.fig.canvas
        canvas.restore_region(self._background)
        for artist in self._animated:
            self.fig.draw_artist(artist)
        return _encode(np.asarray(canvas.buffer_rgba()))
