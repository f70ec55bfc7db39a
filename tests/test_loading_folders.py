"""Local model folders: a folder without a usable tokenizer is a clear error (issue 16), in
``analysis.load_model`` and in the Lab's model picker; a complete folder loads."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import analysis
from tests.helpers import tokenizer


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny random BertForSequenceClassification saved without its tokenizer, and a copy with it."""
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=48, num_labels=2)
    module = transformers.BertForSequenceClassification(cfg).eval()
    bare = tmp_path_factory.mktemp("bare")
    module.save_pretrained(bare)
    full = tmp_path_factory.mktemp("full")
    module.save_pretrained(full)
    tokenizer().save_pretrained(full)
    return bare, full


def test_a_folder_without_tokenizer_files_raises_naming_them(saved):
    bare, _ = saved
    with pytest.raises(ValueError, match=r"no tokenizer files: expected tokenizer\.json or vocab\.txt"):
        analysis.load_model(str(bare))


def test_a_tokenizer_config_alone_is_not_enough(saved, tmp_path):
    bare, full = saved
    for f in bare.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "tokenizer_config.json").write_bytes((full / "tokenizer_config.json").read_bytes())
    with pytest.raises(ValueError, match="no tokenizer files"):
        analysis.load_model(str(tmp_path))


def test_a_vocabulary_of_special_tokens_only_is_unusable(saved, tmp_path):
    bare, _ = saved
    for f in bare.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n")
    with pytest.raises(ValueError, match=r"tokenizer of .* is unusable: it turns every word .* into \[UNK\]"):
        analysis.load_model(str(tmp_path))


def test_a_complete_folder_loads_and_reads_words(saved):
    _, full = saved
    model = analysis.load_model(str(full))
    trace = model.trace("a gripping film")
    assert "[UNK]" not in trace.tokens and "gripping" in trace.tokens
    assert np.isclose(trace.probs.sum(), 1.0)


def test_the_lab_picker_refuses_a_folder_without_tokenizer(saved):
    from tests.helpers import tiny_model

    from widgets import Lab

    bare, _ = saved
    model = tiny_model("bert")
    lab = Lab(model, "a fine film")
    lab.model_picker.value = str(bare)                  # typing the path shows the problem at once
    assert "no tokenizer files" in lab.error.value and "vocab.txt" in lab.error.value
    lab.load_model()                                    # and loading keeps the current model
    assert lab.session.model is model and "no tokenizer files" in lab.error.value


def test_the_lab_keeps_a_load_error_and_clears_a_fixed_picker_problem(saved):
    from tests.helpers import tiny_model

    from widgets import Lab

    bare, full = saved
    model = tiny_model("bert")
    lab = Lab(model, "a fine film")
    lab.load_model(str(bare.parent / "no_such_model_here"))     # an error from load_model itself
    assert "could not load model" in lab.error.value and lab.session.model is model
    lab.model_picker.value = str(bare)
    assert "no tokenizer files" in lab.error.value
    lab.model_picker.value = str(full)                          # a good folder: the message goes
    assert lab.error.value == ""
