"""Tokens as highlighted text: one attention row, explanation sets, removed tokens.

Each function lays the tokens out like running text (wrapped to the axes' width) with a
coloured box behind each token. An HTML twin (``token_highlight_html``) renders the same
picture as text for notebooks and widgets.
"""
from __future__ import annotations

import html
from typing import Any, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.textpath import TextPath

from analysis.figures.style import PALETTE, RC

#: colour map of token highlights (light at 0, so black text stays readable)
HIGHLIGHT_CMAP = "Oranges"
#: colours of explanation sets (first set, second set, ...) and of the attention baseline
SET_COLORS = ("#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#F0E442")
BASELINE_COLOR = "#BBBBBB"

_FONT = 9.0          # points
_LINE = 2.1          # line height in font sizes
_GAP = 5.0           # points between tokens


def _check(tokens: Sequence[str], weights: np.ndarray | None) -> np.ndarray:
    n = len(tokens)
    if n == 0:
        raise ValueError("no tokens to draw")
    if weights is None:
        return np.zeros(n)
    w = np.asarray(weights, dtype=float)
    if w.shape != (n,):
        raise ValueError(f"weights have shape {w.shape} but there are {n} tokens")
    return w


def _colors(weights: np.ndarray, cmap: str, vmax: float | None) -> list[tuple[float, ...]]:
    """RGBA per token: ``cmap(|w| / vmax)``; zero weight gives the lightest colour."""
    top = float(np.max(np.abs(weights))) if vmax is None else float(vmax)
    scale = np.abs(weights) / top if top > 0 else np.zeros_like(weights)
    cm = mpl.colormaps[cmap]
    return [tuple(cm(0.05 + 0.75 * float(np.clip(s, 0, 1)))) for s in scale]


def _ink(color: Any) -> str:
    """Black or white text, whichever reads better on ``color``."""
    r, g, b = mpl.colors.to_rgb(color)
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _width_pt(token: str, size: float) -> float:
    return TextPath((0, 0), token or " ", size=size).get_extents().width


def _layout(tokens: Sequence[str], width_pt: float, size: float, indent: float = 0.0
            ) -> list[tuple[float, int]]:
    """(x in points, line number) of each token, wrapping at ``width_pt``."""
    out, x, line = [], indent, 0
    for tok in tokens:
        w = _width_pt(tok, size) + 2 * 0.3 * size
        if x > indent and x + w > width_pt:
            x, line = indent, line + 1
        out.append((x, line))
        x += w + _GAP
    return out


def _n_lines(tokens: Sequence[str], width_pt: float, size: float, indent: float = 0.0) -> int:
    return 1 + max(line for _, line in _layout(tokens, width_pt, size, indent))


def _axes_width_pt(ax: Axes) -> float:
    return ax.get_position().width * ax.figure.get_figwidth() * 72.0


def draw_tokens(ax: Axes, tokens: Sequence[str], colors: Sequence[Any], *, top: float = 0.0,
                size: float = _FONT, indent: float = 0.0, edges: Sequence[Any] | None = None,
                gid: str = "token") -> float:
    """Draw ``tokens`` as wrapped text boxes on ``ax`` (data units = points, y down) from
    line ``top``; return the y of the next free line. ``edges``: optional box outline colours."""
    width = _axes_width_pt(ax)
    step = _LINE * size
    for k, ((x, line), tok, col) in enumerate(zip(_layout(tokens, width, size, indent), tokens, colors)):
        edge = edges[k] if edges is not None and edges[k] is not None else "none"
        t = ax.text(x + 0.3 * size, top + (line + 0.5) * step, tok, fontsize=size, va="center", ha="left",
                    color=_ink(col), bbox=dict(boxstyle="round,pad=0.25", facecolor=col, edgecolor=edge,
                                               linewidth=1.2))
        t.set_gid(f"{gid}:{k}")
    lines = 1 + max(line for _, line in _layout(tokens, width, size, indent))
    return top + lines * step


def _text_axes(ax: Axes | None, height_pt: float, width_in: float) -> Axes:
    """An axes whose data units are points (y pointing down), sized for ``height_pt``."""
    if ax is None:
        fig = plt.figure(figsize=(width_in, max(0.4, height_pt / 72.0 + 0.15)))
        ax = fig.add_axes((0.01, 0.01, 0.98, 0.98))
    w = _axes_width_pt(ax)
    h = ax.get_position().height * ax.figure.get_figheight() * 72.0
    ax.set_xlim(0, w)
    ax.set_ylim(max(h, height_pt), 0)
    ax.set_axis_off()
    return ax


def token_highlight(tokens: Sequence[str], weights: np.ndarray | None, *, ax: Axes | None = None,
                    cmap: str = HIGHLIGHT_CMAP, vmax: float | None = None, title: str = "",
                    marked: Sequence[int] = (), width: float = 7.0, size: float = _FONT) -> Figure:
    """Tokens as running text, each box coloured by its weight (e.g. one attention row [n]).

    ``marked`` positions get a dark outline (e.g. the query token); ``width`` in inches when
    a new figure is made.
    """
    w = _check(tokens, weights)
    with plt.rc_context(RC):
        indent = 0.0
        head = (_LINE * size if title else 0.0)
        lines = _n_lines(tokens, width * 72.0 * 0.98, size, indent)
        ax = _text_axes(ax, head + lines * _LINE * size, width)
        if title:
            ax.text(0, 0.5 * _LINE * size, title, fontsize=size + 1, va="center", ha="left")
        edges = [PALETTE[7] if i in set(marked) else None for i in range(len(tokens))]
        draw_tokens(ax, tokens, _colors(w, cmap, vmax), top=head, size=size, edges=edges)
    return ax.figure


def token_highlight_html(tokens: Sequence[str], weights: np.ndarray | None, *, cmap: str = HIGHLIGHT_CMAP,
                         vmax: float | None = None, marked: Sequence[int] = (), title: str = "",
                         decimals: int = 3) -> str:
    """The same picture as :func:`token_highlight`, as an HTML snippet (hover shows the weight)."""
    w = _check(tokens, weights)
    spans = []
    for i, (tok, col, wi) in enumerate(zip(tokens, _colors(w, cmap, vmax), w)):
        border = "2px solid #000" if i in set(marked) else "1px solid transparent"
        spans.append(f'<span title="{i}: {wi:.{decimals}f}" style="background:{mpl.colors.to_hex(col)};'
                     f'color:{_ink(col)};border:{border};border-radius:3px;padding:1px 3px;margin:1px;'
                     f'display:inline-block">{html.escape(tok)}</span>')
    caption = f"<div style='font-size:90%;margin-bottom:2px'>{html.escape(title)}</div>" if title else ""
    return f"<div style='line-height:1.9'>{caption}{''.join(spans)}</div>"


def token_sets(tokens: Sequence[str], sets: Sequence[Sequence[int]], *, names: Sequence[str] | None = None,
               notes: Sequence[str] | None = None, colors: Sequence[Any] | None = None,
               ax: Axes | None = None, width: float = 7.0, size: float = _FONT, title: str = "") -> Figure:
    """One line of text per token set, the set's tokens highlighted; ``names`` label each line
    on the left, ``notes`` follow it (e.g. the prediction after removing the set)."""
    if not sets:
        raise ValueError("no token sets to draw")
    names = list(names) if names is not None else [f"set {k + 1}" for k in range(len(sets))]
    notes = list(notes) if notes is not None else [""] * len(sets)
    colors = list(colors) if colors is not None else [SET_COLORS[k % len(SET_COLORS)] for k in range(len(sets))]
    if not len(names) == len(notes) == len(colors) == len(sets):
        raise ValueError("names, notes and colors need one entry per set")
    for s in sets:
        bad = [i for i in s if not 0 <= int(i) < len(tokens)]
        if bad:
            raise IndexError(f"positions {bad} are out of range: there are {len(tokens)} tokens")
    with plt.rc_context(RC):
        indent = max(_width_pt(nm, size) for nm in names) + 2 * size
        head = _LINE * size if title else 0.0
        per = [_n_lines(tokens, width * 72.0 * 0.98, size, indent) + (1 if nt else 0) for nt in notes]
        ax = _text_axes(ax, head + sum(per) * _LINE * size + 0.4 * size * len(sets), width)
        if title:
            ax.text(0, 0.5 * _LINE * size, title, fontsize=size + 1, va="center", ha="left")
        y = head
        for k, (s, name, note, col) in enumerate(zip(sets, names, notes, colors)):
            chosen = {int(i) for i in s}
            cols = [col if i in chosen else "#F2F2F2" for i in range(len(tokens))]
            ax.text(0, y + 0.5 * _LINE * size, name, fontsize=size, va="center", ha="left", weight="bold")
            y = draw_tokens(ax, tokens, cols, top=y, size=size, indent=indent, gid=f"set{k}")
            if note:
                ax.text(indent, y + 0.5 * _LINE * size, note, fontsize=size - 0.5, va="center", ha="left",
                        color="#444444")
                y += _LINE * size
            y += 0.4 * size
    return ax.figure


def explanation_figure(explanation: Any, *, labels: Sequence[str] = (), ax: Axes | None = None,
                       width: float = 7.0) -> Figure:
    """CLEANN's minimal explanation sets (one line each) and the attention baseline, with the
    prediction before and after removing each set (``analysis.abcd.Explanation``); ``labels``
    names the classes (e.g. ``model.labels``)."""
    e = explanation
    names, sets, notes, colors = [], [], [], []
    before = _prob_text(output_probs(e.probs), labels)
    for k, s in enumerate(e.sets):
        check = next((c for c in e.checks if list(c.positions) == list(s)), None)
        names.append(f"set {k + 1}")
        sets.append(s)
        notes.append(f"{before}  ->  {_prob_text(check.probs, labels)}" if check is not None else "")
        colors.append(SET_COLORS[k % len(SET_COLORS)])
    b = e.baseline
    if b.size:
        names.append("attention top-k")
        sets.append(list(b.set))
        notes.append(f"{before}  ->  {_prob_text(b.checks[-1].probs, labels)}")
        colors.append(BASELINE_COLOR)
    if not sets:
        names, sets, notes, colors = ["(none found)"], [[]], [f"{before}; no set changed the output"], [BASELINE_COLOR]
    title = f"Explaining {e.tokens[e.target]}@{e.target}: minimal sets of size {e.size}" if e.size else \
        f"Explaining {e.tokens[e.target]}@{e.target}: no explanation set found"
    return token_sets(e.tokens, sets, names=names, notes=notes, colors=colors, ax=ax, width=width, title=title)


def output_probs(probs: np.ndarray) -> np.ndarray:
    """The output distribution [C] of a prediction: a classifier's probabilities, or a language
    model's at the last position (its ``[n, V]`` probabilities give the last row)."""
    probs = np.asarray(probs)
    return probs if probs.ndim == 1 else probs[-1]


def _prob_text(probs: np.ndarray, labels: Sequence[str]) -> str:
    """``label p`` of the top class of ``probs`` (class index when unlabeled)."""
    k = int(np.argmax(probs))
    name = labels[k] if k < len(labels) else f"class {k}"
    return f"{name} {float(probs[k]):.3f}"


def ranked_items_html(probs: np.ndarray, labels: Sequence[str] = (), *, k: int = 10, title: str = "",
                      marked: Sequence[int] = (), ids: bool = True) -> str:
    """The ``k`` most probable outputs of ``probs`` [C] (e.g. a recommender's items over its
    catalogue) as a numbered HTML list, best first, each ``label (#id) p``; ``marked`` ids are bold."""
    p = output_probs(probs)
    if k < 1:
        raise ValueError(f"k must be a positive integer, not {k!r}")
    order = np.argsort(-p, kind="stable")[:k]
    chosen = {int(m) for m in marked}
    items = []
    for i in order:
        name = labels[i] if i < len(labels) else f"class {i}"
        text = html.escape(f"{name}" + (f" (#{int(i)})" if ids else "") + f" {float(p[i]):.3f}")
        items.append(f"<li>{'<b>' + text + '</b>' if int(i) in chosen else text}</li>")
    caption = f"<div style='font-size:90%'>{html.escape(title)}</div>" if title else ""
    return f"{caption}<ol style='margin:2px 0 2px 18px;padding:0;font-size:90%'>{''.join(items)}</ol>"
