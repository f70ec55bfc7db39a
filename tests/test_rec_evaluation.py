"""The recommendation evaluation: explainers on item histories with known answers, the planted
true causes, censoring, random search's budget and seed, the runner in-process vs joblib, and
clear errors (analysis.evaluation on recommenders, analysis.experiments.recommendation)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.abcd import Budget
from analysis.data import load_dataset
from analysis.evaluation import (
    cause_scores,
    check_methods,
    evaluate_input,
    methods_for,
    new_top1_ranks,
    run_method,
    summarize_results,
)
from analysis.experiments import recommendation as R
from analysis.experiments.runner import run
from analysis.experiments.tasks import get_task
from analysis.zoo.bert4rec import ItemVocabulary, Recommender, RecTrace, build_module, train_bert4rec
from tests.helpers import TWO_TOKEN_TEXT, TwoTokenModel

KEYS = (3, 7)            # the two history items the fake recommender's top-1 depends on
REC, ALT = 11, 12        # its top-1 with both keys (or one), and the top-1 without them
HISTORY = (5, 3, 9, 1, 7, 0)   # keys at positions 1 and 4
NO_KEYS = (5, 9, 1, 0, 2)      # nothing to remove: the top-1 (ALT) never changes


class TwoItemRecommender:
    """A recommender over 20 items whose output depends only on two history items:
    p(REC) = 0.2 + 0.35 per key item present, p(ALT) = 1 - p(REC). With both keys the top-1 REC
    (0.9) changes only when both are removed: the unique minimal flipping set is their
    positions. Abductive like BERT4Rec: its explanation trace appends the recommended item."""

    kind, input_kind, task = "recommender", "items", "recommendation"
    abductive = True
    is_causal = query_independent = False
    n_layers, n_heads, n_items = 1, 2, 20
    name = "two-item"
    labels = tuple(f"item {i}" for i in range(20))

    def predict(self, texts, *, remove=None, removal: str = "delete", **_: object) -> np.ndarray:
        texts = [texts] if isinstance(texts[0], (int, np.integer)) else list(texts)
        removes = remove if remove and isinstance(remove[0], (list, tuple)) else [remove or []] * len(texts)
        out = np.zeros((len(texts), self.n_items))
        for b, (h, r) in enumerate(zip(texts, removes)):
            kept = [x for p, x in enumerate(h) if p not in set(r)]
            out[b, REC] = 0.2 + 0.35 * sum(k in kept for k in KEYS)
            out[b, ALT] = 1 - out[b, REC]
        return out

    def _trace(self, history, last: int | None) -> RecTrace:
        n = len(history) + 1
        rng = np.random.default_rng(n)
        att = rng.uniform(0.2, 1.0, size=(1, 2, n, n))        # dense, generic: a complete graph
        att /= att.sum(-1, keepdims=True)
        probs = self.predict([history])[0]
        tokens = [self.labels[i] for i in history] + (["[MASK]"] if last is None else [self.labels[last]])
        return RecTrace(tokens=tokens, input_ids=np.arange(n), attentions=att.astype(np.float32),
                        values=rng.normal(size=(1, 2, n, 3)).astype(np.float32),
                        hidden_states=rng.normal(size=(2, n, 6)).astype(np.float32),
                        logits=np.log(np.tile(probs + 1e-9, (n, 1))), probs=np.tile(probs, (n, 1)),
                        special=np.array([last is None and i == n - 1 for i in range(n)]), task="masked-lm",
                        labels=self.labels, text=tuple(history), items=(*history, -1 if last is None else last),
                        appended=last)

    def trace(self, history) -> RecTrace:
        return self._trace(tuple(history), None)

    def explanation_trace(self, history, prediction: int):
        t = self._trace(tuple(history), int(prediction))
        return t, t.n_tokens - 1


@pytest.fixture(scope="module")
def fake():
    return TwoItemRecommender()


TINY_DATA = {"n_users": 40, "n_items": 20, "length": [5, 9], "seed": 1}


def tiny_recommender(n_items: int = 20, seed: int = 0) -> Recommender:
    """An untrained BERT4Rec (2 layers x 2 heads, hidden 16): a real Recommender, quick to build
    (its top-1 hardly depends on the history: good for checking plumbing, not explanations)."""
    module = build_module(n_items, hidden=16, layers=2, heads=2, max_len=24, dropout=0.0, seed=seed).eval()
    module.set_attn_implementation("eager")
    return Recommender(module, ItemVocabulary(n_items), name="tiny-rec")


@pytest.fixture(scope="module")
def tiny_rec() -> Recommender:
    """A BERT4Rec (hidden 16, 2 x 2) trained for 20 epochs on the train split of ``TINY_DATA``
    (about 7 s): its top-1 depends on the history, so small sets flip it."""
    train = load_dataset("synthetic-rec", "train", **TINY_DATA)
    rec, _ = train_bert4rec(train.sequences, n_items=20, hidden=16, layers=2, heads=2, max_len=16, epochs=20,
                            batch_size=16, lr=5e-3, dropout=0.0, seed=0, progress=False)
    return rec


# --------------------------------------------------------------------------- known answers
def test_exhaustive_cleann_and_leave_one_out_find_the_two_items(fake):
    assert int(fake.predict([HISTORY])[0].argmax()) == REC
    truth = run_method("exhaustive", fake, HISTORY, Budget(None))
    assert truth.size == 2 and truth.sets == ((1, 4),) and truth.stopped == "found"
    assert truth.candidates == tuple(range(6))               # history positions; the appended item is the target
    assert truth.calls == 6 + math.comb(6, 2)
    cleann = run_method("cleann", fake, HISTORY, Budget(None), head=0, n_samples=1e12)
    assert cleann.sets == ((1, 4),) and cleann.ranking[:2] == (1, 4)
    loo = run_method("leave_one_out", fake, HISTORY, Budget(50))
    assert set(loo.ranking[:2]) == {1, 4} and loo.sets == ((1, 4),) and loo.ranking_calls == 6
    # the attention baseline reads the appended recommendation's row of the abductive trace
    att = run_method("attention", fake, HISTORY, Budget(50), head=1)
    row = fake.explanation_trace(HISTORY, REC)[0].attentions[0, 1, -1, :-1]
    assert att.ranking == tuple(int(i) for i in np.argsort(-row, kind="stable"))
    k = max(att.ranking.index(1), att.ranking.index(4)) + 1
    assert att.size == k and att.calls == k


def test_cause_scores_and_new_ranks_by_hand(fake):
    assert cause_scores((1, 4), [1, 4]) == {"cause_n": 2, "cause_precision": 1.0, "cause_recall": 1.0,
                                            "cause_recovered": 1.0}
    s = cause_scores((1, 4), [1], prefix="heldout")
    assert (s["heldout_precision"], s["heldout_recall"], s["heldout_recovered"]) == (0.5, 1.0, 1.0)
    s = cause_scores((0, 2, 5), [1, 4])
    assert (s["cause_precision"], s["cause_recall"], s["cause_recovered"]) == (0.0, 0.0, 0.0)
    s = cause_scores(None, [1])                              # censored: nothing to judge, not recovered
    assert math.isnan(s["cause_precision"]) and math.isnan(s["cause_recall"]) and s["cause_recovered"] == 0.0
    s = cause_scores((2,), [])                               # no planted cause: recall undefined
    assert s["cause_precision"] == 0.0 and math.isnan(s["cause_recall"]) and math.isnan(s["cause_recovered"])
    # removing both keys makes ALT (originally ranked 2nd) the top-1; None stays NaN
    ranks = new_top1_ranks(fake, HISTORY, [(1, 4), None, (1, 3, 4)])
    assert ranks[0] == 2.0 and math.isnan(ranks[1]) and ranks[2] == 2.0


def test_a_table_on_a_history_agrees_with_exhaustive_and_eraser_by_hand(fake):
    rows = evaluate_input(fake, HISTORY, methods=["cleann", "attention", "rollout", "leave_one_out", "random",
                                                  "exhaustive"], heads=[0], budget=Budget(200), n_samples=1e12)
    df = pd.DataFrame(rows).set_index("method")
    assert (df.prediction == REC).all() and (df.n_tokens == 7).all()
    assert (df.exhaustive_size == 2).all()
    assert df.loc[["cleann", "leave_one_out", "exhaustive"], "exact_set"].all()
    # ERASER on p(REC), CLEANN's ranking starts 1, 4 (6 candidates: k = 1, 1, 1, 2, 3):
    # without one key 0.55, without both 0.2; keeping only one key 0.55, both 0.9
    assert df.loc["cleann", "comp_20"] == pytest.approx(0.7) and df.loc["cleann", "comp_1"] == pytest.approx(0.35)
    assert df.loc["cleann", "aopc_comp"] == pytest.approx((3 * 0.35 + 2 * 0.7) / 5)
    assert df.loc["cleann", "aopc_suff"] == pytest.approx(3 * 0.35 / 5)


# --------------------------------------------------------------------------- censoring, random search
def test_censoring_keeps_every_history(fake):
    rows = []
    for i, h in enumerate((NO_KEYS, HISTORY, NO_KEYS[::-1])):
        rows += [{"id": f"u{i}", **r} for r in evaluate_input(fake, h, methods=["cleann", "random", "exhaustive"],
                                                               heads=[0], budget=Budget(300), n_samples=1e12)]
    df = pd.DataFrame(rows)
    assert len(df) == 3 * 3
    never = df[df.id != "u1"]
    assert not never.found.any() and never["size"].isna().all() and never.status.str.startswith("not found").all()
    assert (never[never.method != "random"].stopped == "exhausted").all()     # every set checked: nothing flips
    sizes = summarize_results(df, n_boot=200)["sizes"].set_index("explainer")
    assert (sizes.n == 3).all() and sizes.loc["cleann[0]", "censored"] == 2
    assert sizes.loc["cleann[0]", "found"] == pytest.approx(1 / 3) and sizes.loc["cleann[0]", "median_label"].startswith(">")
    # censored users count as not recovering a cause
    df["cause_n"], df["heldout_n"], df["top_k"] = 2, 0, 10
    for c in ("cause_precision", "cause_recall", "cause_recovered", "heldout_precision", "heldout_recovered",
              "new_rank", "new_in_top_k"):
        df[c] = np.nan
    df.loc[df.found, ["cause_precision", "cause_recall"]] = 1.0
    df["cause_recovered"] = df.found.astype(float)
    causes = R.cause_table(df, n_boot=200).set_index("explainer")
    assert causes.loc["cleann[0]", "cause_recovered"] == pytest.approx(1 / 3)
    assert causes.loc["cleann[0]", "cause_precision"] == 1.0 and causes.loc["cleann[0]", "n_planted_found"] == 1


def test_random_search_keeps_its_budget_and_seed(fake):
    quotas = {1: 3, 2: 5}
    a = run_method("random", fake, HISTORY, Budget(100), calls_by_size=quotas, seed=7)
    b = run_method("random", fake, HISTORY, Budget(100), calls_by_size=quotas, seed=7)
    assert a == dataclasses.replace(b, seconds=a.seconds)
    assert all(q <= quotas[k] for k, q in a.calls_by_size.items()) and a.calls <= 8
    for budget in (1, 4, 11, 20):
        r = run_method("random", fake, HISTORY, Budget(budget), seed=budget)
        assert r.calls <= budget and (r.found or r.stopped == "calls")
    full = run_method("random", fake, HISTORY, Budget(6 + 15), seed=0)     # every single and pair
    assert full.sets == ((1, 4),)


# --------------------------------------------------------------------------- the planted truth
def test_true_causes_follow_the_planted_graph():
    ds = load_dataset("synthetic-rec", "test", n_users=200, n_items=100, seed=0)     # the zoo's users 0..199
    g = ds.graph
    items = g.item_graph()
    children = {a: set() for a in range(g.n_items)}
    for e in items.edges():                                  # a DAG: the tail end is the parent
        a, b = (e.a, e.b) if e.mark_b.name == "ARROW" else (e.b, e.a)
        children[a].add(b)
    checked = 0
    for u, (h, target) in enumerate(zip(ds.sequences, ds.targets)):
        for r in (target, h[0], (target + 1) % g.n_items):
            planted, heldout = R.true_causes(g, u, h, r, target)
            expect = [] if r in h else [p for p, x in enumerate(h) if r in children[x]]
            assert planted == expect
            if r == target and g.target_causes[u] >= 0:
                # the realised trigger is always one of the planted causes
                assert heldout == [g.target_causes[u]] and heldout[0] in planted
                checked += 1
            else:
                assert heldout is None
    assert checked >= 20
    planted, _ = R.true_causes(g, 0, ds.sequences[0], ds.targets[0], ds.targets[0], offset=2)
    assert all(p >= 0 for p in planted)                      # positions of the kept (truncated) history


# --------------------------------------------------------------------------- gradients on a real BERT4Rec
def test_gradient_methods_on_item_embeddings_match_finite_differences(tiny_rec):
    rec = tiny_rec
    h = (4, 9, 1, 15, 7, 12)
    top1 = int(rec.predict(h)[0].argmax())
    gxi = run_method("grad_x_input", rec, h, Budget(40))
    ig = run_method("integrated_gradients", rec, h, Budget(40), ig_steps=128)
    for r in (gxi, ig):
        assert sorted(r.ranking) == list(range(len(h))) and r.calls <= 40 and r.ranking_calls > 0
    assert ig.extra["convergence_delta"] < 0.01        # completeness: sum of attributions = p(x) - p(PAD items)
    # gradient x input at position p = d/dt p(top1 | E_p scaled by t) at t = 1 (central difference)
    enc = rec.encode(h)
    batch = rec.batch([enc])
    emb = rec.module.get_input_embeddings()(batch["input_ids"]).detach().double()

    def p_top1(scale_pos: int, t: float) -> float:
        e = emb.clone()
        e[0, scale_pos] *= t
        with torch.no_grad():
            m = rec.module.double()
            out = m(inputs_embeds=e, attention_mask=batch["attention_mask"], position_ids=batch["position_ids"])
            rec.module.float()
        return float(torch.softmax(out.logits[0, -1, ItemVocabulary.OFFSET:], -1)[top1])

    from analysis.evaluation.explainers import gradient_scores

    scores, _, _ = gradient_scores(rec, h, top1, integrated=False)
    eps = 1e-4
    fd = [(p_top1(p, 1 + eps) - p_top1(p, 1 - eps)) / (2 * eps) for p in range(len(h))]
    # float32 gradients against a float64 difference: 0.1% of the largest score (a 0.002 entry was
    # 0.3% off on one machine: float32 rounding at that scale, not a wrong gradient)
    np.testing.assert_allclose(scores[: len(h)], fd, rtol=1e-3, atol=1e-3 * float(np.max(np.abs(fd))))


# --------------------------------------------------------------------------- the task and the runner
def _stable(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=[c for c in df.columns if c.endswith("seconds")])


def test_runner_in_process_and_joblib_give_the_same_table(tiny_rec):
    rec = tiny_rec
    units = R.make_units(n=3, seed=2, data=TINY_DATA, heads=[0, "all"], max_calls=150, graph_algorithms=["icd"],
                         graph_orders=[False], ig_steps=16)
    assert len({u["id"] for u in units}) == 3 and all(u["id"].startswith("synthetic-rec-test-u") for u in units)
    task = get_task("recommendation")
    local = run(task, units, workers=1, model=rec, progress=False)
    pooled = run(task, units, workers=2, model=rec, progress=False, chunk_size=1)
    # IG's convergence delta is float noise (~1e-8) that depends on torch's thread count (workers
    # run one thread): it alone is compared to 1e-6; every other column as before
    noise = "extra_convergence_delta"
    pd.testing.assert_frame_equal(_stable(local).drop(columns=noise), _stable(pooled).drop(columns=noise))
    pd.testing.assert_series_equal(local[noise], pooled[noise], atol=1e-6)
    assert local["error"].isna().all()
    expl = local[local.kind == "explanation"]
    n_methods = 4 * 2 + 4 + 1                                # head methods x 2 heads, 4 others, exhaustive
    assert len(expl) == 3 * n_methods and set(expl.method) == set(methods_for(rec))
    # a unit run twice gives the same rows (random search is seeded from the unit id)
    again = pd.DataFrame(R.run_unit(rec, units[0]))
    first = local[local.unit_id == units[0]["id"]].reset_index(drop=True)
    cols = ["kind", "method", "head", "found", "size", "set", "calls", "cause_recovered", "new_rank", "tp"]
    pd.testing.assert_frame_equal(first[cols], again[cols], check_dtype=False)
    tables = R.summarize(local.drop(columns=["unit_id", "error"]))
    assert {"sizes", "paired", "exhaustive", "causes", "new_rank", "users", "graphs"} <= set(tables)
    graphs = local[local.kind == "graph"]
    row = tables["graphs"].set_index("head").loc["0"]
    assert row["n"] == 3 and row["precision"] == pytest.approx(graphs[graphs["head"] == "0"].tp.sum()
                                                               / graphs[graphs["head"] == "0"].n_edges.sum())
    assert (tables["sizes"].n == 3).all()                    # censored users are kept, never dropped
    assert expl.found.any() and (~expl.found).any()


# --------------------------------------------------------------------------- errors
def test_bad_input_gives_clear_errors(fake):
    with pytest.raises(ValueError, match="unknown method.*cleann"):
        evaluate_input(fake, HISTORY, methods=["lime"])
    with pytest.raises(ValueError, match=r"not offered for this recommender.*choose from cleann"):
        check_methods(["cleann", "integrated_gradients"], fake)
    with pytest.raises(ValueError, match="grad_x_input is not offered"):
        run_method("grad_x_input", fake, HISTORY, Budget(10))
    assert "grad_x_input" not in methods_for(fake) and "grad_x_input" in methods_for(tiny_recommender())
    with pytest.raises(ValueError, match="gradient x input and integrated gradients need"):
        run_method("integrated_gradients", TwoTokenModel(), TWO_TOKEN_TEXT, Budget(10))
    with pytest.raises(ValueError, match="max_calls must be a positive integer"):
        run_method("cleann", fake, HISTORY, Budget(0))
    with pytest.raises(ValueError, match="max_calls must be a positive integer"):
        R.make_units(n=2, data=TINY_DATA, max_calls=0)
    with pytest.raises(ValueError, match="only 'synthetic-rec'"):
        R.make_units(dataset="imdb", n=2)
    with pytest.raises(ValueError, match="unknown settings"):
        R.make_units(n=2, data=TINY_DATA, budget=3)
    with pytest.raises(ValueError, match="unknown graph algorithm"):
        R.make_units(n=2, data=TINY_DATA, graph_algorithms=["ges"])
    with pytest.raises(ValueError, match="more than the 40 test users"):
        R.make_units(n=41, data=TINY_DATA)
    unit = R.make_units(n=1, data=TINY_DATA, methods=["cleann"])[0]
    with pytest.raises(ValueError, match="explains a recommender"):
        R.run_unit(TwoTokenModel(), unit)
    with pytest.raises(ValueError, match="history differs"):
        R.run_unit(fake, {**unit, "history": [1, 2, 3]})


def test_a_traced_recommender_pickles_for_the_runner(tiny_rec):
    import pickle

    h = (4, 9, 1, 15, 7, 12)
    tiny_rec.trace(h)                      # installs transformers' forward hooks (not picklable themselves)
    again = pickle.loads(pickle.dumps(tiny_rec))
    assert type(again) is Recommender and again.name == tiny_rec.name and again.info == tiny_rec.info
    np.testing.assert_array_equal(again.predict(h), tiny_rec.predict(h))
    np.testing.assert_array_equal(again.trace(h, append=3).attentions, tiny_rec.trace(h, append=3).attentions)
