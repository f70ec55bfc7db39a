"""GraphControls: the one ABCD controls widget behind the CI-test, graph and explanation panels."""
from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import pytest

from analysis import abcd
from analysis.causal import ALGORITHMS, FisherZTest
from analysis.efficient import BASES
from widgets import CausalGraphPanel, CITestPanel, ExplanationPanel, GraphControls, JobPanel, Panel
from widgets.controls import FIELDS, MODEL_BASES, TEST_FIELDS

TEXT = "a gripping film that never lets go of you"


@pytest.fixture(scope="module")
def model(tiny_bert):
    return tiny_bert


@pytest.fixture(scope="module")
def panels(model):
    return {"ci": CITestPanel(model, TEXT), "graph": CausalGraphPanel(model, TEXT),
            "explanation": ExplanationPanel(model, TEXT, layer=0, max_set_size=1)}


def test_default_settings_are_the_abcd_defaults_in_one_order():
    c = GraphControls(4)
    assert c.settings() == dict(layer=0, head=0, algorithm="icd", alpha=0.01, n_samples=32.0, nodes="content",
                                attention="raw", basis="value")
    assert list(c.settings()) == list(FIELDS)
    assert all(isinstance(c.settings()[k], float) for k in ("alpha", "n_samples"))
    ci = GraphControls(4, fields=TEST_FIELDS)
    assert list(ci.settings()) == list(TEST_FIELDS) and "algorithm" not in ci.settings()
    assert [w.description for w in ci.controls] == list(TEST_FIELDS)


@pytest.mark.parametrize("attention, basis, fields", list(itertools.product(abcd.ATTENTIONS, BASES,
                                                                               (FIELDS, TEST_FIELDS))))
def test_settings_for_every_attention_and_basis(attention, basis, fields):
    model = object()
    c = GraphControls(2, fields=fields, model=model)
    c.attention.value, c.basis.value = attention, basis
    c.head.value, c.alpha.value, c.n_samples.value = "all", 1e-3, 100
    s = c.settings()
    assert (s["attention"], s["basis"], s["head"], s["n_samples"]) == (attention, basis, "all", 100.0)
    assert s["alpha"] == pytest.approx(1e-3)
    assert ("model" in s) == (basis in MODEL_BASES)           # model= only when the basis reads the model
    if basis in MODEL_BASES:
        assert s["model"] is model and "model=model" in c.code_args()
    assert "model" not in c.settings(model=False) and "model" not in c.code_args(model=False)
    assert list(c.settings(model=False)) == list(fields)


@pytest.mark.parametrize("algorithm, nodes", list(itertools.product(ALGORITHMS, ("all", "content"))))
def test_settings_follow_algorithm_and_nodes(algorithm, nodes):
    c = GraphControls(2, algorithm=algorithm, nodes=nodes)
    assert (c.settings()["algorithm"], c.settings()["nodes"]) == (algorithm, nodes)


def test_bad_choices_name_the_valid_ones():
    with pytest.raises(ValueError, match="attention must be one of raw, efficient"):
        GraphControls(2, attention="softmax")
    with pytest.raises(ValueError, match="basis must be one of value, value_output, hidden, jacobian"):
        GraphControls(2, basis="keys")
    with pytest.raises(ValueError, match="nodes must be one of all, content"):
        GraphControls(2, nodes="some")
    with pytest.raises(ValueError, match="unknown graph controls"):
        GraphControls(2, fields=("layer", "colour"))


def test_fit_sets_ranges_and_the_initial_view(model):
    trace = model.trace(TEXT)
    c = GraphControls(1)                                      # built before the model's head count is known
    assert c.fit(trace) is None
    assert c.layer.max == trace.n_layers - 1
    assert [v for _, v in c.head.options] == [*range(trace.n_heads), "all"]
    assert c.fit(trace, (-1, 2, "head")) is None
    assert (c.layer.value, c.head.value, c.n_samples.value) == (trace.n_layers - 1, 2, trace.values.shape[-1])
    problem = c.fit(trace, (7, 0, None))                      # a bad layer: returned, the last layer kept
    assert isinstance(problem, IndexError) and "layer 7 is out of range" in str(problem)
    assert c.layer.value == trace.n_layers - 1


def test_the_three_panels_build_their_controls_from_one_widget(panels):
    for name, panel in panels.items():
        assert isinstance(panel.controls, GraphControls), name
        assert panel.controls in panel.children, name          # laid out as one widget
        for field in panel.controls.fields:
            assert getattr(panel, field) is getattr(panel.controls, field), (name, field)
    assert panels["ci"].controls.fields == TEST_FIELDS
    assert panels["graph"].controls.fields == panels["explanation"].controls.fields == FIELDS


def test_option_order_and_descriptions_are_identical_in_all_three_panels(panels):
    for field in FIELDS:
        widgets = [getattr(p.controls, field) for p in panels.values() if field in p.controls.fields]
        assert len(widgets) >= 2
        options = [tuple(getattr(w, "options", ())) for w in widgets]
        assert len(set(options)) == 1, (field, options)
        assert len({w.description for w in widgets}) == 1, field
        assert len({(getattr(w, "min", None), getattr(w, "max", None)) for w in widgets}) == 1, field
    assert panels["explanation"].nodes.options == (("all tokens", "all"), ("content tokens", "content"))


def test_panel_keeps_only_the_chrome():
    for gone in ("take_graph_view", "take_initial_view", "start_job"):
        assert not hasattr(Panel, gone), gone
    assert issubclass(ExplanationPanel, JobPanel) and not issubclass(CausalGraphPanel, JobPanel)


def test_graph_panel_learns_from_the_efficient_attention(model):
    panel = CausalGraphPanel(model, TEXT, attention="efficient", basis="jacobian")
    trace = panel.session.trace()
    expected = abcd.learn_graph(trace, layer=1, head=0, algorithm="icd", alpha=0.01, n_samples=32, nodes="content",
                                attention="efficient", basis="jacobian", model=model)
    assert panel.error_message == "" and panel.graph == expected
    assert expected.attention.startswith("efficient attention") and "jacobian basis" in expected.attention
    assert expected.attention in panel.info.value
    namespace = {"model": model}
    exec(panel.code(include_model=False), namespace)          # copy-as-code passes model=model
    assert "model=model" in panel.code() and namespace["graph"] == panel.graph
    panel.attention.value = "raw"                             # the toggle relearns
    assert panel.graph == abcd.learn_graph(trace, layer=1, head=0, n_samples=32, nodes="content", basis="jacobian",
                                           model=model)
    assert panel.graph.attention.startswith("raw attention") and panel.graph.attention in panel.info.value
    assert panel.results()["settings"]["basis"] == "jacobian" and "model" not in panel.results()["settings"]
    plt.close("all")


def test_ci_panel_tests_on_the_efficient_attention(model):
    panel = CITestPanel(model, TEXT, attention="efficient", basis="value_output", head="all")
    trace = panel.session.trace()
    corr = abcd.attention_correlation(trace, 1, "all", attention="efficient", basis="value_output", model=model)
    expected = FisherZTest(corr, 32.0, 0.01)(panel.x.value, panel.y.value, ())
    raw = FisherZTest(abcd.attention_correlation(trace, 1, "all"), 32.0, 0.01)(panel.x.value, panel.y.value, ())
    assert panel.error_message == "" and panel.result == expected and expected.rho != pytest.approx(raw.rho)
    assert "efficient (value_output basis)" in panel.numbers.value
    namespace = {"model": model}
    exec(panel.code(include_model=False), namespace)
    assert namespace["result"] == panel.result
    panel.attention.value = "raw"
    assert panel.result == raw
    plt.close("all")


def test_explanation_panel_explains_through_the_efficient_attention(model):
    panel = ExplanationPanel(model, TEXT, layer=0, max_set_size=1, attention="efficient", basis="hidden")
    assert panel.wait(60) and panel.error_message == ""
    e = abcd.explain(model, TEXT, layer=0, head=0, n_samples=32.0, max_set_size=1, attention="efficient",
                     basis="hidden")
    got = panel.explanation
    assert got.sets == e.sets and got.graph == e.graph and got.settings["attention"] == "efficient"
    assert e.graph.attention and e.graph.attention in panel.attention_note.value
    assert "model" not in panel.settings()                    # explain takes the model as its first argument
    panel.basis.value = "jacobian"                            # settings do not re-run by themselves
    assert panel.explanation.settings["basis"] == "hidden"
    panel.run(block=True)
    assert panel.explanation.settings["basis"] == "jacobian" and "jacobian basis" in panel.attention_note.value
    namespace = {"model": model}
    exec(panel.code(include_model=False), namespace)
    assert namespace["explanation"].sets == panel.explanation.sets
    plt.close("all")
