"""The stability figure: how much ABCD graphs change over attentions with the same output."""
from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.figures.panels import PAGE_WIDTH
from analysis.figures.style import PALETTE, RC

__all__ = ["stability_table", "stability_figure"]

_NEEDED = ("tvd", "logit_change", "raw_edges", "raw_skeleton_shd", "raw_target_changed", "efficient_edges",
           "efficient_skeleton_shd", "efficient_target_changed")


def stability_table(results: Any) -> pd.DataFrame:
    """One row per generated ``A'``: from a :class:`analysis.stability.StabilityResult`, a list of
    them, a list of their ``rows()`` dicts, or a DataFrame of such rows."""
    if isinstance(results, pd.DataFrame):
        df = results
    else:
        items = results if isinstance(results, (list, tuple)) else [results]
        rows: list[dict] = []
        for item in items:
            rows += item.rows() if hasattr(item, "rows") else [dict(item)]
        df = pd.DataFrame(rows)
    missing = [c for c in _NEEDED if c not in df.columns]
    if missing:
        raise ValueError(f"stability_figure needs the columns {', '.join(missing)} (StabilityResult.rows())")
    if df.empty:
        raise ValueError("no generated attention matrices to draw")
    return df


def stability_figure(results: Any, *, fig: Figure | None = None, width: float = PAGE_WIDTH) -> Figure:
    """Left: fraction of the graph of ``A`` whose skeleton changes (skeleton SHD / edges) against the
    largest row TVD of ``A'`` from ``A``, raw vs efficient ABCD. Right: share of ``A'`` whose target
    neighbours (CLEANN's first candidates) change. The title states the scope and the largest
    logit change (the model's output is the same)."""
    df = stability_table(results)
    with plt.rc_context(RC):
        if fig is None:
            fig = plt.figure(figsize=(width, width / 2.3), layout="constrained")
        ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
        for name, colour, marker in (("raw", PALETTE[3], "o"), ("efficient", PALETTE[0], "s")):
            frac = df[f"{name}_skeleton_shd"] / df[f"{name}_edges"].clip(lower=1)
            ax.scatter(df["tvd"], frac, s=10, alpha=0.6, color=colour, marker=marker,
                       label=f"{name} ABCD (mean {frac.mean():.2f})")
        ax.set_xlabel("max row TVD of A' from A")
        ax.set_ylabel("skeleton SHD / edges")
        ax.set_ylim(-0.05, max(1.05, float(ax.get_ylim()[1])))
        ax.legend(loc="upper left", frameon=False, fontsize=7)
        shares = [float((df[f"{n}_target_changed"] > 0).mean()) for n in ("raw", "efficient")]
        bars = bx.bar(["raw", "efficient"], shares, color=[PALETTE[3], PALETTE[0]])
        for b, s in zip(bars, shares):
            bx.annotate(f"{s:.2f}", (b.get_x() + b.get_width() / 2, s), ha="center", va="bottom", fontsize=7)
        bx.set_ylim(0, 1.1)
        bx.set_ylabel("share of A' with other target neighbours")
        scope = _scope(df)
        lc = df["logit_change"].max()
        fig.suptitle(f"{scope}; max |logit change| {lc:.1e}" if np.isfinite(lc) else scope, fontsize=8)
    return fig


def _scope(df: pd.DataFrame) -> str:
    parts: Sequence[str] = [f"{len(df)} output-preserving A'"]
    if "text" in df.columns:
        parts = [*parts, f"{df['text'].nunique()} texts"]
    if {"layer", "head"} <= set(df.columns):
        parts = [*parts, f"{len(df[['layer', 'head']].drop_duplicates())} heads"]
    if "basis" in df.columns:
        parts = [*parts, f"{', '.join(map(str, df['basis'].unique()))} basis"]
    return ", ".join(parts)
