"""Every panel and the Lab on decoder language models (tiny random GPT-2 and Llama, task
"causal-lm"): predictions shown as next tokens, causal heatmaps, values equal to the analysis
functions' own; and panels traced selectively show what full traces show."""
from __future__ import annotations

import html

import matplotlib.text
import numpy as np
import pytest

import widgets.session as session_module
from analysis import abcd, interventions
from analysis.adversarial import search
from analysis.causal import FisherZTest, Mark
from analysis.efficient import decompose
from tests.helpers import tokenizer
from widgets import (AdversarialPanel, AttentionExplorer, CausalGraphPanel, CITestPanel, ExplanationPanel,
                     InterventionPanel, Lab, Session)

TEXT = "the cat sat on the mat and looked at the dog"
#: a random model's next token may be any script (llama's here: Devanagari), beyond the plot font
pytestmark = pytest.mark.filterwarnings("ignore:Glyph .* missing from font")


@pytest.fixture(params=("gpt2", "llama"), scope="module")
def lm(request, tiny_models):
    return tiny_models(request.param, "causal-lm")


def next_token(trace) -> str:
    """The next token after the last one, decoded by the tokenizer and quoted."""
    return repr(tokenizer().decode([int(np.argmax(trace.probs[-1]))]))


def figure_texts(fig) -> str:
    return " ".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))


def ordered(graph) -> bool:
    """Every edge a-b (a earlier) has an arrowhead at b: token order as background knowledge."""
    return all(graph.mark(e.b, e.a) == Mark.ARROW for e in graph.edges() if e.a < e.b)


def test_attention_explorer_shows_causal_heatmaps_and_the_next_token(lm):
    panel = AttentionExplorer(lm, TEXT)
    trace = lm.trace(TEXT)
    assert panel.error_message == "" and (panel.layer.max, panel.head.max) == (1, 3)
    assert f"next token: <b>{next_token(trace)}</b> (id {trace.prediction}" in html.unescape(panel.info.value)
    for layer, head in [(0, 2), (1, 3)]:
        panel.layer.value, panel.head.value = layer, head
        shown = np.asarray(panel._canvas.image.get_array())
        np.testing.assert_array_equal(shown, trace.attentions[layer, head].astype(float))
        assert np.all(np.triu(shown, 1) == 0) and np.allclose(shown.sum(-1), 1.0, atol=1e-5)   # masked
    panel.part.value = "efficient"
    expected = decompose(trace, 1, 3).effective
    np.testing.assert_allclose(panel.current_view().matrices[0], expected)
    panel.mode.value = "grid"
    assert panel.image.value[:4] == b"\x89PNG" and panel.error_message == ""
    panel.mode.value = "mean"
    np.testing.assert_allclose(panel.current_view().matrices[0], trace.attentions[1].mean(0))
    assert panel.error_message == ""


def test_ci_test_and_graph_panels_equal_the_analysis(lm):
    ci = CITestPanel(lm, TEXT, layer=0, head=1)
    trace = lm.trace(TEXT)
    ci.x.value, ci.y.value = 2, trace.n_tokens - 1
    ci.cond.value = (3,)
    corr = abcd.attention_correlation(trace, 0, 1)
    expected = FisherZTest(corr, 32.0, 0.01)(2, trace.n_tokens - 1, (3,))
    assert ci.error_message == "" and ci.result.rho == pytest.approx(expected.rho, abs=1e-12)
    assert ci.result.independent == expected.independent

    graph = CausalGraphPanel(lm, TEXT, layer=1, head="all", n_samples=1000)
    expected = abcd.learn_graph(trace, layer=1, head="all", n_samples=1000.0, nodes="content")
    assert graph.error_message == ""
    np.testing.assert_array_equal(graph.graph.to_matrix(), expected.to_matrix())
    assert len(graph.graph) > 0 and ordered(graph.graph)                     # token order: decoders
    graph.algorithm.value = "fci"
    expected = abcd.learn_graph(trace, layer=1, head="all", n_samples=1000.0, nodes="content", algorithm="fci")
    np.testing.assert_array_equal(graph.graph.to_matrix(), expected.to_matrix())


def test_explanation_panel_explains_the_next_token(lm):
    panel = ExplanationPanel(lm, TEXT, layer=1, head=2, max_set_size=2)
    e = panel.explanation
    expected = abcd.explain(lm, TEXT, **panel.settings())
    trace = lm.trace(TEXT)
    assert panel.error_message == "" and e.target == trace.n_tokens - 1
    assert e.prediction == expected.prediction == trace.prediction and e.sets == expected.sets
    assert [c.positions for c in e.checks] == [c.positions for c in expected.checks]
    token = next_token(trace)
    assert "<th>next token</th><th>p(original next token)</th>" in panel.table.value
    assert f"<td style='padding:0 8px'>{token}</td>" in html.unescape(panel.table.value)
    assert "class " not in panel.table.value
    assert f"explaining the next token {token} (id {e.prediction})" in html.unescape(panel.table.value)
    texts = figure_texts(panel.figure())
    assert f"{token} " in texts and "class " not in texts
    assert "abcd.output_names(model)" in panel.code()


def test_intervention_panel_names_next_tokens(lm):
    panel = InterventionPanel(lm, TEXT, intervention="add_null", layer=1, head=0, seed=3)
    panel.run(block=True)
    assert panel.error_message == "" and len(panel.outcomes) == 1
    expected = interventions.add_null(lm, TEXT, 1, 0, scale=1.0, seed=3)
    got = panel.outcomes[0]
    np.testing.assert_allclose(got.probs, expected.probs, atol=1e-9)
    assert got.tvd < 1e-4                                         # the null space does not reach the output
    texts = figure_texts(panel.figure())
    assert next_token(lm.trace(TEXT)) in texts and "layer 1, head 0" in texts
    panel.intervention.value = "compare all"
    panel.run(block=True)
    assert panel.error_message == "" and [r.name for r in panel.outcomes] == [
        n for n in interventions.INTERVENTIONS if n != "remove_tokens"]


def test_adversarial_panel_runs_on_a_decoder(lm):
    panel = AdversarialPanel(lm, TEXT, layer=1, head=1, k=2, steps=4)
    panel.run(block=True)
    assert panel.error_message == "" and panel.result is not None
    expected = search(lm, TEXT, layer=1, head=1, k=2, eps=0.01, steps=4, seed=0, progress=False)
    np.testing.assert_allclose(panel.result.jsd, expected.jsd, atol=1e-9)
    assert panel.result.probs.shape == (2, 30522) and panel.image.value[:4] == b"\x89PNG"


def test_lab_on_a_decoder(lm):
    lab = Lab(lm, TEXT)
    assert "language model: predicts the next token" in lab.model_info.value
    assert lab.session.n_forward == 1
    for title in ("CI test", "Causal graph", "Explanation", "Adversarial", "Interventions"):
        panel = lab.select(title)
        assert panel.error_message == "", (title, panel.error_message)
    assert lab["Explanation"].explanation.target == lab.session.trace().n_tokens - 1
    lab.text.value = "a dog ran after the red ball in the park"
    assert lab["Interventions"].error_message == ""
    assert lab.select("Attention").error_message == ""
    assert next_token(lab.session.trace()) in html.unescape(lab["Attention"].info.value)


# --------------------------------------------------------------------------- selective capture
def test_the_session_captures_only_what_a_panel_asks_for(lm, monkeypatch):
    s = Session(lm, TEXT, capture="selective")
    t = s.trace(heads=[(1, 2)])
    assert t.captured == ((1, 2),) and s.n_forward == 1
    assert s.trace(heads=[(1, 2)]) is t and s.any_trace() is t and s.n_forward == 1
    layer = s.trace(layers=[0])
    assert layer.captured == tuple((0, h) for h in range(4)) and s.n_forward == 2
    assert s.trace(heads=[(0, 3)]) is layer and s.n_forward == 2              # covered by the layer
    full = s.trace()
    assert full.captured is None and s.trace(heads=[(1, 0)]) is full and s.n_forward == 3
    auto = Session(lm, TEXT)
    assert auto.capture == "auto" and auto.trace(heads=[(1, 2)]).captured is None    # small: every head
    monkeypatch.setattr(session_module, "FULL_CAPTURE_BYTES", 0)
    assert Session(lm, TEXT).trace(heads=[(1, 2)]).captured == ((1, 2),)           # large: the head only
    with pytest.raises(ValueError, match="capture must be one of auto, full, selective"):
        Session(lm, TEXT, capture="some")


def sessions(lm) -> tuple[Session, Session]:
    return Session(lm, TEXT, capture="full"), Session(lm, TEXT, capture="selective")


def test_panels_on_selective_traces_show_what_full_traces_show(lm):
    full, sel = sessions(lm)
    a, b = AttentionExplorer(session=full, layer=0, head=1), AttentionExplorer(session=sel, layer=0, head=1)
    for panel in (a, b):
        panel.query.value = 5
        panel.part.value = "efficient"
    assert a.error_message == b.error_message == "" and (b.layer.value, b.head.value) == (0, 1)
    assert a.info.value == b.info.value and a.row.value == b.row.value
    np.testing.assert_array_equal(a.current_view().matrices, b.current_view().matrices)
    assert a.image.value == b.image.value
    layer = lambda k: frozenset((k, h) for h in range(4))  # noqa: E731
    assert [k[2] for k in sel._traces] == [layer(1), layer(0)]       # sizes from the last layer, then layer 0
    forward = sel.n_forward
    b.head.value = 3                                                 # same layer: read from the cache
    assert sel.n_forward == forward and b.error_message == ""

    full, sel = sessions(lm)
    c, d = CITestPanel(session=full, layer=0, head=2), CITestPanel(session=sel, layer=0, head=2)
    assert (c.result.rho, c.result.p) == (d.result.rho, d.result.p) and c.numbers.value == d.numbers.value
    assert [k[2] for k in sel._traces] == [layer(1), frozenset({(0, 2)})]
    c.head.value = d.head.value = "all"
    assert (c.result.rho, c.result.p) == (d.result.rho, d.result.p) and sel._traces.popitem()[0][2] == layer(0)

    full, sel = sessions(lm)
    g, h = CausalGraphPanel(session=full, head="all"), CausalGraphPanel(session=sel, head="all")
    np.testing.assert_array_equal(g.graph.to_matrix(), h.graph.to_matrix())
    assert g.info.value.split("·")[0] == h.info.value.split("·")[0]
    g.head.value = h.head.value = 1                                 # layer 1 is held: no new run
    g.layer.value = h.layer.value = 0                               # head 1 of layer 0: that head only
    np.testing.assert_array_equal(g.graph.to_matrix(), h.graph.to_matrix())
    assert [k[2] for k in sel._traces] == [layer(1), frozenset({(0, 1)})]

    full, sel = sessions(lm)
    for basis in ("value", "jacobian"):
        i = InterventionPanel(session=full, intervention="efficient", layer=0, head=2)
        j = InterventionPanel(session=sel, intervention="efficient", layer=0, head=2)
        for panel in (i, j):
            panel.basis.value = basis
            panel.run(block=True)
        assert i.error_message == j.error_message == ""
        np.testing.assert_array_equal(i.outcomes[0].probs, j.outcomes[0].probs)
        assert i.image.value == j.image.value
    assert [k[2] for k in sel._traces] == [layer(1), frozenset({(0, 2)})]
    assert full.n_forward == 1                                      # one full trace serves every panel
