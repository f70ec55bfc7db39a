"""Encoder-decoder models (tiny random T5 and BART, no downloads) through ``Seq2SeqModel``.

Checked against Hugging Face's own eager attention (``encoder_attentions``,
``decoder_attentions``, ``cross_attentions`` with input ids + attention mask and the same decoder
input) and against a hand computation of a BART encoder layer; overrides of encoder heads and of
named decoder sites, removal, values, predict, loading from a folder, ABCD on T5, and errors.
"""
from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch
import transformers as T

from analysis import abcd
from analysis.models import InputError, Model, Seq2SeqModel, Seq2SeqTrace, infer_task, load_model
from tests.helpers import VOCAB, tokenizer

TEXT = "a gripping , funny and heartfelt film about two old friends"
TARGET = "the road movie"       # decoder prefix: the decoder sites are m x m and m x n, m > 1
SHORT = "bad film"
ARCHS = {
    "t5": (T.T5Config, T.T5ForConditionalGeneration,
           dict(d_model=32, d_kv=8, num_heads=4, num_layers=2, d_ff=37, initializer_factor=2.0)),
    "bart": (T.BartConfig, T.BartForConditionalGeneration,
             dict(d_model=32, encoder_attention_heads=4, decoder_attention_heads=4, encoder_layers=2,
                  decoder_layers=2, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64,
                  init_std=0.4)),
}
SITES = ("encoder.0", "encoder.1", "decoder.0.self", "decoder.0.cross", "decoder.1.self", "decoder.1.cross")


def hf_model(arch: str) -> torch.nn.Module:
    config_class, model_class, extra = ARCHS[arch]
    torch.manual_seed(0)
    cfg = config_class(vocab_size=VOCAB, pad_token_id=0, **extra)
    return model_class._from_config(cfg, attn_implementation="eager").eval()


@functools.lru_cache(maxsize=None)
def pair(arch: str) -> tuple[Seq2SeqModel, torch.nn.Module]:
    """(Seq2SeqModel reading the decoder prefix TARGET, an untouched eager copy of the same weights)."""
    hf = hf_model(arch)
    reference = copy.deepcopy(hf)
    return Seq2SeqModel(hf, tokenizer(), target_text=TARGET, name=f"tiny-{arch}"), reference


def reference_outputs(reference: torch.nn.Module, ids, decoder_ids, **kwargs):
    ids = torch.tensor([list(ids)])
    with torch.no_grad():
        return reference(input_ids=ids, attention_mask=torch.ones_like(ids),
                         decoder_input_ids=torch.tensor([list(decoder_ids)]), output_attentions=True,
                         output_hidden_states=True, **kwargs)


def uniform(rows: int, cols: int, causal: bool = False) -> np.ndarray:
    m = np.tril(np.ones((rows, cols))) if causal else np.ones((rows, cols))
    return (m / m.sum(1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_site_and_the_logits_equal_hf_eager(arch):
    model, reference = pair(arch)
    trace = model.trace(TEXT)
    assert isinstance(trace, Seq2SeqTrace) and trace.task == "seq2seq-lm" and not trace.is_causal
    n, m = trace.n_tokens, len(trace.decoder_ids)
    assert n > 6 and m == 1 + len(tokenizer()(TARGET, add_special_tokens=False)["input_ids"]) > 2
    assert trace.decoder_ids[0] == model.decoder_ids[0] == (0 if arch == "t5" else 2)   # T5: pad; BART: config's
    assert model.site_names == trace.site_names == SITES and tuple(trace.sites) == SITES
    ref = reference_outputs(reference, trace.input_ids, trace.decoder_ids)
    assert trace.attentions.shape == (2, 4, n, n)
    for layer in range(2):
        np.testing.assert_allclose(trace.attentions[layer], ref.encoder_attentions[layer][0].numpy(), atol=1e-6, rtol=0)
        np.testing.assert_array_equal(trace.sites[f"encoder.{layer}"], trace.attentions[layer])
        self_, cross = trace.sites[f"decoder.{layer}.self"], trace.sites[f"decoder.{layer}.cross"]
        assert self_.shape == (4, m, m) and cross.shape == (4, m, n)
        np.testing.assert_allclose(self_, ref.decoder_attentions[layer][0].numpy(), atol=1e-6, rtol=0)
        np.testing.assert_allclose(cross, ref.cross_attentions[layer][0].numpy(), atol=1e-6, rtol=0)
        assert np.allclose(np.triu(self_, 1), 0) and not np.allclose(np.triu(cross, 1), 0)
        assert trace.site_values[f"decoder.{layer}.self"].shape == (4, m, 8)
        assert trace.site_values[f"decoder.{layer}.cross"].shape == (4, n, 8)
    assert trace.logits.shape == (m, VOCAB)
    np.testing.assert_allclose(trace.logits, ref.logits[0].numpy(), atol=1e-6, rtol=0)   # the hook changes nothing
    np.testing.assert_allclose(trace.hidden_states, torch.stack(ref.encoder_hidden_states)[:, 0].numpy(), atol=1e-6)
    assert trace.prediction == int(ref.logits[0, -1].argmax())
    assert trace.values.shape == (2, 4, n, 8) and not np.allclose(trace.values[:, 0], trace.values[:, 1])


@pytest.mark.parametrize("arch", list(ARCHS))
def test_predict_reads_the_next_token_after_the_decoder_input_with_padding(arch):
    model, reference = pair(arch)
    probs = model.predict([TEXT, SHORT], batch_size=2)           # SHORT is right-padded in the batch
    assert probs.shape == (2, VOCAB)
    for row, text in zip(probs, [TEXT, SHORT]):
        ids = tokenizer()(text)["input_ids"]
        ref = reference_outputs(reference, ids, model.decoder_ids)
        np.testing.assert_allclose(row, torch.softmax(ref.logits[0, -1], -1).numpy(), atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(model.trace(TEXT).probs[-1], probs[0], atol=1e-6)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_target_text_sets_the_decoder_input(arch):
    model, reference = pair(arch)
    first = model.with_target("")
    assert first.module is model.module and model.target_text == TARGET      # a view, the original unchanged
    assert first.decoder_ids == model.decoder_ids[:1]
    trace = first.trace(TEXT)
    ref = reference_outputs(reference, trace.input_ids, first.decoder_ids)
    assert trace.sites["decoder.0.cross"].shape == (4, 1, trace.n_tokens)
    np.testing.assert_allclose(trace.logits, ref.logits[0].numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(first.predict(TEXT)[0], trace.probs[0], atol=1e-6)
    assert not np.allclose(first.predict(TEXT)[0], model.predict(TEXT)[0])
    assert trace.target_text == "" and model.trace(TEXT).target_text == TARGET
    with pytest.raises(InputError, match="target_text must be a string"):
        model.with_target(3)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_encoder_overrides_and_removal(arch):
    model, reference = pair(arch)
    trace = model.trace(TEXT)
    n = trace.n_tokens
    same = model.trace(TEXT, attention_override={(1, 2): trace.attentions[1, 2], (0, 0): trace.attentions[0, 0]})
    np.testing.assert_allclose(same.logits, trace.logits, atol=1e-6, rtol=0)
    assert same.overridden == ((0, 0), (1, 2)) and same.overridden_sites == ()
    flat = model.trace(TEXT, attention_override={(1, 2): uniform(n, n)})
    np.testing.assert_allclose(flat.attentions[1, 2], uniform(n, n), atol=1e-7)
    np.testing.assert_allclose(flat.attentions[0], trace.attentions[0], atol=1e-6)     # earlier layer untouched
    assert float(np.abs(flat.logits - trace.logits).max()) > 1e-4
    named = model.trace(TEXT, attention_override={("encoder.1", 2): uniform(n, n)})   # the same site by name
    np.testing.assert_array_equal(named.logits, flat.logits)
    assert named.overridden == ((1, 2),)
    np.testing.assert_allclose(model.predict(TEXT, attention_override={(1, 2): uniform(n, n)})[0], flat.probs[-1],
                               atol=1e-6)
    removed = model.trace(TEXT, remove=[2, 3])
    kept = [t for i, t in enumerate(trace.input_ids) if i not in (2, 3)]
    assert list(removed.input_ids) == kept and removed.removed == (2, 3)
    assert list(removed.decoder_ids) == list(trace.decoder_ids)                    # removal touches the source only
    ref = reference_outputs(reference, kept, trace.decoder_ids)
    np.testing.assert_allclose(removed.logits, ref.logits[0].numpy(), atol=1e-6, rtol=0)
    assert removed.sites["decoder.1.cross"].shape == (4, len(trace.decoder_ids), n - 2)


def test_an_encoder_override_equals_the_hand_computed_bart_layer():
    """Uniform attention in BART's last encoder layer, head 2, by hand: the layer recomputed from
    the captured values and its own sub-modules, then HF's decoder run on that encoder output."""
    model, reference = pair("bart")
    trace = model.trace(TEXT)
    n = trace.n_tokens
    layer = reference.model.encoder.layers[1]

    def last_encoder_layer(mats: np.ndarray) -> torch.Tensor:
        heads = torch.tensor(mats) @ torch.tensor(trace.values[1])                  # [H, n, d]
        with torch.no_grad():
            h = torch.tensor(trace.hidden_states[1]) + layer.self_attn.out_proj(heads.transpose(0, 1).reshape(n, 32))
            h = layer.self_attn_layer_norm(h)
            return layer.final_layer_norm(h + layer.fc2(layer.activation_fn(layer.fc1(h))))

    np.testing.assert_allclose(last_encoder_layer(trace.attentions[1]).numpy(), trace.hidden_states[2], atol=1e-5)
    mats = trace.attentions[1].copy()
    mats[2] = uniform(n, n)
    encoded = last_encoder_layer(mats)[None]
    expected = reference_outputs(reference, trace.input_ids, trace.decoder_ids,
                                 encoder_outputs=(encoded,)).logits[0].numpy()
    edited = model.trace(TEXT, attention_override={(1, 2): uniform(n, n)})
    np.testing.assert_allclose(edited.hidden_states[2], encoded[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(edited.logits, expected, atol=1e-5, rtol=0)
    assert float(np.abs(expected - trace.logits).max()) > 1e-3


def test_bart_values_are_what_encoder_attention_multiplies():
    model, _ = pair("bart")
    trace = model.trace(TEXT)
    for layer in range(2):
        attention = model.module.model.encoder.layers[layer].self_attn
        with torch.no_grad():
            v = attention.v_proj(torch.tensor(trace.hidden_states[layer])).view(trace.n_tokens, 4, 8).transpose(0, 1)
        np.testing.assert_allclose(trace.values[layer], v.numpy(), atol=1e-5)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_named_decoder_sites_can_be_overridden(arch):
    model, _ = pair(arch)
    trace = model.trace(TEXT)
    n, m = trace.n_tokens, len(trace.decoder_ids)
    cross, self_ = trace.sites["decoder.1.cross"], trace.sites["decoder.0.self"]
    same = model.trace(TEXT, attention_override={("decoder.1.cross", 3): cross[3], ("decoder.0.self", 1): self_[1]})
    np.testing.assert_allclose(same.logits, trace.logits, atol=1e-6, rtol=0)
    assert same.overridden_sites == (("decoder.0.self", 1), ("decoder.1.cross", 3)) and same.overridden == ()
    flat = model.trace(TEXT, attention_override={("decoder.1.cross", 3): uniform(m, n)})
    np.testing.assert_allclose(flat.sites["decoder.1.cross"][3], uniform(m, n), atol=1e-7)
    np.testing.assert_allclose(flat.sites["decoder.1.cross"][2], cross[2], atol=1e-6)       # other heads untouched
    np.testing.assert_allclose(flat.attentions, trace.attentions, atol=1e-6)                 # the encoder too
    assert float(np.abs(flat.logits - trace.logits).max()) > 1e-4
    causal = model.trace(TEXT, attention_override={("decoder.0.self", -1): uniform(m, m, causal=True)})
    np.testing.assert_allclose(causal.sites["decoder.0.self"][3], uniform(m, m, causal=True), atol=1e-7)
    assert causal.overridden_sites == (("decoder.0.self", 3),)
    assert float(np.abs(causal.logits - trace.logits).max()) > 1e-4
    batched = model.predict([TEXT, TEXT], attention_override={("decoder.1.cross", 3): uniform(m, n)})
    np.testing.assert_allclose(batched, np.stack([flat.probs[-1]] * 2), atol=1e-6)


@pytest.mark.parametrize("override, message", [
    ({("decoder.9.cross", 0): np.ones((4, 14))}, r"no attention site 'decoder\.9\.cross'.*encoder\.0, encoder\.1, "
                                                 r"decoder\.0\.self"),
    ({("decoder.0.cross", 4): np.ones((4, 14))}, r"head must be an integer in 0\.\.3"),
    ({("decoder.0.cross", 0): np.ones((4, 4))}, r"shape \(4, 4\); expected \(4, 14\): 4 decoder input token\(s\) x "
                                                r"14 source"),
    ({("decoder.0.self", 0): np.ones((4, 14))}, r"expected \(4, 4\)"),
    ({("decoder.0.cross", 0): np.full((4, 14), np.nan)}, "NaN or infinity"),
    ({(2, 0): np.ones((14, 14))}, r"override layer 2 is out of range 0\.\.1"),
    ({(0, 0): np.ones((4, 14))}, r"expected \(14, 14\)"),
    ({"decoder.0.cross": np.ones((4, 14))}, r"keys are \(layer, head\) pairs"),
    ([np.ones((14, 14))], "must be a dict"),
])
def test_bad_overrides_get_clear_errors(override, message):
    model, _ = pair("t5")
    assert model.trace(TEXT).n_tokens == 14 and len(model.decoder_ids) == 4
    with pytest.raises(InputError, match=message):
        model.trace(TEXT, attention_override=override)
    with pytest.raises(InputError, match=message):
        model.predict([TEXT], attention_override=override)


def test_selective_trace_keeps_the_asked_encoder_heads_and_the_decoder_sites():
    model, _ = pair("t5")
    full = model.trace(TEXT)
    part = model.trace(TEXT, heads=[(1, 2)])
    assert part.captured == ((1, 2),)
    np.testing.assert_array_equal(part.attentions[1, 2], full.attentions[1, 2])
    assert tuple(part.sites) == SITES[2:]
    np.testing.assert_array_equal(part.sites["decoder.1.cross"], full.sites["decoder.1.cross"])
    np.testing.assert_array_equal(part.site("decoder.0.self"), full.sites["decoder.0.self"])
    with pytest.raises(KeyError, match="selective trace"):
        part.site("encoder.0")
    with pytest.raises(KeyError, match="no attention site 'decoder.2.self'"):
        full.site("decoder.2.self")
    with pytest.raises(InputError, match="unknown trace option.*target_text"):
        model.trace(TEXT, target_text="x")


@pytest.mark.parametrize("arch", list(ARCHS))
def test_abcd_learns_a_graph_and_explains(arch):
    model, _ = pair(arch)
    trace = model.trace(TEXT)
    graph = abcd.learn_graph(trace, layer=-1, head=0)
    assert sorted(graph.nodes) == list(range(trace.n_tokens))
    explanation = abcd.explain(model, TEXT, max_set_size=1)
    assert explanation.target == 0 and explanation.prediction == trace.prediction
    assert explanation.sets or arch == "t5"    # this tiny BART's next token flips without one word
    for s in explanation.sets:       # every reported set, removed, changes the next decoder token
        assert int(np.argmax(model.predict(TEXT, remove=list(s))[0])) != trace.prediction


def test_model_refuses_encoder_decoders_and_seq2seq_refuses_the_rest():
    with pytest.raises(ValueError, match="encoder-decoder model: wrap it with analysis.models.Seq2SeqModel"):
        Model(hf_model("t5"), tokenizer())
    from tests.helpers import tiny_hf_model
    with pytest.raises(ValueError, match="not one: use Model"):
        Seq2SeqModel(tiny_hf_model("bert"), tokenizer())
    with pytest.raises(ValueError, match="task 'seq2seq-lm' needs one"):
        Model(tiny_hf_model("bert"), tokenizer(), task="seq2seq-lm")
    with pytest.raises(ValueError, match="traced as task 'seq2seq-lm'"):
        Seq2SeqModel(hf_model("bart"), tokenizer(), task="causal-lm")
    torch.manual_seed(0)
    classifier = T.BartForSequenceClassification(T.BartConfig(vocab_size=VOCAB, pad_token_id=0, **{
        k: v for k, v in ARCHS["bart"][2].items() if k != "init_std"})).eval()
    with pytest.raises(ValueError, match="language-model head"):
        Seq2SeqModel(classifier, tokenizer())
    assert infer_task(T.T5Config(architectures=["T5ForConditionalGeneration"])) == "seq2seq-lm"


def test_load_model_builds_a_seq2seq_model_from_a_folder(tmp_path):
    model, reference = pair("t5")
    reference.save_pretrained(tmp_path)
    tokenizer().save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    assert isinstance(loaded, Seq2SeqModel) and loaded.task == "seq2seq-lm" and loaded.target_text == ""
    trace = loaded.trace(TEXT)
    ref = reference_outputs(reference, trace.input_ids, loaded.decoder_ids)
    np.testing.assert_allclose(trace.sites["decoder.1.cross"], ref.cross_attentions[1][0].numpy(), atol=1e-6)
    np.testing.assert_allclose(trace.logits, ref.logits[0].numpy(), atol=1e-5)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_efficient_attention_finds_the_encoder_output_projection(arch):
    from analysis import efficient

    model, _ = pair(arch)
    attention = model.attention_modules[1]
    expected = (attention.o if arch == "t5" else attention.out_proj).weight.detach().numpy().T   # [H * d, D]
    np.testing.assert_array_equal(efficient.output_projection(model, 1), expected)
    trace = model.trace(TEXT)
    result = efficient.decompose(trace, 1, 0, basis="value_output", model=model)
    assert result.n == trace.n_tokens


@pytest.mark.parametrize("arch", list(ARCHS))
def test_a_max_length_source_traces(arch):
    model, reference = pair(arch)
    with pytest.warns(UserWarning, match="truncated"):
        trace = model.trace(" ".join([TEXT] * 50), truncate=True)
    assert trace.n_tokens == model.max_length == (64 if arch == "bart" else 512)
    ref = reference_outputs(reference, trace.input_ids, trace.decoder_ids)
    np.testing.assert_allclose(trace.logits, ref.logits[0].numpy(), atol=1e-5, rtol=0)
    assert "Seq2SeqModel(" in repr(model) and "next token" in repr(trace)
