"""The pictures of the widget panels, usable on their own for papers.

- :func:`attention_view` picks what the attention explorer shows (one head, the mean over
  heads, or every head of a layer; raw, efficient or null-space part) and
  :func:`draw_attention_view` draws it;
- :func:`attention_grid`: every head of a layer as small heatmaps;
- :func:`ci_test_plot`: one Fisher z test against the standard normal's rejection region;
- :func:`prediction_bars`: class probabilities before / after, side by side;
- :func:`adversarial_figure`, :func:`intervention_figure`, :func:`intervention_summary`.

Functions take a result and an optional ``ax`` (or ``fig`` for multi-axes pictures) and
return the ``Figure``. Sizes default to a two-column paper width (``PAGE_WIDTH`` inches).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy import stats

from analysis.figures.attention import attention_heatmap
from analysis.figures.style import PALETTE, RC
from analysis.figures.text import token_sets

PAGE_WIDTH = 7.0      # inches: a two-column paper's text width
COLUMN_WIDTH = 3.4    # inches: one column
MODES = ("head", "mean", "grid")
PARTS = ("raw", "efficient", "null")


# --------------------------------------------------------------------------- attention views
@dataclass(frozen=True, eq=False)
class AttentionView:
    """What the attention explorer draws: ``matrices`` [k, n, n] with one title each."""

    matrices: np.ndarray           # [k, n, n]: one head (k=1), the mean (k=1) or every head (k=H)
    titles: tuple[str, ...]
    tokens: tuple[str, ...]
    layer: int
    head: int | str                # an int, or "mean" / "all"
    mode: str                      # "head", "mean" or "grid"
    part: str                      # "raw", "efficient" or "null"
    note: str = ""                 # e.g. the head's nullity
    scale: float = 1.0             # largest raw attention weight shown: the colour bound of signed parts

    @property
    def signed(self) -> bool:
        """Efficient and null parts may be negative: draw them with a diverging map."""
        return self.part != "raw"


def attention_view(trace: Any, layer: int, head: int = 0, *, mode: str = "head", part: str = "raw",
                   basis: str = "value") -> AttentionView:
    """Select the matrices to show: ``mode`` "head" (one head), "mean" (over the layer's heads)
    or "grid" (every head); ``part`` "raw", "efficient" or "null" (``analysis.efficient``)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, not {part!r}")
    layer, head = trace.check_head(layer, head if mode == "head" else "all")
    tokens = tuple(trace.tokens)
    if mode == "mean":
        if part != "raw":
            raise ValueError("efficient and null parts are per head: choose a single head or all heads")
        return AttentionView(trace.attentions[layer].mean(0)[None], (f"layer {layer}, mean over heads",),
                             tokens, layer, "mean", mode, part)
    heads = [head] if mode == "head" else list(range(trace.n_heads))
    if part == "raw":
        mats = np.stack([trace.attentions[layer, h] for h in heads])   # a selective trace too (HeadArray)
        return AttentionView(mats, tuple(f"layer {layer}, head {h}" for h in heads), tokens, layer,
                             head if mode == "head" else "all", mode, part)
    from analysis.efficient import decompose, decompose_layer

    parts = ([decompose(trace, layer, head, basis=basis)] if mode == "head"
             else list(decompose_layer(trace, layer, basis=basis)))
    mats = np.stack([p.effective if part == "efficient" else p.null for p in parts])
    titles = tuple(f"layer {layer}, head {p.head}, {part} (nullity {p.nullity})" for p in parts)
    note = parts[0].message if mode == "head" else "nullity per head: " + ", ".join(
        f"{p.head}: {p.nullity}" for p in parts)
    scale = float(max(np.abs(mats).max(), max(trace.attentions[layer, h].max() for h in heads)))
    return AttentionView(mats, titles, tokens, layer, head if mode == "head" else "all", mode, part, note, scale)


def attention_grid(matrices: np.ndarray, tokens: Sequence[str], *, titles: Sequence[str] | None = None,
                   fig: Figure | None = None, ncols: int | None = None, width: float = PAGE_WIDTH,
                   signed: bool | None = None, bound: float | None = None) -> Figure:
    """Small heatmaps [k, n, n] in a grid sharing one colour scale (``bound``: its largest
    magnitude, default the largest entry); token labels on the outer axes for few tokens."""
    mats = np.asarray(matrices, dtype=float)
    k, n = mats.shape[0], len(tokens)
    if mats.ndim != 3 or mats.shape[1:] != (n, n):
        raise ValueError(f"matrices must be [k, {n}, {n}] for {n} tokens, got {mats.shape}")
    ncols = ncols or min(k, 4)
    nrows = -(-k // ncols)
    signed = bool(mats.min() < -1e-9) if signed is None else signed
    bound = float(bound or np.abs(mats).max()) or 1.0
    with plt.rc_context(RC):
        if fig is None:
            fig = plt.figure(figsize=(width, width / ncols * nrows * 1.05))
        axes = fig.subplots(nrows, ncols, squeeze=False)
        labels = n <= 24
        for i, ax in enumerate(axes.flat):
            if i >= k:
                ax.set_axis_off()
                continue
            ax.imshow(mats[i], cmap="RdBu_r" if signed else "viridis", vmin=-bound if signed else 0.0,
                      vmax=bound, interpolation="nearest")
            ax.set_title(titles[i] if titles else f"head {i}", fontsize=7)
            row, col = divmod(i, ncols)
            ax.set_xticks(range(n) if labels and row == nrows - 1 else [])
            ax.set_yticks(range(n) if labels and col == 0 else [])
            if labels and row == nrows - 1:
                ax.set_xticklabels(tokens, rotation=90, fontsize=5)
            if labels and col == 0:
                ax.set_yticklabels(tokens, fontsize=5)
            ax.tick_params(length=0)
            for spine in ax.spines.values():
                spine.set_visible(False)
    return fig


def draw_attention_view(view: AttentionView, *, fig: Figure | None = None, width: float | None = None) -> Figure:
    """Draw an :class:`AttentionView`: one heatmap, or the grid of every head."""
    if view.mode == "grid":
        return attention_grid(view.matrices, view.tokens, titles=view.titles, fig=fig,
                              width=width or PAGE_WIDTH, signed=view.signed, bound=view.scale if view.signed else None)
    with plt.rc_context(RC):
        if fig is None:
            n = len(view.tokens)
            side = width or min(PAGE_WIDTH, max(COLUMN_WIDTH, 1.6 + 0.22 * n))
            fig = plt.figure(figsize=(side + 0.8, side))
        ax = fig.add_subplot()
    bound = dict(vmin=-view.scale, vmax=view.scale, cmap="RdBu_r") if view.signed else {}
    return attention_heatmap(view.matrices[0], view.tokens, ax=ax, title=view.titles[0], **bound)


# --------------------------------------------------------------------------- CI tests
def ci_test_plot(result: Any, *, alpha: float, tokens: Sequence[str] | None = None,
                 n_samples: float | None = None, ax: Axes | None = None) -> Figure:
    """One Fisher z test (``CITestResult``): the standard normal density, the two-sided
    rejection region at ``alpha`` shaded, and the observed statistic |z|."""
    def name(i: int) -> str:
        return f"{tokens[i]}@{i}" if tokens is not None else str(i)

    z_crit = float(stats.norm.isf(alpha / 2))
    with plt.rc_context(RC):
        if ax is None:
            _, ax = plt.subplots(figsize=(COLUMN_WIDTH * 1.4, 2.4))
        top = max(4.0, 1.6 * z_crit)
        x = np.linspace(-top, top, 400)
        ax.plot(x, stats.norm.pdf(x), color=_INK, linewidth=1.0)
        for lo, hi in ((-top, -z_crit), (z_crit, top)):
            ax.axvspan(lo, hi, color=PALETTE[3], alpha=0.12, linewidth=0)
        ax.text(z_crit, 0.43, f" reject at alpha={alpha:g}", fontsize=7, color=PALETTE[3], va="top")
        color = PALETTE[2] if result.independent else PALETTE[3]
        off = abs(result.z) > top
        shown = min(abs(result.z), top)
        ax.axvline(shown, color=color, linewidth=2.5 if off else 2, linestyle="--" if off else "-")
        ax.annotate(f"|z| = {result.z:.3g}" + (" (off scale) ->" if off else ""), (shown, 0.3),
                    xytext=(-4 if off else 4, 0), textcoords="offset points", color=color, fontsize=8,
                    ha="right" if off else "left")
        ax.set_xlim(-top, top)
        ax.set_ylim(0, 0.45)
        ax.set_xlabel("Fisher z statistic (standard normal under independence)")
        ax.set_yticks([])
        cond = ", ".join(name(c) for c in result.cond) or "{}"
        verdict = "independent" if result.independent else "dependent"
        extra = f", n={n_samples:g}" if n_samples is not None else ""
        ax.set_title(f"{name(result.i)} vs {name(result.j)} | {cond}: rho={result.rho:+.3f}, "
                     f"p={result.p:.3g} -> {verdict} (alpha={alpha:g}{extra})", fontsize=8)
    return ax.figure


_INK = "#333333"


# --------------------------------------------------------------------------- predictions
def prediction_bars(probs: Mapping[str, np.ndarray], labels: Sequence[str] = (), *, ax: Axes | None = None,
                    title: str = "", top: int = 5) -> Figure:
    """Grouped bars of class probabilities, one group per named prediction (e.g. "before",
    "after"); for many classes only the ``top`` classes of the first prediction."""
    if not probs:
        raise ValueError("no predictions to draw")
    arrays = {k: np.asarray(v, dtype=float).ravel() for k, v in probs.items()}
    first = next(iter(arrays.values()))
    classes = list(range(len(first))) if len(first) <= top else list(np.argsort(-first)[:top])
    names = [labels[c] if c < len(labels) else str(c) for c in classes]
    with plt.rc_context(RC):
        if ax is None:
            _, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.4))
        width = 0.8 / len(arrays)
        for k, (name, p) in enumerate(arrays.items()):
            bars = ax.bar(np.arange(len(classes)) + (k - (len(arrays) - 1) / 2) * width, p[classes], width,
                          label=name, color=PALETTE[k % len(PALETTE)])
            for b in bars:
                b.set_gid(f"bar:{name}")
        ax.set_xticks(range(len(classes)), names)
        ax.set_ylim(0, 1)
        ax.set_ylabel("probability")
        ax.legend(frameon=False, fontsize=7)
        if title:
            ax.set_title(title)
    return ax.figure


# --------------------------------------------------------------------------- adversarial attention
def _as_head(a: np.ndarray) -> np.ndarray:
    """[n, n] for one head, the mean over heads for [H, n, n]."""
    return a if a.ndim == 2 else a.mean(0)


def adversarial_figure(result: Any, index: int = 0, *, fig: Figure | None = None,
                       width: float = PAGE_WIDTH) -> Figure:
    """Original vs adversarial attention ``index`` (heatmaps; the mean over heads for
    ``head="all"``), and per adversary the attention JSD and prediction TVD, and the raw vs
    efficient-attention distance (``analysis.adversarial.AdversarialResult``)."""
    r = result
    if not 0 <= index < r.k:
        raise IndexError(f"adversary {index} is out of range: there are {r.k} (0..{r.k - 1})")
    tokens = r.tokens
    with plt.rc_context(RC):
        if fig is None:
            fig = plt.figure(figsize=(width, width * 0.62))
        axes = fig.subplots(2, 2)
        where = f"layer {r.layer}, head {r.head}" + (" (mean over heads)" if r.head == "all" else "")
        vmax = float(max(_as_head(r.original_attention).max(), _as_head(r.attentions[index]).max()))
        attention_heatmap(_as_head(r.original_attention), tokens, ax=axes[0, 0], title=f"original, {where}",
                          vmax=vmax, colorbar=False)
        feas = "feasible" if r.feasible[index] else "infeasible"
        attention_heatmap(_as_head(r.attentions[index]), tokens, ax=axes[0, 1], vmax=vmax, colorbar=False,
                          title=f"adversary {index}: JSD {r.jsd[index]:.3f}, TVD {r.tvd[index]:.4f} ({feas})")
        ks = np.arange(r.k)
        ax = axes[1, 0]
        ax.bar(ks - 0.2, r.jsd, 0.4, label="attention JSD (bits)", color=PALETTE[0])
        ax.bar(ks + 0.2, r.tvd, 0.4, label="prediction TVD", color=PALETTE[3])
        ax.axhline(r.eps, color=PALETTE[3], linestyle=":", linewidth=1, label=f"eps = {r.eps:g}")
        ax.set_xticks(ks, [f"{k}" + ("" if f else "*") for k, f in zip(ks, r.feasible)])
        ax.set_xlabel("adversary (* infeasible)")
        ax.legend(frameon=False, fontsize=7)
        ax = axes[1, 1]
        ax.bar(ks - 0.2, r.raw_distance, 0.4, label="raw ||a_i - a||", color=PALETTE[5])
        ax.bar(ks + 0.2, r.efficient_distance, 0.4, label="efficient ||(a_i - a)P||", color=PALETTE[2])
        ax.set_xticks(ks)
        ax.set_xlabel("adversary")
        ax.set_ylabel("Frobenius distance")
        ax.legend(frameon=False, fontsize=7)
        fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- interventions
def intervention_figure(result: Any, trace: Any, *, labels: Sequence[str] = (), fig: Figure | None = None,
                        width: float = PAGE_WIDTH) -> Figure:
    """One intervention (``analysis.interventions.InterventionResult``) on ``trace``'s input:
    the head's attention before and after (or the removed tokens), and the prediction."""
    r = result
    with plt.rc_context(RC):
        if fig is None:
            fig = plt.figure(figsize=(width, width * 0.42))
        if r.override:
            (layer, head), edited = sorted(r.override.items())[0]
            more = f" (+{len(r.override) - 1} heads)" if len(r.override) > 1 else ""
            axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 0.8]})
            original = trace.attentions[layer, head]
            attention_heatmap(original, trace.tokens, ax=axes[0], colorbar=False,
                              title=f"original, layer {layer}, head {head}")
            attention_heatmap(np.asarray(edited), trace.tokens, ax=axes[1], colorbar=False,
                              title=f"{r.name}{more}")
            bars_ax = axes[2]
        else:
            axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 0.8]})
            token_sets(trace.tokens, [list(r.removed)], names=["removed"], notes=[f"by {r.removal!r}"], ax=axes[0])
            bars_ax = axes[1]
        prediction_bars({"before": r.original, "after": r.probs}, labels or trace.labels, ax=bars_ax,
                        title=f"TVD {r.tvd:.3g}" + (", prediction changed" if r.prediction_changed else ""))
        fig.tight_layout()
    return fig


def intervention_summary(results: Sequence[Any], *, ax: Axes | None = None, floor: float = 1e-12) -> Figure:
    """Prediction TVD of several interventions on one log scale (values below ``floor`` drawn at
    it): the invariant ones (efficient, add_null) sit at float error, the others do not."""
    if not results:
        raise ValueError("no intervention results to draw")
    with plt.rc_context(RC):
        if ax is None:
            _, ax = plt.subplots(figsize=(COLUMN_WIDTH * 1.4, 2.4))
        values = [max(r.tvd, floor) for r in results]
        colors = [PALETTE[3] if r.prediction_changed else PALETTE[0] for r in results]
        bars = ax.bar(range(len(results)), values, color=colors)
        for b, r in zip(bars, results):
            b.set_gid(f"bar:{r.name}")
        ax.set_yscale("log")
        ax.set_ylim(floor / 2, 1.5)
        ax.set_xticks(range(len(results)), [r.name for r in results], rotation=20)
        ax.set_ylabel("prediction TVD (log)")
        ax.set_title("prediction shift per intervention (red: top class changed)")
    return ax.figure
