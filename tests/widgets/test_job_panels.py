"""AdversarialPanel and InterventionPanel: background runs, progress, cancel, results."""
from __future__ import annotations

import json
import threading

import matplotlib.pyplot as plt
import numpy as np
import pytest

from analysis import interventions
from widgets import AdversarialPanel, InterventionPanel

TEXT = "a gripping film that never lets go of you"


@pytest.fixture(scope="module")
def model(tiny_bert):
    return tiny_bert


def test_adversarial_search_runs_in_the_background(model):
    panel = AdversarialPanel(model, TEXT, layer=0, head=1, k=3, steps=6)
    assert panel.error_message == "" and panel.result is None and "press search" in panel.table.value
    seen = []
    panel.progress.observe(lambda c: seen.append(c["new"]), names="value")
    panel.run_button.click()
    assert panel.wait(60)
    assert panel.error_message == "" and panel.result is not None
    r = panel.result
    assert (r.layer, r.head, r.k, r.steps, r.seed, r.eps) == (0, 1, 3, 6, 0, 0.01) and not r.cancelled
    assert seen and seen[-1] == pytest.approx(1.0) and panel.progress.layout.display == "none"
    assert panel.image.value[:4] == b"\x89PNG" and panel.table.value.count("<tr>") == 1 + 3
    shown = panel.image.value
    panel.index.value = 2
    assert panel.image.value != shown


def test_adversarial_search_can_be_cancelled(model):
    panel = AdversarialPanel(model, TEXT, layer=0, k=2, steps=3000)
    started = threading.Event()
    panel.progress.observe(lambda c: started.set(), names="value")
    panel.run()
    assert started.wait(30)
    panel.cancel_button.click()
    assert panel.wait(60)
    assert panel.result.cancelled and panel.result.steps_run < 3000
    assert "cancelled" in panel.status.value and panel.error_message == ""


def test_adversarial_code_reproduces_the_search(model, tmp_path):
    panel = AdversarialPanel(model, TEXT, layer=1, head="all", k=2, steps=3, seed=4)
    panel.run(block=True)
    namespace = {"model": model}
    exec(panel.code(include_model=False), namespace)          # analysis.adversarial.search, run directly
    np.testing.assert_allclose(namespace["result"].jsd, panel.result.jsd, rtol=1e-5)
    np.testing.assert_allclose(namespace["result"].tvd, panel.result.tvd, atol=1e-6)
    plt.close("all")
    json_path, csv_path = panel.export(tmp_path / "adv")
    assert json.loads(json_path.read_text())["head"] == "all"
    assert len(csv_path.read_text().splitlines()) == 3
    assert "head 7 is out of range" in AdversarialPanel(model, TEXT, head=7).error_message
    panel.session.text = ""
    panel.run_button.click()
    assert "empty" in panel.error_message and not panel.running


def test_one_intervention_before_and_after(model):
    panel = InterventionPanel(model, TEXT, intervention="zero", layer=0, head=2)
    panel.run_button.click()
    assert panel.wait(60) and panel.error_message == ""
    (r,) = panel.outcomes
    expected = interventions.zero(model, TEXT, 0, 2)
    assert r.name == "zero" and r.tvd == pytest.approx(expected.tvd, abs=1e-9)
    assert panel.image.value[:4] == b"\x89PNG" and "zero" in panel.table.value
    panel.intervention.value = "add_null"
    panel.run(block=True)
    assert panel.outcomes[0].tvd < 1e-4                 # the null space does not reach the output
    namespace = {"model": model}
    exec(panel.code(include_model=False), namespace)
    assert namespace["results"][0].tvd == pytest.approx(panel.outcomes[0].tvd, abs=1e-9)
    plt.close("all")


def test_compare_all_interventions_and_remove_tokens(model, tmp_path):
    panel = InterventionPanel(model, TEXT, intervention="compare all", layer=1, head="all")
    panel.run(block=True)
    assert [r.name for r in panel.outcomes] == ["efficient", "add_null", "shift_efficient", "uniform", "zero"]
    panel.positions.value = (2, 3)
    panel.run(block=True)
    assert panel.outcomes[-1].name == "remove_tokens" and panel.outcomes[-1].removed == (2, 3)
    code = panel.code(include_model=False)
    assert code.count("results.append(interventions.") == 6 and "intervention_summary(results)" in code
    assert panel.image.value[:4] == b"\x89PNG" and panel.table.value.count("<tr>") == 7
    json_path, csv_path = panel.export(tmp_path / "iv")
    assert len(json.loads(json_path.read_text())["results"]) == 6
    assert len(csv_path.read_text().splitlines()) == 7
    panel.intervention.value = "remove_tokens"
    panel.positions.value = ()
    panel.run_button.click()
    assert "needs tokens to remove" in panel.error_message
