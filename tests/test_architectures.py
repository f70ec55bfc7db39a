"""Every architecture whose attention routes through transformers' AttentionInterface, checked
against Hugging Face's own eager attention with tiny random models (no downloads).

For each: traced attentions equal ``output_attentions`` of HF eager (ids + attention mask) to
1e-6, logits are unchanged by the hook, overrides and removal do what they say, values have
shape (L, H, n, d_head) with grouped-query heads expanded, ``is_causal`` and ``max_length``
are right. DeBERTa-v2 (its own attention code) and encoder-decoders raise clear errors.
"""
from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch
import transformers as T

from analysis.models import SUPPORTED_ARCHITECTURES, InputError, Model
from analysis.models.attention import (AttentionHook, attention_hooks, find_attention_sites,
                                       register)
from analysis.models.trace import HeadArray, NotCapturedError
from tests.helpers import VOCAB, tokenizer

TEXT = "a gripping , funny and heartfelt film about two old friends on the road"
POSITIONS = 40   # position tables of the tiny models: max_length is checked against them
SMALL = dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=2, intermediate_size=37, vocab_size=VOCAB,
             pad_token_id=0, max_position_embeddings=POSITIONS, initializer_range=0.4)
GQA = dict(num_key_value_heads=2, bos_token_id=101, eos_token_id=102)
#: model_type -> (config class, extra config, task, causal)
ARCHITECTURES = {
    "bert": (T.BertConfig, {}, "sequence-classification", False),
    "roberta": (T.RobertaConfig, {}, "sequence-classification", False),
    "xlm-roberta": (T.XLMRobertaConfig, {}, "sequence-classification", False),
    "distilbert": (T.DistilBertConfig, dict(dim=32, n_heads=4, n_layers=2, hidden_dim=37), "sequence-classification", False),
    "albert": (T.AlbertConfig, dict(embedding_size=16), "sequence-classification", False),
    "electra": (T.ElectraConfig, dict(embedding_size=16), "sequence-classification", False),
    "modernbert": (T.ModernBertConfig, dict(global_attn_every_n_layers=2, local_attention=4, bos_token_id=101,
                                            eos_token_id=102, cls_token_id=101, sep_token_id=102),
                   "sequence-classification", False),
    "gpt2": (T.GPT2Config, dict(n_embd=32, n_head=4, n_layer=2, n_positions=POSITIONS, bos_token_id=101,
                                eos_token_id=102), "causal-lm", True),
    "gpt_neox": (T.GPTNeoXConfig, dict(bos_token_id=101, eos_token_id=102), "causal-lm", True),
    "opt": (T.OPTConfig, dict(ffn_dim=37, word_embed_proj_dim=32, bos_token_id=101, eos_token_id=102),
            "causal-lm", True),
    "llama": (T.LlamaConfig, GQA, "causal-lm", True),
    "mistral": (T.MistralConfig, dict(GQA, sliding_window=4), "causal-lm", True),
    "qwen2": (T.Qwen2Config, GQA, "causal-lm", True),
    "qwen3": (T.Qwen3Config, dict(GQA, head_dim=8), "causal-lm", True),
    "gemma2": (T.Gemma2Config, dict(GQA, head_dim=8, sliding_window=4, attn_logit_softcapping=5.0),
               "causal-lm", True),
    "phi3": (T.Phi3Config, GQA, "causal-lm", True),
}
AUTO = {"sequence-classification": T.AutoModelForSequenceClassification, "causal-lm": T.AutoModelForCausalLM}


def hf_model(arch: str, task: str | None = None) -> torch.nn.Module:
    """A tiny random HF model of ``arch`` with eager attention (seeded)."""
    config_class, extra, default_task, _ = ARCHITECTURES[arch]
    torch.manual_seed(0)
    cfg = config_class(**{**SMALL, **extra, "num_labels": 3})
    return AUTO[task or default_task].from_config(cfg, attn_implementation="eager").eval()


@functools.lru_cache(maxsize=None)
def pair(arch: str) -> tuple[Model, torch.nn.Module]:
    """(attnlab Model, an untouched eager copy of the same weights)."""
    hf = hf_model(arch)
    reference = copy.deepcopy(hf)
    return Model(hf, tokenizer(), task=ARCHITECTURES[arch][2], name=f"tiny-{arch}"), reference


def reference_outputs(reference: torch.nn.Module, ids: list[int]):
    batch = torch.tensor([ids])
    with torch.no_grad():
        return reference(input_ids=batch, attention_mask=torch.ones_like(batch), output_attentions=True)


def uniform(n: int, causal: bool) -> np.ndarray:
    m = np.tril(np.ones((n, n))) if causal else np.ones((n, n))
    return (m / m.sum(1, keepdims=True)).astype(np.float32)


def test_the_known_list_is_what_is_tested_here():
    assert set(SUPPORTED_ARCHITECTURES) == set(ARCHITECTURES)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_traced_attentions_and_logits_equal_hf_eager(arch):
    model, reference = pair(arch)
    trace = model.trace(TEXT)
    ref = reference_outputs(reference, list(trace.input_ids))
    n = trace.n_tokens
    assert n > 4 and trace.attentions.shape == (2, 4, n, n) and len(ref.attentions) == 2
    for layer, expected in enumerate(ref.attentions):
        np.testing.assert_allclose(trace.attentions[layer], expected[0].numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(trace.logits, ref.logits[0].numpy(), atol=1e-6, rtol=0)
    assert model.is_causal == trace.is_causal == ARCHITECTURES[arch][3]
    assert np.allclose(np.triu(trace.attentions, 1), 0) == ARCHITECTURES[arch][3]


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_overrides_and_removal(arch):
    model, reference = pair(arch)
    trace = model.trace(TEXT)
    same = model.trace(TEXT, attention_override={(1, 2): trace.attentions[1, 2], (0, 0): trace.attentions[0, 0]})
    np.testing.assert_allclose(same.logits, trace.logits, atol=1e-5, rtol=0)
    flat = model.trace(TEXT, attention_override={(1, 2): uniform(trace.n_tokens, model.is_causal)})
    np.testing.assert_allclose(flat.attentions[1, 2], uniform(trace.n_tokens, model.is_causal), atol=1e-7)
    np.testing.assert_allclose(flat.attentions[0], trace.attentions[0], atol=1e-6)   # earlier layer untouched
    assert float(np.abs(flat.logits - trace.logits).max()) > 1e-4
    removed = model.trace(TEXT, remove=[2, 3])
    kept = [t for i, t in enumerate(trace.input_ids) if i not in (2, 3)]
    assert list(removed.input_ids) == kept and removed.removed == (2, 3)
    np.testing.assert_allclose(removed.logits, reference_outputs(reference, kept).logits[0].numpy(), atol=1e-5)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_values_have_one_matrix_per_query_head(arch):
    model, _ = pair(arch)
    trace = model.trace(TEXT)
    d_head = getattr(model.config, "head_dim", None) or 32 // 4
    assert trace.values.shape == (2, 4, trace.n_tokens, d_head)
    # out = A V for every head: the captured values are what the captured attention multiplies
    kv = getattr(model.config, "num_key_value_heads", 4) or 4
    if kv < 4:    # grouped-query: query heads 2k and 2k+1 read the same key/value head k
        np.testing.assert_array_equal(trace.values[:, 0], trace.values[:, 1])
        assert not np.allclose(trace.values[:, 1], trace.values[:, 2])
    else:
        assert not np.allclose(trace.values[:, 0], trace.values[:, 1])


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_max_length_input_traces(arch):
    model, _ = pair(arch)
    with pytest.warns(UserWarning, match="truncated"):
        trace = model.trace(" ".join([TEXT] * 5), truncate=True)
    assert trace.n_tokens == model.max_length <= POSITIONS
    assert np.isfinite(trace.logits).all()


def test_albert_shares_one_module_across_layers_and_gets_one_site_per_call():
    model, _ = pair("albert")
    assert model.n_layers == 2 and model.attention_modules[0] is model.attention_modules[1]
    trace = model.trace(TEXT)
    assert not np.allclose(trace.attentions[0], trace.attentions[1])
    edited = model.trace(TEXT, attention_override={(1, 0): uniform(trace.n_tokens, False)})
    np.testing.assert_allclose(edited.attentions[0], trace.attentions[0], atol=1e-6)  # only the 2nd call
    np.testing.assert_allclose(edited.attentions[1, 0], uniform(trace.n_tokens, False), atol=1e-7)


def test_a_decoder_with_a_classifier_head_is_causal():
    model = Model(hf_model("llama", "sequence-classification"), tokenizer(), task="sequence-classification")
    assert model.is_causal and model.trace(TEXT).is_causal


def test_deberta_v2_is_refused_with_the_reason():
    torch.manual_seed(0)
    hf = T.DebertaV2ForSequenceClassification(T.DebertaV2Config(**SMALL)).eval()
    with pytest.raises(ValueError, match="does not go through transformers' AttentionInterface.*known to work: bert"):
        Model(hf, tokenizer(), task="sequence-classification")


@pytest.mark.parametrize("config_class, model_class, extra", [
    (T.T5Config, T.T5ForConditionalGeneration, dict(d_model=32, d_kv=8, num_heads=4, num_layers=2, d_ff=37)),
    (T.BartConfig, T.BartForConditionalGeneration, dict(d_model=32, encoder_attention_heads=4, decoder_attention_heads=4,
                                                        encoder_layers=2, decoder_layers=2, encoder_ffn_dim=37,
                                                        decoder_ffn_dim=37)),
])
def test_encoder_decoder_sites_are_named_and_equal_hf_and_plain_model_points_to_seq2seq(config_class, model_class, extra):
    torch.manual_seed(0)
    hf = model_class(config_class(vocab_size=99, **extra)).eval()
    hf.set_attn_implementation("eager")
    ids = torch.randint(5, 90, (1, 10))
    inputs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), decoder_input_ids=ids[:, :6])
    with torch.no_grad():
        ref = hf(**inputs, output_attentions=True)
    register()
    hf.set_attn_implementation("attnlab")
    modules, names = find_attention_sites(hf, inputs)
    assert names == ["encoder.0", "encoder.1", "decoder.0.self", "decoder.0.cross", "decoder.1.self", "decoder.1.cross"]
    hook = AttentionHook(capture=True)
    with attention_hooks(modules, hook), torch.no_grad():
        out = hf(**inputs)
    expected = {"encoder": ref.encoder_attentions, "self": ref.decoder_attentions, "cross": ref.cross_attentions}
    for i, name in enumerate(names):
        part = name.split(".")
        kind, layer = ("encoder", int(part[1])) if part[0] == "encoder" else (part[2], int(part[1]))
        torch.testing.assert_close(hook.weights[i], expected[kind][layer], atol=1e-6, rtol=0)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="encoder-decoder model.*known to work"):
        Model(hf, tokenizer(), task="sequence-classification")


# ------------------------------------------------------------------ selective capture
@pytest.mark.parametrize("arch", ["bert", "llama", "albert"])
def test_selective_capture_holds_exactly_the_asked_heads(arch):
    model, _ = pair(arch)
    full = model.trace(TEXT)
    part = model.trace(TEXT, heads=[(1, 3), (0, 1), (-1, 0)])
    assert part.captured == ((0, 1), (1, 0), (1, 3))
    assert isinstance(part.attentions, HeadArray) and part.attentions.shape == full.attentions.shape
    for layer, head in part.captured:
        np.testing.assert_array_equal(part.attentions[layer, head], full.attentions[layer, head])
        np.testing.assert_array_equal(part.values[layer, head], full.values[layer, head])
    np.testing.assert_array_equal(part.logits, full.logits)
    with pytest.raises(NotCapturedError, match=r"head \(0, 0\) was not captured.*\(0, 1\), \(1, 0\), \(1, 3\)"):
        part.attentions[0, 0]
    with pytest.raises(NotCapturedError, match="not captured"):
        np.asarray(part.attentions)
    with pytest.raises(NotCapturedError, match="layer 0 head"):
        part.check_head(0, 2)
    assert part.check_head(1, 3) == (1, 3)
    whole = model.trace(TEXT, layers=[1])
    assert whole.captured == tuple((1, h) for h in range(4))
    np.testing.assert_array_equal(whole.attentions[1], full.attentions[1])
    assert whole.check_head(1, "all") == (1, "all")


def test_selective_capture_keeps_only_the_asked_heads_in_the_hook():
    model, _ = pair("bert")
    batch = model.batch([model.encode(TEXT)])
    with torch.no_grad():
        _, hook = model.forward(batch, capture=True, keep={1: [3, 0]})
    n = batch["input_ids"].shape[1]
    assert sorted(hook.weights) == [1] and hook.weights[1].shape == (1, 2, n, n)
    assert hook.values[1].shape == (1, 2, n, 8)


@pytest.mark.parametrize("kwargs, message", [
    (dict(heads=[(2, 0)]), r"layer 2 is out of range; this model has 2 layers \(0..1\)"),
    (dict(heads=[(0, 4)]), r"head 4 is out of range; this model has 4 heads per layer \(0..3\)"),
    (dict(heads=[0]), r"\(layer, head\) pairs"),
    (dict(layers=[-3]), "layers: -3 is out of range"),
    (dict(heads=[], layers=[]), "both empty"),
])
def test_selective_capture_rejects_bad_heads(kwargs, message):
    model, _ = pair("bert")
    with pytest.raises(InputError, match=message):
        model.trace(TEXT, **kwargs)


def test_selective_capture_on_a_single_attention_classifier():
    from analysis.zoo import attention_classifier as ac

    model = ac.tiny("lstm", dim=16, seed=0)
    full, part = model.trace(TEXT), model.trace(TEXT, heads=[(0, 0)])
    assert part.captured == ((0, 0),)
    np.testing.assert_array_equal(part.attentions[0, 0], full.attentions[0, 0])
    np.testing.assert_array_equal(part.values[0, 0], full.values[0, 0])
    with pytest.raises(InputError, match="head 1 is out of range"):
        model.trace(TEXT, heads=[(0, 1)])
