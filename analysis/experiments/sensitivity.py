"""Head sensitivity per sentence (every head ablated: TVD and logit change), a runner task.

With :data:`ADVERSARIAL`, adversarial attention on chosen heads: both are tasks for the parallel
runner (``analysis.experiments.runner``).

``"sensitivity"`` (this module): a unit is one sentence; it yields one row per (layer, head,
ablation) of :func:`analysis.sensitivity.head_sensitivity` (columns ``text`` = the sentence's
position, ``n_tokens``, ``layer``, ``head``, ``ablation``, ``tvd``, ``logit_change``). The rows of
a list of sentences equal one ``head_sensitivity(model, texts, seed=seed)`` call over the whole
list: its row permutations come from one generator that runs through the sentences in order, so
each unit carries that generator's state at its sentence (computed from the model's token counts
by :func:`units_for_texts`; run the units with the model they were made with, which
:func:`run_unit` checks). :func:`sensitivity_table` turns rows back into a
:class:`~analysis.sensitivity.SensitivityTable`.

``"sensitivity_adversarial"`` (:data:`ADVERSARIAL`): a unit is one (layer, head) and sentence; it
yields one row per constraint of ``analysis.adversarial.search`` (seed 0 by default), as
``benchmarks/sensitivity.py`` records them; a constraint the head cannot meet (uniform ablation
does not move the output, so no relative bound exists) gives a row whose ``skipped`` holds the
reason and whose measurements are NaN. :func:`most_sensitive_heads` picks the head per layer.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from analysis.experiments.tasks import Task
from analysis.sensitivity import ABLATIONS, SensitivityTable

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

__all__ = ["NAME", "DEFAULT_MODEL", "DEFAULT_SETTINGS", "make_units", "units_for_texts", "run_unit", "summarize",
           "sensitivity_table", "heads_table", "layer_table", "most_sensitive_heads", "ADVERSARIAL",
           "ADVERSARIAL_SETTINGS", "CONSTRAINTS", "adversarial_units", "adversarial_make_units", "adversarial_run_unit",
           "adversarial_table", "adversarial_summarize"]

NAME = "sensitivity"
DEFAULT_MODEL = None  # the embedded default sentiment model
#: every head of every layer (``layers`` and ``heads`` None; otherwise the heads of ``layers`` plus
#: the ``[layer, head]`` pairs of ``heads``), the three ablations, permutation seed 0
DEFAULT_SETTINGS: dict[str, Any] = {"layers": None, "heads": None, "ablations": list(ABLATIONS), "seed": 0}


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(value)


def _merge(settings: dict) -> dict:
    unknown = set(settings) - set(DEFAULT_SETTINGS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; valid: {', '.join(DEFAULT_SETTINGS)}")
    s = {**DEFAULT_SETTINGS, **settings}
    if s["layers"] is not None:
        layers = [s["layers"]] if isinstance(s["layers"], (int, np.integer)) else s["layers"]
        s["layers"] = [_int(lay, "each of layers") for lay in layers]
    if s["heads"] is not None:
        pairs = []
        for p in s["heads"]:
            if not isinstance(p, (list, tuple)) or len(p) != 2:
                raise ValueError(f"heads lists [layer, head] pairs, e.g. [[5, 9], [0, 1]]; got {p!r}")
            pairs.append([_int(p[0], "a layer in heads"), _int(p[1], "a head in heads")])
        s["heads"] = pairs
    ablations = [s["ablations"]] if isinstance(s["ablations"], str) else list(s["ablations"])
    bad = [a for a in ablations if a not in ABLATIONS]
    if bad or not ablations:
        raise ValueError(f"ablations must be a non-empty list of {', '.join(ABLATIONS)}; got {s['ablations']!r}")
    s["ablations"] = ablations
    s["seed"] = _int(s["seed"], "seed")
    if s["seed"] < 0:
        raise ValueError(f"seed must be >= 0, got {s['seed']}")
    return s


def _pairs(model: TracedModel, s: dict) -> list[tuple[int, int]]:
    """The (layer, head) pairs ``head_sensitivity`` measures for settings ``s`` (checked against the model)."""
    from analysis.sensitivity import _heads

    return _heads(model, s["layers"], None if s["heads"] is None else [tuple(p) for p in s["heads"]])


def units_for_texts(texts: Sequence[str], *, model: TracedModel, dataset: str = "", prefix: str | None = None,
                    **settings: Any) -> list[dict]:
    """One unit per text (``index`` = position in ``texts``); settings as :data:`DEFAULT_SETTINGS`.

    ``model`` (the one the units will run with) counts the tokens of each text, so that each unit
    carries the state of the permutation generator at its sentence: the rows of all units equal
    ``head_sensitivity(model, texts, seed=seed)`` (the ``permute`` draws depend on the lengths of
    the earlier sentences)."""
    s = _merge(settings)
    texts = [str(t) for t in texts]
    if not texts:
        raise ValueError("units_for_texts needs at least one text")
    draws = len(_pairs(model, s)) * s["ablations"].count("permute")
    prefix = prefix if prefix is not None else (dataset or "text")
    rng = np.random.default_rng(s["seed"])
    units = []
    for i, text in enumerate(texts):
        n = len(model.encode(text).input_ids)
        units.append({"id": f"{prefix}-{i:05d}", "dataset": dataset, "index": i, "text": text, "n_tokens": n,
                      "shape": [model.n_layers, model.n_heads], "rng_state": rng.bit_generator.state, "settings": s})
        for _ in range(draws):                       # what head_sensitivity draws for this sentence
            rng.permutation(n)
    return units


def _load(model: Any) -> TracedModel:
    if model is None or isinstance(model, str):
        from analysis import load_model

        return load_model(model if model is not None else DEFAULT_MODEL, progress=False)
    return model


def make_units(*, dataset: str = "rotten_tomatoes", n: int = 50, seed: int = 0, split: str = "test",
               model: Any = None, **settings: Any) -> list[dict]:
    """``n`` seeded sentences of ``dataset`` (``seed``: the sample's) as units. ``settings``
    override :data:`DEFAULT_SETTINGS` (``layers``, ``heads`` as ``[[layer, head], ...]``,
    ``ablations``, ``seed`` of the permutations is 0 here). ``model`` (a model, zoo name or folder;
    default: the task's model) counts tokens for the permutation generator (see
    :func:`units_for_texts`): run the units with that model."""
    from analysis.data import load_dataset

    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    _merge(settings)                                   # clear errors before loading anything
    texts = list(load_dataset(dataset, split).sample(n, seed=seed).texts)
    return units_for_texts(texts, model=_load(model), dataset=dataset, prefix=f"{dataset}-{split}-s{seed}",
                           **settings)


def run_unit(model: TracedModel, unit: dict) -> list[dict]:
    """One row per (layer, head, ablation) of the unit's sentence (see the module docstring)."""
    from analysis.sensitivity import head_sensitivity

    s = _merge(unit.get("settings", {}))
    text = unit["text"]
    n = len(model.encode(text).input_ids)
    if list(unit["shape"]) != [model.n_layers, model.n_heads] or n != unit["n_tokens"]:
        raise ValueError(f"unit {unit['id']!r} was made for a model with {unit['shape'][0]} x {unit['shape'][1]} heads "
                         f"reading its sentence as {unit['n_tokens']} tokens; this model has {model.n_layers} x "
                         f"{model.n_heads} heads and {n} tokens. Make the units with the model you run "
                         "(units_for_texts(texts, model=...) or make_units(model=...)): the permutations depend on it")
    rng = np.random.default_rng(s["seed"])
    rng.bit_generator.state = unit["rng_state"]
    heads = None if s["heads"] is None else [tuple(p) for p in s["heads"]]
    sens = head_sensitivity(model, [text], layers=s["layers"], heads=heads, ablations=s["ablations"], seed=rng)
    return [{**row, "text": unit.get("index", 0)} for row in sens.rows()]


def sensitivity_table(df: pd.DataFrame, *, n_layers: int | None = None, n_heads: int | None = None,
                      texts: Sequence[str] | None = None, seed: int = 0) -> SensitivityTable:
    """The :class:`~analysis.sensitivity.SensitivityTable` of the task's rows (sentences in order
    of their ``text`` index; ``n_layers`` / ``n_heads`` default to the largest measured + 1)."""
    need = {"text", "n_tokens", "layer", "head", "ablation", "tvd", "logit_change"}
    if df.empty or not need <= set(df.columns):
        raise ValueError(f"no sensitivity rows (need the columns {', '.join(sorted(need))})")
    ids = sorted(df["text"].unique())
    L = int(n_layers if n_layers is not None else df.layer.max() + 1)
    H = int(n_heads if n_heads is not None else df["head"].max() + 1)
    ablations = tuple(dict.fromkeys(df.ablation))
    t = df["text"].map({v: i for i, v in enumerate(ids)}).to_numpy()
    a = df.ablation.map({v: i for i, v in enumerate(ablations)}).to_numpy()
    tvd = np.full((len(ids), L, H, len(ablations)), np.nan)
    logit = np.full_like(tvd, np.nan)
    idx = (t, df.layer.to_numpy(int), df["head"].to_numpy(int), a)
    tvd[idx] = df.tvd.to_numpy(float)
    logit[idx] = df.logit_change.to_numpy(float)
    pairs = tuple(sorted({(int(x), int(y)) for x, y in zip(df.layer, df["head"])}))
    lengths = tuple(int(v) for v in df.groupby("text").n_tokens.first().loc[ids])
    return SensitivityTable(tvd=tvd, logit=logit, texts=tuple(texts) if texts is not None else tuple(map(str, ids)),
                            ablations=ablations, heads=pairs, n_tokens=lengths, seed=seed)


def heads_table(sens: SensitivityTable, *, eps: float = 0.01, factors: Sequence[float] = (1.0, 5.0)) -> pd.DataFrame:
    """One row per measured head: the median over sentences of the largest-ablation TVD and
    |logit change|, and whether the head qualifies at ``eps`` with each factor
    (:meth:`SensitivityTable.qualifying`)."""
    med = sens.head_tvd("median")
    found = {f: set(sens.qualifying(eps, factor=f)) for f in factors}
    return pd.DataFrame([dict(layer=lay, head=h, median_max_tvd=float(med[lay, h]),
                              median_max_logit=float(np.median(sens.logit[:, lay, h].max(-1))),
                              **{f"qualifies_x{f:g}": (lay, h) in found[f] for f in factors})
                         for lay, h in sens.heads])


def layer_table(sens: SensitivityTable) -> pd.DataFrame:
    """Per ablation and layer, over sentences and measured heads: TVD and |logit change| median and max."""
    rows = []
    for k, name in enumerate(sens.ablations):
        for lay in sorted({p[0] for p in sens.heads}):
            hs = [h for q, h in sens.heads if q == lay]
            tv, lg = sens.tvd[:, lay, hs, k], sens.logit[:, lay, hs, k]
            rows.append(dict(ablation=name, layer=lay, tvd_median=float(np.median(tv)), tvd_max=float(np.max(tv)),
                             logit_median=float(np.median(lg)), logit_max=float(np.max(lg))))
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """``heads`` (:func:`heads_table` at eps 0.01, factors 1 and 5) and ``layers`` (:func:`layer_table`)."""
    sens = sensitivity_table(df)
    return {"heads": heads_table(sens), "layers": layer_table(sens)}


def most_sensitive_heads(heads: pd.DataFrame) -> pd.DataFrame:
    """Per layer, the row of ``heads`` (a :func:`heads_table`) with the largest ``median_max_tvd``."""
    return heads.sort_values("median_max_tvd", ascending=False).groupby("layer").head(1).sort_values("layer")


# --------------------------------------------------------------------------- adversarial re-run
#: (constraint, eps mode): TVD <= eps, TVD <= 0.5 x the uniform-ablation TVD, |logit change| <=
#: 0.5 x the uniform-ablation logit change (``benchmarks/sensitivity.py``)
CONSTRAINTS = (("tvd", "abs"), ("tvd", "relative"), ("logit", "relative"))
#: ``k`` adversaries, ``steps`` Adam steps, ``eps`` the absolute bound, ``seed`` of the search
ADVERSARIAL_SETTINGS: dict[str, Any] = {"k": 4, "steps": 200, "eps": 0.01, "seed": 0,
                                        "constraints": [list(c) for c in CONSTRAINTS]}


def _merge_adversarial(settings: dict) -> dict:
    unknown = set(settings) - set(ADVERSARIAL_SETTINGS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; valid: heads, {', '.join(ADVERSARIAL_SETTINGS)}")
    s = {**ADVERSARIAL_SETTINGS, **settings}
    for key in ("k", "steps"):
        s[key] = _int(s[key], key)
        if s[key] < 1:
            raise ValueError(f"{key} must be >= 1, got {s[key]}")
    s["seed"] = _int(s["seed"], "seed")
    if isinstance(s["eps"], bool) or not isinstance(s["eps"], (int, float)) or not s["eps"] > 0:
        raise ValueError(f"eps must be a number > 0 (the absolute bound), got {s['eps']!r}")
    s["eps"] = float(s["eps"])
    constraints = []
    for c in s["constraints"]:
        if not isinstance(c, (list, tuple)) or len(c) != 2 or c[0] not in ("tvd", "logit") \
                or c[1] not in ("abs", "relative"):
            raise ValueError(f"constraints lists [constraint, mode] pairs with constraint 'tvd' or 'logit' and "
                             f"mode 'abs' or 'relative'; got {c!r}")
        constraints.append([c[0], c[1]])
    if not constraints:
        raise ValueError("constraints is empty: give at least one [constraint, mode] pair")
    s["constraints"] = constraints
    return s


def adversarial_units(texts: Sequence[str], heads: Sequence[Sequence[int]], *, dataset: str = "",
                      prefix: str | None = None, **settings: Any) -> list[dict]:
    """One unit per head of ``heads`` (``[layer, head]`` pairs) and text, head by head; settings as
    :data:`ADVERSARIAL_SETTINGS`."""
    s = _merge_adversarial(settings)
    pairs = []
    for p in heads or ():
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise ValueError(f"heads lists [layer, head] pairs, e.g. [[5, 9]]; got {p!r}")
        pairs.append((_int(p[0], "a layer in heads"), _int(p[1], "a head in heads")))
    if not pairs:
        raise ValueError("the sensitivity_adversarial task needs heads=[[layer, head], ...] (e.g. per layer the "
                         "most sensitive head of the sensitivity task: most_sensitive_heads)")
    texts = [str(t) for t in texts]
    if not texts:
        raise ValueError("adversarial_units needs at least one text")
    prefix = prefix if prefix is not None else (dataset or "text")
    return [{"id": f"{prefix}-L{lay}H{h}-{i:05d}", "dataset": dataset, "index": i, "text": t, "layer": lay,
             "head": h, "settings": s} for lay, h in pairs for i, t in enumerate(texts)]


def adversarial_make_units(*, dataset: str = "rotten_tomatoes", n: int = 10, seed: int = 0, split: str = "test",
                           heads: Any = None, **settings: Any) -> list[dict]:
    """``n`` seeded sentences of ``dataset`` for each of ``heads`` (required: ``[[layer, head], ...]``)."""
    from analysis.data import load_dataset

    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    adversarial_units(["x"], heads, **settings)         # clear errors before loading anything
    texts = list(load_dataset(dataset, split).sample(n, seed=seed).texts)
    return adversarial_units(texts, heads, dataset=dataset, prefix=f"{dataset}-{split}-s{seed}", **settings)


def adversarial_run_unit(model: TracedModel, unit: dict) -> list[dict]:
    """One row per constraint: the search's feasible adversaries summarised (means over them)."""
    from analysis.adversarial import search

    s = _merge_adversarial(unit.get("settings", {}))
    layer, head, text = int(unit["layer"]), int(unit["head"]), unit["text"]
    rows = []
    for constraint, mode in s["constraints"]:
        eps = s["eps"] if mode == "abs" else "relative"
        base = dict(layer=layer, head=head, text=unit.get("index", 0))
        try:
            res = search(model, text, layer=layer, head=head, k=s["k"], eps=eps, constraint=constraint,
                         steps=s["steps"], seed=s["seed"], progress=False)
        except ValueError as e:                   # the head does not reach the output here
            rows.append(dict(base, n_tokens=len(model.encode(text, truncate=True).input_ids), constraint=constraint,
                             eps_mode=mode, eps=np.nan, eps_rule="", ablation_change=np.nan, k=s["k"], feasible=0,
                             jsd_all=np.nan, jsd_output=np.nan, share_all=np.nan, share_output=np.nan,
                             tvd_max=np.nan, logit_change_max=np.nan, skipped=str(e)))
            continue
        f = res.feasible
        rows.append(dict(base, n_tokens=len(res.tokens), constraint=constraint, eps_mode=mode, eps=res.eps,
                         eps_rule=res.eps_rule, ablation_change=res.ablation_change, k=res.k, feasible=int(f.sum()),
                         jsd_all=float(res.jsd[f].mean()) if f.any() else np.nan,
                         jsd_output=float(res.output_jsd[f].mean()) if f.any() else np.nan,
                         share_all=float(res.efficient_share[f].mean()) if f.any() else np.nan,
                         share_output=float(res.output_efficient_share[f].mean()) if f.any() else np.nan,
                         tvd_max=float(res.tvd[f].max()) if f.any() else np.nan,
                         logit_change_max=float(res.logit_change[f].max()) if f.any() else np.nan,
                         skipped=None))
    return rows


def adversarial_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per head, constraint and eps mode over the searched rows (skipped ones left out): the
    median eps, feasible / requested adversaries, and the means of JSD and efficient share."""
    if "skipped" in df.columns:
        df = df[df.skipped.isna()]
    if df.empty:
        raise ValueError("no adversarial rows to summarise (every search was skipped?)")
    rows = []
    for (lay, h, c, m), d in df.groupby(["layer", "head", "constraint", "eps_mode"], sort=True):
        rows.append(dict(layer=lay, head=h, constraint=c, eps_mode=m, eps_median=float(d.eps.median()),
                         feasible=int(d.feasible.sum()), requested=int(d.k.sum()), jsd_all=float(d.jsd_all.mean()),
                         jsd_output=float(d.jsd_output.mean()), share_all=float(d.share_all.mean()),
                         share_output=float(d.share_output.mean())))
    return pd.DataFrame(rows)


def adversarial_summarize(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """``{"summary": adversarial_table(df)}``."""
    return {"summary": adversarial_table(df)}


ADVERSARIAL = Task("sensitivity_adversarial", adversarial_make_units, adversarial_run_unit, adversarial_summarize,
                   None, "adversarial attention (Jain & Wallace) on given heads under three constraints, per sentence")
