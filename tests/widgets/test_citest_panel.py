"""CITestPanel: the numbers equal the analysis package's, computed independently."""
from __future__ import annotations

import json
import math

import matplotlib.pyplot as plt
import pytest
from scipy import stats

from analysis import abcd
from analysis.causal import partial_correlation
from widgets import CausalGraphPanel, CITestPanel, Session

TEXT = "a gripping film that never lets go of you"


@pytest.fixture(scope="module")
def model(tiny_bert):
    return tiny_bert


def _expected(trace, layer, head, i, j, cond, n):
    corr = abcd.attention_correlation(trace, layer, head)
    rho = partial_correlation(corr, i, j, cond)
    z = math.sqrt(n - len(cond) - 3) * abs(math.atanh(rho))
    return rho, z, 2 * stats.norm.sf(z)


def test_default_test_matches_partial_correlation(model):
    panel = CITestPanel(model, TEXT)
    trace = panel.session.trace()
    assert panel.error_message == ""
    assert (panel.x.value, panel.y.value, panel.cond.value) == (1, 2, ())     # first two content tokens
    assert panel.n_samples.value == 32                                         # the hidden size
    rho, z, p = _expected(trace, 1, 0, 1, 2, (), 32)
    r = panel.result
    assert r.rho == pytest.approx(rho, abs=1e-9) and r.z == pytest.approx(z, rel=1e-6)
    assert r.p == pytest.approx(p, rel=1e-6, abs=1e-300) and r.independent == (p > 0.01)
    assert f"{rho:+.4f}" in panel.numbers.value
    assert panel.image.value[:4] == b"\x89PNG"


def test_clicking_tokens_sets_x_y_and_the_condition_set(model):
    panel = CITestPanel(model, TEXT)
    trace = panel.session.trace()
    panel.role.value = "condition"
    panel._token_buttons[4].click()
    panel._token_buttons[6].click()
    panel._token_buttons[6].click()                    # a second click takes it out again
    panel.role.value = "Y"
    panel._token_buttons[7].click()
    assert (panel.x.value, panel.y.value, panel.cond.value) == (1, 7, (4,))
    assert [b.button_style for b in panel._token_buttons[:8]] == ["", "info", "", "", "success", "", "", "warning"]
    rho, _, _ = _expected(trace, 1, 0, 1, 7, (4,), 32)
    assert panel.result.rho == pytest.approx(rho, abs=1e-9) and panel.result.cond == (4,)
    panel.role.value = "X"
    panel._token_buttons[7].click()                    # X onto Y: they swap
    assert (panel.x.value, panel.y.value) == (7, 1)


def test_layer_pooled_head_alpha_and_n_samples_controls(model):
    panel = CITestPanel(model, TEXT)
    trace = panel.session.trace()
    panel.layer.value, panel.head.value = 0, "all"
    panel.n_samples.value, panel.alpha.value = 500, 1e-5
    panel.cond.value = (3, 5)
    rho, z, p = _expected(trace, 0, "all", 1, 2, (3, 5), 500)
    assert panel.result.rho == pytest.approx(rho, abs=1e-9) and panel.result.z == pytest.approx(z, rel=1e-6)
    assert panel.result.independent == (panel.result.p > 1e-5)


def test_user_errors_show_in_the_panel(model):
    panel = CITestPanel(model, TEXT)
    panel.y.value = panel.x.value
    assert "X and Y are the same token" in panel.error_message and panel.result is None
    panel.y.value = 3
    assert panel.error_message == ""
    panel.cond.value = (1,)                            # X in the conditioning set
    assert panel.error_message.startswith("Invalid input")
    bad = CITestPanel(model, TEXT, head=11)
    assert "head 11 is out of range" in bad.error_message
    assert CITestPanel(model, "").error_message.startswith("Invalid input")


def test_shows_the_test_log_of_the_last_graph_run(model):
    session = Session(model, TEXT)
    panel = CITestPanel(session=session)
    assert "no graph learned" in panel.test_log.value
    graph_panel = CausalGraphPanel(session=session)
    assert f"{graph_panel.graph.n_tests} tests requested" in panel.test_log.value
    assert panel.test_log.value.count("<tr>") == 1 + min(len(graph_panel.graph.tests), 300)
    panel.only_pair.value = True
    pair = [t for t in graph_panel.graph.tests if {t.i, t.j} == {1, 2}]
    assert panel.test_log.value.count("<tr>") == 1 + len(pair)
    assert len(panel.rows()) == 1 + len(graph_panel.graph.tests)


def test_copy_as_code_and_export(model, tmp_path):
    panel = CITestPanel(model, TEXT)
    panel.head.value, panel.cond.value = 2, (4,)
    namespace = {"model": model}
    exec(panel.code(include_model=False), namespace)
    assert namespace["result"] == panel.result
    plt.close("all")
    json_path, csv_path = panel.export(tmp_path / "ci")
    data = json.loads(json_path.read_text())
    assert data["test"]["rho"] == pytest.approx(panel.result.rho) and data["test"]["cond"] == [4]
    assert csv_path.read_text().splitlines()[0].startswith("source,i,j,cond,rho,z,p,independent")
