"""CausalGraphPanel and ExplanationPanel against the analysis functions called directly."""
from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pytest

from analysis import abcd
from analysis.causal import pds_tree
from tests.helpers import tiny_model
from widgets import CausalGraphPanel, ExplanationPanel

TEXT = "a gripping film that never lets go of you"


@pytest.fixture(scope="module")
def model(tiny_bert):
    return tiny_bert


def _edge_lines(fig):
    return [line for line in fig.axes[0].lines if (line.get_gid() or "").startswith("edge:")]


def test_graph_panel_learns_the_same_graph_and_draws_every_edge(model):
    panel = CausalGraphPanel(model, TEXT)
    trace = panel.session.trace()
    expected = abcd.learn_graph(trace, layer=1, head=0, algorithm="icd", alpha=0.01, n_samples=32, nodes="content")
    assert panel.error_message == "" and panel.graph == expected
    assert panel.session.graph is panel.graph
    fig = panel.figure()
    assert len(_edge_lines(fig)) == len(expected)
    assert f"<b>{expected.n_tests}</b> CI tests" in panel.info.value and " ms</b>" in panel.info.value
    plt.close("all")


def test_graph_panel_controls(model):
    panel = CausalGraphPanel(model, TEXT)
    trace = panel.session.trace()
    panel.algorithm.value = "pc"
    panel.nodes.value = "all"
    panel.head.value = "all"
    panel.alpha.value = 1e-4
    expected = abcd.learn_graph(trace, layer=1, head="all", algorithm="pc", alpha=1e-4, n_samples=32, nodes="all")
    assert panel.graph == expected and panel.graph.kind == "cpdag" and panel.graph.n_nodes == trace.n_tokens
    before = panel.image.value
    panel.layout_choice.value = "circle"
    assert panel.image.value != before and panel.graph == expected          # redrawn, not relearned
    assert panel.error_message == ""


def test_selecting_a_node_highlights_its_neighbourhood_and_pds_tree(model):
    panel = CausalGraphPanel(model, TEXT, nodes="all")
    g = panel.graph
    v = next(u for u in g.nodes if g.adjacent(u))
    plain = panel.image.value
    panel.select.value = v
    assert panel.image.value != plain
    tree = pds_tree(g, v)
    assert "adjacent to" in panel.info.value and "PDS-tree reaches" in panel.info.value
    for u in g.adjacent(v):
        assert f"{g.labels[g.position(u)]}" in panel.info.value
    assert tree.members >= set(g.adjacent(v))
    assert "highlight=%r" % v in panel.code()
    panel.algorithm.value = "fci"                       # the selection survives relearning
    assert panel.select.value == v


def test_graph_panel_errors_code_and_export(model, tmp_path):
    bad = CausalGraphPanel(model, TEXT, layer=3)
    assert "layer 3 is out of range" in bad.error_message
    assert bad.graph is not None                        # the default view was learned anyway
    panel = CausalGraphPanel(model, TEXT, algorithm="fci")
    namespace = {"model": model}
    exec(panel.code(include_model=False), namespace)
    assert namespace["graph"] == panel.graph
    assert len(_edge_lines(namespace["fig"])) == len(panel.graph)
    plt.close("all")
    json_path, csv_path = panel.export(tmp_path / "graph")
    data = json.loads(json_path.read_text())
    assert data["marks"] == panel.graph.to_matrix().tolist() and data["n_tests"] == panel.graph.n_tests
    assert len(csv_path.read_text().splitlines()) == 1 + len(panel.graph)


def test_explanation_panel_matches_explain(model):
    panel = ExplanationPanel(model, TEXT, layer=0, max_set_size=1)
    assert panel.wait(60) and panel.error_message == ""            # it ran in the background
    e = abcd.explain(model, TEXT, layer=0, head=0, n_samples=32.0, max_set_size=1)
    assert panel.explanation.sets == e.sets and panel.explanation.baseline.set == e.baseline.set
    assert panel.sets_image.value[:4] == b"\x89PNG" and panel.graph_image.value[:4] == b"\x89PNG"
    table = panel.table.value
    assert "original" in table and "attention top-k" in table
    for s in e.sets:
        assert " ".join(f"{e.tokens[i]}@{i}" for i in s) in table
    panel.removal.value = "mask"                       # settings do not re-run by themselves
    assert panel.explanation.settings["removal"] == "delete"
    panel.run_button.click()
    assert panel.explanation.settings["removal"] == "mask"              # .explanation waits for the search
    assert "budget: &lt;= 1000 calls, sets of &lt;= 1 tokens" in panel.table.value


def test_explanation_panel_code_errors_and_export(model, tmp_path):
    panel = ExplanationPanel(model, TEXT, layer=0, max_set_size=1)
    assert panel.wait(60)
    namespace = {"model": model}
    exec(panel.code(include_model=False), namespace)
    assert namespace["explanation"].sets == panel.explanation.sets
    plt.close("all")
    json_path, csv_path = panel.export(tmp_path / "expl")
    assert json.loads(json_path.read_text())["sets"] == panel.explanation.sets
    e = panel.explanation
    assert len(csv_path.read_text().splitlines()) == 1 + len(e.checks) + len(e.baseline.checks)
    panel.session.text = ""
    assert panel.error_message.startswith("Invalid input") and panel.explanation is None
    with pytest.raises(ValueError, match="no explanation"):
        panel.results()
    panel.export_button.click()                        # through the button: a message, no exception
    assert "no explanation" in panel.error_message


def test_a_text_edit_cancels_a_running_explanation_within_a_second(model):
    import threading
    import time

    long_text = " ".join(["a gripping film that never lets go of you, moving and funny"] * 5)
    panel = ExplanationPanel(model, TEXT, layer=0, max_set_size=1)
    assert panel.wait(60)
    started = threading.Event()
    panel.progress.observe(lambda c: started.set() if c["new"] > 0 else None, names="value")
    panel.max_calls.value = 100_000
    panel.max_set_size.value = 0                       # no size cap: a long search
    panel.alpha.value = 1e-8                           # a sparse graph: nothing flips early
    panel.session.text = long_text
    job = panel._job
    assert started.wait(60) and job.is_alive()
    t0 = time.perf_counter()
    panel.session.text = TEXT                          # the edit cancels the running search
    assert not job.is_alive() and time.perf_counter() - t0 < 1.0
    assert panel.wait(60) and panel.error_message == ""
    assert panel.explanation.tokens == model.trace(TEXT).tokens   # the new text's explanation, not the old


def _calls_before_a_flip(model, layer, head):
    """Candidate checks CLEANN makes before its first flip in this view (0: the first one flips)."""
    e = abcd.explain(model, TEXT, layer=layer, head=head, alpha=0.5, n_samples=32.0, max_calls=None,
                     max_set_size=2, baseline_max_size=0)
    return next((i for i, c in enumerate(e.checks) if c.changed), len(e.checks))


def test_the_panel_says_when_the_budget_ran_out():
    model = tiny_model("bert", seed=1)
    # a view and a call budget that stops just before CLEANN's first flipping check
    views = [(lay, h) for lay in (1, 0) for h in (0, 1, 2, 3, "all")]
    (layer, head), calls = max(((v, _calls_before_a_flip(model, *v)) for v in views), key=lambda x: x[1])
    assert calls >= 1, "every view flips at its first check: no budget can run out here"
    panel = ExplanationPanel(model, TEXT, layer=layer, head=head, max_calls=calls, alpha=0.5)
    e = panel.explanation
    assert e.budget == abcd.Budget(calls, None) and len(e.checks) == calls and not e.sets
    assert e.stopped == "calls" and f"budget ran out: all {calls} model calls spent" in panel.budget_note.value
    assert "not found within budget" in panel.table.value
    panel.max_calls.value = calls + 1
    panel.run(block=True)
    assert panel.explanation.budget.max_calls == calls + 1 and f"max_calls={calls + 1}" in panel.code()
    with pytest.raises(ValueError, match="max_calls must be a positive integer"):
        ExplanationPanel(model, TEXT, max_calls=0)
