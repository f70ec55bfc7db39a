"""Efficient-attention claims (Naim & Asher 2024) and adversarial attention (Jain & Wallace
2019) at dataset scale, as tidy tables.

- :func:`measure` (one text): nullity, row-sum error and negative mass of every head, and the
  logits under four edits: every head of ``layer`` swapped for ``A_eff``; every head of every
  layer swapped; a random null-space component of norm ``||A||`` added to every head of
  ``layer`` ("null-shifted"); the same inside col(T) ("efficient-shifted").
- :func:`nullity_table` (one row per text x layer x head) and :func:`nullity_summary`
  (per layer); :func:`output_table` (one row per text x edit) and :func:`wasserstein_table`
  (per edit: output change, flips, the 1-D Wasserstein distance between the prediction
  scores over the texts, original vs edited).
- :func:`adversarial_table` (one row per adversary) and :func:`adversarial_summary`: JSD from
  the original, prediction TVD, raw and efficient distances, the efficient share
  ``||(a_i - a) P|| / ||a_i - a||`` and the same share for unconstrained random attention;
  :func:`adversarial_ci`: per-example means with bootstrap 95% intervals over examples.

``basis`` is explicit everywhere: "value" for transformers (the exact invariance);
"value_output" puts a single-attention classifier's decoder in T, where sharing the efficient
attention at equal prediction holds by construction.
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from analysis.adversarial import search
from analysis.efficient import decompose_layer
from analysis.interventions import output_logits, random_component
from analysis.metrics import tvd, wasserstein_1d
from analysis.sensitivity import ablated_attention

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

__all__ = ["measure", "measure_texts", "measure_record", "records_to_runs", "adversary_rows", "nullity_table", "nullity_summary", "output_table", "wasserstein_table",
           "score", "random_share", "with_null_space", "adversarial_table", "adversarial_summary",
           "adversarial_ci", "CI_MEASURES", "EDITS"]

#: the edits of :func:`measure`, in order ({layer} is filled in)
EDITS = ("efficient, layer {layer}", "efficient, all layers", "null-shifted, layer {layer}",
         "efficient-shifted, layer {layer}")


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def score(probs: np.ndarray) -> np.ndarray:
    """The prediction value compared over a dataset [N]: p(positive) for two classes, else p(top)."""
    probs = np.asarray(probs)
    return probs[:, 1] if probs.shape[1] == 2 else probs.max(1)


# --------------------------------------------------------------------------- claims 1-3
def measure(model: TracedModel, text: str, *, layer: int = -1, seed: int = 0, basis: str = "value",
            outputs: bool = True) -> dict[str, Any]:
    """Nullity / row-sum error / negative mass [L, H] of one text, and (``outputs``) the
    original logits [C] and the logits under each edit of :data:`EDITS` (name -> [C])."""
    trace = model.trace(text)
    layer %= model.n_layers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = [decompose_layer(trace, lay, basis=basis, model=model) for lay in range(model.n_layers)]
    run = {"n": trace.n_tokens,
           "rank": np.array([[p.rank for p in lp] for lp in parts]),
           "nullity": np.array([[p.nullity for p in lp] for lp in parts]),
           "row_sum_error": np.array([[p.row_sum_error for p in lp] for lp in parts]),
           "negative_mass": np.array([[p.negative_mass for p in lp] for lp in parts])}
    if not outputs:
        return run
    rng = np.random.default_rng(seed)
    shifted = {inside: {(layer, p.head): p.attention + random_component(p, rng, scale=1.0, inside=inside)
                        for p in parts[layer]} for inside in (False, True)}
    names = [e.format(layer=layer) for e in EDITS]
    edits = {
        names[0]: {(layer, p.head): p.effective for p in parts[layer]},
        names[1]: {(p.layer, p.head): p.effective for layer_parts in parts for p in layer_parts},
        names[2]: shifted[False],
        names[3]: shifted[True],
    }
    run["original"] = output_logits(model, text)
    run["edited"] = {name: output_logits(model, text, attention_override=ov) for name, ov in edits.items()}
    return run


def measure_record(run: dict[str, Any]) -> dict[str, Any]:
    """One :func:`measure` result as plain lists (a Parquet-friendly row); :func:`records_to_runs`
    inverts it exactly."""
    rec = {"n": int(run["n"])}
    rec.update({k: run[k].tolist() for k in ("rank", "nullity", "row_sum_error", "negative_mass")})
    if "original" in run:
        rec["original"] = np.asarray(run["original"]).tolist()
        rec["edit_names"] = list(run["edited"])
        rec["edited"] = [np.asarray(v).tolist() for v in run["edited"].values()]
    return rec


def _array(x: Any, dtype: Any) -> np.ndarray:
    """Nested lists, or what Parquet gives back (arrays of arrays), as one array."""
    if isinstance(x, np.ndarray) and x.dtype == object:
        return np.array([_array(v, dtype) for v in x], dtype=dtype)
    return np.array(x, dtype=dtype)


def records_to_runs(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The :func:`measure` results of a table of :func:`measure_record` rows (in row order)."""
    runs = []
    for rec in df.to_dict("records"):
        run = {"n": int(rec["n"]), "rank": _array(rec["rank"], np.int64), "nullity": _array(rec["nullity"], np.int64),
               "row_sum_error": _array(rec["row_sum_error"], np.float64),
               "negative_mass": _array(rec["negative_mass"], np.float64)}
        names = rec.get("edit_names")
        if names is not None and not (isinstance(names, float) and np.isnan(names)):
            run["original"] = _array(rec["original"], np.float64)
            run["edited"] = {str(name): _array(v, np.float64) for name, v in zip(names, rec["edited"])}
        runs.append(run)
    return runs


def measure_texts(model: TracedModel, texts: Sequence[str], *, layer: int = -1, seed: int = 0, basis: str = "value",
                  outputs: bool = True, progress: bool = False, desc: str = "", workers: int = 1,
                  scheduler: Any = None, out: Any = None, dataset: str = "") -> list[dict[str, Any]]:
    """:func:`measure` for each text (seed ``seed + i`` for text ``i``), through the runner
    (``workers``, ``scheduler``, ``out``: see :func:`analysis.experiments.run`)."""
    from analysis.experiments.runner import completed_rows, run
    from analysis.experiments.tasks import get_task

    texts = list(texts)
    if not texts:
        return []
    settings = dict(layer=int(layer), basis=basis, outputs=bool(outputs))
    units = [{"id": str(i), "dataset": dataset, "text_id": i, "text": t, "cut": False, "seed": seed + i, **settings}
             for i, t in enumerate(texts)]
    df = run(get_task("efficient"), units, workers=workers, scheduler=scheduler, out=out, model=model,
             progress=progress, settings={"texts": "given", "seed": seed, "n": len(texts), **settings})
    completed_rows(df)
    return records_to_runs(df)


def nullity_table(runs: Sequence[dict[str, Any]], *, dataset: str = "", model: str = "",
                  basis: str = "value") -> pd.DataFrame:
    """One row per text x layer x head: n_tokens, rank, nullity, row-sum error, negative mass."""
    rows = []
    for i, r in enumerate(runs):
        n_layers, n_heads = r["nullity"].shape
        for lay in range(n_layers):
            for h in range(n_heads):
                rows.append({"model": model, "dataset": dataset, "basis": basis, "text_id": i, "n_tokens": r["n"],
                             "layer": lay, "head": h, "rank": int(r["rank"][lay, h]),
                             "nullity": int(r["nullity"][lay, h]),
                             "row_sum_error": float(r["row_sum_error"][lay, h]),
                             "negative_mass": float(r["negative_mass"][lay, h])})
    return pd.DataFrame(rows)


def nullity_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per (model, dataset, layer): nullity min / median / max, the share of heads with nullity
    0 (there ``A_eff = A``), median row-sum error and negative mass over heads with nullity > 0."""
    def one(g: pd.DataFrame) -> pd.Series:
        some = g[g.nullity > 0]
        return pd.Series({"min": int(g.nullity.min()), "median": float(g.nullity.median()),
                          "max": int(g.nullity.max()), "nullity_0": float((g.nullity == 0).mean()),
                          "row_sum_error": float(some.row_sum_error.median()) if len(some) else np.nan,
                          "negative_mass": float(some.negative_mass.median()) if len(some) else np.nan})

    keys = [k for k in ("model", "dataset", "basis", "layer") if k in df.columns]
    return df.groupby(keys, sort=False).apply(one).reset_index().astype({"min": int, "max": int})


def output_table(runs: Sequence[dict[str, Any]], *, dataset: str = "", model: str = "",
                 basis: str = "value") -> pd.DataFrame:
    """One row per text x edit: max |d logit|, prediction TVD, flipped, score before / after."""
    rows = []
    for i, r in enumerate(runs):
        p0 = _softmax(r["original"])
        for edit, logits in r["edited"].items():
            p = _softmax(logits)
            rows.append({"model": model, "dataset": dataset, "basis": basis, "text_id": i, "n_tokens": r["n"],
                         "edit": edit, "max_abs_dlogit": float(np.abs(logits - r["original"]).max()),
                         "tvd": float(tvd(p, p0)), "flipped": bool(p.argmax() != p0.argmax()),
                         "score_original": float(score(p0[None])[0]), "score_edited": float(score(p[None])[0])})
    return pd.DataFrame(rows)


def wasserstein_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (model, dataset, edit): max and median |d logit|, mean / max TVD, share flipped, and
    W1 between the scores over the texts, original vs edited (:func:`output_table` rows)."""
    def one(g: pd.DataFrame) -> pd.Series:
        return pd.Series({"examples": len(g), "max_abs_dlogit": g.max_abs_dlogit.max(),
                          "median_abs_dlogit": g.max_abs_dlogit.median(), "mean_tvd": g.tvd.mean(),
                          "max_tvd": g.tvd.max(), "flipped": g.flipped.mean(),
                          "w1": wasserstein_1d(g.score_original.to_numpy(), g.score_edited.to_numpy())})

    keys = [k for k in ("model", "dataset", "basis", "edit") if k in df.columns]
    return df.groupby(keys, sort=False).apply(one).reset_index().astype({"examples": int})


# --------------------------------------------------------------------------- claim 4: adversaries
def _projection(model: TracedModel, trace: Any, layer: int, head: int, basis: str) -> np.ndarray:
    return decompose_layer(trace, layer, basis=basis, model=model)[head].projection


def random_share(model: TracedModel, text: str, layer: int, head: int, k: int, seed: int, *,
                 basis: str = "value") -> float:
    """Reference: mean ``||(R - A) P|| / ||R - A||`` for ``k`` unconstrained random attentions R
    (softmax of 3 N(0, 1) logits over the visible keys, as the search starts; one shared row
    for query-independent models such as the single-attention classifier)."""
    trace = model.trace(text)
    p = _projection(model, trace, layer, head, basis)
    a = trace.attentions[layer, head].astype(np.float64)
    n = a.shape[0]
    rows = 1 if model.query_independent else n
    logits = np.broadcast_to(3 * np.random.default_rng(seed).standard_normal((k, rows, n)), (k, n, n))
    if model.is_causal:
        logits = np.where(np.tril(np.ones((n, n), dtype=bool)), logits, -np.inf)
    r = np.exp(logits - logits.max(-1, keepdims=True))
    r /= r.sum(-1, keepdims=True)
    d = r - a
    return float(np.mean(np.linalg.norm(d @ p, axis=(1, 2)) / np.linalg.norm(d, axis=(1, 2))))


def with_null_space(model: TracedModel, texts: Sequence[str], *, layer: int, head: int, n: int, max_tokens: int,
                    basis: str = "value") -> list[str]:
    """The first ``n`` texts (cut to ``max_tokens``) whose head has nullity > 0: with nullity 0
    every adversary's efficient attention is itself (share 1), so the question is empty there."""
    from analysis.experiments.common import capped

    chosen = []
    for text in texts:
        text = capped(model, text, max_tokens)
        if decompose_layer(model.trace(text), layer, basis=basis, model=model)[head].nullity > 0:
            chosen.append(text)
        if len(chosen) == n:
            break
    return chosen


def adversary_rows(model: TracedModel, text: str, text_id: int, *, layer: int, head: int = 0, k: int = 5,
                   eps: float = 0.01, steps: int = 500, seed: int = 0, basis: str = "value", dataset: str = "",
                   model_name: str = "") -> list[dict[str, Any]]:
    """The rows of :func:`adversarial_table` for one text (``layer`` already in range)."""
    r = search(model, text, layer=layer, head=head, k=k, eps=eps, steps=steps, seed=seed, progress=False)
    p = _projection(model, model.trace(text), layer, head, basis)
    d = (r.attentions - r.original_attention[None]).astype(np.float64)          # [k, n, n]
    raw = np.linalg.norm(d, axis=(1, 2))
    eff = np.linalg.norm(d @ p, axis=(1, 2))
    row_tvd = lambda x: 0.5 * np.abs(x).sum(-1).mean()                          # noqa: E731
    ref = random_share(model, text, layer, head, k, seed, basis=basis)
    n = len(r.tokens)
    uniform = ablated_attention(np.zeros((n, n)), "uniform", causal=model.is_causal)
    uniform_tvd = float(tvd(_softmax(output_logits(model, text, attention_override={(layer, head): uniform})),
                            r.original))
    return [{"model": model_name or getattr(model, "name", ""), "dataset": dataset, "basis": basis,
             "text_id": text_id, "adversary": j, "n_tokens": n, "nullity": n - int(round(np.trace(p))),
             "layer": layer, "head": head, "feasible": bool(r.feasible[j]), "jsd": float(r.jsd[j]),
             "tvd": float(r.tvd[j]), "raw_row_tvd": float(row_tvd(d[j])),
             "efficient_row_tvd": float(row_tvd(d[j] @ p)),
             "raw_distance": float(raw[j]), "efficient_distance": float(eff[j]),
             "efficient_share": float(eff[j] / max(raw[j], 1e-300)), "random_share": ref,
             "uniform_tvd": uniform_tvd, "k": k, "eps": eps, "steps": steps} for j in range(r.k)]


def adversarial_table(model: TracedModel, texts: Sequence[str], *, layer: int, head: int = 0, k: int = 5,
                      eps: float = 0.01, steps: int = 500, seed: int = 0, basis: str = "value",
                      dataset: str = "", model_name: str = "", progress: bool = False, workers: int = 1,
                      scheduler: Any = None, out: Any = None) -> pd.DataFrame:
    """Jain & Wallace adversaries for ``(layer, head)`` of each text (seed ``seed + i``): one row
    per adversary with JSD (bits), prediction TVD, feasibility, raw and efficient distances in
    ``basis`` and the efficient share, next to the text's random-attention share and ``uniform_tvd``
    (the prediction's TVD with the head's attention replaced by uniform: at most eps, any attention
    qualifies and the constraint does not bind). Runs through
    the runner (``workers``, ``scheduler``, ``out``: see :func:`analysis.experiments.run`)."""
    from analysis.experiments.runner import completed_rows, run
    from analysis.experiments.tasks import get_task

    texts = list(texts)
    if not texts:
        return pd.DataFrame()
    settings = dict(layer=int(layer) % model.n_layers, head=int(head), k=int(k), eps=float(eps), steps=int(steps),
                    basis=basis, model_name=model_name)
    units = [{"id": str(i), "dataset": dataset, "text_id": i, "text": t, "cut": False, "seed": seed + i, **settings}
             for i, t in enumerate(texts)]
    df = run(get_task("adversarial"), units, workers=workers, scheduler=scheduler, out=out, model=model,
             progress=progress, settings={"texts": "given", "seed": seed, "n": len(texts), "dataset": dataset,
                                          **settings})
    return completed_rows(df)


def adversarial_summary(df: pd.DataFrame, *, per_text: bool = False) -> pd.DataFrame:
    """Per (model, dataset) (and per text): feasible / total, and means over feasible adversaries
    of JSD, prediction TVD, raw and efficient distance, efficient share; the random share."""
    def one(g: pd.DataFrame) -> pd.Series:
        f = g[g.feasible]
        mean = (lambda c: float(f[c].mean()) if len(f) else np.nan)  # noqa: E731
        return pd.Series({"tokens": int(g.n_tokens.iloc[0]) if per_text else int(g.n_tokens.median()),
                          "feasible": f"{len(f)}/{len(g)}", "jsd": mean("jsd"), "tvd": mean("tvd"),
                          "raw_row_tvd": mean("raw_row_tvd"), "efficient_row_tvd": mean("efficient_row_tvd"),
                          "raw_distance": mean("raw_distance"), "efficient_distance": mean("efficient_distance"),
                          "efficient_share": mean("efficient_share"),
                          # one value per text, repeated on its k rows (k is the same for every text)
                          "random_share": float(g.random_share.mean())})

    keys = [k for k in ("model", "dataset", "basis") if k in df.columns] + (["text_id"] if per_text else [])
    return df.groupby(keys, sort=False).apply(one).reset_index()


#: the measures of :func:`adversarial_ci`, in order, with what each is per example
CI_MEASURES = {
    "feasible": "share of the k adversaries with prediction TVD <= eps",
    "jsd": "mean JSD (bits) of the feasible adversaries from the original",
    "max_jsd": "largest JSD (bits) among the feasible adversaries (Jain & Wallace's per-instance number)",
    "tvd": "mean prediction TVD of the feasible adversaries",
    "raw_row_tvd": "mean row TVD of the feasible adversaries from the original attention",
    "efficient_row_tvd": "the same for their efficient attention (a_i P vs a P)",
    "efficient_share": "mean ||(a_i - a) P|| / ||a_i - a|| of the feasible adversaries",
    "random_share": "the same share for unconstrained random attention",
    "share_minus_random": "efficient_share - random_share (paired, per example)",
    "uniform_within_eps": "1 if uniform attention already keeps the prediction within eps (the constraint does "
                          "not bind), else 0",
}


def adversarial_ci(df: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Per (model, dataset, basis) and measure of :data:`CI_MEASURES`: the mean over examples of
    each example's value, with a percentile bootstrap interval over examples (examples resampled,
    ``n_boot`` times, seeded; :func:`analysis.evaluation.summary.bootstrap_ci`). Examples without
    a feasible adversary count in ``feasible`` (as 0) and are left out of the other measures
    (``examples`` says how many entered each). ``uniform_within_eps`` needs the ``uniform_tvd``
    column (rows made since it was added)."""
    from analysis.evaluation.summary import bootstrap_ci

    need = {"text_id", "feasible", "jsd", "tvd", "raw_row_tvd", "efficient_row_tvd", "efficient_share",
            "random_share", "eps"}
    missing = sorted(need - set(df.columns))
    if missing:
        raise ValueError(f"adversarial_ci needs the columns {', '.join(missing)} (adversarial_table rows)")
    keys = [k for k in ("model", "dataset", "basis") if k in df.columns]
    out = []
    for key, g in (df.groupby(keys, sort=False) if keys else [((), df)]):
        key = key if isinstance(key, tuple) else (key,)
        per: dict[str, list[float]] = {m: [] for m in CI_MEASURES}
        for _, t in g.groupby("text_id", sort=False):
            f = t[t.feasible.astype(bool)]
            per["feasible"].append(float(t.feasible.astype(bool).mean()))
            has = len(f) > 0
            for col in ("jsd", "tvd", "raw_row_tvd", "efficient_row_tvd", "efficient_share"):
                per[col].append(float(f[col].mean()) if has else np.nan)
            per["max_jsd"].append(float(f.jsd.max()) if has else np.nan)
            per["random_share"].append(float(t.random_share.iloc[0]))
            per["share_minus_random"].append(float(f.efficient_share.mean() - t.random_share.iloc[0]) if has
                                             else np.nan)
            per["uniform_within_eps"].append(float(t.uniform_tvd.iloc[0] <= t.eps.iloc[0])
                                             if "uniform_tvd" in t.columns else np.nan)
        for measure, values in per.items():
            x = np.asarray(values, dtype=np.float64)
            est, lo, hi = bootstrap_ci(x, n_boot=n_boot, level=level, seed=seed)
            out.append({**dict(zip(keys, key)), "measure": measure, "estimate": est, "ci_low": lo, "ci_high": hi,
                        "examples": int(np.isfinite(x).sum()), "level": level})
    return pd.DataFrame(out)
