"""Lab: one session, one text box, tabs that catch up when selected, a model picker."""
from __future__ import annotations

import ipywidgets as W
import pytest

import analysis.models
from widgets import (AdversarialPanel, StabilityPanel, AttentionExplorer, CausalGraphPanel, CITestPanel, ExplanationPanel,
                     InterventionPanel, Lab)
from tests.helpers import tiny_model

TEXT = "a gripping film that never lets go of you"


@pytest.fixture(scope="module")
def model(tiny_bert):
    return tiny_bert


def test_lab_puts_every_panel_in_tabs_over_one_session(model):
    lab = Lab(model, TEXT)
    assert isinstance(lab.tabs, W.Tab) and lab.tabs.titles == (
        "Attention", "CI test", "Causal graph", "Explanation", "Adversarial", "Interventions", "Graph stability")
    kinds = (AttentionExplorer, CITestPanel, CausalGraphPanel, ExplanationPanel, AdversarialPanel, InterventionPanel,
             StabilityPanel)
    assert all(isinstance(p, k) and p.session is lab.session for p, k in zip(lab.panels, kinds))
    assert all(p.text_box.layout.display == "none" for p in lab.panels)       # one text box: the Lab's
    assert lab["Attention"].image.value[:4] == b"\x89PNG"
    assert lab["CI test"].result is None and lab["CI test"]._stale            # not drawn until selected
    assert lab.session.n_forward == 1


def test_editing_the_text_once_updates_every_panel(model):
    lab = Lab(model, TEXT)
    for title in ("CI test", "Causal graph"):
        lab.select(title)
    lab.text.value = "the worst film of the year"
    trace = lab.session.trace()
    graph = lab["Causal graph"]
    assert graph.graph is not None and graph.graph.labels[0] == "the@1"                # visible: redrawn
    assert lab["Attention"]._stale                                                     # hidden: stale
    explorer = lab.select("Attention")
    assert [t.get_text() for t in explorer._canvas.ax.get_xticklabels()] == trace.tokens
    ci = lab.select("CI test")
    assert ci.x.options[1] == ("1: the", 1) and ci.result is not None
    assert lab.session.n_forward == 2                                                  # one trace per text
    assert all(p.error_message == "" for p in lab.panels)


def test_a_bad_text_shows_in_the_visible_panel(model):
    lab = Lab(model, TEXT)
    lab.text.value = ""
    assert "empty" in lab["Attention"].error_message
    assert "empty" in lab.select("Causal graph").error_message
    lab.text.value = TEXT
    assert lab["Causal graph"].error_message == ""


def test_model_picker_loads_by_name_and_reports_failures(model, monkeypatch):
    lab = Lab(model, TEXT)
    assert "tiny-bert" in lab.model_picker.options and "minilm-sentiment-rt" in lab.model_picker.options
    other = tiny_model("roberta")

    def fake_load(name=None, **_):
        if name == "tiny-roberta":
            return other
        raise ValueError(f"could not load model {name!r}")

    monkeypatch.setattr(analysis.models, "load_model", fake_load)
    lab.model_picker.value = "nowhere/none"
    lab.load_button.click()
    assert "could not load model" in lab.error.value and lab.session.model is model
    lab.load_model("tiny-roberta")
    assert lab.session.model is other and lab.error.value == ""
    assert "tiny-roberta" in lab["Attention"].header.value
    assert lab["Attention"].session.trace().model_name == "tiny-roberta"
    assert lab.model_picker.value == "tiny-roberta"
    with pytest.raises(KeyError, match="no panel"):
        lab["Nope"]
