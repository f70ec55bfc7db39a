"""One model contract: every kind (Hugging Face transformer, single-attention classifier,
recommender) is a ``TracedModel`` whose ``trace``/``predict`` come from the base; a new kind
written here as one small subclass gets trace, predict, overrides, removal and selective
capture for free; capabilities are declared, with defaults."""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from torch import nn

import analysis
from analysis.models import ForwardOutput, InputError, Model, TracedModel
from analysis.models.attention import AttentionHook
from analysis.models.base import Encoded
from analysis.models.trace import HeadArray, NotCapturedError
from analysis.zoo import attention_classifier as ac
from analysis.zoo.bert4rec import ItemVocabulary, Recommender, build_module

from tests.helpers import tiny_model

TEXT = "the movie was surprisingly good, and the actors were great."
HISTORY = (3, 5, 7, 1, 2, 9)


@functools.lru_cache(maxsize=None)
def classifier() -> ac.AttentionClassifier:
    return ac.tiny("cnn", dim=16, seed=0)


@functools.lru_cache(maxsize=None)
def recommender() -> Recommender:
    vocab = ItemVocabulary(30, {i: f"film {i}" for i in range(30)})
    return Recommender(build_module(30, hidden=16, layers=2, heads=2, max_len=12, dropout=0.0, seed=1), vocab,
                       name="tiny-rec")


def kinds() -> dict[str, tuple[TracedModel, object]]:
    return {"transformer": (tiny_model("bert"), TEXT), "attention-classifier": (classifier(), TEXT),
            "recommender": (recommender(), HISTORY)}


# --------------------------------------------------------------------------- the three kinds
@pytest.mark.parametrize("kind", ["transformer", "attention-classifier", "recommender"])
def test_every_kind_is_a_traced_model_with_typed_forward(kind):
    model, x = kinds()[kind]
    assert isinstance(model, TracedModel) and model.kind == kind
    enc = model.encode(x)
    batch = model.batch([enc, enc])
    with torch.no_grad():
        out, hook = model.forward(batch, capture=True, hidden_states=True)
    assert type(out) is ForwardOutput and type(hook) is AttentionHook     # no stand-ins
    n = len(enc.input_ids)
    assert hook.weights[0].shape[:2] == (2, model.n_heads) and hook.weights[0].shape[-2:] == (n, n)
    # predict is the softmax of output_logits, trace records the same numbers for one input
    probs = model.predict(x)
    np.testing.assert_allclose(probs[0], torch.softmax(model.output_logits(out, batch)[0], -1).numpy(), atol=1e-6)
    t = model.trace(x)
    p = t.probs if t.probs.ndim == 1 else t.probs[-1]
    np.testing.assert_allclose(p, probs[0], atol=1e-5)
    np.testing.assert_allclose(np.asarray(t.attentions)[0], hook.weights[0][0].numpy(), atol=1e-6)


def test_attention_classifier_is_not_a_transformer_and_matches_its_module():
    model = classifier()
    assert not isinstance(model, Model) and model.query_independent and not model.abductive
    t = model.trace(TEXT)
    ids = torch.as_tensor(t.input_ids)[None]
    with torch.no_grad():
        direct = model.module(ids, torch.ones_like(ids))
    np.testing.assert_allclose(t.logits, direct["logits"][0].numpy(), atol=1e-6)
    np.testing.assert_allclose(t.attentions[0, 0], np.broadcast_to(direct["attention"][0].numpy(), (t.n_tokens,) * 2),
                               atol=1e-7)
    np.testing.assert_allclose(t.values[0, 0], direct["states"][0].numpy(), atol=1e-7)
    # an override is shown as given and used through the mean of its rows
    n = t.n_tokens
    a = np.random.default_rng(0).dirichlet(np.ones(n), size=n).astype(np.float32)
    o = model.trace(TEXT, attention_override={(0, 0): a})
    with torch.no_grad():
        direct = model.module(ids, torch.ones_like(ids), torch.as_tensor(a))
    np.testing.assert_allclose(o.logits, direct["logits"][0].numpy(), atol=1e-6)
    np.testing.assert_array_equal(o.attentions[0, 0], a)
    assert o.overridden == ((0, 0),)


def test_recommender_gets_selective_capture_from_the_base():
    rec = recommender()
    assert rec.abductive and rec.task == "recommendation" and not rec.query_independent and rec.input_kind == "items"
    full = rec.trace(HISTORY, append=4)
    part = rec.trace(HISTORY, append=4, heads=[(1, 0)])
    assert isinstance(part.attentions, HeadArray) and part.captured == ((1, 0),)
    np.testing.assert_array_equal(part.attentions[1, 0], full.attentions[1, 0])
    np.testing.assert_array_equal(part.logits, full.logits)
    assert part.appended == 4 and part.items == full.items and part.text == HISTORY
    with pytest.raises(NotCapturedError):
        part.attentions[0, 1]
    trace, target = rec.explanation_trace(HISTORY, 4)
    assert target == len(HISTORY) and trace.tokens[-1] == "film 4"


def test_capabilities_have_defaults():
    bert = tiny_model("bert")
    assert (TracedModel.query_independent, TracedModel.abductive) == (False, False)
    assert not bert.query_independent and not bert.abductive and bert.kind == "transformer"
    with pytest.raises(NotImplementedError, match="abductive"):
        bert.explanation_trace(TEXT, 0)
    assert analysis.TracedModel is TracedModel


# --------------------------------------------------------------------------- a new kind in one subclass
class ToyNet(nn.Module):
    """Embeddings [b, n, D] -> one multi-head self-attention -> a linear read-out of position 0."""

    def __init__(self, vocab: int = 40, dim: int = 8, heads: int = 2, classes: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.heads, self.d = heads, dim // heads
        self.emb = nn.Embedding(vocab, dim)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, classes)
        with torch.no_grad():
            self.q.weight.mul_(4.0)

    def split(self, x: torch.Tensor) -> torch.Tensor:        # [b, n, D] -> [b, H, n, d]
        return x.view(x.shape[0], x.shape[1], self.heads, self.d).transpose(1, 2)

    def weights(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:   # [b, H, n, n]
        scores = self.split(self.q(x)) @ self.split(self.k(x)).transpose(-1, -2) / math.sqrt(self.d)
        return torch.softmax(scores.masked_fill(mask[:, None, None, :] == 0, float("-inf")), -1)

    def read_out(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:        # logits [b, C]
        ctx = (w @ self.split(self.v(x))).transpose(1, 2).reshape(x.shape)
        return self.out(ctx[:, 0])


class Toy(TracedModel):
    """The whole of a new model kind: sizes, encode, forward, token display."""

    kind = "toy"
    n_layers, n_heads, max_length, labels = 1, 2, 16, ("a", "b", "c")

    def __init__(self) -> None:
        self.module = ToyNet().eval()

    def encode(self, text, *, remove=None, removal="delete", truncate=False) -> Encoded:
        ids = [1] + [2 + sum(map(ord, w)) % 38 for w in text.split()]
        return self.remove_positions(ids, remove, removal)

    def display_tokens(self, input_ids):
        return [f"t{i}" for i in input_ids]

    def forward(self, batch, *, overrides=None, capture=False, hidden_states=False, keep=None):
        hook = AttentionHook(overrides=dict(overrides or {}), capture=capture, keep=keep)
        x = self.module.emb(batch["input_ids"])
        v = self.module.split(self.module.v(x))
        w = hook.apply(0, self.module.weights(x, batch["attention_mask"]), v)
        return ForwardOutput(self.module.read_out(w, x), (x,) if hidden_states else None), hook


TOY_TEXT = "one two three four five"


def test_a_new_kind_traces_and_predicts_in_one_subclass():
    toy = Toy()
    t = toy.trace(TOY_TEXT)
    ids = torch.as_tensor(t.input_ids)[None]
    with torch.no_grad():
        x = toy.module.emb(ids)
        w = toy.module.weights(x, torch.ones_like(ids))
        logits = toy.module.read_out(w, x)[0]
    assert t.tokens[0] == "t1" and t.attentions.shape == (1, 2, 6, 6) and t.values.shape == (1, 2, 6, 4)
    np.testing.assert_allclose(t.attentions[0], w[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(t.logits, logits.numpy(), atol=1e-6)
    np.testing.assert_allclose(toy.predict(TOY_TEXT)[0], torch.softmax(logits, -1).numpy(), atol=1e-6)
    assert t.hidden_states.shape == (1, 6, 8) and t.labels == ("a", "b", "c") and t.model_name == ""
    # inputs of different lengths batch (right-padded, masked) like single ones
    both = toy.predict([TOY_TEXT, "one two"])
    np.testing.assert_allclose(both[1], toy.predict("one two")[0], atol=1e-6)


def test_a_new_kind_gets_overrides_removal_and_selective_capture():
    toy = Toy()
    t = toy.trace(TOY_TEXT)
    # overriding a head with its own attention changes nothing; a uniform head changes the output
    same = toy.trace(TOY_TEXT, attention_override={(0, 1): t.attentions[0, 1]})
    np.testing.assert_allclose(same.logits, t.logits, atol=1e-6)
    uniform = np.full((6, 6), 1 / 6)
    o = toy.trace(TOY_TEXT, attention_override={(0, -1): uniform})
    ids = torch.as_tensor(t.input_ids)[None]
    with torch.no_grad():
        x = toy.module.emb(ids)
        w = toy.module.weights(x, torch.ones_like(ids))
        w[:, 1] = torch.as_tensor(uniform, dtype=w.dtype)
        expected = toy.module.read_out(w, x)[0].numpy()
    np.testing.assert_allclose(o.logits, expected, atol=1e-6)
    assert o.overridden == ((0, 1),) and not np.allclose(o.logits, t.logits)
    np.testing.assert_allclose(toy.predict(TOY_TEXT, attention_override={(0, 1): uniform})[0],
                               o.probs, atol=1e-6)
    # removal: deleting word 2 is tracing the text without it; padding it out masks it
    np.testing.assert_allclose(toy.trace(TOY_TEXT, remove=[2]).logits, toy.trace("one three four five").logits,
                               atol=1e-6)
    padded = toy.trace(TOY_TEXT, remove=[2], removal="pad")
    assert padded.removed == (2,) and np.all(padded.attentions[0, :, :, 2] == 0)
    with pytest.raises(InputError, match="needs a mask token"):
        toy.trace(TOY_TEXT, remove=[2], removal="mask")
    # selective capture and the base's checks
    part = toy.trace(TOY_TEXT, heads=[(0, 1)])
    np.testing.assert_array_equal(part.attentions[0, 1], t.attentions[0, 1])
    with pytest.raises(NotCapturedError):
        part.attentions[0, 0]
    with pytest.raises(InputError, match="out of range 0..1"):
        toy.trace(TOY_TEXT, attention_override={(0, 2): uniform})
    with pytest.raises(InputError, match="layer 1 is out of range 0..0"):
        toy.trace(TOY_TEXT, attention_override={(1, 0): uniform})


def test_a_new_kind_has_the_default_capabilities():
    toy = Toy()
    assert not toy.query_independent and not toy.abductive and not toy.is_causal
    assert toy.attention_modules == () and toy.task == "sequence-classification" and toy.input_kind == "text"
    with pytest.raises(NotImplementedError):
        toy.explanation_trace(TOY_TEXT, 0)


def test_a_kind_without_its_steps_cannot_be_built():
    class NoForward(TracedModel):
        n_layers, n_heads, max_length, labels = 1, 1, 8, ()

        def encode(self, text, **kw):
            return Encoded([1], [1], ())

        def display_tokens(self, input_ids):
            return []

    with pytest.raises(TypeError, match="forward"):
        NoForward()


def test_threads_tracing_one_model_at_once_each_see_their_own_hook():
    # a panel's background job and the notebook may run the same model together: the hook one
    # thread attaches must neither replace nor remove the other's (formerly: KeyError / wrong heads)
    import threading

    model = tiny_model("bert")
    expected = model.trace(TEXT).attentions
    short = model.trace("a short one").attentions
    errors: list[BaseException] = []

    def work(text: str, want: np.ndarray) -> None:
        try:
            for _ in range(25):
                np.testing.assert_array_equal(model.trace(text).attentions, want)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(TEXT, expected)),
               threading.Thread(target=work, args=("a short one", short))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert not any(hasattr(m, "_attnlab_hook") for m in model.module.modules())
