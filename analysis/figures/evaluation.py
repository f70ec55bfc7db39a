"""Figures of the explanation evaluation (``analysis.evaluation``): censored size curves, CLEANN vs
the exhaustive minimum, faithfulness bars with intervals, CLEANN per head against a baseline. Each takes result tables and an
optional ``ax`` and returns the Figure; every title states n and the budget."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.evaluation.summary import explainer_label, flipped_within
from analysis.figures.style import PALETTE, RC

__all__ = ["censored_size_curves", "cleann_vs_exhaustive", "faithfulness_bars", "per_head_outcomes"]


def _ax(ax: Axes | None, size: tuple[float, float]) -> Axes:
    return Figure(figsize=size).add_subplot() if ax is None else ax


def _budget(df: pd.DataFrame) -> str:
    return "; ".join(sorted(df["budget"].astype(str).unique())) if "budget" in df.columns else "budget not stated"


def censored_size_curves(results: pd.DataFrame, *, explainers: Sequence[str] | None = None, max_k: int = 10,
                         ax: Axes | None = None, seed: int = 0) -> Figure:
    """Share of inputs flipped by a set of at most k tokens (k = 1..``max_k``), per explainer,
    with bootstrap 95% bands; inputs a method never flipped within its budget stay in the
    denominator (a survival-style curve over the results table)."""
    curves = flipped_within(results, max_k, seed=seed, n_boot=1000)
    names = list(dict.fromkeys(curves.explainer)) if explainers is None else list(explainers)
    unknown = set(names) - set(curves.explainer)
    if unknown:
        raise ValueError(f"no results for {sorted(unknown)}; explainers present: {sorted(set(curves.explainer))}")
    import matplotlib.pyplot as plt

    with plt.rc_context(RC):
        ax = _ax(ax, (4.5, 3.0))
        for j, name in enumerate(names):
            c = curves[curves.explainer == name]
            color = PALETTE[j % len(PALETTE)]
            line, = ax.step(c.k, c.share, where="post", color=color, label=f"{name} (n={int(c.n.iloc[0])})")
            line.set_gid(f"curve:{name}")
            ax.fill_between(c.k, c.low, c.high, step="post", color=color, alpha=0.15, linewidth=0)
        ax.set_xlabel("k (tokens removed)")
        ax.set_ylabel("share flipped within k")
        ax.set_ylim(0, 1)
        n = results["id"].nunique()
        ax.set_title(f"{n} inputs (exhaustive: the short ones); budget: {_budget(results)}", fontsize=8)
        ax.legend(frameon=False, fontsize=6)
    return ax.figure


def cleann_vs_exhaustive(results: pd.DataFrame, *, method: str = "cleann", head: str | None = None,
                         ax: Axes | None = None, seed: int = 0, allow_empty: bool = False) -> Figure:
    """Smallest set found by ``method`` (y; "none" when not found within the budget) against the
    true minimum from exhaustive search (x), one dot per input (jittered), on inputs where
    exhaustive search ran and found a set. Without such inputs: a ValueError, or with
    ``allow_empty`` an empty panel that says so (tiny fast-mode samples)."""
    import matplotlib.pyplot as plt

    if "exhaustive_size" not in results.columns:
        sel = results.iloc[:0]
        why = "no exhaustive results: run with the 'exhaustive' method on short inputs"
    else:
        sel = results[(results.method == method) & results.exhaustive_size.notna()]
        if head is not None:
            sel = sel[sel["head"].astype(str) == str(head)]
        why = f"no {method} rows with an exhaustive minimum"
    if sel.empty:
        if not allow_empty:
            raise ValueError(why)
        with plt.rc_context(RC):
            ax = _ax(ax, (3.2, 3.0))
            ax.set_axis_off()
            ax.text(0.5, 0.5, f"{why}\n(exhaustive search runs on inputs with few candidate tokens)", ha="center",
                    va="center", fontsize=7, wrap=True, transform=ax.transAxes)
        return ax.figure

    rng = np.random.default_rng(seed)
    x = sel.exhaustive_size.to_numpy(float)
    top = int(np.nanmax(np.r_[x, sel["size"].to_numpy(float)])) + 1
    y = np.where(sel["size"].isna(), top, sel["size"].to_numpy(float))
    with plt.rc_context(RC):
        ax = _ax(ax, (3.2, 3.0))
        jx, jy = rng.uniform(-0.15, 0.15, len(x)), rng.uniform(-0.15, 0.15, len(x))
        dots = ax.scatter(x + jx, y + jy, s=10, color=PALETTE[0], alpha=0.7)
        dots.set_gid(f"dots:{method}")
        ax.plot([0.5, top], [0.5, top], color="#888", linewidth=0.8, linestyle="--")
        ax.set_yticks(range(1, top + 1), [str(k) for k in range(1, top)] + ["none"])
        ax.set_xlabel("exhaustive minimum size")
        ax.set_ylabel(f"{explainer_label(method, head or '')} size")
        exact = float((sel["size"] == sel.exhaustive_size).mean())
        ax.set_title(f"{len(sel)} inputs; same size {exact:.0%}; budget: {_budget(sel)}", fontsize=8)
    return ax.figure


def faithfulness_bars(table: pd.DataFrame, *, metric: str = "aopc_comp", ax: Axes | None = None) -> Figure:
    """One bar per explainer: ``metric`` (a column of the ``faithfulness`` summary, e.g.
    ``aopc_comp`` or ``aopc_suff``) with its bootstrap 95% interval as error bars."""
    need = {"explainer", metric, f"{metric}_low", f"{metric}_high", "n"}
    if not need <= set(table.columns):
        raise ValueError(f"the table needs columns {sorted(need)} (summarize_results(...)['faithfulness'])")
    import matplotlib.pyplot as plt

    with plt.rc_context(RC):
        ax = _ax(ax, (max(3.0, 0.45 * len(table) + 1), 3.0))
        x = np.arange(len(table))
        v = table[metric].to_numpy(float)
        err = np.vstack([v - table[f"{metric}_low"].to_numpy(float), table[f"{metric}_high"].to_numpy(float) - v])
        bars = ax.bar(x, v, color=[PALETTE[i % len(PALETTE)] for i in range(len(table))], yerr=err, capsize=2)
        for b, name in zip(bars, table.explainer):
            b.set_gid(f"bar:{name}")
        ax.set_xticks(x, table.explainer, rotation=60, ha="right", fontsize=6)
        ax.set_ylabel(metric.replace("_", " "))
        ax.set_title(f"n = {int(table.n.max())} inputs per bar, 95% bootstrap intervals", fontsize=8)
    return ax.figure


#: colours of the paired outcomes (CLEANN smaller / equal / larger / undecided)
OUTCOME_COLOURS = {"smaller": PALETTE[2], "equal": "#bbbbbb", "larger": PALETTE[3], "undecided": "#eeeeee"}


def per_head_outcomes(table: pd.DataFrame, *, against: str = "attention", ax: Axes | None = None) -> Figure:
    """One stacked bar per CLEANN head (rows of :func:`analysis.evaluation.per_head_table`): the
    share of the head's inputs on which CLEANN's smallest flipping set was smaller / equal /
    larger than ``against``'s (per head for head-specific methods) or undecided (censoring);
    undecided inputs are drawn, never dropped, and the title gives the inputs per head."""
    cols = [f"{against}_{k}" for k in OUTCOME_COLOURS]
    missing = [c for c in ("head", "n", *cols) if c not in table.columns]
    if missing:
        raise ValueError(f"the table needs columns {missing} (analysis.evaluation.per_head_table(..., "
                         f"against=[{against!r}, ...]))")
    rows = table[table[cols].notna().all(axis=1)]
    if rows.empty:
        raise ValueError(f"no head was compared with {against!r}")
    import matplotlib.pyplot as plt

    with plt.rc_context(RC):
        ax = _ax(ax, (max(3.2, 0.35 * len(rows) + 1.2), 3.0))
        x = np.arange(len(rows))
        bottom = np.zeros(len(rows))
        for outcome, colour in OUTCOME_COLOURS.items():
            v = rows[f"{against}_{outcome}"].to_numpy(float) / rows["n"].to_numpy(float)
            bars = ax.bar(x, v, bottom=bottom, color=colour, edgecolor="#777", linewidth=0.4, label=outcome)
            for b, h in zip(bars, rows["head"]):
                b.set_gid(f"bar:{h}:{outcome}")
            bottom += v
        ax.set_xticks(x, [str(h) for h in rows["head"]])
        ax.set_xlabel("CLEANN head (last layer)")
        ax.set_ylabel("share of inputs")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=6, ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
        n = rows["n"].astype(int)
        span = f"{n.min()}" if n.min() == n.max() else f"{n.min()}-{n.max()}"
        ax.set_title(f"CLEANN vs {against}: smaller / equal / larger / undecided ({span} inputs per head)", fontsize=8)
    return ax.figure
