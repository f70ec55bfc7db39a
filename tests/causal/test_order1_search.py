"""ICD's lazy r = 1 search (``_Order1Search``) against the literal one-test-at-a-time loop:
the same graph, sepsets, test sequence and test count on attention-like inputs large
enough to exercise every group of candidates (neighbours below i, kept row nodes, the
widened band above j, the second part), with r = 0 removals, node subsets and an order."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.causal import FisherZTest, learn_graph


class _PlainTest:
    """A generic callable CI test (no batching): forces the learners' sequential path."""

    def __init__(self, inner: FisherZTest):
        self.inner, self.n_variables = inner, inner.n_variables

    def __call__(self, i, j, cond):
        return self.inner(i, j, cond)


def _attention_cov(n: int, seed: int, concentration: float) -> np.ndarray:
    a = np.random.default_rng(seed).dirichlet(np.full(n, concentration), size=n)
    return a @ a.T


@pytest.mark.parametrize("n, n_samples, concentration, seed", [
    (60, 384, 0.3, 0),     # dense dependencies: long candidate runs, band widened
    (60, 40, 0.3, 1),      # small sample: r = 0 removes edges, rows have gaps
    (70, 120, 0.05, 2),    # peaked rows: many kept edges and second-part hits
])
def test_lazy_order1_equals_the_sequential_loop(n, n_samples, concentration, seed):
    cov = _attention_cov(n, seed, concentration)
    rng = np.random.default_rng(seed + 10)
    nodes = sorted(rng.choice(n, n - 7, replace=False).tolist())
    for kw in ({}, {"order": list(range(n))}, {"nodes": nodes}, {"max_r": 1}):
        fast = learn_graph(cov, n_samples, algorithm="icd", **kw)
        plain = _PlainTest(FisherZTest(cov, n_samples))
        slow = learn_graph(cov, ci_test=plain, algorithm="icd", **kw)
        assert np.array_equal(fast.marks, slow.marks), kw
        assert dict(fast.sepsets) == dict(slow.sepsets), kw
        assert fast.n_tests == slow.n_tests and fast.r == slow.r, kw
        key = lambda r: (r.i, r.j, r.cond, r.independent)  # noqa: E731
        assert [key(r) for r in fast.tests] == [key(r) for r in slow.tests], kw
        assert np.allclose([r.p for r in fast.tests], [r.p for r in slow.tests], rtol=0, atol=1e-12)
