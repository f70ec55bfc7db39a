"""Partial correlations, the Fisher z test and the d-separation oracle."""
from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.causal import (CITestResult, DSeparationOracle, FisherZTest,
                             correlation_from_covariance, partial_correlation,
                             partial_correlations, random_dag)


def _data(seed: int, n: int = 400, p: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    x[:, 1] += 0.8 * x[:, 0]
    x[:, 2] += 0.5 * x[:, 1] - 0.7 * x[:, 3]
    return x


def _residual_corr(x: np.ndarray, i: int, j: int, cond: list[int]) -> float:
    """Correlation of the least-squares residuals of x_i and x_j on x_cond (+ intercept)."""
    z = np.column_stack([np.ones(len(x)), x[:, cond]])
    ri = x[:, i] - z @ np.linalg.lstsq(z, x[:, i], rcond=None)[0]
    rj = x[:, j] - z @ np.linalg.lstsq(z, x[:, j], rcond=None)[0]
    return float(ri @ rj / np.sqrt((ri @ ri) * (rj @ rj)))


@pytest.mark.parametrize("cond", [[], [2], [2, 3], [2, 3, 4], [4, 3, 2], [5, 4, 3, 2]])
def test_partial_correlation_equals_regression_residuals(cond):
    x = _data(0)
    corr = np.corrcoef(x.T)
    for i, j in [(0, 1), (1, 0), (0, 5), (1, 5)]:
        if i in cond or j in cond:
            continue
        got = partial_correlation(corr, i, j, cond)
        assert got == pytest.approx(_residual_corr(x, i, j, cond), abs=1e-10)


def test_covariance_is_normalised_first():
    x = _data(1) * np.array([1.0, 10.0, 0.1, 3.0, 2.0, 7.0])
    cov, corr = np.cov(x.T), np.corrcoef(x.T)
    assert np.allclose(correlation_from_covariance(cov), corr)
    assert partial_correlation(cov, 0, 2, [1, 3]) == pytest.approx(
        partial_correlation(corr, 0, 2, [1, 3]), abs=1e-12)
    test = FisherZTest(cov, 400)
    assert test(0, 2, [1]).rho == pytest.approx(partial_correlation(corr, 0, 2, [1]))


def test_batched_orders_agree_with_the_generic_solver():
    corr = np.corrcoef(_data(2, p=8).T)
    rng = np.random.default_rng(0)
    for s in range(0, 6):
        rows = [rng.permutation(8)[: s + 2] for _ in range(50)]
        I, J = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
        S = np.array([r[2:] for r in rows], dtype=int).reshape(50, s)
        got = partial_correlations(corr, I, J, S)
        want = [_pinv(corr, r) for r in rows]
        assert np.allclose(got, want, atol=1e-10)


def _pinv(corr: np.ndarray, idx: np.ndarray) -> float:
    prec = np.linalg.inv(corr[np.ix_(idx, idx)])
    return -prec[0, 1] / math.sqrt(prec[0, 0] * prec[1, 1])


def test_singular_blocks_never_raise_or_return_nan():
    x = _data(3)
    x = np.column_stack([x, x[:, 0], x[:, 1] + x[:, 2]])  # exact collinearity
    corr = np.corrcoef(x.T)
    for cond in ([6], [0, 6], [1, 2, 7], [6, 7, 1, 2]):
        rho = partial_correlation(corr, 3, 4, cond)
        assert np.isfinite(rho) and -1 < rho < 1
    rho = partial_correlation(corr, 0, 6, [])  # identical variables
    assert rho == pytest.approx(1 - 1e-12)
    assert np.isfinite(FisherZTest(corr, 400)(0, 6, [1]).z)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), data=st.data())
def test_partial_correlation_symmetric_and_permutation_invariant(seed, data):
    corr = np.corrcoef(_data(seed % 50, n=60, p=7).T)
    i, j = data.draw(st.lists(st.integers(0, 6), min_size=2, max_size=2, unique=True))
    rest = [k for k in range(7) if k not in (i, j)]
    cond = data.draw(st.lists(st.sampled_from(rest), unique=True, max_size=5))
    perm = data.draw(st.permutations(cond))
    a = partial_correlation(corr, i, j, cond)
    assert partial_correlation(corr, j, i, cond) == pytest.approx(a, abs=1e-12)
    assert partial_correlation(corr, i, j, perm) == pytest.approx(a, abs=1e-12)


def test_fisher_z_statistic_and_two_sided_p_value():
    corr = np.corrcoef(_data(4).T)
    test = FisherZTest(corr, n_samples=400, alpha=0.01)
    res = test(0, 2, [1, 3])
    z = math.sqrt(400 - 2 - 3) * abs(math.atanh(res.rho))
    assert res.z == pytest.approx(z)
    assert res.p == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert res.independent == (res.p > 0.01)
    assert (res.i, res.j, res.cond) == (0, 2, (1, 3))


def test_strong_negative_partial_correlation_is_dependent():
    """The reference implementation once read rho <= 0 as independent: two-sided on |z|."""
    corr = np.array([[1.0, -0.6, 0.1], [-0.6, 1.0, 0.0], [0.1, 0.0, 1.0]])
    test = FisherZTest(corr, n_samples=100, alpha=0.01)
    for res in (test(0, 1), test(0, 1, [2]), test(1, 0, [2])):
        assert res.rho < -0.5
        assert res.p < 1e-6 and not res.independent
    mirrored = FisherZTest(corr * np.where(np.eye(3) == 1, 1, -1), 100)
    assert mirrored(0, 1).p == pytest.approx(test(0, 1).p)


def test_weak_correlation_is_independent():
    corr = np.array([[1.0, 0.01], [0.01, 1.0]])
    assert FisherZTest(corr, 100)(0, 1).independent
    assert not FisherZTest(corr, 1e7)(0, 1).independent


def test_cache_log_and_batch():
    corr = np.corrcoef(_data(5).T)
    test = FisherZTest(corr, 400)
    a = test(0, 2, [3, 1])
    assert test(2, 0, (1, 3)) is a  # cached: same key for swapped ends / reordered set
    assert test.n_tests == 1 and test.log == [a]
    pairs = [(0, 1), (2, 4), (5, 3)]
    conds = [(2, 3), (0, 1), (1, 2)]
    many = test.test_many(pairs, conds)
    assert all(isinstance(r, CITestResult) for r in many)
    for r, (i, j), c in zip(many, pairs, conds):
        assert r.rho == pytest.approx(partial_correlation(corr, i, j, c), abs=1e-12)
        assert (r.i, r.j) == (min(i, j), max(i, j))
    assert test.n_tests == 4
    mixed = test.test_many([(0, 1), (2, 4), (0, 1)], [(), (0, 1, 3), (2,)])
    assert [len(r.cond) for r in mixed] == [0, 3, 1]
    assert mixed[2].rho == pytest.approx(partial_correlation(corr, 0, 1, [2]))
    k = test.first_independent(0, 4, [(1,), (2,), (3,), (5,)])
    assert k == -1 or test(0, 4, [[1], [2], [3], [5]][k]).independent


def test_first_independent_logs_only_what_a_sequential_learner_runs():
    corr = np.eye(4)
    corr[0, 1] = corr[1, 0] = 0.5
    test = FisherZTest(corr, 100)
    assert test.first_independent(0, 1, [(2,), (3,)]) == -1
    assert test.n_tests == 2
    assert test.first_independent(0, 2, [(1,), (3,)]) == 0
    assert test.n_tests == 3


@pytest.mark.parametrize("bad, match", [
    (np.ones((3, 4)), "square"),
    (np.array([[1.0, 0.2], [0.3, 1.0]]), "symmetric"),
    (np.array([[1.0, np.nan], [np.nan, 1.0]]), "NaN"),
    (np.ones((1, 1)), "at least 2"),
])
def test_bad_matrices(bad, match):
    with pytest.raises(ValueError, match=match):
        FisherZTest(bad, 100)
    with pytest.raises(ValueError, match=match):
        partial_correlation(bad, 0, 1)


def test_bad_queries_name_the_valid_range():
    test = FisherZTest(np.eye(4), 100)
    with pytest.raises(IndexError, match=r"0\.\.3"):
        test(0, 4)
    with pytest.raises(IndexError, match=r"0\.\.3"):
        partial_correlation(np.eye(4), 0, 1, [7])
    with pytest.raises(ValueError, match="differ"):
        test(2, 2)
    with pytest.raises(ValueError, match="must not contain"):
        test(0, 1, [1])
    with pytest.raises(IndexError, match=r"0\.\.3"):
        test.test_many([(0, 9)])
    with pytest.raises(ValueError, match="differ in length"):
        test.test_many([(0, 1), (0, 2)], [(2,)])


def test_too_few_samples_for_the_set_size():
    test = FisherZTest(np.eye(6), n_samples=5)
    assert test(0, 1, [2]).independent  # 5 - 1 - 3 = 1 > 0
    with pytest.raises(ValueError, match="n_samples - |S| - 3"):
        test(0, 1, [2, 3])
    with pytest.raises(ValueError, match="n_samples"):
        FisherZTest(np.eye(3), n_samples=3)
    with pytest.raises(ValueError, match="alpha"):
        FisherZTest(np.eye(3), n_samples=30, alpha=1.5)


def test_d_separation_oracle_matches_networkx():
    rng = np.random.default_rng(0)
    for seed in range(20):
        dag = random_dag(7, 0.4, seed=seed)
        g = nx.DiGraph()
        g.add_nodes_from(range(7))
        g.add_edges_from(zip(*np.nonzero(dag)))
        oracle = DSeparationOracle(dag)
        for _ in range(30):
            i, j, *cond = rng.permutation(7)[: 2 + rng.integers(0, 4)].tolist()
            want = nx.is_d_separator(g, {i}, {j}, set(cond))
            res = oracle(i, j, cond)
            assert res.independent == want
            assert res.p == (1.0 if want else 0.0)


def test_oracle_with_latents_maps_observed_indices():
    dag = np.zeros((4, 4), dtype=int)
    dag[3, 0] = dag[3, 1] = dag[1, 2] = 1  # 3 hidden: 0 <- 3 -> 1 -> 2
    oracle = DSeparationOracle(dag, observed=[0, 1, 2])
    assert oracle.n_variables == 3
    assert not oracle(0, 1).independent
    assert oracle(0, 2, [1]).independent
    with pytest.raises(IndexError, match=r"0\.\.2"):
        oracle(0, 3)
    with pytest.raises(ValueError, match="cycle"):
        DSeparationOracle(np.array([[0, 1], [1, 0]]))
