"""analysis.evaluation: explainers with known answers, censoring, budgets, bootstrap, bad input."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from analysis import abcd
from analysis.abcd import Budget
from analysis.evaluation import (
    bootstrap_ci,
    check_methods,
    compare_censored,
    eraser,
    evaluate_input,
    km_at_risk,
    km_median,
    paired_comparison,
    run_method,
    summarize_results,
)
from analysis.experiments import faithfulness
from tests.helpers import TWO_TOKEN_TEXT, TwoTokenModel, tiny_model

TEXT = TWO_TOKEN_TEXT                                       # good@2, great@6; 10 content tokens
NEUTRAL = "a film with a cast and music"                   # nothing to remove: never flips


@pytest.fixture(scope="module")
def two():
    return TwoTokenModel()


def test_exhaustive_and_cleann_find_the_known_minimal_set(two):
    truth = run_method("exhaustive", two, TEXT, Budget(None))
    assert truth.size == 2 and truth.sets == ((2, 6),) and truth.stopped == "found"
    assert truth.calls == 10 + math.comb(10, 2)                  # every single, then every pair
    e = abcd.explain(two, TEXT, head=0, n_samples=1e12)
    assert e.sets == [[2, 6]] and e.size == 2 and e.stopped == "found" and "found at 2" in e.status
    cleann = run_method("cleann", two, TEXT, Budget(None), head=0, n_samples=1e12)
    assert cleann.sets == ((2, 6),) and cleann.ranking[:2] == (2, 6)
    assert set(cleann.calls_by_size) == {1, 2} and sum(cleann.calls_by_size.values()) == cleann.calls == len(e.checks)
    assert cleann.calls_by_size[1] == e.tree.depth.count(1)      # a single is closed when adjacent to the root


def test_ranking_methods_flip_at_the_known_prefix(two):
    loo = run_method("leave_one_out", two, TEXT, Budget(50))
    assert set(loo.ranking[:2]) == {2, 6} and loo.size == 2 and loo.sets == ((2, 6),)
    assert loo.calls == 2 and loo.ranking_calls == 10
    for m in ("attention", "efficient_attention", "rollout"):
        r = run_method(m, two, TEXT, Budget(50), head="all")
        k = max(r.ranking.index(2), r.ranking.index(6)) + 1        # the prefix that first holds both
        assert r.size == k and r.calls == k and r.sets == (tuple(sorted(r.ranking[:k])),)


def test_eraser_matches_hand_computed_values(two):
    others = [1, 3, 4, 5, 7, 8, 9, 10]
    ranking = [2, 6, *others]                                    # 10 candidates: k = 1, 1, 1, 2, 5
    m = eraser(two, TEXT, ranking, removable=list(range(1, 11)))
    # p(x) = 0.9; without good: 0.55; without both: 0.2; only good kept: 0.55; both kept: 0.9
    assert m["comp_1"] == m["comp_5"] == m["comp_10"] == pytest.approx(0.35)
    assert m["comp_20"] == m["comp_50"] == pytest.approx(0.7)
    assert m["suff_1"] == pytest.approx(0.35) and m["suff_20"] == m["suff_50"] == pytest.approx(0.0)
    assert m["aopc_comp"] == pytest.approx((3 * 0.35 + 2 * 0.7) / 5)
    assert m["aopc_suff"] == pytest.approx(3 * 0.35 / 5)
    worst = eraser(two, TEXT, [*others, 2, 6], removable=list(range(1, 11)))
    assert worst["aopc_comp"] == pytest.approx(0.0) and worst["aopc_suff"] > m["aopc_suff"]


def test_a_table_of_every_method_agrees_with_exhaustive(two):
    rows = evaluate_input(two, TEXT, methods=["cleann", "leave_one_out", "random", "exhaustive"], heads=[0],
                          budget=Budget(200), n_samples=1e12)
    df = pd.DataFrame(rows)
    assert list(df.method) == ["cleann", "random", "leave_one_out", "exhaustive"]
    assert (df.exhaustive_size == 2).all()
    assert df.set_index("method").loc[["cleann", "leave_one_out", "exhaustive"], "exact_set"].all()
    assert df.set_index("method").loc["cleann", "aopc_comp"] == pytest.approx((3 * 0.35 + 2 * 0.7) / 5)


def test_censoring_keeps_every_row(two):
    texts = [NEUTRAL, NEUTRAL + " again", TEXT]
    df = faithfulness.faithfulness_table(two, texts, methods=["cleann", "attention", "random"], heads=[0],
                                         max_calls=300, cleann_options={"n_samples": 1e12})
    assert len(df) == 3 * 3
    never = df[df.text_index < 2]
    assert not never.found.any() and never["size"].isna().all() and never.status.str.startswith("not found").all()
    tables = faithfulness.summarize(df)
    sizes = tables["sizes"].set_index("explainer")
    assert (sizes.n == 3).all() and sizes.loc["cleann[0]", "censored"] == 2
    assert sizes.loc["cleann[0]", "found"] == pytest.approx(1 / 3)
    assert not np.isfinite(sizes.loc["cleann[0]", "median_size"])
    assert sizes.loc["cleann[0]", "median_label"].startswith(">")
    assert np.isnan(sizes.loc["cleann[0]", "median_at_risk"])        # no median, no risk set to report
    assert (sizes.budget.str.contains("<= 300 calls")).all()
    assert (never.stopped == "exhausted").all()                  # every subset checked: nothing flips


def test_random_search_keeps_its_budget_and_seed(two):
    quotas = {1: 4, 2: 7}
    a = run_method("random", two, TEXT, Budget(100), calls_by_size=quotas, seed=3)
    b = run_method("random", two, TEXT, Budget(100), calls_by_size=quotas, seed=3)
    assert a == dataclasses.replace(b, seconds=a.seconds)
    for k, q in a.calls_by_size.items():
        assert q <= quotas[k]
    assert a.calls <= sum(quotas.values())
    for budget in (1, 5, 23, 60):
        r = run_method("random", two, TEXT, Budget(budget), seed=budget)
        assert r.calls <= budget
        assert r.found or r.stopped == "calls"
    full = run_method("random", two, TEXT, Budget(10 + 45), seed=0)   # enough for every single and pair
    assert full.sets == ((2, 6),)


def test_random_search_with_quotas_is_censored_where_its_quota_ends(two):
    """Random search proposes its quota at each size: when that is spent without a flip, it found
    nothing up to the last size with a quota (CLEANN's rule), so a CLEANN set of that size is smaller.
    The old rule (only sizes whose every subset was checked) left it censored at 0: never smaller."""
    quotas = {1: 4, 2: 1}                                          # one pair of 45: (2, 6) is unlikely
    r = run_method("random", two, TEXT, Budget(100), calls_by_size=quotas, seed=3)
    assert not r.found and r.calls == 5 and r.stopped == "calls"
    assert r.searched_size == 2 and r.censored_at == 2
    cleann = run_method("cleann", two, TEXT, Budget(None), head=0, n_samples=1e12)
    assert cleann.size == 2
    assert compare_censored(cleann.size, cleann.censored_at, math.nan, r.censored_at) == "smaller"
    partial = run_method("random", two, TEXT, Budget(3), calls_by_size=quotas, seed=3)   # the budget cuts size 1
    assert partial.calls == 3 and partial.searched_size == 0
    gap = run_method("random", two, TEXT, Budget(100), calls_by_size={1: 0, 2: 1}, seed=3)
    assert gap.searched_size == (0 if gap.found else 2)             # a quota of 0 proposes nothing at size 1


def test_km_median_and_paired_comparison_on_known_values():
    nan, inf = np.nan, math.inf
    # at size 2 the estimate rests on the inputs found at 2 or 3 and the one censored at 5; with that
    # input censored at 2 instead, at size 3 it rests only on the one found at 3
    assert km_at_risk(np.array([1, 2, 3, nan]), np.array([nan, nan, nan, 5]), 2) == 3
    assert km_at_risk(np.array([1, 2, 3, nan]), np.array([nan, nan, nan, 2]), 3) == 1
    assert km_median(np.array([1, 2, 3, nan]), np.array([nan, nan, nan, 5])) == 2     # S(2) = 3/4 * 2/3
    assert km_median(np.array([1, nan, nan]), np.array([nan, 4, inf])) == inf
    assert compare_censored(2, nan, nan, 3) == "smaller"          # the other found nothing up to 3
    assert compare_censored(4, nan, nan, 3) == "undecided"
    assert compare_censored(nan, 5, 2, nan) == "larger"
    df = pd.DataFrame({"id": ["a", "b", "c", "d"] * 2, "method": ["cleann"] * 4 + ["attention"] * 4,
                       "head": ["0"] * 8, "found": [True, True, True, False, True, False, True, False],
                       "size": [1, 2, 3, nan, 2, nan, 3, nan], "censored_at": [nan] * 3 + [2, nan, 2, nan, 4]})
    (row,) = paired_comparison(df).to_dict("records")
    assert (row["smaller"], row["equal"], row["larger"], row["undecided"]) == (2, 1, 0, 1)
    assert row["sign_test_p"] == pytest.approx(0.5) and row["p_holm"] == pytest.approx(0.5)   # a family of one
    # flipped within budget, paired: a, c both; b CLEANN only; d neither (exact McNemar over 1 discordant)
    assert (row["flip_both"], row["flip_ref_only"], row["flip_other_only"], row["flip_neither"]) == (2, 1, 0, 1)
    assert row["flip_p"] == pytest.approx(1.0)
    sizes = summarize_results(df, n_boot=50)["sizes"].set_index("explainer")
    assert sizes.loc["cleann[0]", "median_size"] == 2 and sizes.loc["cleann[0]", "median_at_risk"] == 3
    # a second comparison for the same reference: Holm over the two, per reference row
    loo = df[df.method == "attention"].assign(method="leave_one_out", head="", size=[1, 1, 1, 1],
                                              found=True, censored_at=nan)
    two = paired_comparison(pd.concat([df, loo], ignore_index=True))
    assert len(two) == 2 and list(two.columns).index("p_holm") == list(two.columns).index("sign_test_p") + 1
    p = np.sort(two.sign_test_p.to_numpy())
    assert np.sort(two.p_holm.to_numpy()) == pytest.approx([min(1, 2 * p[0]), min(1, max(2 * p[0], p[1]))])
    assert set(summarize_results(df, n_boot=100)) >= {"sizes", "curves", "paired"}


def test_bootstrap_interval_covers_the_true_mean_about_95_percent():
    rng = np.random.default_rng(0)
    hits = 0
    for rep in range(200):
        x = rng.exponential(2.0, size=60)
        _, lo, hi = bootstrap_ci(x, seed=rep, n_boot=1000)
        hits += lo <= 2.0 <= hi
    assert 0.90 <= hits / 200 <= 0.99
    assert bootstrap_ci([1, 2, 3], seed=1) == bootstrap_ci([1, 2, 3], seed=1)


def test_bad_input_gives_clear_errors(two):
    with pytest.raises(ValueError, match="at least one method"):
        check_methods([])
    with pytest.raises(ValueError, match="unknown method.*cleann"):
        evaluate_input(two, TEXT, methods=["lime"])
    with pytest.raises(ValueError, match="max_calls must be a positive integer"):
        Budget(0)
    with pytest.raises(ValueError, match="max_calls must be a positive integer"):
        abcd.explain(two, TEXT, max_calls=0)
    long = " ".join(f"w{i}" for i in range(15))
    with pytest.raises(ValueError, match="limited to 14 candidate tokens; this input has 15"):
        run_method("exhaustive", two, long, Budget(None))
    with pytest.raises(ValueError, match="unknown settings"):
        faithfulness.make_units(n=2, budget=3)
    with pytest.raises(ValueError, match="at least one text"):
        faithfulness.faithfulness_table(two, [])


def test_gradient_methods_through_captum_on_a_tiny_bert():
    bert = tiny_model("bert")
    text = "a gripping film that never lets go of you"
    ig = run_method("integrated_gradients", bert, text, Budget(40), ig_steps=64)
    gxi = run_method("grad_x_input", bert, text, Budget(40))
    for r in (ig, gxi):
        assert sorted(r.ranking) == sorted(r.candidates) and r.calls <= 40 and r.ranking_calls > 0
        assert r.found or r.stopped in ("exhausted", "calls")
    assert ig.extra["convergence_delta"] < 0.05                  # completeness: sum of attributions = p(x) - p(base)
    with pytest.raises(ValueError, match="sequence classifier"):
        run_method("grad_x_input", TwoTokenModel(), TEXT, Budget(10))


def test_figures_draw_every_explainer_with_its_budget(two):
    from analysis.figures.evaluation import (
        censored_size_curves,
        cleann_vs_exhaustive,
        faithfulness_bars,
    )

    df = faithfulness.faithfulness_table(two, [TEXT, NEUTRAL], methods=["cleann", "leave_one_out", "exhaustive"],
                                         heads=[0], max_calls=300, cleann_options={"n_samples": 1e12})
    fig = censored_size_curves(df, max_k=3)
    ax = fig.axes[0]
    curves = {line.get_gid(): line for line in ax.lines if (line.get_gid() or "").startswith("curve:")}
    assert set(curves) == {"curve:cleann[0]", "curve:leave_one_out", "curve:exhaustive"}
    assert list(curves["curve:cleann[0]"].get_ydata()) == [0.0, 0.5, 0.5]      # 1 of 2 inputs flips, at size 2
    assert "<= 300 calls" in ax.get_title() and "2 inputs" in ax.get_title()
    fig = cleann_vs_exhaustive(df)
    assert "1 inputs; same size 100%" in fig.axes[0].get_title()
    no_truth = df[df.method != "exhaustive"].drop(columns="exhaustive_size")
    with pytest.raises(ValueError, match="no exhaustive results"):
        cleann_vs_exhaustive(no_truth)
    with pytest.raises(ValueError, match="no cleann rows with an exhaustive minimum"):
        cleann_vs_exhaustive(df, head="all")
    fig = cleann_vs_exhaustive(no_truth, allow_empty=True)       # the paper figure on tiny fast-mode samples
    assert not fig.axes[0].axison and "no exhaustive results" in fig.axes[0].texts[0].get_text()
    table = faithfulness.summarize(df)["faithfulness"]
    fig = faithfulness_bars(table)
    assert {b.get_gid() for b in fig.axes[0].patches} == {"bar:cleann[0]", "bar:leave_one_out"}
    with pytest.raises(ValueError, match="no results for"):
        censored_size_curves(df, explainers=["lime"])


def test_summarize_explanations_keeps_censored_sentences():
    from analysis.experiments.abcd_sentiment import summarize_explanations

    nan, inf = np.nan, math.inf
    df = pd.DataFrame({"dataset": "t", "layer": 5, "head": "0", "cleann_found": [True, False, True, False],
                       "cleann_size": [1, nan, 2, nan], "cleann_censored_at": [nan, 3, nan, inf],
                       "baseline_found_any": [True, True, True, True], "baseline_size_any": [9.0, 8, 2, 1],
                       "baseline_censored_at": nan, "cleann_calls": 10, "baseline_calls": 5, "seconds": 0.1,
                       "budget": "<= 1000 calls, any size"})
    (row,) = summarize_explanations(df).to_dict("records")
    assert row["sentences"] == 4 and row["cleann_found"] == pytest.approx(0.5)
    assert (row["smaller"], row["equal"], row["larger"], row["undecided"]) == (1, 1, 1, 1)
    assert row["budget"] == "<= 1000 calls, any size"


def test_units_are_json_unique_and_deterministic(two):
    import json

    units = faithfulness.make_units(n=5, seed=1, heads=["0", "all"], max_calls=50)
    assert len({u["id"] for u in units}) == 5 and json.loads(json.dumps(units)) == units
    assert units == faithfulness.make_units(n=5, seed=1, heads=["0", "all"], max_calls=50)
    assert units[0]["settings"]["heads"] == [0, "all"] and units[0]["settings"]["max_calls"] == 50
    unit = {"id": "x-1", "text": TEXT, "settings": {**units[0]["settings"], "methods": ["random"], "heads": [0]}}
    strip = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]  # noqa: E731
    first = strip(faithfulness.run_unit(two, unit))
    assert first == strip(faithfulness.run_unit(two, unit))             # random search seeded from the id
    assert first[0]["id"] == "x-1" and first[0]["calls"] <= 50


def test_per_head_table_counts_each_head_against_its_own_baseline():
    from analysis.evaluation import per_head_table

    nan = np.nan

    def row(i, method, head, size, cens=nan):
        return {"id": f"t{i}", "method": method, "head": head, "found": not np.isnan(size), "size": size,
                "censored_at": cens, "calls": 1}

    rows = []
    # head "0": CLEANN 2, 3, not found (censored at 4); its attention baseline 5, 3, 1
    rows += [row(0, "cleann", "0", 2), row(1, "cleann", "0", 3), row(2, "cleann", "0", nan, 4)]
    rows += [row(0, "attention", "0", 5), row(1, "attention", "0", 3), row(2, "attention", "0", 1)]
    # head "1" (from another run on the same inputs): CLEANN 1, 1, 1; its baseline 2, not found at 1, 1
    rows += [row(0, "cleann", "1", 1), row(1, "cleann", "1", 1), row(2, "cleann", "1", 1)]
    rows += [row(0, "attention", "1", 2), row(1, "attention", "1", nan, 1), row(2, "attention", "1", 1)]
    # head-free methods: leave-one-out 1, 1, 1; exhaustive minima 1, 1 (input 2 too long: no row)
    rows += [row(i, "leave_one_out", "", 1) for i in range(3)]
    rows += [row(0, "exhaustive", "", 1), row(1, "exhaustive", "", 1)]
    t = per_head_table(pd.DataFrame(rows), against=("attention", "leave_one_out", "random"), n_boot=200)
    assert list(t["head"]) == ["0", "1"] and list(t.n) == [3, 3]
    h0, h1 = t.iloc[0], t.iloc[1]
    # head 0 vs attention: smaller (2<5), equal (3=3), larger (1 found, CLEANN censored at 4 >= 1)
    assert (h0.attention_smaller, h0.attention_equal, h0.attention_larger, h0.attention_undecided) == (1, 1, 1, 0)
    # head 1 vs its own baseline: smaller, smaller (baseline censored at 1 >= 1), equal
    assert (h1.attention_smaller, h1.attention_equal, h1.attention_larger) == (2, 1, 0)
    assert (h0.leave_one_out_larger, h0.leave_one_out_undecided) == (3, 0) and h1.leave_one_out_equal == 3
    assert np.isnan(h0.random_smaller)                       # random did not run: NaN, not 0
    assert h0.found == pytest.approx(2 / 3) and h0.median_size == 3 and h1.median_size == 1
    # the exhaustive minimum is known on inputs 0 and 1: head 0 reached it on neither, head 1 on both
    assert (h0.exact_n, h0.exact_size, h1.exact_size) == (2, 0.0, 1.0)
    # Holm over the two heads, per compared method: 2 x the smaller p, then the running maximum
    p = sorted(t.attention_sign_test_p)
    assert sorted(t.attention_p_holm) == pytest.approx([min(1, 2 * p[0]), min(1, max(2 * p[0], p[1]))])
    assert t.random_p_holm.isna().all()
    with pytest.raises(ValueError, match="no CLEANN rows"):
        per_head_table(pd.DataFrame(rows[3:6]))


def test_per_head_table_on_the_same_inputs_and_its_figure():
    from analysis.evaluation import per_head_table
    from analysis.figures.evaluation import per_head_outcomes

    def row(i, method, head, size):
        return {"id": f"t{i}", "method": method, "head": head, "found": True, "size": size, "censored_at": np.nan}

    # head "0" ran on 4 inputs, head "1" on the first 2 only (a shorter run)
    rows = [row(i, "cleann", "0", 1) for i in range(4)] + [row(i, "attention", "0", 2) for i in range(4)]
    rows += [row(i, "cleann", "1", 3) for i in range(2)] + [row(i, "attention", "1", 2) for i in range(2)]
    df = pd.DataFrame(rows)
    assert list(per_head_table(df, n_boot=50).n) == [4, 2]
    t = per_head_table(df, same_inputs=True, n_boot=50)
    assert list(t.n) == [2, 2] and list(t.attention_smaller) == [2, 0] and list(t.attention_larger) == [0, 2]
    fig = per_head_outcomes(t)
    bars = {p.get_gid(): p for p in fig.axes[0].patches}
    assert bars["bar:0:smaller"].get_height() == 1.0 and bars["bar:1:larger"].get_height() == 1.0
    assert bars["bar:1:smaller"].get_height() == 0.0 and "2 inputs per head" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="needs columns"):
        per_head_outcomes(t, against="rollout")


def test_remembered_checks_give_the_same_rows_with_fewer_forward_passes(two):
    """Sharing removal checks across methods changes no result (an independent run without
    memory is the reference) and runs fewer perturbed inputs than the methods' calls add up to."""
    bert = tiny_model("bert")
    for model, text in ((two, TEXT), (bert, "a gripping film that never lets go of you")):
        kw = dict(budget=Budget(60), heads=(0, 1, "all"), methods=["cleann", "attention", "random", "leave_one_out",
                                                                    "exhaustive"], max_exhaustive=10)
        counted = _Counting(model)
        fresh = pd.DataFrame(evaluate_input(counted, text, remember=False, **kw))
        shared = pd.DataFrame(evaluate_input(model, text, **kw))
        assert "input_forward_passes" not in fresh
        timing = [c for c in fresh if c.endswith("seconds")]
        pd.testing.assert_frame_equal(fresh.drop(columns=timing),
                                      shared.drop(columns=timing + ["input_forward_passes"]))
        assert 0 < shared["input_forward_passes"].iloc[0] < counted.inputs_run


class _Counting:
    """A model that counts the inputs its ``predict`` runs."""

    def __init__(self, model):
        self.model, self.inputs_run = model, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def predict(self, texts, **kw):
        self.inputs_run += 1 if isinstance(texts, str) else len(texts)
        return self.model.predict(texts, **kw)


def test_remembering_model_answers_repeats_from_memory(two):
    from analysis.evaluation.memo import RememberingModel
    m = RememberingModel(two)
    first = m.predict([TEXT] * 3, remove=[[2], [6, 2], [2, 6]])
    assert (m.misses, m.hits) == (2, 1)                        # {2,6} given twice, in either order
    again = m.predict([TEXT] * 2, remove=[[2, 6], [6]])
    assert (m.misses, m.hits) == (3, 2)
    np.testing.assert_array_equal(again[0], first[1])
    np.testing.assert_allclose(again, two.predict([TEXT] * 2, remove=[[2, 6], [6]]), atol=1e-6)
    assert m.predict is not two.predict and m.trace == two.trace        # the rest is the model's own
    with pytest.raises(Exception, match="integers"):
        m.predict([TEXT], remove=[[1.7]])


def test_holm_matches_hand_computed_values_and_its_laws():
    from analysis.evaluation import holm

    got = holm([0.01, 0.04, 0.03, np.nan, 0.5])
    np.testing.assert_allclose(got, [0.04, 0.09, 0.09, np.nan, 0.5])        # 4x.01, 3x.03, max(.09, 2x.04), .5
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = rng.uniform(0, 1, size=rng.integers(1, 20)) ** 3
        adj = holm(p)
        assert np.all(adj >= p - 1e-15) and np.all(adj <= 1)
        order = np.argsort(p, kind="stable")
        assert np.all(np.diff(adj[order]) >= 0)                              # keeps the order of p
        assert adj[order[0]] == pytest.approx(min(1, len(p) * p[order[0]]))  # the smallest: Bonferroni
        assert np.all(adj <= np.minimum(1, len(p) * p) + 1e-15)              # never above Bonferroni
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.2, 1.5])
