"""Summaries of censored explanation results that drop nothing: bootstrap intervals, Kaplan-Meier
medians, "flipped within k" curves and paired comparisons with a sign test.

Input: the tidy table of :func:`analysis.experiments.faithfulness.run_unit` (one row per input x
method x head) with ``id``, ``method``, ``head``, ``found``, ``size``, ``censored_at`` and the
metric columns. An explainer is a (method, head) pair, labelled ``method[head]``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

__all__ = ["bootstrap_ci", "km_median", "km_at_risk", "compare_censored", "flipped_within", "paired_comparison",
           "summarize_results", "explainer_label", "per_head_table", "holm"]

OUTCOMES = ("smaller", "equal", "larger", "undecided")


def explainer_label(method: str, head: Any) -> str:
    """``"cleann[0]"``, ``"rollout"``."""
    return f"{method}[{head}]" if isinstance(head, str) and head else method


def bootstrap_ci(values: Sequence[float] | np.ndarray, stat: Callable[[np.ndarray], Any] | None = None, *,
                 n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(estimate, low, high): the percentile bootstrap interval of ``stat`` (default: the mean) over
    the values, resampled ``n_boot`` times with replacement (seeded). NaNs are dropped first."""
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if x.size == 0:
        return (np.nan, np.nan, np.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    if stat is None:
        est, boots = float(x.mean()), x[idx].mean(1)
    else:
        est, boots = float(stat(x)), np.array([stat(x[i]) for i in idx], dtype=np.float64)
    tail = (1 - level) / 2
    return est, float(np.quantile(boots, tail)), float(np.quantile(boots, 1 - tail))


def km_median(size: np.ndarray, censored_at: np.ndarray) -> float:
    """Kaplan-Meier median of a censored size: ``size`` (NaN: not found) and ``censored_at`` (for
    those not found: nothing flips up to this size; inf: never). inf when the survival never
    falls to 0.5 (report it as "> B", B the largest size searched)."""
    size, cens = np.asarray(size, dtype=np.float64), np.asarray(censored_at, dtype=np.float64)
    found = ~np.isnan(size)
    events = np.sort(np.unique(size[found]))
    surv = 1.0
    for t in events:
        surv *= 1.0 - np.sum(found & (size == t)) / km_at_risk(size, cens, t)
        if surv <= 0.5:
            return float(t)
    return math.inf


def km_at_risk(size: np.ndarray, censored_at: np.ndarray, t: float) -> int:
    """How many inputs the Kaplan-Meier estimate still rests on at size ``t``: those found at size
    ``t`` or more and those not found but searched up to ``t`` or more. A median whose risk set is a
    handful of inputs says little, most of all when the censoring is informative (a search that
    runs out of calls on the inputs that are hard to flip)."""
    size, cens = np.asarray(size, dtype=np.float64), np.asarray(censored_at, dtype=np.float64)
    found = ~np.isnan(size)
    return int(np.sum(found & (size >= t)) + np.sum(~found & (cens >= t)))


def compare_censored(s1: float, c1: float, s2: float, c2: float) -> str:
    """Method 1 vs method 2 on one input, sizes ``s`` (NaN: not found) censored at ``c``:
    smaller / equal / larger, or undecided when the censoring does not say."""
    f1, f2 = not math.isnan(s1), not math.isnan(s2)
    if f1 and f2:
        return "smaller" if s1 < s2 else "equal" if s1 == s2 else "larger"
    if f1:
        return "smaller" if c2 >= s1 else "undecided"
    if f2:
        return "larger" if c1 >= s2 else "undecided"
    return "undecided"


def flipped_within(df: pd.DataFrame, max_k: int | None = None, *, seed: int = 0, n_boot: int = 2000) -> pd.DataFrame:
    """Per explainer and k: the share of inputs whose flipping set has at most k tokens (within the
    method's budget; censored inputs count as not flipped), with a bootstrap 95% interval."""
    _check(df)
    max_k = int(np.nanmax(df["size"].to_numpy(dtype=float), initial=1)) if max_k is None else max_k
    rows = []
    for (method, head), g in df.groupby(["method", "head"], sort=False):
        sizes = g["size"].to_numpy(dtype=float)
        for k in range(1, max_k + 1):
            hit = np.where(np.isnan(sizes), 0.0, (sizes <= k).astype(float))
            est, lo, hi = bootstrap_ci(hit, seed=seed, n_boot=n_boot)
            rows.append({"explainer": explainer_label(method, head), "method": method, "head": head, "k": k,
                         "n": len(g), "share": est, "low": lo, "high": hi})
    return pd.DataFrame(rows)


def paired_comparison(df: pd.DataFrame, reference: str = "cleann", *, seed: int = 0) -> pd.DataFrame:
    """``reference`` (each head) vs every other explainer on the same inputs: smaller / equal /
    larger / undecided counts (censoring-aware, see :func:`compare_censored`), the two-sided sign
    test p-value over the decided unequal pairs (``scipy.stats.binomtest``), that p-value
    Holm-adjusted over the comparisons of the same reference row (``p_holm``, :func:`holm`), a
    bootstrap 95% interval of the share of inputs where ``reference`` is smaller, and whether each
    flipped the prediction within its budget (``flip_both`` / ``flip_ref_only`` / ``flip_other_only``
    / ``flip_neither``, with the exact McNemar p-value ``flip_p``: a binomial test over the inputs
    where only one flipped; a fair test only against a method given the same budget, such as
    ``random``)."""
    from scipy.stats import binomtest

    _check(df)
    ref = df[df.method == reference]
    if ref.empty:
        raise ValueError(f"no rows of the reference method {reference!r}; methods present: "
                         f"{', '.join(sorted(df.method.unique()))}")
    rows = []
    for head, r in ref.groupby("head", sort=False):
        r = r.set_index("id")
        others = df[(df.method != reference) & ((df["head"] == head) | (df["head"] == ""))]
        for (method, h2), o in others.groupby(["method", "head"], sort=False):
            o = o.set_index("id")
            ids = r.index.intersection(o.index)
            if not len(ids):
                continue
            out = [compare_censored(float(r.at[i, "size"]), float(r.at[i, "censored_at"]),
                                    float(o.at[i, "size"]), float(o.at[i, "censored_at"])) for i in ids]
            counts = {k: out.count(k) for k in OUTCOMES}
            decided = counts["smaller"] + counts["larger"]
            p = binomtest(counts["smaller"], decided, 0.5).pvalue if decided else np.nan
            est, lo, hi = bootstrap_ci([o == "smaller" for o in out], seed=seed)
            f1, f2 = r.loc[ids, "found"].astype(bool).to_numpy(), o.loc[ids, "found"].astype(bool).to_numpy()
            only1, only2 = int(np.sum(f1 & ~f2)), int(np.sum(~f1 & f2))
            rows.append({"reference": explainer_label(reference, head), "other": explainer_label(method, h2),
                         "n": len(ids), **counts, "sign_test_p": float(p), "share_smaller": est,
                         "share_smaller_low": lo, "share_smaller_high": hi,
                         "flip_both": int(np.sum(f1 & f2)), "flip_ref_only": only1, "flip_other_only": only2,
                         "flip_neither": int(np.sum(~f1 & ~f2)),
                         "flip_p": float(binomtest(only1, only1 + only2, 0.5).pvalue) if only1 + only2 else np.nan})
    table = pd.DataFrame(rows)
    if len(table):
        table.insert(table.columns.get_loc("sign_test_p") + 1, "p_holm", np.nan)
        for _, group in table.groupby("reference", sort=False):
            table.loc[group.index, "p_holm"] = holm(group["sign_test_p"].to_numpy(dtype=float))
    return table


def summarize_results(df: pd.DataFrame, *, seed: int = 0, n_boot: int = 2000) -> dict[str, pd.DataFrame]:
    """Every summary table, censored rows kept: ``sizes`` (per explainer: found share, KM median
    size with interval, calls, seconds, how searches stopped), ``curves`` (flipped within k),
    ``paired`` (CLEANN vs each), ``exhaustive`` (reaching the true minimum, on inputs where
    exhaustive search ran and found one), ``faithfulness`` (ERASER AOPCs). Every number has a
    bootstrap 95% interval (``_low``/``_high``)."""
    _check(df)
    tables = {"sizes": _sizes(df, seed, n_boot), "curves": flipped_within(df, seed=seed, n_boot=n_boot)}
    if (df.method == "cleann").any():
        tables["paired"] = paired_comparison(df, seed=seed)
    if "exact_size" in df.columns and df["exact_size"].notna().any():
        tables["exhaustive"] = _per_explainer(df[df["exact_size"].notna() & (df.method != "exhaustive")],
                                              ["exact_size", "exact_set"], seed, n_boot)
    metric_cols = [c for c in ("aopc_comp", "aopc_suff", "comp_20", "suff_20") if c in df.columns]
    if metric_cols and df[metric_cols].notna().any().any():
        tables["faithfulness"] = _per_explainer(df[df[metric_cols[0]].notna()], metric_cols, seed, n_boot)
    return tables


def per_head_table(df: pd.DataFrame, *, against: Sequence[str] = ("attention", "random", "integrated_gradients",
                                                                   "leave_one_out"),
                   same_inputs: bool = False, seed: int = 0, n_boot: int = 2000) -> pd.DataFrame:
    """One row per CLEANN head (``head`` column: a head index or "all"): the inputs it ran on,
    its found share and Kaplan-Meier median size (bootstrap 95% intervals), and for each method of
    ``against`` that ran on the same inputs (per head for head-specific methods such as
    ``attention`` and ``random``) the smaller / equal / larger / undecided counts and the sign-test
    p-value (:func:`paired_comparison`), and that p-value Holm-adjusted over the table's heads
    (``{method}_p_holm``: one family of tests per compared method, see :func:`holm`); with ``exhaustive`` rows (matched by input ``id``, so they
    may come from another run on the same inputs), the share of the inputs with a known minimum where
    CLEANN reached the minimum size (``exact_size``, over ``exact_n`` inputs). Censored inputs are kept everywhere; a comparison that
    did not run is NaN. Rows are in head order (indices, then "all"). ``same_inputs``: only the
    inputs on which every CLEANN head ran (heads from runs of different lengths compared on the
    same inputs)."""
    _check(df)
    if not (df.method == "cleann").any():
        raise ValueError("no CLEANN rows: per_head_table compares CLEANN's heads")
    if same_inputs:
        c = df[df.method == "cleann"]
        ran = c.groupby("id")["head"].nunique()
        df = df[df["id"].isin(ran.index[ran == c["head"].nunique()])]
    sizes = _sizes(df[df.method == "cleann"], seed, n_boot).set_index("head")
    paired = paired_comparison(df[(df.method == "cleann") | df.method.isin(against)], seed=seed)
    truth = df[(df.method == "exhaustive") & df.found.astype(bool)].drop_duplicates("id").set_index("id")["size"]
    heads = sorted(sizes.index, key=lambda h: (not str(h).isdigit(), int(h) if str(h).isdigit() else 0, str(h)))
    rows = []
    for h in heads:
        s = sizes.loc[h]
        row: dict[str, Any] = {"head": h, "n": int(s["n"]), "found": s["found"], "found_low": s["found_low"],
                               "found_high": s["found_high"], "median_size": s["median_size"],
                               "median_label": s["median_label"], "median_at_risk": s["median_at_risk"],
                               "median_size_low": s["median_size_low"],
                               "median_size_high": s["median_size_high"]}
        ref = paired[paired.reference == explainer_label("cleann", h)] if len(paired) else paired
        for method in against:
            hit = ref[ref.other.isin([explainer_label(method, h), method])] if len(ref) else ref
            for k in (*OUTCOMES, "sign_test_p"):
                row[f"{method}_{k}"] = hit[k].iloc[0] if len(hit) else np.nan
        if len(truth):
            c = df[(df.method == "cleann") & (df["head"] == h) & df["id"].isin(truth.index)]
            reached = (c["size"].to_numpy(dtype=float) == truth.loc[c["id"]].to_numpy(dtype=float)).astype(float)
            est, lo, hi = bootstrap_ci(reached, seed=seed, n_boot=n_boot)
            row.update(exact_n=len(c), exact_size=est, exact_size_low=lo, exact_size_high=hi)
        rows.append(row)
    table = pd.DataFrame(rows)
    for method in against:
        table[f"{method}_p_holm"] = holm(table[f"{method}_sign_test_p"].to_numpy(dtype=float))
    return table


def holm(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control, no independence assumed):
    with the m finite p-values sorted, ``p_(i)`` becomes ``max_{j <= i} min(1, (m - j + 1) p_(j))``.
    An adjusted value below alpha rejects at family-wise level alpha; NaN stays NaN (not counted in m)."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


def _check(df: pd.DataFrame) -> None:
    if df.empty:
        raise ValueError("no results to summarise")
    missing = {"id", "method", "head", "found", "size", "censored_at"} - set(df.columns)
    if missing:
        raise ValueError(f"the results table lacks columns {sorted(missing)}")


def _per_explainer(df: pd.DataFrame, cols: Sequence[str], seed: int, n_boot: int) -> pd.DataFrame:
    rows = []
    for (method, head), g in df.groupby(["method", "head"], sort=False):
        row: dict[str, Any] = {"explainer": explainer_label(method, head), "method": method, "head": head, "n": len(g)}
        for c in cols:
            est, lo, hi = bootstrap_ci(g[c].astype(float).to_numpy(), seed=seed, n_boot=n_boot)
            row.update({c: est, f"{c}_low": lo, f"{c}_high": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def _sizes(df: pd.DataFrame, seed: int, n_boot: int) -> pd.DataFrame:
    rows = []
    for (method, head), g in df.groupby(["method", "head"], sort=False):
        size, cens = g["size"].to_numpy(dtype=float), g["censored_at"].to_numpy(dtype=float)
        pairs = np.column_stack([size, cens])
        med = km_median(size, cens)
        rng = np.random.default_rng(seed)
        boots = [km_median(*pairs[rng.integers(0, len(g), len(g))].T) for _ in range(min(n_boot, 500))]
        found, f_lo, f_hi = bootstrap_ci(g["found"].astype(float).to_numpy(), seed=seed, n_boot=n_boot)
        calls, c_lo, c_hi = (bootstrap_ci(g["calls"].astype(float).to_numpy(), seed=seed, n_boot=n_boot)
                             if "calls" in g.columns else (np.nan,) * 3)
        searched = float(np.nanmax(np.where(np.isinf(cens), np.nan, cens), initial=0)) if (~g.found).any() else 0.0
        stopped = g["stopped"].value_counts() if "stopped" in g.columns else pd.Series(dtype=int)
        rows.append({
            "explainer": explainer_label(method, head), "method": method, "head": head, "n": len(g),
            "found": found, "found_low": f_lo, "found_high": f_hi,
            "median_size": med, "median_size_low": _order_stat(boots, 0.025),
            "median_size_high": _order_stat(boots, 0.975),
            "median_label": f"{med:g}" if np.isfinite(med) else f"> {searched:g}",
            "median_at_risk": km_at_risk(size, cens, med) if np.isfinite(med) else np.nan,
            "censored": int((~g.found.astype(bool)).sum()),
            "calls": calls, "calls_low": c_lo, "calls_high": c_hi,
            "total_calls": float(g["total_calls"].mean()) if "total_calls" in g.columns else np.nan,
            "seconds": float(g["seconds"].mean()) if "seconds" in g.columns else np.nan,
            "budget": "; ".join(sorted(g["budget"].astype(str).unique())) if "budget" in g.columns else "",
            **{f"stopped_{k}": int(stopped.get(k, 0)) for k in ("found", "calls", "size", "exhausted")}})
    return pd.DataFrame(rows)


def _order_stat(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile as an order statistic (no interpolation, so inf stays inf)."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    return float(v[min(len(v) - 1, max(0, int(np.floor(q * (len(v) - 1)))))]) if len(v) else np.nan
