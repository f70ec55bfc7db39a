"""ABCD on traces: correlation from attention, graphs over tokens, CLEANN explanations."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from analysis import abcd, causal
from analysis.causal import DSeparationOracle, random_dag, random_weights, sem_mixing_matrix
from tests.helpers import tiny_model

TEXT = "A wonderful little film, moving and funny, with a great cast."


@pytest.fixture(scope="module")
def bert(tiny_bert):
    return tiny_bert


@pytest.fixture(scope="module")
def trace(bert):
    return bert.trace(TEXT)


def planted_trace(trace, seed: int, hidden: list[int] = ()):
    """A trace whose last-layer head 0 'attention' is a planted SEM mixing matrix A, so that
    A A^T is the SEM covariance of a known DAG over the tokens."""
    n = trace.n_tokens
    dag = random_dag(n, 0.15, seed=seed)
    a = sem_mixing_matrix(random_weights(dag, seed=seed))
    att = trace.attentions.copy().astype(np.float64)
    att[-1, 0] = a
    return dataclasses.replace(trace, attentions=att), dag


def test_covariance_per_head_and_pooled(trace):
    a = trace.attentions[1].astype(np.float64)
    np.testing.assert_allclose(abcd.attention_covariance(trace, 1, 2), a[2] @ a[2].T)
    np.testing.assert_allclose(abcd.attention_covariance(trace, -1, "all"), sum(h @ h.T for h in a))
    r = abcd.attention_correlation(trace, 1, 2)
    np.testing.assert_allclose(np.diag(r), 1.0)
    with pytest.raises(IndexError, match="0..3"):
        abcd.attention_covariance(trace, 0, 9)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("algorithm", ["pc", "fci", "icd"])
def test_graph_from_planted_attention_equals_the_oracle(trace, seed, algorithm):
    planted, dag = planted_trace(trace, seed)
    learned = abcd.learn_graph(planted, layer=-1, head=0, algorithm=algorithm, n_samples=1e12)
    truth = causal.learn_graph(None, algorithm=algorithm, ci_test=DSeparationOracle(dag),
                               nodes=list(range(trace.n_tokens)))
    np.testing.assert_array_equal(learned.to_matrix(), truth.to_matrix())


@pytest.mark.parametrize("seed", range(6))
def test_content_nodes_leave_the_rest_latent(trace, seed):
    planted, dag = planted_trace(trace, seed)
    nodes = abcd.select_nodes(planted, "content")
    learned = abcd.learn_graph(planted, algorithm="fci", n_samples=1e12, nodes="content")
    truth = causal.learn_graph(None, algorithm="fci", ci_test=DSeparationOracle(dag, observed=tuple(nodes)))
    np.testing.assert_array_equal(learned.to_matrix(), truth.to_matrix())


def test_node_sets(trace):
    content = abcd.select_nodes(trace, "content")
    assert 0 not in content and trace.n_tokens - 1 not in content          # [CLS], [SEP]
    assert all(trace.tokens[i] not in {",", "."} for i in content)
    assert abcd.select_nodes(trace, "content", keep=[0])[0] == 0
    assert abcd.select_nodes(trace, "all") == list(range(trace.n_tokens))
    with pytest.raises(IndexError, match="0..%d" % (trace.n_tokens - 1)):
        abcd.select_nodes(trace, [1, 99])
    with pytest.raises(ValueError, match="all, content"):
        abcd.select_nodes(trace, "words")


def test_n_samples_default_and_choices_are_printed(trace):
    g = abcd.learn_graph(trace, algorithm="pc")
    assert g.n_samples == trace.hidden_states.shape[-1] == 32
    assert "n_samples=32" in str(g)
    assert abcd.learn_graph(trace, algorithm="pc", n_samples="head").n_samples == 8
    assert g.labels[1] == f"{trace.tokens[1]}@1"
    with pytest.raises(ValueError, match="n_samples"):
        abcd.learn_graph(trace, n_samples=2)
    # a denser graph with a larger effective sample size
    assert len(abcd.learn_graph(trace, algorithm="pc", n_samples=1e6)) >= len(g)


def test_explanation_sets_flip_the_model_and_are_minimal(bert):
    e = abcd.explain(bert, TEXT, max_set_size=3)
    trace = bert.trace(TEXT)
    assert e.prediction == trace.prediction
    assert e.sets, "the tiny model's prediction should flip within 3 tokens"
    for s in e.sets:
        assert len(s) == e.size and e.target not in s
        assert bert.trace(TEXT, remove=s).prediction != trace.prediction     # the model decides
        assert e.tree.is_closed(s)
    # every smaller candidate was tested and did not change the output
    smaller = [c for c in e.checks if len(c.positions) < e.size]
    assert all(not c.changed for c in smaller)
    assert len(smaller) == sum(len(e.tree.closed_subsets(k, exclude=[e.target])) for k in range(1, e.size))
    # within a size, candidates come by increasing depth sum
    for k in range(1, e.size + 1):
        depths = [c.depth_sum for c in e.checks if len(c.positions) == k]
        assert depths == sorted(depths)
    assert "minimal set" in str(e)


def test_attention_baseline_flips_at_its_size(bert):
    e = abcd.explain(bert, TEXT, max_set_size=2)
    b = e.baseline
    trace = bert.trace(TEXT)
    row = trace.attentions[-1, 0, e.target]
    assert [row[i] for i in b.ranking] == sorted((row[i] for i in b.ranking), reverse=True)
    if b.size is not None:
        assert bert.trace(TEXT, remove=list(b.set)).prediction != trace.prediction
        assert all(not c.changed for c in b.checks[:-1])


def test_explain_on_a_decoder_uses_the_last_token_and_token_order():
    gpt2 = tiny_model("gpt2")
    e = abcd.explain(gpt2, TEXT, max_set_size=1, algorithm="fci")
    assert e.target == len(e.tokens) - 1
    assert e.target in e.graph.nodes
    with pytest.raises(ValueError, match="max_set_size"):
        abcd.explain(gpt2, TEXT, max_set_size=0)
    with pytest.raises(IndexError, match="target 99"):
        abcd.explain(gpt2, TEXT, target=99)



def test_explain_budget_is_explicit_and_a_call_budget_truncates_the_same_search():
    from tests.helpers import TWO_TOKEN_TEXT as TWO_TEXT, TwoTokenModel   # flips only without both "good" and "great"

    two = TwoTokenModel()
    full = abcd.explain(two, TWO_TEXT, max_calls=None, max_set_size=2, n_samples=1e12)
    assert full.budget == abcd.Budget(None, 2) and "unlimited calls, sets of <= 2 tokens" in str(full)
    assert full.sets == [[2, 6]] and full.stopped == "found"
    n = next(i for i, c in enumerate(full.checks) if c.changed)          # calls before the flipping check
    cut = abcd.explain(two, TWO_TEXT, max_calls=n, max_set_size=2, n_samples=1e12)
    assert len(cut.checks) == n and "<= %d calls" % n in str(cut)
    assert [c.positions for c in cut.checks] == [c.positions for c in full.checks[:n]]
    assert cut.size is None and cut.stopped == "calls" and cut.searched_size == 1
    assert cut.status.startswith("not found within budget (call budget of %d ran out" % n)
    assert abcd.explain(two, TWO_TEXT, max_calls=n + 1, max_set_size=2, n_samples=1e12).sets == [[2, 6]]
    capped = abcd.explain(two, TWO_TEXT, max_calls=None, max_set_size=1, n_samples=1e12)
    assert capped.stopped == "size" and capped.searched_size == 1 and "size cap of 1" in capped.status
    with pytest.raises(ValueError, match="max_set_size must be a positive integer or None"):
        abcd.explain(two, TWO_TEXT, max_set_size=0)


def test_explain_progress_hook_cancels_between_batches():
    from tests.helpers import TWO_TOKEN_TEXT as TWO_TEXT, TwoTokenModel

    seen = []

    def progress(fraction):
        seen.append(fraction)
        return fraction == 0                      # ICD iterations and the size-1 batch report 0; size 2 more

    e = abcd.explain(TwoTokenModel(), TWO_TEXT, max_calls=None, n_samples=1e12, progress=progress)
    assert seen[-1] > 0 and seen.count(seen[-1]) == 1 and all(0 <= f <= 1 for f in seen)
    assert e.stopped == "cancelled" and e.sets == [] and "cancelled" in e.status
    assert all(len(c.positions) == 1 for c in e.checks) and e.baseline.checks == ()


def test_explain_cancelled_while_learning_the_graph_raises():
    with pytest.raises(abcd.Cancelled, match="while learning the graph"):
        abcd.explain(tiny_model("bert"), TEXT, progress=lambda fraction: False)


def test_time_budget_reaches_icd_through_learn_graph_and_explain(bert):
    """abcd forwards ``time_budget``: a budget too small for any level gives ICD's r = 0 graph (as
    ``max_r=0``), warned about and marked cut, in learn_graph and in explain's graph."""
    trace = bert.trace(TEXT)
    with pytest.warns(RuntimeWarning, match="r=0"):
        cut = abcd.learn_graph(trace, time_budget=1e-9)
    want = abcd.learn_graph(trace, max_r=0)
    assert cut.cut and cut.r == 0 and np.array_equal(cut.marks, want.marks)
    assert not abcd.learn_graph(trace, time_budget=1e6).cut
    with pytest.warns(RuntimeWarning, match="r=0"):
        e = abcd.explain(bert, TEXT, max_set_size=1, time_budget=1e-9)
    assert e.graph.cut
    with pytest.raises(ValueError, match="time_budget"):
        abcd.learn_graph(trace, algorithm="pc", time_budget=1.0)
