"""The panels' figure functions, on their own (no widgets)."""
from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from analysis import abcd
from analysis.causal import FisherZTest, Graph, Mark, pds_tree
from analysis.figures import (attention_grid, attention_view, ci_test_plot, draw_attention_view,
                              draw_graph, explanation_figure, intervention_figure, intervention_summary,
                              prediction_bars, token_highlight, token_highlight_html, token_sets)

TEXT = "a gripping film that never lets go of you"


@pytest.fixture(scope="module")
def model(tiny_bert):
    return tiny_bert


@pytest.fixture(scope="module")
def trace(model):
    return model.trace(TEXT)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _gids(fig, prefix):
    ax = fig.axes[0]
    return [a.get_gid() for a in [*ax.lines, *ax.patches] if (a.get_gid() or "").startswith(prefix)]


def test_draw_graph_draws_every_edge_and_its_marks():
    # 0 -> 1, 1 <-> 2, 2 o-> 3, 0 o-o 3
    m = np.zeros((4, 4), dtype=int)
    m[0, 1], m[1, 0] = Mark.TAIL, Mark.ARROW
    m[1, 2], m[2, 1] = Mark.ARROW, Mark.ARROW
    m[2, 3], m[3, 2] = Mark.CIRCLE, Mark.ARROW
    m[0, 3], m[3, 0] = Mark.CIRCLE, Mark.CIRCLE
    g = Graph.from_matrix(m, labels=["a", "b", "c", "d"])
    for layout in ("arc", "circle", "spring"):
        fig = draw_graph(g, layout=layout)
        assert len(_gids(fig, "edge:")) == 4
        marks = _gids(fig, "mark:")
        assert sum(x.endswith(":arrow") for x in marks) == 4      # 0->1, 1<->2 (2), 2o->3
        assert sum(x.endswith(":circle") for x in marks) == 3     # 2o->3, 0o-o3 (2)
        assert "mark:0-1:1:arrow" in marks and "mark:1-2:1:arrow" in marks
        assert [t.get_text() for t in fig.axes[0].texts] == ["a", "b", "c", "d"]


def test_draw_graph_highlights_neighbourhood_and_pds_tree(trace):
    g = abcd.learn_graph(trace, layer=1, head=0, nodes="content")
    v = next(u for u in g.nodes if g.adjacent(u))
    fig = draw_graph(g, highlight=v)
    faces = {p.get_gid(): p.get_facecolor() for p in fig.axes[0].patches if (p.get_gid() or "").startswith("node:")}
    white = matplotlib.colors.to_rgba("white")
    assert faces[f"node:{v}"] != white
    assert all(faces[f"node:{u}"] != white for u in g.adjacent(v))
    assert len(_gids(fig, "edge:")) == len(g)
    tree_fig = draw_graph(g, highlight=pds_tree(g, v))       # a ready tree works too
    assert len(_gids(tree_fig, "edge:")) == len(g)
    with pytest.raises(ValueError, match="layout"):
        draw_graph(g, layout="hexagon")


def test_token_highlight_draws_tokens_and_html_escapes():
    tokens = ["[CLS]", "<b>", "film", "[SEP]"]
    fig = token_highlight(tokens, np.array([0.1, 0.5, 0.4, 0.0]), marked=[1], title="row")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["row", *tokens]
    html = token_highlight_html(tokens, np.array([0.1, 0.5, 0.4, 0.0]), marked=[1])
    assert "&lt;b&gt;" in html and "<b>" not in html and html.count("<span") == 4
    with pytest.raises(ValueError, match="4 tokens"):
        token_highlight(tokens, np.ones(3))


def test_token_sets_highlights_one_line_per_set():
    fig = token_sets(["a", "b", "c"], [[0], [1, 2]], notes=["x", "y"])
    boxes = [t for t in fig.axes[0].texts if (t.get_gid() or "").startswith("set")]
    assert len(boxes) == 6
    with pytest.raises(IndexError):
        token_sets(["a"], [[3]])


def test_attention_view_modes_and_parts(trace):
    one = attention_view(trace, 1, 2)
    np.testing.assert_array_equal(one.matrices[0], trace.attentions[1, 2])
    mean = attention_view(trace, -1, 0, mode="mean")
    np.testing.assert_allclose(mean.matrices[0], trace.attentions[1].mean(0))
    grid = attention_view(trace, 0, mode="grid", part="null")
    assert grid.matrices.shape == (4, trace.n_tokens, trace.n_tokens) and grid.signed
    eff = attention_view(trace, 0, 1, part="efficient")
    np.testing.assert_allclose(eff.matrices[0] + attention_view(trace, 0, 1, part="null").matrices[0],
                               trace.attentions[0, 1], atol=1e-6)
    assert "nullity" in eff.note
    with pytest.raises(ValueError, match="per head"):
        attention_view(trace, 0, mode="mean", part="efficient")
    with pytest.raises(IndexError, match="out of range"):
        attention_view(trace, 0, 7)
    assert len(draw_attention_view(grid).axes) == 4
    fig = draw_attention_view(one)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == trace.tokens


def test_attention_grid_checks_shapes():
    with pytest.raises(ValueError, match="matrices"):
        attention_grid(np.ones((2, 3, 3)), ["a", "b"])


def test_ci_test_plot_and_prediction_bars(trace):
    corr = abcd.attention_correlation(trace, 1, 0)
    result = FisherZTest(corr, 32, 0.01)(1, 2, (3,))
    fig = ci_test_plot(result, alpha=0.01, tokens=trace.tokens)
    assert "a@1" in fig.axes[0].get_title() and ("independent" in fig.axes[0].get_title()
                                                  or "dependent" in fig.axes[0].get_title())
    bars = prediction_bars({"before": np.array([0.2, 0.8]), "after": np.array([0.6, 0.4])}, ["neg", "pos"])
    heights = [p.get_height() for p in bars.axes[0].patches if p.get_gid() == "bar:after"]
    assert heights == [0.6, 0.4]


def test_explanation_and_intervention_figures(model, trace):
    from analysis import interventions

    e = abcd.explain(model, TEXT, layer=0, max_set_size=1)
    fig = explanation_figure(e, labels=model.labels)
    assert "Explaining" in fig.axes[0].texts[0].get_text()
    r = interventions.zero(model, TEXT, 0, 1, trace=trace)
    assert len(intervention_figure(r, trace).axes) == 3
    removed = interventions.remove_tokens(model, TEXT, [2])
    assert len(intervention_figure(removed, trace).axes) == 2
    summary = intervention_summary([r, removed])
    assert [p.get_gid() for p in summary.axes[0].patches] == ["bar:zero", "bar:remove_tokens"]
