"""The embedded default model, for real: built (or loaded from the cache) and checked."""
from __future__ import annotations

import numpy as np
import pytest

from analysis import load_dataset, load_model

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model():
    return load_model()


def test_default_model_meets_the_accuracy_bar(model):
    assert model.info["test_accuracy"] >= 0.80
    assert model.info["n_test"] == 1066
    # re-measure on a slice of the held-out split: the cached weights are the ones that scored
    test = load_dataset("rotten_tomatoes", "test").sample(300, seed=1)
    accuracy = float(np.mean(model.predict(list(test.texts)).argmax(1) == test.labels))
    assert accuracy >= 0.77


def test_default_model_traces_and_predicts_sensibly(model):
    assert model.labels == ("negative", "positive") and model.n_layers == 6 and model.n_heads == 12
    good = model.trace("a gorgeous, witty, seductive movie.")
    bad = model.trace("a dull, lifeless and tedious mess.")
    assert good.label == "positive" and bad.label == "negative"
    assert good.attentions.shape == (6, 12, good.n_tokens, good.n_tokens)
    assert good.values.shape == (6, 12, good.n_tokens, 32)
    assert good.tokens[0] == "[CLS]" and good.special[0] and good.special[-1]


def test_default_model_matches_hugging_face_eager(model):
    import copy

    import torch

    ref = copy.deepcopy(model.module)
    ref.set_attn_implementation("eager")
    text = load_dataset("rotten_tomatoes", "test").texts[0]
    trace = model.trace(text)
    with torch.no_grad():
        out = ref(torch.as_tensor(trace.input_ids)[None], output_attentions=True)
    np.testing.assert_allclose(trace.attentions, torch.stack([a[0] for a in out.attentions]).numpy(), atol=1e-5)
    np.testing.assert_allclose(trace.logits, out.logits[0].numpy(), atol=1e-4)
