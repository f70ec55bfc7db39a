"""The record of one forward pass: everything later analyses read, as numpy arrays."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Trace:
    """One forward pass of one input, captured once.

    Shapes: ``n`` tokens, ``L`` layers, ``H`` heads, ``d`` = d_head, ``D`` = hidden size.
    ``attentions[l, h, q, k]`` is how much query ``q`` attends to key ``k`` (rows sum to 1
    unless overridden); ``values[l, h]`` is the ``n x d`` matrix that attention multiplies
    (``X W_v + b_v`` for that head).
    """

    tokens: list[str]              # [n] token strings, special tokens included
    input_ids: np.ndarray          # [n] int
    attentions: np.ndarray         # [L, H, n, n] float32
    values: np.ndarray             # [L, H, n, d] float32
    hidden_states: np.ndarray      # [L+1, n, D] float32 (embeddings, then each layer's output)
    logits: np.ndarray             # [C] classifier, or [n, V] language model
    probs: np.ndarray              # softmax of logits over the last axis
    special: np.ndarray            # [n] bool: tokenizer special tokens ([CLS], [SEP], <s>, ...)
    task: str                      # "sequence-classification", "masked-lm" or "causal-lm"
    labels: tuple[str, ...]        # class names (classifier) or () for language models
    text: str                      # the input before tokenisation
    removed: tuple[int, ...] = ()  # positions (in the full input) removed before this pass
    removal: str = "delete"        # how they were removed: delete, mask, pad, unk
    overridden: tuple[tuple[int, int], ...] = ()  # (layer, head) pairs whose attention was replaced
    model_name: str = ""
    is_causal: bool = False        # decoder model: token order is a causal order

    @property
    def n_layers(self) -> int:
        return self.attentions.shape[0]

    @property
    def n_heads(self) -> int:
        return self.attentions.shape[1]

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def prediction(self) -> int:
        """Top class (classifier) or top next-token id at the last position (language model)."""
        p = self.probs if self.probs.ndim == 1 else self.probs[-1]
        return int(np.argmax(p))

    @property
    def label(self) -> str:
        """Name of the predicted class ("" for language models)."""
        return self.labels[self.prediction] if self.labels else ""

    def check_head(self, layer: int, head: int | str = 0) -> tuple[int, int | str]:
        """Validate a (layer, head) pair; negative indices count from the end; head may be "all"."""
        L, H = self.n_layers, self.n_heads
        if not isinstance(layer, (int, np.integer)) or not -L <= layer < L:
            raise IndexError(f"layer {layer!r} is out of range: this model has {L} layers (0..{L - 1}, or -1 for the last)")
        if isinstance(head, str):
            if head not in ("all", "mean"):
                raise ValueError(f"head must be an int in 0..{H - 1}, 'all' or 'mean', not {head!r}")
            return int(layer) % L, head
        if not isinstance(head, (int, np.integer)) or not -H <= head < H:
            raise IndexError(f"head {head!r} is out of range: this model has {H} heads per layer (0..{H - 1})")
        return int(layer) % L, int(head) % H

    def __repr__(self) -> str:
        shown = " ".join(self.tokens[:12]) + (" ..." if self.n_tokens > 12 else "")
        pred = f", prediction={self.label!r} ({float(np.max(self.probs)):.3f})" if self.labels else ""
        return (f"Trace({self.n_tokens} tokens [{shown}], {self.n_layers} layers x {self.n_heads} heads"
                f"{pred}, model={self.model_name!r})")
