"""Divergences against closed forms and scipy; numpy and torch agree; batching; bounds."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import jensenshannon

from analysis.metrics import jsd, kl, tvd, wasserstein_1d

P = np.array([0.2, 0.8, 0.0])
Q = np.array([0.5, 0.25, 0.25])


def test_closed_forms():
    assert tvd(P, Q) == pytest.approx(0.55)
    expected_kl = 0.2 * math.log(0.2 / 0.5) + 0.8 * math.log(0.8 / 0.25)
    assert kl(P, Q) == pytest.approx(expected_kl)
    assert kl(P, Q) == pytest.approx(scipy.stats.entropy(P, Q))
    assert jsd(P, Q) == pytest.approx(jensenshannon(P, Q, base=2) ** 2)
    assert jsd(P, Q, base=math.e) == pytest.approx(jensenshannon(P, Q) ** 2)
    assert jsd([1, 0], [0, 1]) == pytest.approx(1.0)       # disjoint supports: the maximum, in bits
    assert tvd([1, 0], [0, 1]) == pytest.approx(1.0)
    assert jsd(P, P) == 0.0 and tvd(P, P) == 0.0 and kl(P, P) == pytest.approx(0.0)


def test_kl_with_zero_in_q_is_large_but_finite():
    value = kl(Q, P)
    assert np.isfinite(value) and value > 5


def test_batched_over_leading_axes_and_torch_agrees():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(6), size=(3, 4)), rng.dirichlet(np.ones(6), size=(3, 4))
    for f in (tvd, jsd, kl):
        out = f(p, q)
        assert out.shape == (3, 4)
        assert out[1, 2] == pytest.approx(float(f(p[1, 2], q[1, 2])))
        np.testing.assert_allclose(f(torch.tensor(p), torch.tensor(q)).numpy(), out, rtol=1e-10)
    assert jsd(p, q[0, 0]).shape == (3, 4)                   # broadcasting


def test_torch_jsd_gradient_is_finite_at_masked_zeros():
    logits = torch.tensor([[0.0, 1.0, 2.0]], requires_grad=True)
    p = torch.softmax(logits.masked_fill(torch.tensor([[True, False, False]]), float("-inf")), -1)
    jsd(p, torch.tensor([[0.0, 0.3, 0.7]])).sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_wasserstein_matches_scipy_and_a_shift():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(size=50), rng.uniform(size=70)
    assert wasserstein_1d(a, b) == pytest.approx(scipy.stats.wasserstein_distance(a, b))
    assert wasserstein_1d(a, a + 0.3) == pytest.approx(0.3)
    assert wasserstein_1d(a, a) == 0.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="different supports"):
        tvd([0.5, 0.5], [1 / 3] * 3)
    with pytest.raises(ValueError, match="1-D"):
        wasserstein_1d(np.ones((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="non-empty"):
        wasserstein_1d([], [1.0])
    with pytest.raises(ValueError, match="base"):
        jsd(P, Q, base=1)


def _dist(x: np.ndarray) -> np.ndarray:
    x = np.abs(x) + 1e-3
    return x / x.sum()


vectors = arrays(np.float64, 5, elements=st.floats(0, 10))


@settings(max_examples=60, deadline=None)
@given(vectors, vectors, vectors)
def test_bounds_symmetry_and_triangle(a, b, c):
    p, q, r = _dist(a), _dist(b), _dist(c)
    assert 0 <= jsd(p, q) <= 1 + 1e-12
    assert jsd(p, q) == pytest.approx(jsd(q, p), abs=1e-12)
    assert 0 <= tvd(p, q) <= 1
    assert tvd(p, r) <= tvd(p, q) + tvd(q, r) + 1e-12
    assert jsd(p, q) <= tvd(p, q) + 1e-12                    # JSD (bits) <= TVD (Lin 1991)
    assert kl(p, q) >= -1e-12
    # Pinsker: TVD <= sqrt(KL / 2)
    assert tvd(p, q) <= math.sqrt(max(kl(p, q), 0.0) / 2) + 1e-9
