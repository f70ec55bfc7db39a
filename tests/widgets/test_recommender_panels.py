"""Every panel and the Lab on a recommender: histories typed as item ids, items shown by title
and id, the top-k instead of the whole catalogue, explanations of the top-1 recommendation,
copy-as-code that runs. A tiny BERT4Rec trained in seconds on a Markov chain of items."""
from __future__ import annotations

import json
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest

import analysis.models
from analysis import abcd, interventions
from analysis.models import InputError
from analysis.zoo.bert4rec import train_bert4rec
from tests.helpers import markov_sequences as _markov
from tests.helpers import tiny_model
from widgets import (AdversarialPanel, AttentionExplorer, CausalGraphPanel, CITestPanel, ExplanationPanel,
                     InterventionPanel, Lab, Session)
from widgets.items import fits, parse_history

N_ITEMS = 30


def markov_sequences(n_users: int, *, length: int = 12, seed: int = 0) -> list[tuple[int, ...]]:
    return _markov(n_users, N_ITEMS, length=length, seed=seed)


HISTORY = markov_sequences(1, seed=99)[0][:8]
TEXT = " ".join(map(str, HISTORY))


@pytest.fixture(scope="module")
def rec():
    model, _ = train_bert4rec(markov_sequences(300), n_items=N_ITEMS, titles={i: f"film {i}" for i in range(N_ITEMS)},
                              hidden=16, layers=2, heads=2, max_len=12, epochs=20, batch_size=32, lr=3e-3,
                              last_frac=0.5, dropout=0.0, seed=0, progress=False, name="tiny-rec")
    return model


def _items_listed(html_text: str) -> list[str]:
    return re.findall(r"<li>(?:<b>)?(.*?)(?:</b>)?</li>", html_text)


# --------------------------------------------------------------------------- input
def test_histories_parse_from_text_with_clear_errors():
    assert parse_history("3 17 22", N_ITEMS) == (3, 17, 22)
    assert parse_history(" 3,17;\n22 ", N_ITEMS) == parse_history("(3, 17, 22)", N_ITEMS) == (3, 17, 22)
    with pytest.raises(InputError, match=r"'film' is not an item id.*0\.\.29"):
        parse_history("3 film 4", N_ITEMS)
    with pytest.raises(InputError, match=r"unknown item id 30: this catalogue has item ids 0\.\.29"):
        parse_history("3 30", N_ITEMS)
    with pytest.raises(InputError, match=r"unknown item id -1"):
        parse_history("-1 2", N_ITEMS)
    with pytest.raises(InputError, match=r"empty.*0\.\.29"):
        parse_history(" , ", N_ITEMS)


def test_session_takes_a_tuple_and_caches_per_history(rec):
    s = Session(rec, HISTORY)
    assert s.text == TEXT and s.input == HISTORY
    t = s.trace()
    assert t.text == HISTORY and s.n_forward == 1
    s.text = ", ".join(map(str, HISTORY))               # the same history, typed differently: cached
    assert s.trace() is t and s.n_forward == 1
    s.text = HISTORY[:3]
    assert s.text == " ".join(map(str, HISTORY[:3])) and s.trace().text == HISTORY[:3]
    default = Session(rec)                              # no text: a short history, not a sentence
    assert default.input == tuple(range(8))
    long = Session(rec, tuple(range(20)))               # more than the model reads: the most recent
    assert long.input == tuple(range(9, 20)) and long.trace().text == long.input
    assert fits(rec, "1 2") and not fits(rec, "a film") and not fits(tiny_model("bert"), "1 2")


# --------------------------------------------------------------------------- panels
def test_explorer_shows_items_by_title_and_id_and_the_top_k(rec):
    panel = AttentionExplorer(rec, HISTORY, layer=0, head=1, query=len(HISTORY))
    assert panel.error_message == "" and panel.text_box.description == "history"
    trace = rec.trace(HISTORY)
    assert panel.query.options[2] == (f"2: film {HISTORY[2]} (#{HISTORY[2]})", 2)
    assert panel.query.options[-1] == (f"{len(HISTORY)}: [MASK]", len(HISTORY))
    assert "history of 8 items (ids 0..29" in panel.input_note.value
    listed = _items_listed(panel.info.value)
    top = rec.recommend(HISTORY, k=10)
    assert len(listed) == 10 and "classes" not in panel.info.value     # the top-10, not all 30 items
    assert [x.rsplit(" ", 1)[0] for x in listed] == [f"film {i} (#{i})" for i, _ in top]
    np.testing.assert_allclose(panel.current_view().matrices[0], trace.attentions[0, 1])
    namespace = {"model": rec}
    exec(panel.code(include_model=False), namespace)
    assert f"model.trace({HISTORY!r})" in panel.code()
    np.testing.assert_allclose(namespace["matrix"], trace.attentions[0, 1])
    plt.close("all")


@pytest.mark.parametrize("bad, message", [("3 film", r"'film' is not an item id.*0\.\.29"),
                                          ("3 99", r"unknown item id 99.*0\.\.29"),
                                          ("", r"empty")])
def test_bad_histories_show_in_the_panel(rec, bad, message):
    panel = AttentionExplorer(rec, HISTORY)
    panel.text_box.value = bad
    assert panel.error_message.startswith("Invalid input") and re.search(message, panel.error_message)
    panel.text_box.value = TEXT                          # fixed: the error goes away
    assert panel.error_message == ""


def test_ci_and_graph_panels_on_a_history(rec):
    trace = rec.trace(HISTORY)
    ci = CITestPanel(rec, HISTORY, head="all")
    assert ci.error_message == "" and ci.x.options[0] == (f"0: film {HISTORY[0]} (#{HISTORY[0]})", 0)
    ci.click(3)
    corr = abcd.attention_correlation(trace, 1, "all")
    namespace = {"model": rec}
    exec(ci.code(include_model=False), namespace)
    assert namespace["result"] == ci.result and np.isclose(
        ci.result.rho, analysis.causal.partial_correlation(corr, ci.x.value, ci.y.value, ()))
    graph = CausalGraphPanel(rec, HISTORY, head="all", nodes="all")
    expected = abcd.learn_graph(trace, layer=1, head="all", algorithm="icd", alpha=0.01,
                                n_samples=float(graph.n_samples.value), nodes="all")
    assert graph.error_message == "" and graph.graph == expected
    assert graph.graph.labels[0] == f"film {HISTORY[0]}@0" and graph.graph.labels[-1] == f"[MASK]@{len(HISTORY)}"
    namespace = {"model": rec}
    exec(graph.code(include_model=False), namespace)
    assert namespace["graph"] == graph.graph
    plt.close("all")


def test_explanation_panel_explains_the_top1_recommendation(rec, tmp_path):
    panel = ExplanationPanel(rec, HISTORY, head="all", max_set_size=3)
    e = abcd.explain(rec, HISTORY, layer=-1, head="all", n_samples=float(panel.n_samples.value), max_set_size=3)
    assert panel.error_message == ""
    got = panel.explanation
    assert got.prediction == e.prediction == rec.recommend(HISTORY, 1)[0][0]
    assert got.sets == e.sets and got.baseline.set == e.baseline.set
    assert e.sets, "the last items drive a Markov recommender: some small set must change the top-1"
    table = panel.table.value
    assert f"recommended (top-1)</td><td style='padding:0 8px'></td><td style='padding:0 8px'>film {e.prediction} " \
           f"(#{e.prediction})" in table
    for s in e.sets:                                     # sets as items: title (#id)@position
        assert ", ".join(f"film {HISTORY[p]} (#{HISTORY[p]})@{p}" for p in s) in table
    first = next(c for c in e.checks if c.changed)
    where = "inside" if first.rank <= 10 else "outside"
    assert f"film {first.prediction} (#{first.prediction})" in table
    assert f"{first.rank} ({where} the original top-10)" in table
    assert "<b>top-1 changed</b>" in table and f"ranked {e.new_rank} before" in table
    assert "Attention baseline:" in table and ("attention baseline (k=" in table) == bool(e.baseline.checks)
    assert len(_items_listed(table)) == 10                      # the original top-10, not all 30 items
    namespace = {"model": rec}
    exec(panel.code(include_model=False), namespace)
    assert namespace["explanation"].sets == e.sets
    json_path, _ = panel.export(tmp_path / "expl")
    data = json.loads(json_path.read_text())
    assert data["sets"] == e.sets and data["new_rank"] == e.new_rank and data["prediction"] == e.prediction
    plt.close("all")


def test_explanation_of_an_unchanged_top1_says_so(rec):
    panel = ExplanationPanel(rec, HISTORY, head="all", max_set_size=1, algorithm="pc")
    e = panel.explanation
    if e.changed:                         # one item was enough here: then the table says which
        assert "<b>top-1 changed</b> by removing 1 item(s)" in panel.table.value
    else:
        assert "<b>top-1 unchanged</b>: no set of up to 1 items" in panel.table.value
    panel.text_box.value = "1 2 x"
    assert "'x' is not an item id" in panel.error_message and panel.explanation is None


def test_adversarial_search_on_a_history(rec):
    panel = AdversarialPanel(rec, HISTORY, k=2, steps=5)
    assert panel.error_message == ""
    panel.run(block=True)
    assert panel.error_message == "" and panel.result.steps_run == 5
    assert panel.result.tokens == rec.trace(HISTORY).tokens
    assert panel.image.value[:4] == b"\x89PNG"
    namespace = {"model": rec}
    exec(panel.code(include_model=False), namespace)
    np.testing.assert_allclose(namespace["result"].attentions, panel.result.attentions, atol=1e-6)
    plt.close("all")


def test_interventions_on_a_history(rec):
    panel = InterventionPanel(rec, HISTORY, intervention="remove_tokens")
    assert [v for _, v in panel.positions.options] == list(range(len(HISTORY)))   # not the query
    assert panel.positions.options[0][0] == f"0: film {HISTORY[0]} (#{HISTORY[0]})"
    panel.positions.value = (len(HISTORY) - 1,)
    panel.run(block=True)
    direct = interventions.remove_tokens(rec, HISTORY, positions=[len(HISTORY) - 1])
    assert panel.error_message == ""
    np.testing.assert_allclose(panel.outcomes[0].probs, direct.probs, atol=1e-6)
    np.testing.assert_allclose(panel.outcomes[0].probs, rec.predict(HISTORY[:-1])[0], atol=1e-5)
    namespace = {"model": rec}
    exec(panel.code(include_model=False), namespace)
    np.testing.assert_allclose(namespace["results"][0].probs, direct.probs, atol=1e-6)
    panel.intervention.value = "compare all"
    panel.run(block=True)
    names = [r.name for r in panel.outcomes]
    assert panel.error_message == "" and names == list(interventions.INTERVENTIONS)
    assert max(panel.outcomes[names.index("efficient")].tvd, panel.outcomes[names.index("add_null")].tvd) < 1e-4
    plt.close("all")


# --------------------------------------------------------------------------- the Lab
def test_lab_on_a_recommender(rec):
    lab = Lab(rec, HISTORY)
    assert lab.text.value == TEXT and lab.text.description == "history"
    assert "recommender over 30 items (ids 0..29)" in lab.model_info.value and "classes" not in lab.model_info.value
    assert "history of 8 items" in lab.input_note.value
    for title in ("Attention", "CI test", "Causal graph", "Explanation", "Adversarial", "Interventions"):
        panel = lab.select(title)
        assert panel.error_message == "", (title, panel.error_message)
    assert lab["Explanation"].explanation.prediction == rec.recommend(HISTORY, 1)[0][0]
    lab.text.value = "4 5 nine"
    assert re.search(r"'nine' is not an item id.*0\.\.29", lab["Interventions"].error_message)
    assert lab.input_note.value == ""
    lab.text.value = "4 5 9"
    assert lab.select("Explanation").error_message == "" and lab.session.trace().text == (4, 5, 9)


def test_lab_switches_between_text_and_recommender(rec, monkeypatch):
    text_model = tiny_model("bert")
    monkeypatch.setattr(analysis.models, "load_model", lambda name=None, **_: {"tiny-rec": rec}.get(name, text_model))
    lab = Lab(text_model, "a gripping film")
    lab.load_model("tiny-rec")                 # a sentence is no history: the recommender's default
    assert lab.session.model is rec and lab.session.input == tuple(range(8))
    assert lab["Attention"].error_message == "" and lab.text.description == "history"
    lab.text.value = TEXT
    lab.load_model("tiny-bert")                # ids are no sentence: back to the default text
    assert lab.session.model is text_model and not fits(rec, lab.text.value)
    assert lab["Attention"].error_message == "" and lab.text.description == "text"


# --------------------------------------------------------------------------- the real one
@pytest.mark.integration
def test_every_panel_on_the_zoo_bert4rec():
    from analysis import load_dataset, load_model

    model = load_model("bert4rec")
    history = load_dataset("synthetic-rec", "test").sequences[0][-(model.max_length - 1):]
    lab = Lab(model, history)
    assert lab.session.input == tuple(history)
    for title in ("Attention", "CI test", "Causal graph", "Explanation", "Adversarial", "Interventions"):
        panel = lab.select(title)
        assert panel.error_message == "", (title, panel.error_message)
    assert len(_items_listed(lab["Attention"].info.value)) == 10
    e = lab["Explanation"].explanation
    assert e.prediction == model.recommend(history, 1)[0][0] and e.target == len(history)
    namespace: dict = {}
    exec(lab["Explanation"].code(), namespace)              # loads the zoo model by name, as a user would
    assert namespace["explanation"].sets == e.sets and "analysis.load_model('bert4rec')" in lab["Explanation"].code()
    plt.close("all")
