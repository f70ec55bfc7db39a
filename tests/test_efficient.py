"""Efficient attention: the exact identities, ranks, variants and bases, on random matrices and on
tiny models of every architecture."""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from analysis.efficient import (basis_matrix, decompose, decompose_layer, decompose_matrix,
                                output_projection)
from tests.helpers import ARCHS, tiny_model

LONG = "A wonderful little film, moving and funny, with a great cast and a terrible ending."


def random_case(n: int, k: int, rank: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A row-stochastic A [n, n] and a T [n, k] of the given rank."""
    rng = np.random.default_rng(seed)
    rank = min(n, k) if rank is None else rank
    t = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, k))
    return rng.dirichlet(np.full(n, 0.5), size=n), t


def check_identities(r, a: np.ndarray, t: np.ndarray) -> None:
    np.testing.assert_allclose(r.effective + r.null, a, atol=1e-12)
    scale = np.abs(a @ t).max()
    np.testing.assert_allclose(r.effective @ t, a @ t, atol=1e-9 * scale)
    np.testing.assert_allclose(r.null @ t, 0, atol=1e-9 * scale)
    assert r.nullity == a.shape[0] - r.rank


@pytest.mark.parametrize("n, k, rank, nullity", [(12, 4, 4, 8), (12, 6, 3, 9), (5, 8, 5, 0), (6, 6, 2, 4)])
def test_nullity_is_n_minus_rank(n, k, rank, nullity):
    a, t = random_case(n, k, rank)
    r = decompose_matrix(a, t)
    assert (r.rank, r.nullity) == (rank, nullity) and r.rank == np.linalg.matrix_rank(t)
    check_identities(r, a, t)


def test_nullity_zero_means_effective_is_attention_and_says_so():
    a, t = random_case(5, 8)
    r = decompose_matrix(a, t)
    np.testing.assert_allclose(r.effective, a, atol=1e-12)
    assert "nullity 0" in str(r) and "equals the attention" in r.message
    assert r.row_sum_error < 1e-12 and r.negative_mass == pytest.approx(0, abs=1e-12)


def test_projection_matches_pseudo_inverse_formula_and_is_a_projection():
    a, t = random_case(10, 4, seed=3)
    p = decompose_matrix(a, t).projection
    np.testing.assert_allclose(p, t @ np.linalg.pinv(t.T @ t) @ t.T, atol=1e-10)
    np.testing.assert_allclose(p @ p, p, atol=1e-12)
    np.testing.assert_allclose(p, p.T, atol=1e-12)


def test_rank_tolerance_is_explicit():
    a, t = random_case(10, 4, seed=4)
    t[:, 3] = t[:, 0] + 1e-9 * np.arange(10)          # nearly dependent column
    assert decompose_matrix(a, t).rank == 3            # default: float32-level tolerance
    assert decompose_matrix(a, t, rtol=0.0).rank == 4


def test_effective_is_not_a_distribution_and_that_is_reported():
    a, t = random_case(12, 3, seed=5)
    r = decompose_matrix(a, t)
    assert r.row_sum_error > 1e-3 and r.negative_mass > 0
    assert r.row_sum_error == pytest.approx(np.abs(r.effective.sum(1) - 1).max())
    assert r.negative_mass == pytest.approx(-r.effective[r.effective < 0].sum() / 12)


def test_unit_rows_restores_row_sums_and_keeps_output():
    a, t = random_case(12, 3, seed=6)
    r = decompose_matrix(a, t, unit_rows=True)
    np.testing.assert_allclose(r.effective.sum(1), 1.0, atol=1e-12)
    check_identities(r, a, t)
    assert r.rank == 4 and r.variant == "unit_rows"


def test_simplex_rows_are_distributions_keeping_output_and_minimal():
    a, t = random_case(9, 3, seed=7)
    r = decompose_matrix(a, t, simplex=True)
    assert r.infeasible_rows == ()
    assert r.effective.min() >= -1e-9
    np.testing.assert_allclose(r.effective.sum(1), 1.0, atol=1e-10)
    check_identities(r, a, t)
    unit = decompose_matrix(a, t, unit_rows=True).effective
    for q in range(3):                                 # an independent QP solver agrees
        cons = [{"type": "eq", "fun": lambda x, q=q: x @ t - a[q] @ t}, {"type": "eq", "fun": lambda x: x.sum() - 1}]
        ref = minimize(lambda x, q=q: ((x - unit[q]) ** 2).sum(), a[q], constraints=cons, bounds=[(0, None)] * 9,
                       method="SLSQP", options={"ftol": 1e-14, "maxiter": 500}).x
        np.testing.assert_allclose(r.effective[q], ref, atol=1e-6)
    assert np.all(np.linalg.norm(r.effective, axis=1) <= np.linalg.norm(a, axis=1) + 1e-12)


def test_simplex_reports_infeasible_rows():
    t = np.arange(4.0)[:, None]                        # T = [0, 1, 2, 3]: a distribution has a T <= 3
    a = np.full((4, 4), 0.25)
    a[2] = [0.0, 0.0, -1.0, 2.0]                       # sums to 1, a T = 4: no distribution matches
    with pytest.warns(UserWarning, match="no distribution keeps the output"):
        r = decompose_matrix(a, t, simplex=True)
    assert r.nullity == 2 and r.infeasible_rows == (2,) and "rows [2]" in r.message
    check_identities(r, a, t)                          # the infeasible row keeps the unit-row projection
    np.testing.assert_allclose(r.effective[2], decompose_matrix(a, t, unit_rows=True).effective[2])
    assert r.effective[[0, 1, 3]].min() >= -1e-12


def _wrong_nnls(e, f, maxiter=None):
    """SciPy's nnls as seen on one CI machine (scipy/scipy#25389): a non-optimal point, rnorm 0."""
    return np.full(e.shape[1], 0.3), 0.0


@pytest.mark.parametrize("broken", [("nnls",), ("nnls", "lsq_linear")])
def test_simplex_rows_survive_a_wrong_nnls_answer(monkeypatch, broken):
    import analysis.efficient as ef

    cases = [random_case(9, 3, seed=7), random_case(12, 4, seed=11)]
    t = np.arange(4.0)[:, None]
    bad = np.full((4, 4), 0.25)
    bad[2] = [0.0, 0.0, -1.0, 2.0]
    cases.append((bad, t))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = [decompose_matrix(a, t, simplex=True) for a, t in cases]
        calls = {"bvls": 0}
        real_lsq = ef.lsq_linear

        def counted(*args, **kwargs):
            calls["bvls"] += 1
            return real_lsq(*args, **kwargs)

        monkeypatch.setattr(ef, "nnls", _wrong_nnls)
        monkeypatch.setattr(ef, "lsq_linear", counted)
        if "lsq_linear" in broken:                     # the second solver wrong too: the LP + QP path
            monkeypatch.setattr(ef, "lsq_linear", lambda e, f, **kw: SimpleNamespace(x=np.zeros(e.shape[1])))
        got = [decompose_matrix(a, t, simplex=True) for a, t in cases]
    assert "lsq_linear" in broken or calls["bvls"] > 0
    for g, x, (a, t) in zip(got, expected, cases):
        assert g.infeasible_rows == x.infeasible_rows
        np.testing.assert_allclose(g.effective, x.effective, atol=1e-6)
        check_identities(g, a, t)
    assert got[-1].infeasible_rows == (2,)


def test_simplex_rows_trust_nnls_only_when_its_answer_checks_out(monkeypatch):
    import analysis.efficient as ef

    used = []
    monkeypatch.setattr(ef, "lsq_linear", lambda *a, **k: used.append(1))    # never needed on sound answers
    for seed in range(20):
        a, t = random_case(10, 3, seed=seed)
        r = decompose_matrix(a, t, simplex=True)
        assert r.effective[[q for q in range(10) if q not in r.infeasible_rows]].min() >= -1e-9
    assert used == []


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 14), k=st.integers(1, 10), rank=st.integers(0, 10), seed=st.integers(0, 10_000),
       unit=st.booleans())
def test_projection_identities_property(n, k, rank, seed, unit):
    rank = min(rank, n, k)
    a, t = random_case(n, k, rank, seed)
    r = decompose_matrix(a, t, unit_rows=unit)
    check_identities(r, a, t)
    assert r.rank == np.linalg.matrix_rank(np.hstack([t, np.ones((n, 1))]) if unit else t)
    p = r.projection
    np.testing.assert_allclose(p @ p, p, atol=1e-10)
    if unit:
        np.testing.assert_allclose(r.effective.sum(1), 1.0, atol=1e-10)


# --------------------------------------------------------------------------- traces
@pytest.mark.parametrize("arch", ARCHS)
def test_trace_decomposition_per_architecture(arch):
    model = tiny_model(arch)
    trace = model.trace(LONG)
    n = trace.n_tokens
    assert n > 8
    layer = decompose_layer(trace, 1)
    for h, r in enumerate(layer):
        v = trace.values[1, h].astype(np.float64)
        assert r.nullity == n - np.linalg.matrix_rank(v) > 0
        check_identities(r, trace.attentions[1, h].astype(np.float64), v)
        single = decompose(trace, 1, h)
        np.testing.assert_allclose(single.effective, r.effective, atol=1e-12)
        assert (single.layer, single.head, single.basis) == (1, h, "value")


def _projection_module(model, arch: str, layer: int) -> torch.nn.Module:
    m = model.module
    return {"bert": lambda: m.bert.encoder.layer[layer].attention.output.dense,
            "roberta": lambda: m.roberta.encoder.layer[layer].attention.output.dense,
            "distilbert": lambda: m.distilbert.transformer.layer[layer].attention.out_lin,
            "gpt2": lambda: m.transformer.h[layer].attn.c_proj,
            "llama": lambda: m.model.layers[layer].self_attn.o_proj}[arch]()


@pytest.mark.parametrize("arch", ARCHS)
def test_output_projection_and_value_output_basis(arch):
    model = tiny_model(arch)
    w = output_projection(model, 1)
    proj = _projection_module(model, arch, 1)
    x = torch.randn(3, 32)
    with torch.no_grad():
        np.testing.assert_allclose(proj(x) - proj(torch.zeros(1, 32)), x.numpy() @ w, atol=1e-5)
    trace = model.trace(LONG)
    t = basis_matrix(trace, 1, 2, "value_output", model)
    np.testing.assert_allclose(t, trace.values[1, 2] @ w[16:24], rtol=1e-5, atol=1e-6)
    r = decompose(trace, 1, 2, basis="value_output", model=model)
    assert r.nullity == decompose(trace, 1, 2).nullity  # W_o slice has full row rank here
    check_identities(r, trace.attentions[1, 2].astype(np.float64), t)


def test_hidden_and_explicit_bases():
    model = tiny_model("bert")
    trace = model.trace(LONG)
    r = decompose(trace, 0, 1, basis="hidden")
    assert r.rank == min(trace.n_tokens, 32) and r.basis == "hidden"
    t = trace.hidden_states[0] @ np.random.default_rng(0).normal(size=(32, 2))
    custom = decompose(trace, 0, 1, basis=t)
    assert custom.basis == "custom" and custom.nullity == trace.n_tokens - 2


def test_bad_inputs():
    model = tiny_model("bert")
    trace = model.trace(LONG)
    with pytest.raises(ValueError, match="decompose_layer"):
        decompose(trace, 0, "all")
    with pytest.raises(IndexError, match=r"0\.\.1"):
        decompose(trace, 2, 0)
    with pytest.raises(IndexError, match=r"0\.\.3"):
        decompose(trace, 0, 4)
    with pytest.raises(ValueError, match="value_output"):
        decompose(trace, 0, 0, basis="values")
    with pytest.raises(ValueError, match="model="):
        decompose(trace, 0, 0, basis="value_output")
    with pytest.raises(ValueError, match=r"\[n, k\]"):
        decompose(trace, 0, 0, basis=np.ones((3, 2)))
    with pytest.raises(ValueError, match="square"):
        decompose_matrix(np.ones((3, 4)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="rtol"):
        decompose_matrix(np.eye(3), np.ones((3, 2)), rtol=2.0)
    with pytest.raises(ValueError, match="finite"):
        decompose_matrix(np.full((2, 2), np.nan), np.ones((2, 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decompose(trace, -1, -1)                        # negative indices count from the end


# --------------------------------------------------------------------------- the Jacobian basis
def _double_bert():
    m = tiny_model("bert")
    m.module.double()
    return m


def _logit(model, layer: int, head: int, a: np.ndarray, k: int) -> float:
    """The class-k logit with head (layer, head) overridden by ``a``, in float64."""
    enc = model.encode(LONG)
    batch = model.batch([enc])
    with torch.no_grad():
        out, _ = model.forward(batch, overrides={(layer, head): torch.tensor(a, dtype=torch.float64)})
        return float(model.output_logits(out, batch)[0, k])


@pytest.mark.parametrize("head", [0, 2])
def test_jacobian_null_space_moves_the_logit_at_second_order_only(head):
    """Finite differences: a step s in the Jacobian basis's null space (within col(V), so the head
    output does move) changes the logit by O(s^2); a same-norm random step by O(s)."""
    m = _double_bert()
    tr = m.trace(LONG)
    k, layer = tr.prediction, 1
    a = tr.attentions[layer, head].astype(np.float64)
    p_jac = decompose(tr, layer, head, basis="jacobian", model=m).projection
    p_val = decompose(tr, layer, head).projection
    rng = np.random.default_rng(head)
    null = np.zeros_like(a)
    null[0] = rng.normal(size=a.shape[1])
    null = (null - null @ p_jac) @ p_val                 # reaches the head output, not the logit
    null /= np.linalg.norm(null)
    rand = np.zeros_like(a)
    rand[0] = rng.normal(size=a.shape[1]) @ p_val
    rand /= np.linalg.norm(rand)
    base = _logit(m, layer, head, a, k)
    ratios, nulls = [], []
    for s in (1e-2, 1e-3, 1e-4):
        dn = abs(_logit(m, layer, head, a + s * null, k) - base)
        dr = abs(_logit(m, layer, head, a + s * rand, k) - base)
        nulls.append(dn)
        ratios.append(dn / dr)
    assert nulls[1] < 0.03 * nulls[0] and nulls[2] < 0.03 * nulls[1]   # second order: x0.01 per decade
    assert ratios[1] < 0.2 * ratios[0] and ratios[2] < 0.2 * ratios[1]
    assert ratios[2] < 1e-3


def test_jacobian_basis_is_the_transposed_attention_gradient_and_rank_one_in_the_last_layer():
    m = tiny_model("bert")
    tr = m.trace(LONG)
    t = basis_matrix(tr, 1, 0, "jacobian", m)
    assert t.shape == (tr.n_tokens, tr.n_tokens)
    # last layer of a [CLS] classifier: only the [CLS] row (column 0 of T) reaches the logit
    assert np.abs(t[:, 1:]).max() == 0 and np.abs(t[:, 0]).max() > 0
    r = decompose(tr, 1, 0, basis="jacobian", model=m)
    assert r.rank == 1 and r.nullity == tr.n_tokens - 1 and "jacobian" in str(r)
    # its column space lies inside the value basis's: the value null space is inside its null space
    p_val = decompose(tr, 1, 0).projection
    np.testing.assert_allclose(p_val @ t, t, atol=1e-6 * np.abs(t).max())
    every = basis_matrix(tr, 1, 0, "jacobian", m, logit="all")
    assert every.shape == (tr.n_tokens, 3 * tr.n_tokens)
    np.testing.assert_allclose(every[:, tr.prediction * tr.n_tokens:(tr.prediction + 1) * tr.n_tokens], t,
                               atol=1e-6)


def test_jacobian_basis_bad_input():
    m = tiny_model("bert")
    tr = m.trace(LONG)
    with pytest.raises(ValueError, match="needs the model"):
        decompose(tr, 1, 0, basis="jacobian")
    with pytest.raises(ValueError, match="out of range"):
        decompose(tr, 1, 0, basis="jacobian", model=m, logit=3)
    with pytest.raises(ValueError, match="basis must be one of"):
        decompose(tr, 1, 0, basis="jacobians")
