"""Interventions: efficient attention and null-space edits leave the output exactly where it was on
every architecture; efficient shifts, uniform/zero attention and token removal move it."""
from __future__ import annotations

import numpy as np
import pytest

from analysis import interventions as iv
from analysis.efficient import decompose
from analysis.metrics import jsd, tvd
from tests.helpers import tiny_model

LONG = "A wonderful little film, moving and funny, with a great cast and a terrible ending."


def assert_unchanged(result) -> None:
    np.testing.assert_allclose(result.logits, result.original_logits, rtol=1e-5, atol=1e-5)
    assert result.tvd < 1e-5


def test_efficient_and_null_keep_the_output_shift_moves_it(arch):
    model = tiny_model(arch)
    trace = model.trace(LONG)
    assert min(decompose(trace, layer, h).nullity for layer in (0, 1) for h in range(4)) > 0
    for layer, head in ((0, 2), (1, "all")):
        eff = iv.efficient(model, LONG, layer, head, trace=trace)
        assert_unchanged(eff)
        heads = range(4) if head == "all" else [head]
        assert sorted(eff.override) == [(layer, h) for h in heads]
        for (lay, h), m in eff.override.items():        # it really is a different matrix
            assert np.abs(m - trace.attentions[lay, h]).max() > 1e-2
        assert_unchanged(iv.add_null(model, LONG, layer, head, scale=2.0, seed=1, trace=trace))
        moved = iv.shift_efficient(model, LONG, layer, head, scale=1.0, seed=1, trace=trace)
        assert moved.max_abs_logit_change > 1e-2


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
def test_distribution_variants_and_value_output_keep_the_output(arch):
    model = tiny_model(arch)
    trace = model.trace(LONG)
    for kwargs in ({"unit_rows": True}, {"simplex": True}, {"basis": "value_output"}):
        result = iv.efficient(model, LONG, 1, 3, trace=trace, **kwargs)
        assert_unchanged(result)
    simplex = iv.efficient(model, LONG, 1, 3, simplex=True, trace=trace).override[(1, 3)]
    assert simplex.min() >= -1e-9
    # a' 1 = a 1 is kept exactly: the trace's row sums, 1 up to float32 rounding
    np.testing.assert_allclose(simplex.sum(1), trace.attentions[1, 3].astype(np.float64).sum(1), atol=1e-9)
    np.testing.assert_allclose(simplex.sum(1), 1.0, atol=1e-6)


def test_hidden_basis_with_unit_rows_keeps_a_post_ln_encoder_output():
    # V = X W_v + b_v lies in col([X, 1]); needs n > hidden + 1 = 33 for a nonzero null space
    text = " ".join(["a moving and funny film with a great cast"] * 5)
    model = tiny_model("bert")
    trace = model.trace(text)
    assert decompose(trace, 1, 0, basis="hidden", unit_rows=True).nullity > 0
    assert_unchanged(iv.efficient(model, text, 1, 0, basis="hidden", unit_rows=True, trace=trace))


def test_random_components_are_seeded_scaled_and_in_their_subspace():
    model = tiny_model("bert")
    trace = model.trace(LONG)
    a = trace.attentions[1, 0].astype(np.float64)
    part = decompose(trace, 1, 0)
    one = iv.add_null(model, LONG, 1, 0, scale=0.5, seed=3, trace=trace).override[(1, 0)]
    again = iv.add_null(model, LONG, 1, 0, scale=0.5, seed=3, trace=trace).override[(1, 0)]
    other = iv.add_null(model, LONG, 1, 0, scale=0.5, seed=4, trace=trace).override[(1, 0)]
    np.testing.assert_array_equal(one, again)
    assert np.abs(one - other).max() > 1e-3
    np.testing.assert_allclose(np.linalg.norm(one - a), 0.5 * np.linalg.norm(a))
    np.testing.assert_allclose((one - a) @ part.projection, 0, atol=1e-10)
    shift = iv.shift_efficient(model, LONG, 1, 0, scale=0.5, seed=3, trace=trace).override[(1, 0)]
    np.testing.assert_allclose((shift - a) @ part.projection, shift - a, atol=1e-10)
    assert_unchanged(iv.shift_efficient(model, LONG, 1, 0, scale=0.0, trace=trace))


def test_uniform_zero_and_removal(arch):
    model = tiny_model(arch)
    n = model.trace(LONG).n_tokens
    uni = iv.uniform(model, LONG, 0, 1)
    m = uni.override[(0, 1)]
    np.testing.assert_allclose(m.sum(1), 1.0)
    if model.is_causal:
        assert np.allclose(np.triu(m, 1), 0) and m[3, 0] == pytest.approx(0.25)
    else:
        assert np.allclose(m, 1 / n)
    np.testing.assert_allclose(uni.probs, model.predict(LONG, attention_override={(0, 1): m})[0], atol=1e-6)
    zero = iv.zero(model, LONG, 0, "all")
    assert all(np.all(v == 0) for v in zero.override.values()) and len(zero.override) == 4
    assert zero.max_abs_logit_change > 1e-3
    removed = iv.remove_tokens(model, LONG, [2, 1], removal="delete")
    np.testing.assert_allclose(removed.probs, model.predict(LONG, remove=[1, 2])[0], atol=1e-6)
    assert removed.removed == (1, 2) and removed.removal == "delete" and removed.override is None


def test_result_fields_are_consistent():
    model = tiny_model("bert")
    r = iv.zero(model, LONG, 1, 2)
    np.testing.assert_allclose(r.original, model.predict(LONG)[0], atol=1e-6)
    assert r.tvd == pytest.approx(float(tvd(r.probs, r.original)))
    assert r.jsd == pytest.approx(float(jsd(r.probs, r.original)))
    assert r.max_abs_logit_change == pytest.approx(np.abs(r.logits - r.original_logits).max())
    assert r.prediction_changed == (r.probs.argmax() != r.original.argmax())
    assert "ablated" in r.message and "zero" in repr(r)
    with pytest.raises(TypeError):
        r.override[(0, 0)] = np.eye(3)                  # read-only
    assert set(iv.INTERVENTIONS) == {"efficient", "add_null", "shift_efficient", "uniform", "zero",
                                     "remove_tokens"}


def test_bad_inputs(tiny_bert):
    with pytest.raises(IndexError, match=r"0\.\.3"):
        iv.efficient(tiny_bert, LONG, 0, 4)
    with pytest.raises(IndexError, match=r"0\.\.1"):
        iv.zero(tiny_bert, LONG, 3, 0)
    with pytest.raises(ValueError, match="'all'"):
        iv.uniform(tiny_bert, LONG, 0, "mean")
    with pytest.raises(ValueError, match="plain trace"):
        iv.efficient(tiny_bert, LONG, 0, 0, trace=tiny_bert.trace("another text"))
    with pytest.raises(ValueError, match="at least one position"):
        iv.remove_tokens(tiny_bert, LONG, [])
    with pytest.raises(ValueError, match="positions"):
        iv.remove_tokens(tiny_bert, LONG, [99])
    with pytest.raises(ValueError, match="scale"):
        iv.add_null(tiny_bert, LONG, 0, 0, scale=float("nan"))


def test_eraser_faithfulness(tiny_bert):
    probs = tiny_bert.predict(LONG)[0]
    y = int(probs.argmax())
    n = len(tiny_bert.encode(LONG).input_ids)
    without = tiny_bert.predict(LONG, remove=[1, 2])[0]
    assert iv.comprehensiveness(tiny_bert, LONG, [1, 2]) == pytest.approx(probs[y] - without[y], abs=1e-6)
    only = tiny_bert.predict(LONG, remove=list(range(3, n - 1)))[0]     # keeps [CLS] (0) and [SEP] (n-1)
    assert iv.sufficiency(tiny_bert, LONG, [1, 2]) == pytest.approx(probs[y] - only[y], abs=1e-6)
    assert iv.sufficiency(tiny_bert, LONG, range(1, n - 1)) == 0.0
    masked = tiny_bert.predict(LONG, remove=[1], removal="mask")[0]
    assert iv.comprehensiveness(tiny_bert, LONG, [1], target=0, removal="mask") == pytest.approx(
        probs[0] - masked[0], abs=1e-6)
    ranking = [5, 1, 3, 2]
    expected = np.mean([iv.comprehensiveness(tiny_bert, LONG, ranking[:2], target=y),
                        iv.comprehensiveness(tiny_bert, LONG, ranking, target=y)])
    assert iv.aopc(tiny_bert, LONG, ranking, fractions=(0.5, 1.0)) == pytest.approx(expected)
    with pytest.raises(ValueError, match="metric"):
        iv.aopc(tiny_bert, LONG, ranking, metric="flip")
    with pytest.raises(ValueError, match="non-empty"):
        iv.aopc(tiny_bert, LONG, [])
    with pytest.raises(IndexError, match="3 outputs"):
        iv.comprehensiveness(tiny_bert, LONG, [1], target=3)


def test_language_model_output_is_kept_too():
    model = tiny_model("gpt2", "causal-lm")
    result = iv.efficient(model, LONG, 1, "all")
    assert result.probs.shape == (model.config.vocab_size,)
    assert_unchanged(result)
    assert iv.shift_efficient(model, LONG, 1, "all").max_abs_logit_change > 1e-2
