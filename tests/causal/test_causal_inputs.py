"""Correlation input is checked (PSD, or repaired on request), ICD's stable skeleton does not
depend on node numbering, and any BatchedCITest gets the learners' vectorised path."""
from __future__ import annotations

import ast
import os

import numpy as np
import pytest

import analysis.causal as causal_pkg
from analysis.causal import (
    PSD_TOLERANCE,
    BatchedCITest,
    DSeparationOracle,
    FisherZTest,
    Mark,
    _core,
    correlation_from_covariance,
    learn_graph,
    nearest_correlation,
    partial_correlation,
    random_dag,
    random_weights,
    sem_mixing_matrix,
)
from analysis.causal.citest import fisher_z, partial_correlations

from tests.causal.causal_cases import N_CASES, case

# a symmetric "correlation" matrix with a negative eigenvalue: the example shape
BAD = np.array([[1.0, 0.9, 0.9, -0.9],
                [0.9, 1.0, -0.9, 0.9],
                [0.9, -0.9, 1.0, 0.9],
                [-0.9, 0.9, 0.9, 1.0]])


def _synthetic_attention(n: int, seed: int) -> np.ndarray:
    """Row-stochastic "attention" (n, n) from a planted SEM's mixing matrix."""
    dag = random_dag(n, 0.15, seed=seed)
    a = np.abs(sem_mixing_matrix(random_weights(dag, seed=seed)))
    return a / a.sum(1, keepdims=True)


# ----------------------------------------------------------------------------- PSD check
def test_bad_matrix_really_is_not_psd():
    assert np.linalg.eigvalsh(BAD)[0] < -1.0


@pytest.mark.parametrize("entry", ["fisher", "learn_graph", "partial_correlation"])
def test_non_psd_correlation_raises_naming_eigenvalue_and_tolerance(entry):
    with pytest.raises(ValueError, match=r"not positive semi-definite: its smallest eigenvalue is "
                                         r"-1\.\d+, below -1e-06 \(the tolerance\)"):
        if entry == "fisher":
            FisherZTest(BAD, 100)
        elif entry == "learn_graph":
            learn_graph(BAD, 100, algorithm="pc")
        else:
            partial_correlation(BAD, 0, 1, [2, 3])


def test_covariance_whose_normalisation_would_be_clipped_raises():
    cov = np.array([[1.0, 3.0], [3.0, 1.0]])      # |corr| = 3: clipping to 1 made it look valid
    with pytest.raises(ValueError, match="not positive semi-definite"):
        FisherZTest(cov, 50)
    with pytest.raises(ValueError, match="not positive semi-definite"):
        partial_correlation(cov, 0, 1)
    with pytest.raises(ValueError, match="not positive semi-definite"):
        partial_correlation(4 * cov + np.diag([1.0, 3.0]), 0, 1)       # non-unit diagonal too
    with pytest.raises(ValueError, match="not positive semi-definite"):
        FisherZTest(4 * cov + np.diag([1.0, 3.0]), 50)


def test_repair_projects_to_the_nearest_correlation_matrix_and_warns():
    with pytest.warns(RuntimeWarning, match="replaced by the nearest correlation matrix"):
        test = FisherZTest(BAD, 100, repair=True)
    c = test.corr
    np.testing.assert_allclose(np.diag(c), 1.0)
    np.testing.assert_allclose(c, c.T)
    assert np.linalg.eigvalsh(c)[0] >= -1e-12
    with pytest.warns(RuntimeWarning):
        g = learn_graph(BAD, 100, algorithm="fci", repair=True)
    assert g.n_tests > 0


def test_nearest_correlation_matches_highams_example():
    """Higham (2002), section 4: the nearest correlation matrix to [[1,1,0],[1,1,1],[0,1,1]]."""
    a = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    x = nearest_correlation(a)
    expected = np.array([[1.0, 0.7607, 0.1573], [0.7607, 1.0, 0.7607], [0.1573, 0.7607, 1.0]])
    np.testing.assert_allclose(x, expected, atol=2e-4)


def test_nearest_correlation_keeps_a_valid_matrix():
    att = _synthetic_attention(12, seed=3)
    corr = correlation_from_covariance(att @ att.T)
    np.testing.assert_allclose(nearest_correlation(corr), corr, atol=1e-8)


@pytest.mark.parametrize("seed", range(5))
def test_synthetic_attention_correlations_pass(seed):
    att = _synthetic_attention(30, seed)
    cov = att @ att.T
    FisherZTest(cov, 64)                                   # covariance, normalised inside
    FisherZTest(correlation_from_covariance(cov), 64)
    # rank-deficient: 8 "value features" for 30 tokens, still PSD within the tolerance
    low = att[:, :8] @ att[:, :8].T
    assert np.linalg.eigvalsh(correlation_from_covariance(low))[0] > -PSD_TOLERANCE
    learn_graph(low, 64, algorithm="icd")


def test_traced_attention_correlations_pass():
    pytest.importorskip("torch")
    from tests.helpers import tiny_model

    from analysis import abcd

    for arch in ("bert", "gpt2"):
        trace = tiny_model(arch).trace("a slow burn , but the acting carried it and i liked it")
        for layer in range(trace.n_layers):
            for head in [*range(trace.n_heads), "all"]:
                corr = abcd.attention_correlation(trace, layer, head)
                FisherZTest(corr, 32)
                abcd.learn_graph(trace, layer=layer, head=head, algorithm="pc")


# ----------------------------------------------------------------------------- stable ICD
def _skeleton_under(corr: np.ndarray, perm: np.ndarray, n_samples: float, **kw) -> np.ndarray:
    """The skeleton (n, n) learned from corr with its nodes renumbered by ``perm``, mapped back."""
    m = learn_graph(corr[np.ix_(perm, perm)], n_samples, algorithm="icd", **kw).to_matrix() != 0
    out = np.zeros_like(m)
    out[np.ix_(perm, perm)] = m
    return out


def _order_dependence(corrs, n_samples, stable: bool, n_perm: int = 3) -> list[bool]:
    """For each corr: does the skeleton survive ``n_perm`` random renumberings?"""
    rng = np.random.default_rng(0)
    same = []
    for corr in corrs:
        ident = np.arange(len(corr))
        base = _skeleton_under(corr, ident, n_samples, stable=stable)
        same.append(all(np.array_equal(_skeleton_under(corr, rng.permutation(len(corr)), n_samples,
                                                       stable=stable), base)
                        for _ in range(n_perm)))
    return same


def test_stable_icd_skeleton_is_order_independent_on_synthetic_attention():
    corrs = [correlation_from_covariance(a @ a.T) for a in
             (_synthetic_attention(30, seed) for seed in range(4))]
    assert all(_order_dependence(corrs, 64, stable=True))
    assert not all(_order_dependence(corrs, 64, stable=False))   # the documented dependence


def test_stable_icd_skeleton_is_order_independent_on_traced_attention():
    pytest.importorskip("torch")
    from tests.helpers import tiny_model

    from analysis import abcd

    trace = tiny_model("bert").trace(" ".join(["the film was a slow burn but the acting carried it"] * 3))
    corrs = [abcd.attention_correlation(trace, layer, head)
             for layer in range(trace.n_layers) for head in range(trace.n_heads)]
    n = abcd.resolve_n_samples(trace, None)
    assert all(_order_dependence(corrs, n, stable=True))
    assert not all(_order_dependence(corrs, n, stable=False))


@pytest.mark.parametrize("hide", [False, True], ids=["dag", "latent"])
def test_stable_and_literal_icd_agree_with_the_oracle(hide):
    for seed in range(0, N_CASES, 2):
        dag, observed = case(seed, hide)
        graphs = [learn_graph(None, ci_test=DSeparationOracle(dag), nodes=observed,
                              algorithm="icd", stable=stable) for stable in (True, False)]
        assert np.array_equal(graphs[0].to_matrix(), graphs[1].to_matrix()), seed


# ----------------------------------------------------------------------------- batched protocol
class CountingFisher(BatchedCITest):
    """Fisher z through the public protocol only: ``evaluate`` and nothing else."""

    def __init__(self, corr: np.ndarray, n_samples: float, alpha: float = 0.01) -> None:
        self.corr, self.n_samples, self.alpha = corr, float(n_samples), alpha
        self._cache, self._log, self._pending = {}, [], []
        self.calls = 0

    @property
    def n_variables(self) -> int:
        return self.corr.shape[0]

    def evaluate(self, I, J, S):
        self.calls += 1
        rho = partial_correlations(self.corr, I, J, S)
        z, p = fisher_z(rho, self.n_samples, S.shape[1])
        return rho, z, p


@pytest.mark.parametrize("algorithm", ["pc", "fci", "icd"])
@pytest.mark.parametrize("stable", [True, False])
def test_any_batched_test_gets_the_fast_path_and_the_same_graph(algorithm, stable):
    att = _synthetic_attention(25, seed=1)
    corr = correlation_from_covariance(att @ att.T)
    mine = CountingFisher(corr, 64)
    assert _core.Tester(mine, range(25)).batched
    got = learn_graph(corr, algorithm=algorithm, ci_test=mine, stable=stable)
    ref = learn_graph(corr, 64, algorithm=algorithm, stable=stable)
    assert np.array_equal(got.to_matrix(), ref.to_matrix())
    assert got.sepsets == ref.sepsets
    assert got.n_tests == ref.n_tests
    # vectorised: far fewer calls than tests
    assert 0 < mine.calls < ref.n_tests / 5
    assert [(r.i, r.j, r.cond) for r in got.tests] == [(r.i, r.j, r.cond) for r in ref.tests]


def test_a_plain_callable_takes_the_loop_and_agrees():
    att = _synthetic_attention(12, seed=2)
    corr = correlation_from_covariance(att @ att.T)
    fz = FisherZTest(corr, 64)

    def plain(i, j, cond):
        return fz(i, j, cond)

    assert not _core.Tester(plain, range(12)).batched
    for algorithm in ("pc", "fci", "icd"):
        a = learn_graph(corr, algorithm=algorithm, ci_test=plain)
        b = learn_graph(corr, 64, algorithm=algorithm)
        assert np.array_equal(a.to_matrix(), b.to_matrix()), algorithm


def test_mark_constants_are_not_redefined_beside_the_enum():
    """No module of analysis.causal binds TAIL/ARROW/CIRCLE (or _TAIL...) to a literal."""
    folder = os.path.dirname(causal_pkg.__file__)
    names = {"TAIL", "ARROW", "CIRCLE", "NONE", "_TAIL", "_ARROW", "_CIRCLE"}
    for fname in sorted(os.listdir(folder)):
        if not fname.endswith(".py") or fname == "graph.py":
            continue
        with open(os.path.join(folder, fname)) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Assign):
                continue
            targets = [t for tgt in node.targets
                       for t in (tgt.elts if isinstance(tgt, ast.Tuple) else [tgt])]
            values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            for t, v in zip(targets, values):
                if isinstance(t, ast.Name) and t.id in names:
                    assert not isinstance(v, (ast.Constant, ast.UnaryOp)), f"{fname}: {t.id} = literal"
    assert (_core.TAIL, _core.ARROW, _core.CIRCLE) == (Mark.TAIL, Mark.ARROW, Mark.CIRCLE)
