"""BERT4Rec as an attnlab Model: training quality, trace/predict/remove/override semantics
checked against the Hugging Face module itself, and explanations of recommendations."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from analysis import abcd
from analysis.causal import Mark
from analysis.models import InputError
from analysis.zoo import bert4rec
from analysis.zoo.bert4rec import ItemVocabulary, Recommender, rank_metrics, recency_positions, train_bert4rec

from tests.helpers import markov_sequences as _markov

N_ITEMS = 40


def markov_sequences(n_users: int, *, length: int = 12, seed: int = 0) -> list[tuple[int, ...]]:
    return _markov(n_users, N_ITEMS, length=length, seed=seed)


@pytest.fixture(scope="module")
def trained():
    titles = {i: f"film {i}" for i in range(N_ITEMS)}
    return train_bert4rec(markov_sequences(600), n_items=N_ITEMS, titles=titles, hidden=32, layers=2, heads=2,
                          max_len=16, epochs=30, batch_size=32, lr=3e-3, last_frac=0.5, dropout=0.0, seed=0,
                          progress=False)


@pytest.fixture(scope="module")
def rec(trained) -> Recommender:
    return trained[0]


HISTORY = markov_sequences(1, seed=99)[0][:9]


def test_training_beats_popularity(trained):
    model, m = trained
    # leave-last-out over the full catalogue of 40 items: the Markov structure is learnable
    assert m["hr@10"] >= 0.7 and m["hr@10"] >= m["popularity_hr@10"] + 0.3, m
    assert m["ndcg@10"] >= m["popularity_ndcg@10"] + 0.2, m
    assert m["n_eval"] == 600 and m["train_seconds"] > 0
    # independently: the model's top-10 on fresh users of the same chain
    fresh = markov_sequences(200, seed=7)
    probs = model.predict([s[:-1] for s in fresh])
    hits = np.mean([s[-1] in np.argsort(-p)[:10] for s, p in zip(fresh, probs)])
    assert hits >= 0.7


def test_training_is_deterministic_for_a_seed():
    seqs = markov_sequences(60)
    kw = dict(n_items=N_ITEMS, hidden=16, layers=1, heads=2, max_len=16, epochs=2, progress=False, seed=3)
    a, ma = train_bert4rec(seqs, **kw)
    b, mb = train_bert4rec(seqs, **kw)
    np.testing.assert_array_equal(a.predict(HISTORY), b.predict(HISTORY))
    assert ma["hr@10"] == mb["hr@10"]


def test_rank_metrics_by_hand():
    scores = np.array([[0.1, 0.5, 0.4], [0.3, 0.3, 0.4]])
    m = rank_metrics(scores, [2, 1], k=1)                 # ranks 2 and 3 (tie: lower id first)
    assert m["hr@1"] == 0.0 and m["mean_rank"] == 2.5
    m = rank_metrics(scores, [2, 1], k=2)
    assert m["hr@2"] == 0.5 and np.isclose(m["ndcg@2"], 0.5 / np.log2(3))
    assert rank_metrics(scores, [2, 1], k=1, exclude=[[1], [0, 2]])["hr@1"] == 1.0


def test_recommend_agrees_with_predict(rec):
    probs = rec.predict(HISTORY)
    assert probs.shape == (1, N_ITEMS) and np.isclose(probs.sum(), 1.0, atol=1e-5)
    top = rec.recommend(HISTORY, k=5)
    assert top[0][0] == int(probs[0].argmax()) and len(top) == 5
    assert [i for i, _ in top] == list(np.argsort(-probs[0], kind="stable")[:5])
    assert np.allclose([p for _, p in top], np.sort(probs[0])[::-1][:5])
    unseen = rec.recommend(HISTORY, k=10, exclude_seen=True)
    assert not set(HISTORY) & {i for i, _ in unseen}
    assert rec.trace(HISTORY).prediction == top[0][0]
    # one history alone, or in a batch of histories of other lengths: the same scores
    batch = rec.predict([HISTORY[:3], HISTORY, HISTORY[2:]])
    np.testing.assert_allclose(batch[1], probs[0], atol=1e-5)
    np.testing.assert_allclose(batch[0], rec.predict(HISTORY[:3])[0], atol=1e-5)


def _hf_run(rec: Recommender, ids: list[int]):
    """The Hugging Face module alone (its own eager attention), on raw token ids."""
    hf = copy.deepcopy(rec.module).eval()
    hf.set_attn_implementation("eager")
    x = torch.tensor([ids])
    mask = torch.ones_like(x)
    with torch.no_grad():
        return hf(input_ids=x, attention_mask=mask, position_ids=recency_positions(mask, rec.max_length),
                  output_attentions=True)


def test_trace_matches_hugging_face(rec):
    t = rec.trace(HISTORY)
    ids = [i + ItemVocabulary.OFFSET for i in HISTORY] + [ItemVocabulary.MASK]
    out = _hf_run(rec, ids)
    np.testing.assert_allclose(t.attentions, torch.stack([a[0] for a in out.attentions]).numpy(), atol=1e-6)
    logits = out.logits[0, :, ItemVocabulary.OFFSET:]
    np.testing.assert_allclose(t.logits, logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(rec.predict(HISTORY)[0], torch.softmax(logits[-1], -1).numpy(), atol=1e-6)
    assert t.tokens == [f"film {i}" for i in HISTORY] + ["[MASK]"]
    assert t.text == HISTORY and t.items[:-1] == HISTORY and t.query == len(HISTORY)
    assert list(t.special) == [False] * len(HISTORY) + [True]
    assert t.labels == rec.labels and rec.labels[3] == "film 3" and t.label == f"film {t.prediction}"
    # the abductive form: the recommended item appended instead of the query
    a = rec.trace(HISTORY, append=t.prediction)
    assert a.tokens[-1] == f"film {t.prediction}" and a.appended == t.prediction and not a.special.any()
    out = _hf_run(rec, ids[:-1] + [t.prediction + ItemVocabulary.OFFSET])
    np.testing.assert_allclose(a.attentions, torch.stack([x[0] for x in out.attentions]).numpy(), atol=1e-6)


def test_remove_delete_and_mask(rec):
    drop = [1, 4]
    kept = tuple(i for p, i in enumerate(HISTORY) if p not in drop)
    np.testing.assert_allclose(rec.predict(HISTORY, remove=drop), rec.predict(kept), atol=1e-6)
    t = rec.trace(HISTORY, remove=drop)
    assert t.n_tokens == len(HISTORY) - 1 and t.removed == (1, 4) and t.text == HISTORY
    masked = rec.trace(HISTORY, remove=drop, removal="mask")
    assert [masked.tokens[p] for p in drop] == ["[MASK]", "[MASK]"] and masked.n_tokens == len(HISTORY) + 1
    ids = [ItemVocabulary.MASK if p in drop else i + ItemVocabulary.OFFSET for p, i in enumerate(HISTORY)]
    logits = _hf_run(rec, ids + [ItemVocabulary.MASK]).logits[0, -1, ItemVocabulary.OFFSET:]
    np.testing.assert_allclose(rec.predict(HISTORY, remove=drop, removal="mask")[0],
                               torch.softmax(logits, -1).numpy(), atol=1e-6)
    # one removal list per history, as Model.predict
    per = rec.predict([HISTORY, HISTORY], remove=[[0], [2, 3]])
    np.testing.assert_allclose(per[1], rec.predict(HISTORY, remove=[2, 3])[0], atol=1e-6)


def test_override_with_own_attention_is_identity(rec):
    t = rec.trace(HISTORY)
    override = {(l, h): t.attentions[l, h] for l in range(rec.n_layers) for h in range(rec.n_heads)}
    np.testing.assert_allclose(rec.predict(HISTORY, attention_override=override), rec.predict(HISTORY), atol=1e-5)
    changed = {(0, 0): np.full_like(t.attentions[0, 0], 1.0 / t.n_tokens)}
    assert not np.allclose(rec.predict(HISTORY, attention_override=changed), rec.predict(HISTORY), atol=1e-4)
    assert rec.trace(HISTORY, attention_override=changed).overridden == ((0, 0),)


@pytest.mark.parametrize("algorithm", ["icd", "pc"])
def test_explanations_flip_the_recommendation(rec, algorithm):
    probs = rec.predict(HISTORY)[0]
    top1 = int(probs.argmax())
    e = abcd.explain(rec, HISTORY, algorithm=algorithm, head="all", max_set_size=3)
    assert e.prediction == top1 and e.target == len(HISTORY) and e.tokens[-1] == f"film {top1}"
    assert e.sets, "the last item drives a Markov recommender: some small set must flip it"
    for s in e.sets:
        assert len(s) == e.size and all(0 <= p < len(HISTORY) for p in s)
        new = rec.predict(HISTORY, remove=s)[0]                  # the model decides
        assert int(new.argmax()) != top1
    first = next(c for c in e.checks if c.changed)
    assert e.new_rank == first.rank == 1 + int(np.sum(probs > probs[first.prediction]))
    assert all(not c.changed for c in e.checks if len(c.positions) < e.size)
    b = e.baseline
    assert set(b.ranking) == set(range(len(HISTORY)))
    if b.size is not None:
        assert int(rec.predict(HISTORY, remove=list(b.set))[0].argmax()) != top1
        assert b.new_rank == b.checks[-1].rank
    ordered = abcd.explain(rec, HISTORY, algorithm=algorithm, max_set_size=1, order=True)
    assert ordered.settings["order"] is True and e.settings["order"] is False
    edges = ordered.graph.edges()           # time order: every edge points into the later position
    assert edges and all(e.a < e.b and e.mark_b == Mark.ARROW for e in edges)


def test_bad_inputs_are_clear(rec):
    with pytest.raises(InputError, match="unknown item id 40.*0..39"):
        rec.predict([1, 2, 40])
    with pytest.raises(InputError, match="empty"):
        rec.predict([])
    with pytest.raises(InputError, match="empty"):
        rec.trace(())
    with pytest.raises(InputError, match="item ids"):
        rec.trace("film 3")
    with pytest.raises(InputError, match="cannot remove positions \\[9\\]"):
        rec.predict(HISTORY, remove=[9])
    with pytest.raises(InputError, match="append"):
        rec.trace(HISTORY, append="cls")
    with pytest.raises(InputError, match="k must"):
        rec.recommend(HISTORY, k=0)
    with pytest.warns(UserWarning, match="most recent"):
        t = rec.trace(tuple(range(20)))
    assert t.text == tuple(range(5, 20)) and t.n_tokens == rec.max_length == 16
    with pytest.raises(InputError, match="limit of 15"):
        rec.predict(tuple(range(20)), truncate=False)


def test_save_and_load_round_trip(rec, tmp_path):
    rec.save(tmp_path)
    again = bert4rec.load(tmp_path, name="copy")
    np.testing.assert_array_equal(again.predict(HISTORY), rec.predict(HISTORY))
    assert again.labels == rec.labels and repr(again).startswith("Recommender('copy', 40 items")


def test_zoo_registers_bert4rec():
    from analysis import zoo

    from analysis.zoo.codepath import versioned

    assert "bert4rec" in zoo.ZOO and zoo.ZOO["bert4rec"][0] == versioned(bert4rec.RECIPE.version)
    assert bert4rec.Bert4RecRecipe(epochs=1).version != bert4rec.RECIPE.version
