"""The classic single-attention classifier (Jain & Wallace) behind the ``Model`` interface:
tiny untrained instances (every encoder), one tiny real training run through the zoo cache,
and the real Rotten Tomatoes model (integration)."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from analysis import zoo
from analysis.efficient import decompose
from analysis.models.model import InputError
from analysis.zoo import attention_classifier as ac
from analysis.zoo.codepath import versioned

ENCODERS = ac.ENCODERS
SHORT = "a gorgeous, witty, seductive movie."
# 40+ word pieces: more tokens than the tiny models' 16 state dimensions, so the null space is not empty
LONG = ("the plot is thin and the acting is wooden, yet the photography is gorgeous, the score soars and "
        "the last twenty minutes are as moving as anything this year, which almost saves it")


@functools.lru_cache(maxsize=None)
def tiny(encoder: str = "lstm") -> ac.AttentionClassifier:
    return ac.tiny(encoder, dim=16, seed=0)


@pytest.fixture(params=ENCODERS)
def model(request) -> ac.AttentionClassifier:
    return tiny(request.param)


# --------------------------------------------------------------------------- trace and predict
def test_trace_has_the_model_interface_shapes(model):
    t = model.trace(SHORT)
    n = t.n_tokens
    assert (model.n_layers, model.n_heads, model.labels, model.task) == (1, 1, ("negative", "positive"),
                                                                         "sequence-classification")
    assert t.attentions.shape == (1, 1, n, n) and t.values.shape == (1, 1, n, 16)
    assert t.hidden_states.shape == (2, n, 16) and t.logits.shape == (2,) and t.probs.shape == (2,)
    assert t.tokens[0] == "[CLS]" and t.tokens[-1] == "[SEP]" and t.special[0] and t.special[-1]
    assert not t.special[1:-1].any() and t.labels == ("negative", "positive") and not t.is_causal
    np.testing.assert_allclose(t.attentions.sum(-1), 1.0, atol=1e-6)
    a = t.attentions[0, 0]
    np.testing.assert_array_equal(a, np.broadcast_to(a[0], a.shape))      # one distribution, every row
    np.testing.assert_array_equal(t.values[0, 0], t.hidden_states[1])      # values = encoder states
    assert "1 layer x 1 head" in repr(model)


def test_predict_is_batched_and_matches_trace(model):
    texts = [SHORT, LONG, "dull."]
    probs = model.predict(texts, batch_size=2)
    assert probs.shape == (3, 2)
    for text, p in zip(texts, probs):
        np.testing.assert_allclose(p, model.trace(text).probs, atol=1e-5)   # padding changes nothing


def test_override_with_own_attention_changes_nothing_and_others_do(model):
    t = model.trace(SHORT)
    same = model.trace(SHORT, attention_override={(0, 0): t.attentions[0, 0]})
    np.testing.assert_allclose(same.logits, t.logits, atol=1e-5)
    n = t.n_tokens
    other = np.zeros((n, n), dtype=np.float32)
    other[:, int(np.argmin(t.attentions[0, 0, 0]))] = 1.0
    moved = model.trace(SHORT, attention_override={(0, 0): other})
    assert np.abs(moved.logits - t.logits).max() > 1e-3
    np.testing.assert_array_equal(moved.attentions[0, 0], other)            # the trace shows the override
    assert moved.overridden == ((0, 0),)
    # the model uses the mean of the override's rows
    mixed = np.tile(t.attentions[0, 0, :1], (n, 1))
    mixed[: n // 2] = other[: n // 2]
    mean_row = np.tile(mixed.mean(0), (n, 1))
    np.testing.assert_allclose(model.predict(SHORT, attention_override={(0, 0): mixed}),
                               model.predict(SHORT, attention_override={(0, 0): mean_row}), atol=1e-6)
    # batched override: one matrix per copy of the input
    stack = np.stack([t.attentions[0, 0], other])
    probs = model.predict([SHORT, SHORT], attention_override={(0, 0): stack})
    np.testing.assert_allclose(probs[0], t.probs, atol=1e-5)
    np.testing.assert_allclose(probs[1], moved.probs, atol=1e-5)


def test_bad_overrides_and_removals_get_clear_errors():
    model = tiny()
    n = model.trace(SHORT).n_tokens
    with pytest.raises(InputError, match="expected"):
        model.trace(SHORT, attention_override={(0, 0): np.eye(n + 1)})
    with pytest.raises(InputError, match="layer 1 is out of range 0..0"):
        model.trace(SHORT, attention_override={(1, 0): np.eye(n)})
    with pytest.raises(InputError, match="head 1 is out of range 0..0"):
        model.predict(SHORT, attention_override={(0, 1): np.eye(n)})
    with pytest.raises(InputError, match="cannot remove positions"):
        model.trace(SHORT, remove=[n])
    with pytest.raises(IndexError, match="0..0"):
        model.trace(SHORT).check_head(1, 0)


def test_token_removal_deletes_or_masks(model):
    t = model.trace(SHORT)
    deleted = model.trace(SHORT, remove=[2])
    assert deleted.n_tokens == t.n_tokens - 1 and "gorgeous" not in deleted.tokens and deleted.removed == (2,)
    masked = model.trace(SHORT, remove=[2], removal="mask")
    assert masked.tokens[2] == "[MASK]" and masked.n_tokens == t.n_tokens
    padded = model.trace(SHORT, remove=[2], removal="pad")
    assert padded.attentions[0, 0, 0, 2] == 0.0                           # a pad is never attended
    np.testing.assert_allclose(padded.attentions.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(model.predict([SHORT], remove=[2])[0], deleted.probs, atol=1e-5)


# --------------------------------------------------------------------------- efficient attention
@pytest.mark.parametrize("text", [SHORT, LONG])
def test_efficient_attention_identities_and_invariance(model, text):
    t = model.trace(text)
    n = t.n_tokens
    res = decompose(t, 0, 0, basis="value")
    a, h = t.attentions[0, 0].astype(np.float64), t.values[0, 0].astype(np.float64)
    np.testing.assert_allclose(res.effective + res.null, a, atol=1e-12)
    np.testing.assert_allclose(res.effective @ h, a @ h, atol=1e-5)
    np.testing.assert_allclose(res.null @ h, 0.0, atol=1e-5)
    assert res.nullity == n - np.linalg.matrix_rank(h.astype(np.float32))
    if text == LONG:
        assert n > 16 and res.nullity >= n - 16 > 0
    swapped = model.trace(text, attention_override={(0, 0): res.effective})
    np.testing.assert_allclose(swapped.logits, t.logits, atol=1e-5)
    null_added = model.trace(text, attention_override={(0, 0): a + 3.0 * res.null})
    np.testing.assert_allclose(null_added.logits, t.logits, atol=1e-4)


def test_value_output_basis_is_states_times_decoder(model):
    t = model.trace(LONG)
    res = decompose(t, 0, 0, basis="value_output", model=model)
    u = model.module.decoder.weight.detach().double().numpy()               # [2, D]
    assert res.rank == 2 and res.nullity == t.n_tokens - 2
    np.testing.assert_allclose(res.effective @ t.values[0, 0] @ u.T, t.attentions[0, 0] @ t.values[0, 0] @ u.T,
                               atol=1e-4)
    swapped = model.trace(LONG, attention_override={(0, 0): res.effective})
    np.testing.assert_allclose(swapped.logits, t.logits, atol=1e-5)


def test_interventions_run_on_the_classifier():
    from analysis import interventions

    model = tiny("lstm")
    res = interventions.efficient(model, LONG, layer=0, head=0)
    assert np.abs(res.logits - res.original_logits).max() < 1e-5
    moved = interventions.uniform(model, LONG, layer=0, head=0)
    assert np.abs(moved.probs - moved.original).max() > 1e-4


# --------------------------------------------------------------------------- adversarial search
def test_adversarial_search_runs_and_predict_reproduces_its_tvd():
    from analysis.adversarial import search

    model = tiny("lstm")
    res = search(model, SHORT, layer=0, head=0, k=2, steps=20, progress=False)
    n = model.trace(SHORT).n_tokens
    assert res.attentions.shape == (2, n, n) and res.tvd.shape == (2,) and res.jsd.shape == (2,)
    np.testing.assert_allclose(res.attentions.sum(-1), 1.0, atol=1e-5)
    # one attention distribution: the adversary's rows stay tied (the model only sees one)
    np.testing.assert_allclose(res.attentions, np.repeat(res.attentions[:, :1], n, axis=1), atol=1e-7)
    y0 = model.predict(SHORT)[0]
    for i in range(2):
        p = model.predict(SHORT, attention_override=res.override(i))[0]
        assert abs(0.5 * np.abs(p - y0).sum() - res.tvd[i]) < 1e-5


def test_gradients_reach_the_override_only():
    model = tiny("cnn")
    enc = model.encode(SHORT)
    n = len(enc.input_ids)
    theta = torch.zeros((3, n, n), requires_grad=True)
    batch = model.batch([enc] * 3)
    out, hook = model.forward(batch, overrides=model.check_overrides({(0, 0): torch.softmax(theta, -1)}, [n] * 3),
                              capture=True)
    logits = model.output_logits(out, batch)
    (grad,) = torch.autograd.grad(logits[:, 1].sum(), [theta])
    assert logits.shape == (3, 2) and grad.abs().sum() > 0
    assert hook.weights[0].shape == (3, 1, n, n) and hook.values[0].shape == (3, 1, n, 16)


# --------------------------------------------------------------------------- zoo: training and cache
TINY_RECIPE = ac.ClassifierRecipe(name="tiny-ac", hidden=4, attention_dim=4, max_length=32, epochs=1,
                                  batch_size=50, max_train=250, pretrained_embeddings=False)


def test_a_tiny_training_run_is_cached_loaded_and_rebuilt_when_corrupt(tmp_path, monkeypatch):
    from analysis import load_model

    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path))
    calls = []

    threads = []

    def build(out, progress):
        calls.append(out)
        threads.append(torch.get_num_threads())
        return ac.train(out, TINY_RECIPE, progress=progress)

    monkeypatch.setitem(ac.RECIPES, "tiny-ac", TINY_RECIPE)
    monkeypatch.setitem(zoo.ZOO, "tiny-ac", (TINY_RECIPE.version, build))
    before = torch.get_num_threads()
    torch.set_num_threads(1)                 # the build trains with BUILD_THREADS whatever the caller has
    try:
        model = load_model("tiny-ac", progress=False)
        assert torch.get_num_threads() == 1  # and gives the caller's count back
    finally:
        torch.set_num_threads(before)
    assert isinstance(model, ac.AttentionClassifier) and model.name == "tiny-ac" and len(calls) == 1
    assert threads == [zoo.BUILD_THREADS] == [model.info["torch_threads"]] == [2]
    info = model.info
    assert 0.0 <= info["test_accuracy"] <= 1.0 and info["train_seconds"] > 0 and info["n_train"] == 225
    assert info["n_validation"] == 25 and info["version"] == TINY_RECIPE.version
    assert {"model.pt", "classifier.json", "tokenizer.json"} <= set(info["files"])
    t = model.trace(SHORT)
    assert t.attentions.shape == (1, 1, t.n_tokens, t.n_tokens) and t.values.shape[-1] == 8
    again = load_model("tiny-ac", progress=False)                       # cached: no second build
    assert len(calls) == 1
    np.testing.assert_allclose(again.trace(SHORT).logits, t.logits, atol=1e-6)
    (zoo.model_dir("tiny-ac") / "model.pt").write_bytes(b"corrupt")
    with pytest.warns(UserWarning, match="incomplete, corrupt or outdated"):
        rebuilt = load_model("tiny-ac", progress=False)
    assert len(calls) == 2                                               # seeded: the same model again
    np.testing.assert_allclose(rebuilt.trace(SHORT).logits, t.logits, atol=1e-5)


def test_registry_names_and_bad_encoder():
    assert {"attention-classifier-rt", "attention-classifier-imdb"} <= set(zoo.ZOO)
    assert zoo.ZOO["attention-classifier-rt"][0] == versioned(ac.RECIPES["attention-classifier-rt"].version)
    assert zoo.BUILDERS["attention-classifier-rt"][0] == ac.RECIPES["attention-classifier-rt"].version
    with pytest.raises(ValueError, match="encoder must be one of lstm, cnn, average"):
        ac.AttentionClassifierModule(10, encoder="gru")


# --------------------------------------------------------------------------- the real model
@pytest.mark.integration
def test_rotten_tomatoes_classifier_meets_its_target():
    from analysis import load_dataset, load_model

    model = load_model("attention-classifier-rt")
    assert isinstance(model, ac.AttentionClassifier)
    assert model.info["test_accuracy"] >= 0.75 and model.info["n_test"] == 1066
    test = load_dataset("rotten_tomatoes", "test").sample(300, seed=1)
    accuracy = float(np.mean(model.predict(list(test.texts)).argmax(1) == test.labels))
    assert accuracy >= 0.72
    assert model.trace("a gorgeous, witty, seductive movie.").label == "positive"
    assert model.trace("a dull, lifeless and tedious mess.").label == "negative"
