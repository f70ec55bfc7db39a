"""The stability figure: how much ABCD graphs change over attentions with the same output."""
from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.figures.attention import attention_heatmap
from analysis.figures.graphs import draw_graph
from analysis.figures.panels import PAGE_WIDTH
from analysis.figures.style import PALETTE, RC

__all__ = ["stability_table", "stability_figure", "stability_view", "KINDS"]

#: the attention an ABCD graph is learned from
KINDS = ("raw", "efficient")

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
        bx.set_ylabel("A' with other target neighbours")
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


def stability_view(result: Any, index: int = 0, *, attention: str = "raw", tokens: Sequence[str] | None = None,
                   fig: Figure | None = None, width: float = PAGE_WIDTH, layout: str = "arc") -> Figure:
    """One head's range of graphs over output-preserving attentions (a
    :class:`analysis.stability.StabilityResult` made by ``graph_stability``).

    Top: the attention ``A`` and the ``index``-th generated ``A'`` (same colour scale); right: the
    skeleton SHD / edges of every ``A'`` for raw and efficient ABCD, ``index`` marked. Bottom: the
    ``attention`` ("raw" or "efficient") ABCD graph of ``A`` and of ``A'``, the target (CLEANN's
    [CLS]) highlighted. The title gives ``A'``'s row TVD, its logit change and the counts of ``A'``
    that change the skeleton and the target's neighbours."""
    if attention not in KINDS:
        raise ValueError(f"attention must be one of {', '.join(KINDS)}, not {attention!r}")
    if not getattr(result, "graphs", None):
        raise ValueError("the result holds no graphs of the generated A' (make it with analysis.stability.graph_stability)")
    gen = result.generated
    count = len(gen.samples)
    if count == 0:
        raise ValueError("no generated attention matrices to draw (n_extreme = n_mix = 0)")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < count:
        raise IndexError(f"index {index!r} is out of range: there are {count} generated A' (0..{count - 1})")
    tokens = [str(t) for t in tokens] if tokens is not None else [str(i) for i in range(gen.n)]
    if len(tokens) != gen.n:
        raise ValueError(f"{len(tokens)} tokens given for an attention over {gen.n}")
    graph0 = getattr(result, f"{attention}_graph")
    graph1 = result.graphs[attention][index]
    with plt.rc_context(RC):
        if fig is None:
            fig = plt.figure(figsize=(width, width * 0.8), layout="constrained")
        grid = fig.add_gridspec(2, 3, width_ratios=[1, 1, 0.9], height_ratios=[1, 1])
        a_ax, b_ax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
        strip = fig.add_subplot(grid[:, 2])
        g0_ax, g1_ax = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
        top = float(max(gen.attention.max(), gen.samples[index].max()))
        attention_heatmap(gen.attention, tokens, ax=a_ax, title="A (the model's)", vmax=top, colorbar=False)
        attention_heatmap(gen.samples[index], tokens, ax=b_ax, vmax=top, colorbar=False,
                          title=f"A' #{index} ({gen.kinds[index]}), max row TVD {gen.tvd[index]:.2f}")
        x = np.arange(count)
        for name, colour, marker in (("raw", PALETTE[3], "o"), ("efficient", PALETTE[0], "s")):
            frac = getattr(result, f"{name}_skeleton_shd") / max(len(getattr(result, f"{name}_graph")), 1)
            pts = strip.scatter(frac, x, s=14, color=colour, marker=marker, label=f"{name} ABCD",
                                alpha=1.0 if name == attention else 0.5)
            pts.set_gid(f"points:{name}")
        line = strip.axhline(index, color="0.3", linewidth=0.8, linestyle=":")
        line.set_gid("selected")
        strip.set_xlabel("skeleton SHD / edges")
        strip.yaxis.set_major_locator(MaxNLocator(integer=True))
        strip.set_ylabel("generated A'")
        strip.set_xlim(-0.05, max(1.05, float(strip.get_xlim()[1])))
        strip.set_ylim(count - 0.5, -0.5)
        strip.legend(loc="lower right", frameon=False, fontsize=6)
        draw_graph(graph0, ax=g0_ax, layout=layout, highlight=result.target,
                   title=f"{attention} ABCD of A: {len(graph0)} edges")
        changed = int(getattr(result, f"{attention}_skeleton_shd")[index])
        draw_graph(graph1, ax=g1_ax, layout=layout, highlight=result.target,
                   title=f"{attention} ABCD of A': {len(graph1)} edges, skeleton SHD {changed}")
        summary = result.summary()
        counts = "; ".join(f"{k}: skeleton changed {v['skeleton_changed']}/{v['samples']}, target's neighbours "
                           f"{v['target_changed']}/{v['samples']}" for k, v in summary.items())
        lc = result.logit_change[index]
        where = f"layer {gen.layer}, head {gen.head}, {gen.basis} basis, nullity {gen.nullity}"
        fig.suptitle(f"{where}; |logit change| with A' {lc:.1e}\n{counts}" if np.isfinite(lc) else f"{where}\n{counts}",
                     fontsize=8)
    return fig
