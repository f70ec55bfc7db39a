"""Wiegreffe & Pinter's model-consistent adversary, on a tiny untrained single-attention classifier."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from analysis.adversarial_model import ModelConsistentAdversary, train_adversary
from analysis.data import load_dataset
from analysis.zoo import attention_classifier as ac


@functools.lru_cache(maxsize=None)
def base() -> ac.AttentionClassifier:
    return ac.tiny("lstm", dim=16, seed=0)


@functools.lru_cache(maxsize=None)
def texts() -> tuple[str, ...]:
    return load_dataset("rotten_tomatoes", "train").sample(48, seed=0).texts


@functools.lru_cache(maxsize=None)
def trained(lam: float, trainable: str = "attention") -> ModelConsistentAdversary:
    return train_adversary(base(), list(texts()), lam=lam, epochs=4, lr=5e-2, batch_size=16,
                           trainable=trainable, seed=0, progress=False)


def _state(model):
    return {k: v.clone() for k, v in model.module.state_dict().items()}


def test_adversary_moves_attention_and_leaves_base_alone():
    before = _state(base())
    res = trained(1.0)
    after = base().module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)                # base untouched
    n = len(texts())
    assert res.tvd.shape == res.jsd.shape == res.kl.shape == res.same_prediction.shape == (n,)
    assert res.jsd.mean() > 0.05 and res.kl.mean() > 0.1                         # attention moved
    assert len(res.loss) == 4 * 3 and res.loss[-1] < res.loss[0]
    assert "mean attention JSD" in repr(res)


@pytest.mark.integration
def test_the_prediction_term_binds_on_a_trained_classifier():
    # On a trained classifier (confident predictions) an adversary with lam = 0.1 moves attention and
    # keeps the output far better than a control that weighs attention change 1000x more. Measured
    # (seeds 0-5, this recipe): TVD 0.05-0.11 against the control's 0.19 (ratio 0.24-0.60), same
    # prediction 92-98% against 79%, JSD 0.15-0.49 bits. On the untrained tiny model of the tests
    # above this comparison was machine-dependent (its outputs sit near 0.5), so it is made here.
    from analysis import load_model

    model = load_model("attention-classifier-rt", progress=False)
    kwargs = dict(epochs=4, lr=1e-2, batch_size=16, trainable="attention", seed=0, progress=False)
    res = train_adversary(model, list(texts()), lam=0.1, **kwargs)
    control = train_adversary(model, list(texts()), lam=100.0, **kwargs)
    assert res.jsd.mean() > 0.1                                       # attention moved
    assert res.tvd.mean() < 0.75 * control.tvd.mean()                 # the prediction term binds
    assert res.same_prediction.mean() >= control.same_prediction.mean() + 0.1
    assert control.jsd.mean() > res.jsd.mean()


def test_attention_only_adversary_shares_encoder_and_decoder():
    res = trained(1.0)
    adv, orig = res.model.module.state_dict(), base().module.state_dict()
    changed = {k for k in adv if not torch.equal(adv[k], orig[k])}
    assert changed and all(k.startswith(("attention.proj", "attention.v")) for k in changed)


def test_the_adversary_has_the_model_interface_and_reproduces_its_numbers():
    res = trained(1.0)
    text = texts()[0]
    t, t0 = res.model.trace(text), base().trace(text)
    assert t.attentions.shape == t0.attentions.shape == (1, 1, t.n_tokens, t.n_tokens)
    a, a0 = t.attentions[0, 0, 0].astype(np.float64), t0.attentions[0, 0, 0].astype(np.float64)
    assert abs(0.5 * np.abs(a - a0).sum() - 0) > 1e-3
    assert abs(0.5 * np.abs(t.probs - t0.probs).sum() - res.tvd[0]) < 1e-5
    # the base's decoder and states with the adversary's attention give the adversary's output
    np.testing.assert_allclose(base().trace(text, attention_override={(0, 0): t.attentions[0, 0]}).probs,
                               t.probs, atol=1e-5)


def test_lam_zero_only_keeps_the_prediction():
    res = trained(0.0)
    assert res.tvd.max() < 1e-6 and res.same_prediction.all()


def test_bad_input_gets_clear_errors():
    from tests.helpers import tiny_model

    with pytest.raises(TypeError, match="single-attention classifier"):
        train_adversary(tiny_model("bert"), ["good"], progress=False)
    with pytest.raises(ValueError, match="lam must be"):
        train_adversary(base(), ["good"], lam=-1.0, progress=False)
    with pytest.raises(ValueError, match="trainable must be one of attention, all"):
        train_adversary(base(), ["good"], trainable="decoder", progress=False)
    with pytest.raises(ValueError, match="non-empty list of texts"):
        train_adversary(base(), [], progress=False)
