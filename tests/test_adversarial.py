"""Adversarial attention search: constraints, reproduction through model.predict, the efficient
comparison, cancellation, determinism and bad input (short searches on tiny models)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from analysis.adversarial import _Prefix, layer_blocks, output_row_weights, search
from analysis.efficient import decompose
from analysis.metrics import tvd
from tests.helpers import ARCHS, tiny_model

TEXT = "A wonderful little film, moving and funny, with a great cast."
EPS = 0.05


@pytest.fixture(scope="module")
def gpt2(tiny_models):
    return tiny_models("gpt2")


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


@pytest.mark.parametrize("encoder", ["lstm", "cnn"])
def test_classifier_encoder_states_are_replayed_and_change_nothing(encoder):
    """A single-attention classifier's encoder states do not depend on the attention: the search
    replays them (the encoder does not run inside the replay) and its JSD, taken on the one shared
    row, equals scipy's on the full matrices."""
    from analysis.zoo.attention_classifier import tiny

    model = tiny(encoder)
    batch = model.batch([model.encode(TEXT)] * 2)
    n = batch["input_ids"].shape[1]
    override = {(0, 0): torch.softmax(torch.randn(2, 1, n), -1).expand(2, n, n)}
    prefix = _Prefix.capture(model, 0, batch)
    assert prefix.blocks == [model.module.encoder]
    inner = next(m for m in model.module.encoder.modules() if isinstance(m, (torch.nn.LSTM, torch.nn.Conv1d)))
    calls = []
    handle = inner.register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad(), prefix.replay():
            replayed, _ = model.forward(batch, overrides=override)
        assert calls == []                                 # the encoder did not run
        with torch.no_grad():
            full, _ = model.forward(batch, overrides=override)
        assert calls                                       # and runs again outside the replay
    finally:
        handle.remove()
    torch.testing.assert_close(model.output_logits(replayed, batch), model.output_logits(full, batch))
    assert "forward" not in vars(model.module.encoder)
    r = search(model, TEXT, layer=0, head=0, k=3, eps=EPS, steps=15, progress=False)
    for i in range(3):
        expect = np.mean([jensenshannon(r.attentions[i, q], r.original_attention[q], base=2) ** 2 for q in range(n)])
        assert r.jsd[i] == pytest.approx(expect, abs=1e-6)
        p = model.predict(TEXT, attention_override=r.override(i))[0]
        assert r.tvd[i] == pytest.approx(float(tvd(p, r.original)), abs=1e-6)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"eps": 0.0}, ValueError, "eps"), ({"eps": -1.0}, ValueError, "eps"), ({"eps": 1.5}, ValueError, "eps"),
    ({"k": 0}, ValueError, "k "), ({"steps": 0}, ValueError, "steps"), ({"lr": 0.0}, ValueError, "lr"),
    ({"layer": 2}, IndexError, r"0\.\.1"), ({"head": 4}, IndexError, r"0\.\.3"),
    ({"head": "mean"}, ValueError, "'all'")])
def test_bad_inputs(gpt2, kwargs, error, match):
    args = {"layer": 0, "head": 0, "steps": 1, "progress": False, **kwargs}
    with pytest.raises(error, match=match):
        search(gpt2, TEXT, **args)


# --------------------------------------------------------------------------- where it bites (issue 13)
def _uniform_change(model, layer, head, constraint):
    """The output change with (layer, head) replaced by (causal) uniform attention, via model.trace."""
    base = model.trace(TEXT)
    n = base.n_tokens
    u = np.tril(np.ones((n, n))) if model.is_causal else np.ones((n, n))
    z = model.trace(TEXT, attention_override={(layer, head): u / u.sum(1, keepdims=True)}).logits
    if constraint == "logit":
        return float(np.abs(np.asarray(z, np.float64) - np.asarray(base.logits, np.float64)).max())
    p = lambda x: np.exp(x - x.max()) / np.exp(x - x.max()).sum()        # noqa: E731
    return float(tvd(p(np.asarray(z, np.float64)), p(np.asarray(base.logits, np.float64))))


@pytest.mark.parametrize("arch", ["gpt2", "bert"])
def test_logit_constraint_holds_on_every_returned_adversary(arch):
    model = tiny_model(arch)
    r = search(model, TEXT, layer=1, head=1, k=4, eps="relative", eps_fraction=0.5, constraint="logit",
               steps=60, lr=0.1, progress=False)
    ablation = _uniform_change(model, 1, 1, "logit")
    assert r.ablation_change == pytest.approx(ablation, rel=1e-4, abs=1e-6)
    assert r.eps == pytest.approx(0.5 * ablation, rel=1e-4) and "relative: 0.5 x" in repr(r)
    assert "|logit change| <=" in repr(r) and r.constraint == "logit"
    z0 = np.asarray(model.trace(TEXT).logits, np.float64)
    assert r.feasible.any()
    np.testing.assert_array_equal(r.feasible, r.logit_change <= r.eps)
    np.testing.assert_array_equal(r.output_change, r.logit_change)
    for i in range(r.k):
        z = np.asarray(model.trace(TEXT, attention_override=r.override(i)).logits, np.float64)
        assert np.abs(z - z0).max() == pytest.approx(r.logit_change[i], abs=1e-5)
        if r.feasible[i]:
            assert np.abs(z - z0).max() <= r.eps + 1e-5          # the bound holds on the model itself
    assert r.feasible_attentions.shape[0] == r.feasible.sum() >= 1


def test_relative_tvd_eps_and_absolute_rule_in_repr(gpt2, one_head):
    r = search(gpt2, TEXT, layer=1, head=1, k=2, eps="relative", eps_fraction=0.25, steps=5, progress=False)
    assert r.eps == pytest.approx(0.25 * _uniform_change(gpt2, 1, 1, "tvd"), rel=1e-4, abs=1e-7)
    np.testing.assert_array_equal(r.feasible, r.tvd <= r.eps)
    assert one_head.constraint == "tvd" and "(absolute)" in repr(one_head) and f"TVD <= {EPS:g}" in repr(one_head)


@pytest.mark.parametrize("arch, target", [("bert", 0), ("gpt2", -1)])
def test_row_weights_final_layer_target_row_alone(arch, target):
    model = tiny_model(arch)
    r = search(model, TEXT, layer=1, head=0, k=2, eps=0.5, steps=5, progress=False)
    n = len(r.tokens)
    w = r.row_weights
    assert w.shape == (n,) and w.sum() == pytest.approx(1.0)
    others = np.delete(np.arange(n), target % n)
    assert np.all(w[others] == 0) and w[target] == pytest.approx(1.0)   # only the pooled row reaches the output
    t = target % n
    d = r.attentions - r.original_attention
    np.testing.assert_allclose(r.output_raw_distance, np.linalg.norm(d[:, t], axis=-1), rtol=1e-6)
    np.testing.assert_allclose(r.output_efficient_distance,
                               np.linalg.norm((r.efficient - r.original_efficient)[:, t], axis=-1), rtol=1e-6)
    rows = [jensenshannon(r.attentions[i, t], r.original_attention[t], base=2) ** 2 for i in range(r.k)]
    np.testing.assert_allclose(r.output_jsd, rows, atol=1e-6)
    np.testing.assert_allclose(r.output_raw_row_tvd, 0.5 * np.abs(d[:, t]).sum(-1), rtol=1e-6)
    assert "output rows: JSD" in repr(r)


def test_row_weights_earlier_layer_spread_and_match_the_gradient():
    """Layer 0 of a 2-layer BERT: every row reaches the output through layer 1; the weights are the
    norms of d logits / d o_q, checked against finite differences of an attention change along V."""
    model = tiny_model("bert")
    tr = model.trace(TEXT)
    w = output_row_weights(model, tr, 0, [0])[0]
    assert (w > 0).sum() > len(w) // 2 and w.sum() == pytest.approx(1.0)
    # finite differences: moving row q's attention by delta changes o_q by delta V; the first-order logit
    # change is J_q (delta V). Recover |J_q| ratio between two rows by directional derivatives.
    a = np.asarray(tr.attentions[0, 0], np.float64)
    v = np.asarray(tr.values[0, 0], np.float64)
    z0 = np.asarray(tr.logits, np.float64)
    rng = np.random.default_rng(0)
    q1, q2 = int(np.argmax(w)), int(np.argmin(w))
    assert w[q1] > 5 * w[q2]
    grads = []
    for q in (q1, q2):
        d = rng.normal(size=len(a))
        d -= d.mean()                                    # keeps the row sum; small enough to stay >= 0
        d *= 1e-3 * a[q].min() / np.abs(d).max()
        a2 = a.copy()
        a2[q] += d
        z = np.asarray(model.trace(TEXT, attention_override={(0, 0): a2}).logits, np.float64)
        grads.append(np.abs(z - z0).max() / np.linalg.norm(d @ v))
    assert grads[0] > grads[1]                          # the heavier row moves the logits more per unit of o_q


def test_irrelevant_head_has_no_relative_eps_and_nan_output_rows():
    model = tiny_model("bert")
    d = model.module.config.hidden_size // model.n_heads
    with torch.no_grad():
        model.module.bert.encoder.layer[1].attention.output.dense.weight[:, 2 * d:3 * d] = 0.0
    with pytest.raises(ValueError, match="does not reach the output"):
        search(model, TEXT, layer=1, head=2, k=2, eps="relative", steps=2, progress=False)
    r = search(model, TEXT, layer=1, head=2, k=2, eps=0.1, steps=2, progress=False)
    assert np.all(r.row_weights == 0) and np.isnan(r.output_jsd).all() and np.isnan(r.output_efficient_share).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"constraint": "kl"}, "constraint must be one of"), ({"constraint": "logit", "eps": 0.0}, "eps"),
    ({"constraint": "logit", "eps": -2.0}, "eps"), ({"eps": "rel"}, "'relative'"),
    ({"eps": "relative", "eps_fraction": 1.0}, "eps_fraction"), ({"eps": "relative", "eps_fraction": 0}, "eps_fraction"),
    ({"constraint": "logit", "head": 9}, r"0\.\.3")])
def test_bad_constraint_inputs(gpt2, kwargs, match):
    args = {"layer": 0, "head": 0, "steps": 1, "progress": False, **kwargs}
    with pytest.raises((ValueError, IndexError), match=match):
        search(gpt2, TEXT, **args)


def test_logit_bound_may_exceed_one(gpt2):
    r = search(gpt2, TEXT, layer=0, head=0, k=2, eps=2.0, constraint="logit", steps=2, progress=False)
    assert r.eps == 2.0 and r.constraint == "logit"
