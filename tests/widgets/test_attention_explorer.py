"""AttentionExplorer driven by setting control values."""
from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from widgets import AttentionExplorer, Session

TEXT = "a gripping film that never lets go of you"


@pytest.fixture(scope="module")
def model(tiny_bert):
    return tiny_bert


@pytest.fixture
def panel(model):
    return AttentionExplorer(model, TEXT)


def test_builds_on_the_last_layer_with_token_labels(panel):
    trace = panel.session.trace()
    assert panel.error_message == ""
    assert (panel.layer.value, panel.head.value) == (1, 0)
    assert (panel.layer.max, panel.head.max) == (1, 3)
    assert panel.image.value[:4] == b"\x89PNG"
    labels = [t.get_text() for t in panel._canvas.ax.get_xticklabels()]
    assert labels == trace.tokens == [t.get_text() for t in panel._canvas.ax.get_yticklabels()]
    assert [label for label, _ in panel.query.options][:2] == ["0: [CLS]", "1: a"]
    assert "nullity" in panel.info.value


def test_stepping_redraws_the_heatmap_without_rerunning_the_model(panel):
    trace = panel.session.trace()
    before = panel.image.value
    panel.layer.value = 0
    panel.head.value = 3
    assert panel.image.value != before
    np.testing.assert_array_equal(panel.current_view().matrices[0], trace.attentions[0, 3])
    assert np.asarray(panel._canvas.image.get_array()).tolist() == trace.attentions[0, 3].astype(float).tolist()
    assert panel._canvas.ax.get_title() == "layer 0, head 3"
    panel.head.value = 1
    panel.head.value = 3                                 # revisit: served from the PNG cache
    assert panel.session.n_forward == 1 and len(panel.timings) >= 4
    assert panel.error_message == ""


def test_prev_next_wrap_across_layers(panel):
    panel.layer.value, panel.head.value = 0, 3
    panel.next_button.click()
    assert (panel.layer.value, panel.head.value) == (1, 0)
    panel.prev_button.click()
    panel.prev_button.click()
    assert (panel.layer.value, panel.head.value) == (0, 2)
    panel.set_view(layer=0, head=0)
    panel.prev_button.click()
    assert (panel.layer.value, panel.head.value) == (1, 3)


def test_query_row_is_shown_as_highlighted_text(panel):
    trace = panel.session.trace()
    panel.query.value = 3
    row = panel.row.value
    assert "film@3" in row and row.count("<span") == trace.n_tokens
    w = trace.attentions[1, 0, 3]
    assert f'title="5: {w[5]:.3f}"' in row


def test_mean_grid_and_efficient_modes(panel):
    trace = panel.session.trace()
    panel.mode.value = "mean"
    np.testing.assert_allclose(panel.current_view().matrices[0], trace.attentions[1].mean(0))
    assert panel.part.disabled
    panel.mode.value = "grid"
    assert panel.current_view().matrices.shape[0] == 4 and not panel.part.disabled
    grid_png = panel.image.value
    panel.part.value = "null"
    assert panel.image.value != grid_png and "nullity per head" in panel.info.value
    panel.mode.value = "head"
    panel.part.value = "efficient"
    view = panel.current_view()
    assert view.signed and panel._canvas.signed and "nullity" in panel.info.value
    assert panel.error_message == ""


def test_errors_show_in_the_panel_and_never_escape(model):
    bad = AttentionExplorer(model, TEXT, head=9)
    assert bad.error_message.startswith("Out of range") and "0..3" in bad.error_message
    assert bad.image.value[:4] == b"\x89PNG"              # the default view is still drawn
    bad.set_view(layer=5)
    assert "layer 5 is out of range" in bad.error_message and bad.layer.value == 1
    bad.set_view(layer=0, head=1)
    assert bad.error_message == "" and bad.layer.value == 0
    bad.session.text = "   "
    assert bad.error_message.startswith("Invalid input") and "empty" in bad.error_message
    bad.session.text = TEXT
    assert bad.error_message == ""
    empty = AttentionExplorer(model, "")
    assert "empty" in empty.error_message


def test_following_the_session_text(model):
    session = Session(model, TEXT)
    panel = AttentionExplorer(session=session)
    panel.query.value = 8
    session.text = "bad"
    trace = session.trace()
    assert [label for label, _ in panel.query.options] == [f"{i}: {t}" for i, t in enumerate(trace.tokens)]
    assert panel.query.value == 0                        # position 8 no longer exists
    assert [t.get_text() for t in panel._canvas.ax.get_xticklabels()] == trace.tokens


def test_copy_as_code_reproduces_the_view(model):
    panel = AttentionExplorer(model, TEXT)
    for mode, part, layer, head in [("head", "raw", 0, 2), ("mean", "raw", 1, 0), ("head", "efficient", 1, 3),
                                    ("grid", "null", 0, 1)]:
        panel.mode.value, panel.part.value = mode, part
        panel.set_view(layer=layer, head=head, query=2)
        namespace = {"model": model}
        exec(panel.code(include_model=False), namespace)
        view = panel.current_view()
        shown = namespace["matrices"] if mode == "grid" else [namespace["matrix"]]
        np.testing.assert_allclose(np.stack(shown), view.matrices, atol=1e-9)
        assert isinstance(namespace["fig"], matplotlib.figure.Figure)
    assert "model = analysis.load_model('tiny-bert')" in panel.code().splitlines()
    plt.close("all")
