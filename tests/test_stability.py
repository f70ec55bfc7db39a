"""Output-preserving attention changes and the stability of raw vs efficient ABCD graphs."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import abcd, causal
from analysis.efficient import basis_matrix
from analysis.stability import (NEG_TOL, graph_stability, output_preserving, output_preserving_matrix)

TEXT = "A wonderful little film, moving and funny, with a great cast and a terrible ending."


@pytest.fixture(scope="module")
def bert(tiny_bert):
    return tiny_bert


@pytest.fixture(scope="module")
def trace(bert):
    return bert.trace(TEXT)


def check_feasible(gen, t: np.ndarray) -> None:
    """Every sample is on the simplex and keeps ``A T``."""
    s = gen.samples
    assert s.min() >= 0.0
    np.testing.assert_allclose(s.sum(-1), 1.0, atol=1e-9, rtol=0)
    ref = gen.attention @ t
    scale = np.abs(ref).max()
    assert np.abs(s @ t - ref).max() <= 1e-9 * scale
    assert gen.residual.max() <= 1e-9


@pytest.mark.parametrize("layer, head", [(0, 1), (1, 0), (1, 3)])
def test_generator_stays_on_simplex_keeps_the_head_output_and_the_logits(bert, trace, layer, head):
    gen = output_preserving(trace, layer, head, n_extreme=3, n_mix=3, seed=1)
    check_feasible(gen, basis_matrix(trace, layer, head, "value"))
    assert gen.tvd.max() > 0.1                     # the attention really moves
    for a2 in gen.samples:
        logits = bert.trace(TEXT, attention_override={(layer, head): a2}).logits
        np.testing.assert_allclose(logits, trace.logits, atol=1e-5, rtol=0)


def test_extreme_points_are_vertices(trace):
    """A vertex of {x : x B = a B, x >= 0} has at most rank(B) non-zero entries (a basic solution)."""
    gen = output_preserving(trace, 1, 2, n_extreme=3, n_mix=0)
    support = (gen.extremes > NEG_TOL).sum(-1)     # [k, n]
    assert support.max() <= gen.rank
    assert (support < gen.n).all()                 # the raw rows (softmax) have full support


@settings(max_examples=15, deadline=None)
@given(n=st.integers(4, 12), k=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_generator_feasible_on_random_matrices(n, k, seed):
    rng = np.random.default_rng(seed)
    a = rng.dirichlet(np.full(n, 0.7), size=n)
    t = rng.normal(size=(n, k))
    gen = output_preserving_matrix(a, t, n_extreme=2, n_mix=2, seed=seed)
    check_feasible(gen, t)
    if gen.nullity == 0:                           # nothing can move
        np.testing.assert_allclose(gen.samples, np.broadcast_to(gen.attention, gen.samples.shape), atol=1e-9)


def test_generator_is_seeded(trace):
    g1 = output_preserving(trace, 1, 0, n_extreme=2, n_mix=2, seed=3)
    g2 = output_preserving(trace, 1, 0, n_extreme=2, n_mix=2, seed=3)
    g3 = output_preserving(trace, 1, 0, n_extreme=2, n_mix=2, seed=4)
    np.testing.assert_array_equal(g1.samples, g2.samples)
    assert not np.allclose(g1.mixtures, g3.mixtures)


def test_efficient_abcd_is_invariant_and_raw_abcd_is_not(bert, trace):
    """Efficient ABCD gives the identical graph for A and every generated A' (A'P = AP); raw ABCD
    differs. Measured on this tiny model: raw skeletons differ for every head of both layers."""
    raw_changes = 0
    for layer, head in [(0, 2), (1, 1), (1, 3)]:
        r = graph_stability(bert, TEXT, layer=layer, head=head, n_extreme=2, n_mix=2, verify=False, trace=trace)
        assert (r.efficient_skeleton_shd == 0).all() and (r.efficient_shd == 0).all()
        assert (r.efficient_target_changed == 0).all()
        raw_changes += int(r.raw_skeleton_shd.sum())
        for a2 in r.generated.samples:           # the correlation matrices agree to float error
            t2 = _with(trace, layer, head, a2)
            np.testing.assert_allclose(abcd.attention_correlation(t2, layer, head, attention="efficient"),
                                       abcd.attention_correlation(trace, layer, head, attention="efficient"),
                                       atol=1e-9)
    assert raw_changes > 0


def _with(trace, layer, head, a):
    import dataclasses

    att = np.array(trace.attentions, dtype=np.float64)
    att[layer, head] = a
    return dataclasses.replace(trace, attentions=att)


def test_graph_stability_verifies_logits_and_reports(bert, trace):
    r = graph_stability(bert, TEXT, layer=1, head=0, n_extreme=2, n_mix=1, trace=trace)
    assert r.logit_change.shape == (3,) and r.logit_change.max() < 1e-5
    rows = r.rows()
    assert len(rows) == 3 and {row["kind"] for row in rows} == {"extreme", "mixture"}
    assert rows[0]["nullity"] == r.generated.nullity > 0
    assert "efficient attention" in r.efficient_graph.attention and "raw attention" in r.raw_graph.attention
    assert "nullity" in repr(r)


def test_learn_graph_names_the_attention_and_nullity(trace):
    g = abcd.learn_graph(trace, layer=1, head=0, attention="efficient")
    nullity = trace.n_tokens - np.linalg.matrix_rank(trace.values[1, 0].astype(np.float64))
    assert f"nullity {nullity} of n = {trace.n_tokens}" in repr(g) and "efficient" in repr(g)
    assert "from efficient attention" in str(g).splitlines()[0]
    assert "raw attention" in repr(abcd.learn_graph(trace, layer=1, head=0))
    pooled = abcd.learn_graph(trace, layer=1, head="all", attention="efficient")
    assert "all heads" in pooled.attention and pooled.attention.count(",") >= 3


def test_efficient_covariance_is_a_eff_a_eff_t_and_differs_from_raw(trace):
    from analysis.efficient import decompose

    eff = decompose(trace, 1, 2).effective
    np.testing.assert_allclose(abcd.attention_covariance(trace, 1, 2, attention="efficient"), eff @ eff.T,
                               atol=1e-12)
    raw = abcd.attention_covariance(trace, 1, 2)
    assert np.abs(raw - eff @ eff.T).max() > 1e-3
    assert np.linalg.matrix_rank(eff @ eff.T) <= trace.values.shape[-1] < trace.n_tokens   # singular


def test_zero_variance_row_is_an_isolated_node():
    """An efficient row a P = 0 (head output 0 at that token) has no variance: unit variance, zero
    correlation, no edges."""
    a = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.25, 0.25, 0.5]])
    p = np.outer([1, -1, 0], [1, -1, 0]) / 2.0       # projection on span(1, -1, 0)
    eff = a @ p                                      # row 0: (0.5 - 0.5) = 0
    corr = causal.correlation_from_covariance(eff @ eff.T)
    assert corr[0, 0] == 1.0 and np.all(corr[0, 1:] == 0) and np.all(corr[1:, 0] == 0)


def test_bad_input_is_refused_clearly(bert, trace):
    with pytest.raises(ValueError, match="basis must be one of"):
        output_preserving(trace, 1, 0, basis="values")
    with pytest.raises(ValueError, match="basis must be one of"):
        abcd.learn_graph(trace, attention="efficient", basis="nope")
    with pytest.raises(ValueError, match="attention must be one of"):
        abcd.learn_graph(trace, attention="effective")
    with pytest.raises(IndexError, match=r"0\.\.3"):
        output_preserving(trace, 1, 4)
    with pytest.raises(IndexError, match=r"0\.\.3"):
        graph_stability(bert, TEXT, layer=1, head=7, trace=trace)
    with pytest.raises(ValueError, match="n_extreme"):
        output_preserving(trace, 1, 0, n_extreme=-1)
    with pytest.raises(ValueError, match="distributions"):
        output_preserving_matrix(np.eye(3) * 2, np.ones((3, 1)))


def test_stability_figure_draws_raw_and_efficient(bert, trace):
    from analysis.figures.stability import stability_figure, stability_table

    r = graph_stability(bert, TEXT, layer=1, head=3, n_extreme=2, n_mix=1, verify=False, trace=trace)
    fig = stability_figure([r])
    ax = fig.axes[0]
    assert len(ax.collections) == 2                        # raw and efficient point clouds
    eff = ax.collections[1].get_offsets()
    assert np.all(np.asarray(eff)[:, 1] == 0)              # efficient ABCD: no skeleton change
    assert "3 output-preserving A'" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="needs the columns"):
        stability_table([{"tvd": 0.1}])


def test_cleann_on_output_preserving_attentions(bert, trace):
    """The explanation search over efficient graphs is the same for every A' (same graph, same
    model); each A' gets one CLEANN result per kind."""
    r = graph_stability(bert, TEXT, layer=1, head=1, n_extreme=2, n_mix=1, verify=False, trace=trace,
                        cleann=True, max_calls=60, max_set_size=2)
    assert set(r.cleann) == {"raw", "efficient"}
    assert r.cleann["efficient"]["changed"] == [False] * 3
    assert all(s == r.cleann["efficient"]["reference_size"] for s in r.cleann["efficient"]["size"])
    assert len(r.cleann["raw"]["size"]) == 3 and "raw_cleann_changed" in r.rows()[0]
    assert r.settings["max_calls"] == 60


def test_explain_passes_the_attention_choice_through(bert, trace):
    e = abcd.explain(bert, TEXT, layer=1, head=1, attention="efficient", max_calls=40, baseline_max_size=0)
    assert e.settings["attention"] == "efficient" and "efficient attention" in e.settings["graph_attention"]
    assert e.graph == abcd.learn_graph(trace, layer=1, head=1, nodes="content", keep=[0], attention="efficient")
    assert e.graph.attention == e.settings["graph_attention"]
