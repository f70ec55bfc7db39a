"""StabilityPanel: output-preserving A' for one head, the range of graphs, raw vs efficient counts."""
from __future__ import annotations

import dataclasses
import json

import matplotlib.pyplot as plt
import numpy as np
import pytest

from analysis import abcd
from analysis.efficient import basis_matrix
from analysis.figures.stability import stability_view
from analysis.stability import graph_stability
from widgets import StabilityPanel

TEXT = "A wonderful little film, moving and funny, with a great cast and a terrible ending."


@pytest.fixture(scope="module")
def model(tiny_bert):
    return tiny_bert


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_panel_generates_output_preserving_attention_and_counts_graph_changes(model):
    panel = StabilityPanel(model, TEXT, layer=1, head=0, n_extreme=2, n_mix=2, seed=3)
    assert panel.error_message == "" and panel.result is not None
    r = panel.result
    g = r.generated
    assert (g.layer, g.head, len(g.samples)) == (1, 0, 4) and g.nullity > 0
    # every A' keeps the head output (independent check: A' V = A V from the trace's values) ...
    trace = model.trace(TEXT)
    v = basis_matrix(trace, 1, 0, "value")
    for a2 in g.samples:
        np.testing.assert_allclose(a2 @ v, trace.attentions[1, 0].astype(np.float64) @ v, atol=1e-5)
        np.testing.assert_allclose(a2.sum(-1), 1.0, atol=1e-9)
        # ... so the model's logits, re-run here with A' in place
        logits = model.trace(TEXT, attention_override={(1, 0): a2}).logits
        np.testing.assert_allclose(logits, trace.logits, atol=1e-5)
    assert g.tvd.max() > 0.1                                     # the attention really moves
    # the graphs shown are the ones abcd.learn_graph learns from A' (raw), learned here again
    i = 1
    panel.index.value = i
    att = np.array(trace.attentions, dtype=np.float64)
    att[1, 0] = g.samples[i]
    again = abcd.learn_graph(dataclasses.replace(trace, attentions=att), layer=1, head=0, attention="raw",
                             keep=[r.target], basis="value", nodes="content")
    assert r.graphs["raw"][i] == again
    assert (r.raw_skeleton_shd > 0).sum() >= 1                    # raw ABCD moves on this head ...
    assert (r.efficient_skeleton_shd == 0).all()                 # ... efficient ABCD cannot (A' P = A P)
    s = r.summary()
    assert s["efficient"]["skeleton_changed"] == 0 and s["raw"]["skeleton_changed"] == int((r.raw_skeleton_shd > 0).sum())
    html = panel.summary.value
    assert f"{s['raw']['skeleton_changed']} / 4" in html and "0 / 4" in html and f"nullity {g.nullity}" in html
    assert panel.image.value[:4] == b"\x89PNG"


def test_controls_redraw_or_regenerate(model):
    panel = StabilityPanel(model, TEXT, layer=1, head=0, n_extreme=1, n_mix=1)
    first = panel.result
    shown = panel.image.value
    panel.attention.value = "efficient"                          # only redraws: same result, other picture
    assert panel.result is first and panel.image.value != shown and panel.error_message == ""
    panel.index.value = 1
    assert panel.index.max == 1 and panel.result is first
    panel.head.value = 2                                         # regenerates for the new head
    assert panel.result is not first and panel.result.generated.head == 2
    panel.n_mix.value = 3
    assert len(panel.result.generated.samples) == 4 and panel.index.max == 3
    panel.head.value = 0
    panel.n_mix.value = 1
    assert panel.result is first                                 # cached per settings
    assert [v for _, v in panel.head.options] == [0, 1, 2, 3]    # one head at a time: no pooled option


def test_figure_export_and_code_reproduce_the_view(model, tmp_path):
    panel = StabilityPanel(model, TEXT, layer=0, head=1, n_extreme=2, n_mix=1, seed=2, attention="efficient")
    panel.index.value = 2
    namespace = {"model": model}
    exec(panel.code(include_model=False), namespace)
    got = namespace["result"]
    np.testing.assert_allclose(got.generated.samples, panel.result.generated.samples)
    np.testing.assert_array_equal(got.raw_skeleton_shd, panel.result.raw_skeleton_shd)
    fig = namespace["fig"]
    assert fig.axes[2].get_children() and "A' #2" in fig.axes[1].get_title()
    json_path, csv_path = panel.export(tmp_path / "stab")
    data = json.loads(json_path.read_text())
    assert data["settings"]["seed"] == 2 and len(data["rows"]) == 3 and len(data["graphs"]["raw"]) == 4
    assert len(csv_path.read_text().splitlines()) == 1 + 3
    paths = panel.save_figure(tmp_path / "stab.png")
    assert paths[0].read_bytes()[:4] == b"\x89PNG"


def test_view_figure_draws_the_chosen_graphs(model):
    r = graph_stability(model, TEXT, layer=1, head=0, n_extreme=2, n_mix=0)
    fig = stability_view(r, 1, attention="raw")
    strip = next(ax for ax in fig.axes if any(c.get_gid() == "points:raw" for c in ax.collections))
    raw = next(c for c in strip.collections if c.get_gid() == "points:raw")
    np.testing.assert_allclose(raw.get_offsets()[:, 0], r.raw_skeleton_shd / max(len(r.raw_graph), 1))
    edges = [a for a in fig.findobj() if (a.get_gid() or "").startswith("edge:")]
    assert len(edges) == len(r.raw_graph) + len(r.graphs["raw"][1])
    with pytest.raises(IndexError, match="out of range"):
        stability_view(r, 2)
    with pytest.raises(ValueError, match="attention must be"):
        stability_view(r, 0, attention="null")


def test_errors_show_inside_the_panel(model):
    assert "out of range" in StabilityPanel(model, TEXT, layer=0, head=7).error_message
    with pytest.raises(ValueError, match="one head"):
        StabilityPanel(model, TEXT, head="all")
    panel = StabilityPanel(model, TEXT, layer=0, head=0, n_extreme=1, n_mix=0)
    panel.n_extreme.value = 0
    assert "at least one" in panel.error_message
    panel.n_extreme.value = 1
    assert panel.error_message == ""
    panel.session.text = ""
    assert panel.error_message and panel.result is None
