"""CausalGraphPanel and ExplanationPanel against the analysis functions called directly."""
from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from analysis import abcd  # noqa: E402
from analysis.causal import pds_tree  # noqa: E402
from conftest import tiny_model  # noqa: E402
from widgets import CausalGraphPanel, ExplanationPanel  # noqa: E402

TEXT = "a gripping film that never lets go of you"


@pytest.fixture(scope="module")
def model():
    return tiny_model("bert")


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
    e = abcd.explain(model, TEXT, layer=0, head=0, n_samples=32.0, max_set_size=1)
    assert panel.error_message == ""
    assert panel.explanation.sets == e.sets and panel.explanation.baseline.set == e.baseline.set
    assert panel.sets_image.value[:4] == b"\x89PNG" and panel.graph_image.value[:4] == b"\x89PNG"
    table = panel.table.value
    assert "original" in table and "attention top-k" in table
    for s in e.sets:
        assert " ".join(f"{e.tokens[i]}@{i}" for i in s) in table
    panel.removal.value = "mask"                       # settings do not re-run by themselves
    assert panel.explanation.settings["removal"] == "delete"
    panel.run_button.click()
    assert panel.explanation.settings["removal"] == "mask"


def test_explanation_panel_code_errors_and_export(model, tmp_path):
    panel = ExplanationPanel(model, TEXT, layer=0, max_set_size=1)
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
