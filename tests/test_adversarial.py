"""Adversarial attention search: constraints, reproduction through model.predict, the efficient
comparison, cancellation, determinism and bad input (short searches on tiny models)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from analysis.adversarial import _Prefix, layer_blocks, search
from analysis.efficient import decompose
from analysis.metrics import tvd
from conftest import ARCHS, tiny_model

TEXT = "A wonderful little film, moving and funny, with a great cast."
EPS = 0.05


@pytest.fixture(scope="module")
def gpt2():
    return tiny_model("gpt2")


@pytest.fixture(scope="module")
def one_head(gpt2):
    return search(gpt2, TEXT, layer=1, head=1, k=4, eps=EPS, steps=30, progress=False)


def test_shapes_and_rows_are_causal_distributions(gpt2, one_head):
    r = one_head
    n = len(r.tokens)
    assert r.attentions.shape == r.efficient.shape == (4, n, n) and r.original_attention.shape == (n, n)
    assert r.probs.shape == (4, 3) and r.jsd.shape == r.tvd.shape == r.feasible.shape == (4,)
    np.testing.assert_allclose(r.attentions.sum(-1), 1.0, atol=1e-5)
    assert r.attentions.min() >= 0 and np.allclose(np.triu(r.attentions, 1), 0)   # decoder support
    assert r.steps_run == 30 and not r.cancelled and r.loss.shape == (30,)


def test_constraint_holds_and_predict_reproduces_tvd(gpt2, one_head):
    r = one_head
    assert r.feasible.any()
    np.testing.assert_array_equal(r.feasible, r.tvd <= EPS)
    assert r.feasible_attentions.shape[0] == r.feasible.sum()
    for i in range(r.k):
        p = gpt2.predict(TEXT, attention_override={(1, 1): r.attentions[i]})[0]
        assert float(tvd(p, r.original)) == pytest.approx(r.tvd[i], abs=1e-5)
        assert gpt2.predict(TEXT, attention_override=r.override(i))[0] == pytest.approx(p, abs=1e-6)
    np.testing.assert_allclose(r.original, gpt2.predict(TEXT)[0], atol=1e-6)


def test_reported_divergences_match_scipy(one_head):
    r = one_head
    rows = lambda x, y: np.mean([jensenshannon(a, b, base=2) ** 2 for a, b in zip(x, y)])  # noqa: E731
    for i in range(r.k):
        assert r.jsd[i] == pytest.approx(rows(r.attentions[i], r.original_attention), abs=1e-6)
        assert r.pairwise_jsd[i, (i + 1) % r.k] == pytest.approx(
            rows(r.attentions[i], r.attentions[(i + 1) % r.k]), abs=1e-6)
    assert np.allclose(np.diag(r.pairwise_jsd), 0) and np.allclose(r.pairwise_jsd, r.pairwise_jsd.T)
    assert r.jsd.min() > 0.05                            # they did move away from the original


def test_efficient_comparison(gpt2, one_head):
    r = one_head
    p = decompose(gpt2.trace(TEXT), 1, 1).projection
    np.testing.assert_allclose(r.efficient, r.attentions @ p, atol=1e-5)
    np.testing.assert_allclose(r.original_efficient, r.original_attention @ p, atol=1e-5)
    diff = r.attentions - r.original_attention
    np.testing.assert_allclose(r.raw_distance, np.linalg.norm(diff, axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(r.efficient_distance, np.linalg.norm(diff @ p, axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(r.raw_row_tvd, 0.5 * np.abs(diff).sum(-1).mean(-1), rtol=1e-5)
    assert np.all(r.efficient_distance <= r.raw_distance + 1e-9)   # a projection never lengthens
    assert np.all((r.efficient_share > 0) & (r.efficient_share <= 1))


def test_all_heads_of_a_layer_encoder():
    model = tiny_model("bert")
    r = search(model, TEXT, layer=0, head="all", k=2, eps=0.3, steps=8, progress=False)
    n = len(r.tokens)
    assert r.attentions.shape == (2, 4, n, n) and r.original_attention.shape == (4, n, n)
    assert r.heads == (0, 1, 2, 3) and r.attentions.min() > 0      # encoders see every key
    for i in range(2):
        p = model.predict(TEXT, attention_override=r.override(i))[0]
        assert float(tvd(p, r.original)) == pytest.approx(r.tvd[i], abs=1e-5)


def test_seeded_and_model_untouched(gpt2):
    before = {k: v.clone() for k, v in gpt2.module.state_dict().items()}
    a = search(gpt2, TEXT, layer=0, head=0, k=2, steps=3, seed=7, progress=False)
    b = search(gpt2, TEXT, layer=0, head=0, k=2, steps=3, seed=7, progress=False)
    c = search(gpt2, TEXT, layer=0, head=0, k=2, steps=3, seed=8, progress=False)
    np.testing.assert_array_equal(a.attentions, b.attentions)
    assert np.abs(a.attentions - c.attentions).max() > 1e-3
    assert all(torch.equal(before[k], v) for k, v in gpt2.module.state_dict().items())
    assert all(p.grad is None for p in gpt2.module.parameters())


def test_callback_sees_progress_and_can_cancel(gpt2):
    seen = []

    def callback(step, so_far):
        seen.append((step, so_far.steps_run, so_far.attentions.shape))
        return step < 2                                  # False at step 2: stop

    r = search(gpt2, TEXT, layer=1, head=0, k=2, steps=50, callback=callback, progress=False)
    assert r.cancelled and r.steps_run == 3 and [s[:2] for s in seen] == [(0, 1), (1, 2), (2, 3)]
    assert seen[0][2] == r.attentions.shape


@pytest.mark.parametrize("arch", ARCHS)
def test_prefix_replay_skips_earlier_blocks_and_changes_nothing(arch):
    model = tiny_model(arch)
    batch = model.batch([model.encode(TEXT)] * 2)
    override = {(1, 0): torch.softmax(torch.randn(2, batch["input_ids"].shape[1], batch["input_ids"].shape[1]), -1)}
    prefix = _Prefix.capture(model, 1, batch)
    assert len(prefix.blocks) == 1 and prefix.blocks[0] is layer_blocks(model)[0]
    with torch.no_grad(), prefix.replay():
        replayed, hook = model.forward(batch, overrides=override, capture=True)
    assert sorted(hook.weights) == [1]                    # layer 0's attention did not run
    with torch.no_grad():
        full, hook = model.forward(batch, overrides=override, capture=True)
    assert sorted(hook.weights) == [0, 1]                 # and runs again outside the replay
    torch.testing.assert_close(model.output_logits(replayed, batch), model.output_logits(full, batch))
    assert all("forward" not in vars(b) for b in layer_blocks(model))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"eps": 0.0}, ValueError, "eps"), ({"eps": -1.0}, ValueError, "eps"), ({"eps": 1.5}, ValueError, "eps"),
    ({"k": 0}, ValueError, "k "), ({"steps": 0}, ValueError, "steps"), ({"lr": 0.0}, ValueError, "lr"),
    ({"layer": 2}, IndexError, r"0\.\.1"), ({"head": 4}, IndexError, r"0\.\.3"),
    ({"head": "mean"}, ValueError, "'all'")])
def test_bad_inputs(gpt2, kwargs, error, match):
    args = {"layer": 0, "head": 0, "steps": 1, "progress": False, **kwargs}
    with pytest.raises(error, match=match):
        search(gpt2, TEXT, **args)
