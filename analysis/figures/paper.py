"""The figures of the two reproductions (ABCD's sentiment experiment; efficient and adversarial
attention), each a function of a result or of a tidy table from ``analysis.experiments``.

Every function draws on a given ``ax`` (or ``fig`` for multi-panel pictures), else on a new
figure in the paper style, and returns the ``Figure``. Nothing here computes a model.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from analysis.figures.attention import attention_heatmap
from analysis.figures.graphs import NODE_RADIUS, draw_graph, graph_layout
from analysis.figures.panels import COLUMN_WIDTH, PAGE_WIDTH
from analysis.figures.style import PALETTE, RC

__all__ = ["explanation_graph", "example_graphs", "explanation_size_hist", "flip_rate_grid", "sweep_figure",
           "nullity_length", "raw_vs_efficient", "adversarial_scatter", "wasserstein_bars"]

#: CLEANN vs the attention baseline in bar charts, and the rings of their sets on graphs (the
#: graph's own node colours are vermillion, orange and blue)
CLEANN_COLOR, BASELINE_COLOR = PALETTE[2], PALETTE[4]


def _need(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs columns {list(columns)}; missing {missing}")
    if df.empty:
        raise ValueError(f"{what}: the table is empty")


def _new_ax(ax: Axes | None, size: tuple[float, float]) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax


# --------------------------------------------------------------------------- ABCD
def explanation_graph(e: Any, *, ax: Axes | None = None, layout: str = "arc", labels: Sequence[str] = ()) -> Figure:
    """The learned PAG of one :class:`analysis.abcd.Explanation`, the target's PDS-tree
    highlighted, CLEANN's first set ringed in green and the attention baseline's in purple
    (its size may exceed CLEANN's ``max_set_size``: it grows until the prediction flips)."""
    words = " ".join(e.words[0]) if e.sets else f"none up to {e.settings.get('max_set_size', '?')} tokens"
    base = " ".join(e.tokens[i] for i in e.baseline.set) if e.baseline.set else "none"
    pred = labels[e.prediction] if e.prediction < len(labels) else str(e.prediction)
    title = (f"{e.graph.n_nodes} nodes, {len(e.graph)} edges; prediction: {pred}\n"
             f"CLEANN: {{{words}}}   attention baseline: {{{base}}}")
    with plt.rc_context(RC):
        fig = draw_graph(e.graph, ax=ax, layout=layout, highlight=e.tree, title=title)
        ax = ax or fig.axes[0]
        pos = graph_layout(e.graph, layout)
        for positions, color, r, name in ((e.sets[0] if e.sets else [], CLEANN_COLOR, 1.55, "cleann"),
                                          (e.baseline.set, BASELINE_COLOR, 1.3, "baseline")):
            for v in positions:
                if v in pos:
                    ring = Circle(pos[v], NODE_RADIUS * r, fill=False, edgecolor=color, linewidth=2.0, zorder=7)
                    ring.set_gid(f"set:{name}:{v}")
                    ax.add_patch(ring)
        ax.title.set_fontsize(8)
    return fig


def example_graphs(explanations: Sequence[Any], *, fig: Figure | None = None, layout: str = "arc",
                   labels: Sequence[str] = (), width: float = PAGE_WIDTH) -> Figure:
    """:func:`explanation_graph` for several sentences, one row each."""
    if not explanations:
        raise ValueError("no explanations to draw")
    with plt.rc_context(RC):
        if fig is None:
            fig = plt.figure(figsize=(width, 2.9 * len(explanations)))
        axes = fig.subplots(len(explanations), 1, squeeze=False)[:, 0]
        for e, ax in zip(explanations, axes):
            explanation_graph(e, ax=ax, layout=layout, labels=labels)
        fig.tight_layout(h_pad=1.5)
    return fig


def explanation_size_hist(df: pd.DataFrame, *, ax: Axes | None = None, head: str | None = None,
                          layer: int | None = None) -> Figure:
    """Bars of explanation-set size (1..max_set_size, and "none": no flipping set that small),
    CLEANN vs the attention baseline, over the rows of an ``explanation_table`` (optionally
    one ``head`` / ``layer``)."""
    _need(df, ["cleann_size", "baseline_size", "max_set_size"], "explanation_size_hist")
    if head is not None:
        df = df[df["head"].astype(str) == str(head)]
    if layer is not None:
        df = df[df["layer"] == layer]
    if df.empty:
        raise ValueError(f"no rows for head={head!r}, layer={layer!r}")
    k = int(df.max_set_size.max())
    cats = list(range(1, k + 1))
    with plt.rc_context(RC):
        ax = _new_ax(ax, (COLUMN_WIDTH, 2.4))
        x = np.arange(k + 1)
        for j, (col, name, color) in enumerate((("cleann_size", "CLEANN", CLEANN_COLOR),
                                                ("baseline_size", "attention baseline", BASELINE_COLOR))):
            sizes = df[col]
            counts = [int((sizes == c).sum()) for c in cats] + [int(sizes.isna().sum())]
            share = np.array(counts) / len(df)
            bars = ax.bar(x + (j - 0.5) * 0.4, share, 0.4, label=name, color=color)
            for b in bars:
                b.set_gid(f"bar:{name}")
        ax.set_xticks(x, [str(c) for c in cats] + ["none"])
        ax.set_xlabel(f"size of the smallest flipping set (none: > {k} tokens)")
        ax.set_ylabel("share of sentences")
        where = "" if head is None else f", head {head}"
        ax.set_title(f"{len(df)} explanations{where}")
        ax.legend(frameon=False)
    return ax.figure


def _head_order(heads: Sequence[Any]) -> list[str]:
    heads = sorted({str(h) for h in heads}, key=lambda h: (not h.isdigit(), int(h) if h.isdigit() else 0, h))
    return heads


def flip_rate_grid(df: pd.DataFrame, *, fig: Figure | None = None, width: float = PAGE_WIDTH) -> Figure:
    """Flip rate (share of sentences with a flipping set of at most ``max_set_size`` tokens) by
    layer (rows) and head (columns), CLEANN and the attention baseline side by side."""
    _need(df, ["layer", "head", "cleann_found", "baseline_found"], "flip_rate_grid")
    heads = _head_order(df["head"].unique())
    layers = sorted(df.layer.unique())
    d = df.assign(head=df["head"].astype(str))
    n = int(d.groupby(["layer", "head"]).size().max())
    k = int(d.max_set_size.max()) if "max_set_size" in d else "?"
    with plt.rc_context(RC):
        if fig is None:
            fig = plt.figure(figsize=(width, 0.9 + 0.32 * len(layers) + 0.5))
        axes = fig.subplots(1, 2, sharey=True)
        for ax, col, name in ((axes[0], "cleann_found", "CLEANN"), (axes[1], "baseline_found", "attention baseline")):
            grid = d.pivot_table(index="layer", columns="head", values=col, aggfunc="mean")
            grid = grid.reindex(index=layers, columns=heads).astype(float)
            image = ax.imshow(grid.to_numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
            ax.set_xticks(range(len(heads)), heads)
            ax.set_yticks(range(len(layers)), [str(lay) for lay in layers])
            ax.set_title(f"{name}: flip rate\n(set of <= {k} tokens; {n} sentences a cell)", fontsize=8)
            ax.set_xlabel("head")
            for (i, j), v in np.ndenumerate(grid.to_numpy()):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=6,
                            color="black" if v > 0.6 else "white")
            ax.tick_params(length=0)
        axes[0].set_ylabel("layer")
        fig.colorbar(image, ax=list(axes), fraction=0.03, pad=0.02)
    return fig


def sweep_figure(df: pd.DataFrame, *, fig: Figure | None = None, width: float = PAGE_WIDTH) -> Figure:
    """Graph density against n_samples, one line per alpha (mean over texts); with CLEANN columns
    (``graph_sweep(..., explain=True)``) also the flip rate and mean set size."""
    _need(df, ["alpha", "n_samples", "density"], "sweep_figure")
    panels = [("density", "graph density (edges / pairs)")]
    if "cleann_found" in df.columns:
        panels += [("cleann_found", "CLEANN flip rate"), ("cleann_size", "CLEANN set size (where found)")]
    alphas = sorted(df.alpha.unique())
    with plt.rc_context(RC):
        if fig is None:
            fig = plt.figure(figsize=(width if len(panels) > 1 else COLUMN_WIDTH * 1.3, 2.5))
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (col, label) in zip(axes, panels):
            for i, a in enumerate(alphas):
                g = df[df.alpha == a].astype({col: float}).groupby("n_samples")[col].mean()
                line, = ax.plot(g.index, g.to_numpy(), marker="o", markersize=3, color=PALETTE[i % len(PALETTE)],
                                label=f"alpha = {a:g}")
                line.set_gid(f"line:{col}:{a:g}")
            ax.set_xscale("log")
            ax.set_xlabel("n_samples (effective sample size)")
            ax.set_ylabel(label)
            if col != "cleann_size":
                ax.set_ylim(0, 1.02)
            else:
                top = df[col].max()
                ax.set_ylim(0, (top if np.isfinite(top) else 1) + 0.5)
        labels = df.drop_duplicates("n_samples").set_index("n_samples").n_samples_label \
            if "n_samples_label" in df.columns else None
        if labels is not None:
            for ax in axes:
                ax.set_xticks(list(labels.index), [f"{v:g}\n{lab}" if not lab[0].isdigit() else f"{v:g}"
                                                   for v, lab in labels.items()])
                ax.minorticks_off()
        axes[0].legend(frameon=False, fontsize=7)
        fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- efficient attention
def nullity_length(df: pd.DataFrame, *, ax: Axes | None = None) -> Figure:
    """Nullity ``n - rank(T)`` of every head against the sequence length n (one point per text x
    head, coloured by model / dataset / basis), with ``max(0, n - r)`` for each group's largest
    rank r (the full rank of T: d_head for the value basis) as dashed lines."""
    _need(df, ["n_tokens", "nullity", "rank"], "nullity_length")
    group_cols = [c for c in ("model", "dataset", "basis") if c in df.columns and df[c].nunique() > 1]
    groups = list(df.groupby(group_cols, sort=False)) if group_cols else [((), df)]
    with plt.rc_context(RC):
        ax = _new_ax(ax, (COLUMN_WIDTH * 1.3, 2.6))
        jitter = np.random.default_rng(0)
        for i, (key, g) in enumerate(groups):
            name = ", ".join(str(k) for k in (key if isinstance(key, tuple) else (key,))) or "heads"
            x = g.n_tokens.to_numpy() + jitter.uniform(-0.25, 0.25, len(g))
            pts = ax.scatter(x, g.nullity, s=6, alpha=0.5, color=PALETTE[i % len(PALETTE)], label=name,
                             linewidths=0)
            pts.set_gid(f"points:{name}")
        n = np.linspace(df.n_tokens.min(), df.n_tokens.max(), 200)
        for j, limit in enumerate(sorted({int(g["rank"].max()) for _, g in groups}, reverse=True)):
            ax.plot(n, np.maximum(0, n - limit), linestyle=("--", ":", "-.")[j % 3], color="#333333", linewidth=1,
                    label=f"n - {limit} (T of rank {limit})")
        ax.set_xlabel("sequence length n (tokens)")
        ax.set_ylabel("nullity n - rank(T)")
        ax.legend(frameon=False, fontsize=7, markerscale=2)
        ax.set_title(f"nullity per head ({len(df)} heads)")
    return ax.figure


def raw_vs_efficient(parts: Sequence[Any], tokens: Sequence[str], *, fig: Figure | None = None,
                     width: float = PAGE_WIDTH, max_labels: int = 24) -> Figure:
    """Raw attention ``A``, efficient ``A P`` and null part ``A (I - P)`` for the same heads (one
    row per :class:`analysis.efficient.EfficientAttention`), one signed colour scale per row;
    at most ``max_labels`` token labels per axis."""
    if not parts:
        raise ValueError("no heads to draw")
    tokens = list(tokens)
    n = len(tokens)
    with plt.rc_context(RC):
        if fig is None:
            fig = plt.figure(figsize=(width, width / 3.2 * len(parts)))
        axes = fig.subplots(len(parts), 3, squeeze=False)
        step = max(1, -(-n // max_labels))
        ticks = np.arange(0, n, step)
        for r, (row, p) in enumerate(zip(axes, parts)):
            bound = float(max(np.abs(p.effective).max(), np.abs(p.null).max(), p.attention.max())) or 1.0
            where = f"L{p.layer} H{p.head}" if p.layer is not None else "head"
            names = ("raw A", f"efficient A P (nullity {p.nullity})", "null A (I - P)")
            for c, (ax, m, name) in enumerate(zip(row, (p.attention, p.effective, p.null), names)):
                attention_heatmap(m, tokens, ax=ax, colorbar=False, vmin=-bound, vmax=bound, cmap="RdBu_r",
                                  title=f"{where}: {name}")
                last = r == len(parts) - 1
                ax.set_xticks(ticks, [tokens[i] for i in ticks] if last else [], rotation=90, fontsize=5)
                ax.set_yticks(ticks, [tokens[i] for i in ticks] if c == 0 else [], fontsize=5)
                ax.title.set_fontsize(7)
                ax.set_xlabel("")
                ax.set_ylabel("")
            fig.colorbar(row[0].images[0], ax=list(row), fraction=0.02, pad=0.01)
    return fig


def adversarial_scatter(df: pd.DataFrame, *, fig: Figure | None = None, width: float = PAGE_WIDTH) -> Figure:
    """Left: each feasible adversary's attention JSD from the original against its efficient
    distance ``||(a_i - a) P||``. Right: efficient share ``||(a_i - a) P|| / ||a_i - a||`` per
    model / dataset, with the mean share of unconstrained random attention (diamonds)."""
    _need(df, ["jsd", "efficient_distance", "efficient_share", "random_share", "feasible"], "adversarial_scatter")
    f = df[df.feasible]
    group_cols = [c for c in ("model", "dataset", "basis") if c in df.columns and df[c].nunique() > 1]
    keys = [tuple(k) for k in df[group_cols].drop_duplicates().itertuples(index=False)] if group_cols else [()]

    def name(key: Any) -> str:
        return ", ".join(str(k) for k in (key if isinstance(key, tuple) else (key,))) or "adversaries"

    def rows(frame: pd.DataFrame, key: Any) -> pd.DataFrame:
        if not group_cols:
            return frame
        key = key if isinstance(key, tuple) else (key,)
        return frame[np.logical_and.reduce([frame[c] == k for c, k in zip(group_cols, key)])]

    with plt.rc_context(RC):
        if fig is None:
            fig = plt.figure(figsize=(width, 2.6))
        ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
        for i, key in enumerate(keys):
            g = rows(f, key)
            pts = ax.scatter(g.jsd, g.efficient_distance, s=12, color=PALETTE[i % len(PALETTE)], label=name(key),
                             alpha=0.8, linewidths=0)
            pts.set_gid(f"points:{name(key)}")
            shares = g.efficient_share.to_numpy()
            bx.scatter(np.full(len(shares), i) + np.random.default_rng(i).uniform(-0.12, 0.12, len(shares)), shares,
                       s=10, color=PALETTE[i % len(PALETTE)], alpha=0.7, linewidths=0)
            ref = rows(df, key).groupby("text_id").random_share.first().mean()
            bx.scatter([i + 0.3], [ref], marker="D", s=22, color="#333333", zorder=3,
                       label="random attention" if i == 0 else None)
        ax.set_xlabel("attention JSD from the original (bits)")
        ax.set_ylabel("efficient distance ||(a_i - a) P||")
        ax.legend(frameon=False, fontsize=7)
        ax.set_title(f"{len(f)} feasible adversaries of {len(df)}")
        bx.set_xticks(range(len(keys)), [name(k).replace(", ", "\n") for k in keys], fontsize=6)
        bx.set_ylim(-0.03, 1.05)
        bx.set_ylabel("efficient share of the change")
        bx.legend(frameon=False, fontsize=7, loc="lower left")
        fig.tight_layout()
    return fig


def wasserstein_bars(df: pd.DataFrame, *, ax: Axes | None = None, floor: float = 1e-10) -> Figure:
    """W1 between prediction scores over a dataset, original vs each edit, on a log scale
    (values below ``floor`` drawn at it), grouped by edit (the layer number dropped from its
    name) with one bar per model / dataset (``wasserstein_table`` rows)."""
    _need(df, ["edit", "w1"], "wasserstein_bars")
    group_cols = [c for c in ("model", "dataset", "basis") if c in df.columns and df[c].nunique() > 1]
    labels = (df[group_cols].astype(str).agg(", ".join, axis=1) if group_cols
              else pd.Series(["W1"] * len(df), index=df.index))
    short = [re.sub(r", layer \d+$", "", e) for e in df.edit]       # "null-shifted, layer 5" -> "null-shifted"
    d = df.assign(_group=labels, _edit=short)
    edits = list(dict.fromkeys(short))
    groups = list(dict.fromkeys(d._group))
    with plt.rc_context(RC):
        ax = _new_ax(ax, (PAGE_WIDTH * 0.75, 2.6))
        width = 0.8 / len(groups)
        for j, grp in enumerate(groups):
            g = d[d._group == grp].set_index("_edit").reindex(edits)
            vals = np.maximum(g.w1.to_numpy(dtype=float), floor)
            bars = ax.bar(np.arange(len(edits)) + (j - (len(groups) - 1) / 2) * width, vals, width,
                          color=PALETTE[j % len(PALETTE)], label=grp)
            for b in bars:
                b.set_gid(f"bar:{grp}")
        ax.axhline(0.01, color="#333333", linestyle=":", linewidth=1, label="0.01 (Naim & Asher's bound)")
        ax.set_yscale("log")
        ax.set_ylim(floor / 2, 50)
        ax.set_xticks(range(len(edits)), edits, fontsize=7)
        ax.set_xlabel("edit of every head of the last layer (or of all layers)")
        ax.set_ylabel("W1 of prediction scores (log)")
        ax.set_title("original vs edited predictions over the dataset")
        ax.legend(frameon=False, fontsize=6, ncols=2)
    return ax.figure
