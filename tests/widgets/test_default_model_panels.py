"""Every panel on the real default model (MiniLM, 6 layers x 12 heads)."""
from __future__ import annotations

import pytest

from widgets import Lab

pytestmark = pytest.mark.integration

TEXT = "a gripping, beautifully acted film that never lets go of you."


@pytest.fixture(scope="module")
def lab():
    from analysis import load_model

    return Lab(load_model(progress=False), TEXT)


def test_every_panel_builds_and_draws_on_the_default_model(lab):
    explorer = lab["Attention"]
    assert (explorer.layer.max, explorer.head.max) == (5, 11)
    for layer in range(6):
        explorer.layer.value = layer
        for head in range(0, 12, 5):
            explorer.head.value = head
    explorer.mode.value = "grid"
    explorer.part.value = "efficient"
    assert explorer.error_message == "" and lab.session.n_forward == 1
    for title in ("CI test", "Causal graph", "Explanation", "Adversarial", "Interventions"):
        panel = lab.select(title)
        assert panel.error_message == "", (title, panel.error_message)
    assert lab["CI test"].n_samples.value == 384 and lab["Causal graph"].graph.n_tests > 0
    assert lab["Explanation"].explanation.prediction == 1                     # positive


def test_jobs_run_on_the_default_model(lab):
    adversarial = lab.select("Adversarial")
    adversarial.steps.value = 20
    adversarial.run(block=True)
    assert adversarial.error_message == "" and adversarial.result.steps_run == 20
    interventions = lab.select("Interventions")
    interventions.intervention.value = "efficient"
    interventions.run(block=True)
    assert interventions.error_message == "" and interventions.outcomes[0].tvd < 1e-3
