"""ICD's ``time_budget``: it stops after a completed iteration with the r-representing PAG
that ``max_r=r`` gives, warns with the r reached, and records the cut on the graph."""
from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from analysis.causal import Mark, learn_graph, random_dag, random_weights, sem_covariance

_MARKS = {0, int(Mark.TAIL), int(Mark.ARROW), int(Mark.CIRCLE)}


def _problem(seed: int = 2):
    """A planted SEM over 16 nodes (2 hidden); with exact tests (n_samples 1e12) ICD needs
    several iterations (r = 7 for seed 2)."""
    dag = random_dag(16, 0.2, seed=seed)
    cov = sem_covariance(random_weights(dag, seed=seed + 1000))
    observed = [v for v in range(16) if v not in (3, 9)]
    return cov, observed


def _assert_valid_pag(g, full) -> None:
    m = g.marks
    assert g.kind == "pag" and set(np.unique(m).tolist()) <= _MARKS
    assert np.array_equal(m == 0, m.T == 0) and not np.diag(m).any()
    # r-representing: later iterations only delete edges, so the cut graph keeps every edge
    # of the completed one, and each removed pair has a separating set of at most r nodes
    assert np.all((full.marks != 0) <= (m != 0))
    assert all(len(sep) <= g.r for sep in g.sepsets.values())
    for (a, b) in g.sepsets:
        assert not g.is_adjacent(a, b)


def _run_with_clock(monkeypatch, cov, observed, stop_after: int, budget: float = 5.0):
    """Run ICD with a fake clock that jumps past the budget once iteration ``stop_after``
    has finished (the callback sees every finished iteration)."""
    now = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])

    def tick(r, _graph):
        if r >= stop_after:
            now[0] = 10.0 * budget

    with pytest.warns(RuntimeWarning, match=rf"r={stop_after}\b.*{budget:g} s"):
        return learn_graph(cov, 1e12, algorithm="icd", nodes=observed, callback=tick,
                           time_budget=budget)


@pytest.mark.parametrize("stop_after", [1, 2, 4])   # r = 0: see the next test
def test_budget_stops_icd_with_the_max_r_graph(monkeypatch, stop_after):
    cov, observed = _problem()
    full = learn_graph(cov, 1e12, algorithm="icd", nodes=observed)
    assert full.r >= 3 and not full.cut          # the problem needs more than 2 iterations
    cut = _run_with_clock(monkeypatch, cov, observed, stop_after)
    monkeypatch.undo()
    want = learn_graph(cov, 1e12, algorithm="icd", nodes=observed, max_r=stop_after)
    assert cut.r == stop_after and cut.cut and cut.time_budget == 5.0
    assert np.array_equal(cut.marks, want.marks)          # skeleton and every mark
    assert dict(cut.sepsets) == dict(want.sepsets) and cut.n_tests == want.n_tests
    _assert_valid_pag(cut, full)
    assert "cut=True" in repr(cut) and f"after r={stop_after}" in str(cut)
    assert cut.n_tests < full.n_tests                     # it really stopped early
    if stop_after == 1:
        assert len(cut) > len(full)


def test_tiny_real_budget_returns_the_r0_graph():
    cov, observed = _problem(5)   # r = 5 when not stopped
    with pytest.warns(RuntimeWarning, match=r"stopped after iteration r=0: the time budget of 1e-09 s"):
        g = learn_graph(cov, 1e12, algorithm="icd", nodes=observed, time_budget=1e-9)
    want = learn_graph(cov, 1e12, algorithm="icd", nodes=observed, max_r=0)
    assert g.r == 0 and g.cut and np.array_equal(g.marks, want.marks)
    _assert_valid_pag(g, learn_graph(cov, 1e12, algorithm="icd", nodes=observed))


def test_ample_budget_changes_nothing():
    cov, observed = _problem()
    full = learn_graph(cov, 1e12, algorithm="icd", nodes=observed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = learn_graph(cov, 1e12, algorithm="icd", nodes=observed, time_budget=3600)
    assert not g.cut and g.r == full.r and np.array_equal(g.marks, full.marks)
    assert g.time_budget == 3600.0 and "cut" not in repr(g)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_nonpositive_budget_is_refused(bad):
    with pytest.raises(ValueError, match="time_budget must be a positive number"):
        learn_graph(np.eye(4) + 0.1, 100, algorithm="icd", time_budget=bad)


def test_budget_type_and_algorithm_checked():
    with pytest.raises(TypeError, match="time_budget"):
        learn_graph(np.eye(4) + 0.1, 100, algorithm="icd", time_budget="5")
    with pytest.raises(ValueError, match="algorithm='icd' only"):
        learn_graph(np.eye(4) + 0.1, 100, algorithm="fci", time_budget=5)
