"""Model loading, tracing, overrides and removal on tiny random models of every architecture."""
from __future__ import annotations


import numpy as np
import pytest
import torch
import transformers

from analysis.models import InputError, Model, load_model
from tests.helpers import tiny_hf_model, tiny_model, tokenizer

TEXT = "A wonderful little film, moving and funny."


def reference(arch: str, task: str = "sequence-classification"):
    """The same weights as tiny_model(arch), left as a plain Hugging Face eager model."""
    return tiny_hf_model(arch, task)


def hf_ids(text: str) -> torch.Tensor:
    return torch.tensor([tokenizer()(text)["input_ids"]])


def test_attentions_and_logits_equal_hugging_face(arch):
    model = tiny_model(arch)
    ref = reference(arch)
    trace = model.trace(TEXT)
    with torch.no_grad():
        out = ref(hf_ids(TEXT), output_attentions=True)
    expected = torch.stack([a[0] for a in out.attentions]).numpy()
    assert trace.attentions.shape == expected.shape == (2, 4, len(trace.tokens), len(trace.tokens))
    np.testing.assert_allclose(trace.attentions, expected, atol=1e-6)
    np.testing.assert_allclose(trace.logits, out.logits[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(trace.probs.sum(), 1.0, atol=1e-6)
    np.testing.assert_allclose(trace.attentions.sum(-1), 1.0, atol=1e-5)
    assert trace.values.shape == (2, 4, len(trace.tokens), 8)
    assert trace.hidden_states.shape == (3, len(trace.tokens), 32)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_decoder_attention_is_lower_triangular(arch):
    trace = tiny_model(arch).trace(TEXT)
    assert np.allclose(np.triu(trace.attentions, k=1), 0.0)
    assert tiny_model(arch).is_causal


def test_values_are_what_attention_multiplies_bert():
    model = tiny_model("bert")
    trace = model.trace(TEXT)
    for layer in range(2):
        sa = model.module.bert.encoder.layer[layer].attention.self
        x = torch.tensor(trace.hidden_states[layer])
        with torch.no_grad():
            v = sa.value(x).view(len(trace.tokens), 4, 8).transpose(0, 1).numpy()  # bias included
        np.testing.assert_allclose(trace.values[layer], v, atol=1e-5)


def test_values_gpt2_match_c_attn_split():
    model = tiny_model("gpt2")
    trace = model.trace(TEXT)
    block = model.module.transformer.h[1]
    with torch.no_grad():
        x = block.ln_1(torch.tensor(trace.hidden_states[1]))
        v = block.attn.c_attn(x)[:, 64:].view(len(trace.tokens), 4, 8).transpose(0, 1).numpy()
    np.testing.assert_allclose(trace.values[1], v, atol=1e-5)


def test_llama_values_repeat_grouped_heads():
    trace = tiny_model("llama").trace(TEXT)
    # 4 query heads share 2 key/value heads: heads (0, 1) and (2, 3) see the same values
    np.testing.assert_allclose(trace.values[:, 0], trace.values[:, 1])
    np.testing.assert_allclose(trace.values[:, 2], trace.values[:, 3])
    assert not np.allclose(trace.values[:, 0], trace.values[:, 2])


def test_predict_batches_like_single_traces(arch):
    model = tiny_model(arch)
    texts = [TEXT, "bad.", "An utterly forgettable and far too long sequel to nothing at all"]
    probs = model.predict(texts, batch_size=2)
    single = np.stack([model.trace(t).probs for t in texts])
    np.testing.assert_allclose(probs, single, atol=1e-5)


def test_override_with_own_attention_changes_nothing(arch):
    model = tiny_model(arch)
    trace = model.trace(TEXT)
    same = model.trace(TEXT, attention_override={(1, 2): trace.attentions[1, 2]})
    np.testing.assert_allclose(same.logits, trace.logits, atol=1e-5)
    assert same.overridden == ((1, 2),)


def test_override_takes_effect_downstream_only(arch):
    model = tiny_model(arch)
    trace = model.trace(TEXT)
    n = len(trace.tokens)
    uniform = np.tril(np.ones((n, n))) if model.is_causal else np.ones((n, n))
    uniform = uniform / uniform.sum(1, keepdims=True)
    edited = model.trace(TEXT, attention_override={(0, 1): uniform})
    np.testing.assert_allclose(edited.attentions[0, 1], uniform, atol=1e-6)
    np.testing.assert_allclose(edited.attentions[0, 0], trace.attentions[0, 0], atol=1e-6)
    assert not np.allclose(edited.attentions[1], trace.attentions[1], atol=1e-6)  # layer 1 saw the edit
    assert np.abs(edited.logits - trace.logits).max() > 1e-6
    # any real matrix is accepted, not only distributions, and predict agrees with trace
    weird = np.random.default_rng(0).normal(size=(n, n))
    p = model.predict([TEXT], attention_override={(1, 3): weird})[0]
    np.testing.assert_allclose(p, model.trace(TEXT, attention_override={(1, 3): weird}).probs, atol=1e-6)


def test_override_matches_a_manual_forward_bert():
    """An independent computation: run BERT layer by layer by hand with head 1 of layer 0 replaced."""
    model = tiny_model("bert")
    ref = reference("bert")
    trace = model.trace(TEXT)
    n = len(trace.tokens)
    m = np.random.default_rng(1).dirichlet(np.ones(n), size=n).astype(np.float32)
    edited = model.trace(TEXT, attention_override={(0, 1): m})
    bert = ref.bert
    with torch.no_grad():
        h = bert.embeddings(hf_ids(TEXT))[0]
        for li, layer in enumerate(bert.encoder.layer):
            sa = layer.attention.self
            q, k, v = (lin(h).view(n, 4, 8).transpose(0, 1) for lin in (sa.query, sa.key, sa.value))
            a = torch.softmax(q @ k.transpose(1, 2) / np.sqrt(8), -1)
            if li == 0:
                a[1] = torch.tensor(m)
            ctx = (a @ v).transpose(0, 1).reshape(n, 32)
            h = layer.attention.output(ctx, h)
            h = layer.output(layer.intermediate(h), h)
        logits = ref.classifier(bert.pooler(h[None]))[0].numpy()
    np.testing.assert_allclose(edited.logits, logits, atol=1e-5)


def test_override_is_differentiable_and_hooks_are_removed():
    model = tiny_model("bert")
    n = len(model.trace(TEXT).tokens)
    batch = model.batch([model.encode(TEXT)])
    m = torch.full((n, n), 1.0 / n, requires_grad=True)
    out, _ = model.forward(batch, overrides={(1, 0): m})
    out.logits[0, 0].backward()
    assert m.grad is not None and float(m.grad.abs().sum()) > 0
    assert not any(hasattr(mod, "_attnlab_hook") for mod in model.module.modules())
    from analysis.models.attention import AttentionHook, attention_hooks

    with pytest.raises(RuntimeError):
        with torch.no_grad(), attention_hooks(list(model.attention_modules), AttentionHook()):
            raise RuntimeError("boom")
    assert not any(hasattr(mod, "_attnlab_hook") for mod in model.module.modules())


def test_remove_delete_equals_tracing_the_shorter_input():
    model = tiny_model("bert")
    full = model.encode(TEXT)
    trace = model.trace(TEXT, remove=[2, 3])
    kept = [t for i, t in enumerate(full.input_ids) if i not in (2, 3)]
    assert trace.removed == (2, 3) and len(trace.tokens) == len(full.input_ids) - 2
    with torch.no_grad():
        logits = reference("bert")(torch.tensor([kept])).logits[0].numpy()
    np.testing.assert_allclose(trace.logits, logits, atol=1e-5)


@pytest.mark.parametrize("removal,token", [("mask", "[MASK]"), ("unk", "[UNK]"), ("pad", "[PAD]")])
def test_remove_by_replacement(removal, token):
    model = tiny_model("bert")
    trace = model.trace(TEXT, remove=[1], removal=removal)
    assert trace.tokens[1] == token and trace.removal == removal
    if removal == "pad":
        assert np.allclose(trace.attentions[:, :, :, 1], 0.0)  # nobody attends to it
    assert np.abs(trace.logits - model.trace(TEXT).logits).max() > 1e-7


def test_language_model_tasks():
    lm = tiny_model("gpt2", task="causal-lm")
    t = lm.trace(TEXT)
    assert t.logits.shape == (len(t.tokens), 30522)
    p = lm.predict([TEXT, "short"])
    np.testing.assert_allclose(p[0], t.probs[-1], atol=1e-5)
    mlm = tiny_model("bert", task="masked-lm")
    p = mlm.predict(["the film was [MASK] ."])
    assert p.shape == (1, 30522)
    with pytest.raises(InputError, match="mask token"):
        mlm.predict(["no mask here"])


@pytest.mark.parametrize("bad,match", [("", "empty"), ("   ", "empty"), (3, "string"), (None, "string")])
def test_bad_text(tiny_bert, bad, match):
    with pytest.raises(InputError, match=match):
        tiny_bert.trace(bad)


def test_bad_overrides_and_positions(tiny_bert):
    n = len(tiny_bert.trace(TEXT).tokens)
    with pytest.raises(InputError, match=r"shape \(3, 3\).*expected \(%d, %d\)" % (n, n)):
        tiny_bert.trace(TEXT, attention_override={(0, 0): np.eye(3)})
    with pytest.raises(InputError, match=r"layer 5 is out of range 0..1"):
        tiny_bert.trace(TEXT, attention_override={(5, 0): np.eye(n)})
    with pytest.raises(InputError, match=r"head 4 is out of range 0..3"):
        tiny_bert.trace(TEXT, attention_override={(0, 4): np.eye(n)})
    with pytest.raises(InputError, match="NaN"):
        tiny_bert.trace(TEXT, attention_override={(0, 0): np.full((n, n), np.nan)})
    with pytest.raises(InputError, match="one length"):
        tiny_bert.predict([TEXT, "bad"], attention_override={(0, 0): np.eye(n)})
    with pytest.raises(InputError, match=r"0..%d" % (n - 1)):
        tiny_bert.trace(TEXT, remove=[n])
    with pytest.raises(InputError, match="every token"):
        tiny_bert.trace(TEXT, remove=list(range(n)))
    with pytest.raises(InputError, match="removal must be one of"):
        tiny_bert.trace(TEXT, remove=[1], removal="drop")


def test_trace_check_head_messages(tiny_bert):
    t = tiny_bert.trace(TEXT)
    assert t.check_head(-1, 3) == (1, 3)
    with pytest.raises(IndexError, match=r"2 layers \(0..1"):
        t.check_head(2, 0)
    with pytest.raises(IndexError, match=r"4 heads per layer \(0..3\)"):
        t.check_head(0, 7)


def test_long_text_raises_by_default_and_truncates_on_request():
    model = tiny_model("gpt2")  # 128 positions
    long = "word " * 300
    with pytest.raises(InputError, match="302 tokens, more than this model's limit of 128.*truncate=True"):
        model.trace(long)
    with pytest.raises(InputError, match="more than this model's limit of 128"):
        model.predict([long])
    with pytest.warns(UserWarning, match="truncated to the model's limit of 128"):
        t = model.trace(long, truncate=True)
    assert len(t.tokens) == 128


def test_unsupported_architecture_names_supported_ones():
    cfg = transformers.DebertaV2Config(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=16)   # its attention bypasses AttentionInterface
    with pytest.raises(ValueError, match="AttentionInterface.*known to work: bert, roberta, xlm-roberta"):
        Model(transformers.DebertaV2ForSequenceClassification(cfg), tokenizer(), task="sequence-classification")


def test_load_model_from_local_folder(tmp_path):
    ref = tiny_hf_model("distilbert")
    ref.config.architectures = ["DistilBertForSequenceClassification"]
    ref.save_pretrained(tmp_path)
    tokenizer().save_pretrained(tmp_path)
    model = load_model(str(tmp_path))
    assert model.task == "sequence-classification" and model.n_layers == 2
    with torch.no_grad():
        expected = ref(hf_ids(TEXT)).logits[0].numpy()
    np.testing.assert_allclose(model.trace(TEXT).logits, expected, atol=1e-5)


def test_unknown_model_offline_says_how_to_use_a_folder(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="local folder"):
        load_model("no-such-org/no-such-model-xyz")
    with pytest.raises(ValueError, match="task 'vision' is not supported"):
        load_model("no-such-org/no-such-model-xyz", task="vision")


def test_predict_with_one_removal_per_text(tiny_bert):
    sets = [[1], [2, 3], []]
    batched = tiny_bert.predict([TEXT] * 3, remove=sets)
    for s, p in zip(sets, batched):
        np.testing.assert_allclose(p, tiny_bert.trace(TEXT, remove=s).probs, atol=1e-5)
    with pytest.raises(InputError, match="one per text"):
        tiny_bert.predict([TEXT] * 2, remove=[[1], [2], [3]])
