"""Decoder language models end to end (tiny random GPT-2 and Llama, task "causal-lm"): ``explain``
explains the next token predicted after the last token, token order is background knowledge,
and ``abcd`` traces only the head (or layer) it uses.

Checks are against the Hugging Face module run directly (next-token logits at the last position),
the PAG mark definition of ``analysis.causal.Graph`` and full traces."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis import abcd, causal
from analysis.causal import Mark
from analysis.models.trace import HeadArray, NotCapturedError
from tests.helpers import tiny_model, tokenizer

DECODERS = ("gpt2", "llama")
TEXTS = ("the cat sat on the mat and looked at the dog",
         "A wonderful little film, moving and funny, with a great cast.")
#: every head of both layers, and each layer pooled
SETTINGS = [(layer, head) for layer in (0, 1) for head in (0, 1, 2, 3, "all")]


@pytest.fixture(params=DECODERS)
def lm(request, tiny_models):
    return tiny_models(request.param, "causal-lm")


def hf_next_token(model, text: str, remove=()) -> int:
    """The top-1 next token after the last token, from the Hugging Face module itself."""
    ids = [i for k, i in enumerate(tokenizer()(text)["input_ids"]) if k not in set(remove)]
    with torch.no_grad():
        logits = model.module(input_ids=torch.tensor([ids])).logits
    return int(logits[0, -1].argmax())


def ordered(graph) -> bool:
    """Token order as background knowledge, read off the marks: for every edge a-b with a before
    b, the mark at b's end is an arrowhead (b is not an ancestor of a), so no edge points from a
    later token into an earlier one (``b -> a``, ``b o-> a``) and none is undirected there."""
    return all(graph.mark(e.b, e.a) == Mark.ARROW for e in graph.edges() if e.a < e.b)


def test_explain_targets_the_last_token_and_every_set_changes_the_next_token(lm):
    found = 0
    for text in TEXTS:
        trace = lm.trace(text)
        assert trace.is_causal and trace.labels == () and trace.probs.shape == (trace.n_tokens, 30522)
        original = hf_next_token(lm, text)
        assert trace.prediction == original == int(lm.predict(text)[0].argmax())
        for layer, head in SETTINGS:
            e = abcd.explain(lm, text, layer=layer, head=head, max_set_size=2)
            assert e.target == trace.n_tokens - 1 and e.tokens == trace.tokens
            assert e.prediction == original and e.settings["order"] is True
            np.testing.assert_allclose(e.probs, trace.probs[-1], rtol=1e-4, atol=1e-6)
            for c in (*e.checks, *e.baseline.checks):     # each verdict, re-run without the set
                assert c.prediction == hf_next_token(lm, text, c.positions)
                assert c.changed == (c.prediction != original)
            for s in e.sets:
                assert e.target not in s and hf_next_token(lm, text, s) != original
                assert int(lm.trace(text, remove=s).prediction) != original
            assert all(not c.changed for c in e.checks if len(c.positions) < (e.size or 99))
            found += bool(e.sets)
    assert found >= 5, "the tiny decoders' next token should flip within 2 tokens for several heads"


def test_explanation_names_the_next_token(lm):
    e = abcd.explain(lm, TEXTS[0], layer=1, head=2, max_set_size=1)
    token = tokenizer().decode([e.prediction])
    assert e.output == f"the next token {token!r} (id {e.prediction})"
    assert str(e).startswith(f"Explanation of the next token {token!r} (id {e.prediction}) at target [SEP]@")
    assert abcd.output_name(lm, e.prediction) == repr(token)
    names = abcd.output_names(lm)
    assert len(names) == len(tokenizer()) and names[e.prediction] == repr(token) and names[-1] == repr(
        tokenizer().decode([len(tokenizer()) - 1]))
    with pytest.raises(IndexError, match="out of range"):
        names[len(names)]


def test_a_classifier_explanation_names_its_class(tiny_bert):
    e = abcd.explain(tiny_bert, TEXTS[0], max_set_size=1)
    label = tiny_bert.labels[e.prediction]
    assert e.output == f"prediction {label} (class {e.prediction})" and str(e).startswith(f"Explanation of {e.output}")
    assert abcd.output_names(tiny_bert) == tiny_bert.labels


@pytest.mark.parametrize("algorithm", ["icd", "fci"])
def test_the_graph_respects_token_order_and_order_false_drops_it(lm, algorithm):
    unordered_somewhere = False
    for text in TEXTS:
        trace = lm.trace(text)
        for layer, head in SETTINGS:
            kw = dict(layer=layer, head=head, algorithm=algorithm, nodes="all", n_samples=1e4)
            g = abcd.learn_graph(trace, **kw)
            assert ordered(g), (text, layer, head, g)
            np.testing.assert_array_equal(abcd.learn_graph(trace, order=True, **kw).to_matrix(), g.to_matrix())
            free = abcd.learn_graph(trace, order=False, **kw)
            corr = abcd.attention_correlation(trace, layer, head)
            plain = causal.learn_graph(corr, 1e4, algorithm=algorithm, nodes=list(range(trace.n_tokens)))
            np.testing.assert_array_equal(free.to_matrix(), plain.to_matrix())   # no background knowledge
            unordered_somewhere |= not ordered(free)
    assert unordered_somewhere, "without token order some edge should leave the later end unoriented"


def test_explanation_graph_is_ordered_and_order_false_overrides(lm):
    e = abcd.explain(lm, TEXTS[1], layer=1, head="all", n_samples=1e4, max_set_size=1)
    assert e.settings["order"] is True and ordered(e.graph) and len(e.graph) > 0
    free = abcd.explain(lm, TEXTS[1], layer=1, head="all", n_samples=1e4, max_set_size=1, order=False)
    assert free.settings["order"] is False
    trace = lm.trace(TEXTS[1])
    expected = abcd.learn_graph(trace, layer=1, head="all", n_samples=1e4, nodes="content", keep=[e.target],
                                order=False)
    np.testing.assert_array_equal(free.graph.to_matrix(), expected.to_matrix())


@pytest.mark.parametrize("basis", ["value", "value_output", "hidden", "jacobian"])
def test_efficient_attention_on_a_decoder(lm, basis):
    text = TEXTS[0]
    e = abcd.explain(lm, text, layer=1, head=1, attention="efficient", basis=basis, max_set_size=2)
    assert e.graph.attention.startswith(f"efficient attention A P (layer 1, head 1; {basis} basis")
    assert ordered(e.graph) and e.target == len(e.tokens) - 1
    full = lm.trace(text)
    expected = abcd.learn_graph(full, layer=1, head=1, attention="efficient", basis=basis, model=lm,
                                nodes="content", keep=[e.target])
    np.testing.assert_array_equal(e.graph.to_matrix(), expected.to_matrix())
    for s in e.sets:
        assert hf_next_token(lm, text, s) != e.prediction


# --------------------------------------------------------------------------- selective capture
@pytest.mark.parametrize("arch,task", [("bert", "sequence-classification"), ("gpt2", "causal-lm"),
                                       ("llama", "causal-lm")])
def test_a_graph_from_a_selective_trace_equals_the_full_one(tiny_models, arch, task):
    model = tiny_models(arch, task)
    text = TEXTS[1]
    full = model.trace(text)
    for layer, head in [(1, 2), (0, 0), (-1, "all"), (0, "mean")]:
        kwargs = abcd.capture(model, layer, head)
        sel = model.trace(text, **kwargs)
        assert isinstance(sel.attentions, HeadArray)
        heads = [head] if isinstance(head, int) else range(4)
        assert sel.captured == tuple((layer % 2, h) for h in heads)
        for attention, basis in [("raw", "value"), ("efficient", "value"), ("efficient", "value_output"),
                                 ("efficient", "hidden"), ("efficient", "jacobian")]:
            kw = dict(layer=layer, head=head, attention=attention, basis=basis, model=model, nodes="all")
            a, b = abcd.learn_graph(sel, **kw), abcd.learn_graph(full, **kw)
            np.testing.assert_array_equal(a.to_matrix(), b.to_matrix())
            kw = dict(attention=attention, basis=basis, model=model)
            np.testing.assert_array_equal(abcd.attention_correlation(sel, layer, head, **kw),
                                          abcd.attention_correlation(full, layer, head, **kw))
            assert (a.n_tests, a.attention) == (b.n_tests, b.attention)
        other = (layer + 1) % 2
        with pytest.raises(NotCapturedError, match="was not captured"):
            abcd.learn_graph(sel, layer=other, head=0)


@pytest.mark.parametrize("arch,task", [("bert", "sequence-classification"), ("llama", "causal-lm")])
def test_explain_traces_only_the_head_or_layer_it_uses(arch, task):
    model = tiny_model(arch, task)
    asked = []
    traced = model.trace

    def spy(text, **kwargs):
        asked.append(kwargs)
        return traced(text, **kwargs)

    model.trace = spy
    for head, kwargs in [(3, {"heads": [(0, 3)]}), ("all", {"layers": [0]})]:
        asked.clear()
        e = abcd.explain(model, TEXTS[1], layer=0, head=head, max_set_size=1)
        assert asked == [kwargs]
        full = traced(TEXTS[1])
        expected = abcd.learn_graph(full, layer=0, head=head, nodes="content", keep=[e.target])
        np.testing.assert_array_equal(e.graph.to_matrix(), expected.to_matrix())
        row = full.attentions[0].mean(0)[e.target] if head == "all" else full.attentions[0, head, e.target]
        cands = [v for v in e.graph.nodes if v != e.target]
        assert e.baseline.ranking == tuple(sorted(cands, key=lambda i: (-row[i], i)))


def test_capture_checks_the_pair_like_a_trace(tiny_bert):
    assert abcd.capture(tiny_bert, -1, 2) == {"heads": [(1, 2)]}
    assert abcd.capture(tiny_bert, 0, -1) == {"heads": [(0, 3)]}
    assert abcd.capture(tiny_bert, -2, "all") == {"layers": [0]}
    with pytest.raises(IndexError, match=r"layer 2 is out of range: this model has 2 layers"):
        abcd.capture(tiny_bert, 2, 0)
    with pytest.raises(IndexError, match=r"head 4 is out of range: this model has 4 heads per layer \(0..3\)"):
        abcd.explain(tiny_bert, TEXTS[0], head=4)
    with pytest.raises(ValueError, match="'all' or 'mean'"):
        abcd.capture(tiny_bert, 0, "max")
