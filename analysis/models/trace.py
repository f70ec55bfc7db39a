"""The record of one forward pass: everything later analyses read, as numpy arrays."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from analysis.types import Removal, Task


class NotCapturedError(KeyError):
    """A head was asked of a trace that did not capture it (``Model.trace(..., heads=...)``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class HeadArray:
    """Some heads of an ``[L, H, n, m]`` array: what a selective trace captured.

    Index it like the full array with a layer and a head first: ``a[layer, head]`` gives an
    ``[n, m]`` numpy array (``a[layer, head, q]`` a row), ``a[layer]`` the ``[H, n, m]`` stack
    when every head of that layer was captured. Asking for a head that was not captured raises
    :class:`NotCapturedError` naming the captured ones; ``np.asarray(a)`` is refused the same way.
    Arrays are converted to numpy on first access.
    """

    def __init__(self, heads: Mapping[tuple[int, int], Any], shape: tuple[int, ...]) -> None:
        self._heads = dict(heads)              # (layer, head) -> [n, m] torch tensor or numpy array
        self.shape = tuple(int(d) for d in shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32)

    @property
    def captured(self) -> tuple[tuple[int, int], ...]:
        """The (layer, head) pairs held, sorted."""
        return tuple(sorted(self._heads))

    def _missing(self, what: str) -> NotCapturedError:
        shown = ", ".join(f"({lay}, {h})" for lay, h in self.captured[:12]) + (" ..." if len(self._heads) > 12 else "")
        return NotCapturedError(f"{what} was not captured: this trace holds only heads [{shown}] (layer, head); "
                                "trace again with heads=[(layer, head), ...] or layers=[...] including it, "
                                "or without heads/layers for every head")

    def head(self, layer: int, head: int) -> np.ndarray:
        """The ``[n, m]`` array of one captured head (negative indices count from the end)."""
        L, H = self.shape[:2]
        if not -L <= layer < L or not -H <= head < H:
            raise IndexError(f"(layer {layer}, head {head}) is out of range: {L} layers x {H} heads")
        key = (int(layer) % L, int(head) % H)
        if key not in self._heads:
            raise self._missing(f"head {key}")
        a = self._heads[key]
        if not isinstance(a, np.ndarray):
            a = self._heads[key] = a.float().cpu().numpy()
        return a

    def __getitem__(self, index: Any) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        ints = (int, np.integer)
        if isinstance(index[0], ints) and (len(index) == 1 or index[1] == slice(None)):
            layer = int(index[0]) % self.shape[0] if -self.shape[0] <= index[0] < self.shape[0] else index[0]
            stack = np.stack([self.head(layer, h) for h in range(self.shape[1])])
            return stack[(slice(None),) + index[2:]]
        if len(index) >= 2 and isinstance(index[0], ints) and isinstance(index[1], ints):
            return self.head(index[0], index[1])[index[2:]]
        raise self._missing(f"index {index!r} (only [layer, head, ...] or [layer] indexing is possible here)")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise self._missing("the full array")

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"HeadArray(shape={self.shape}, captured={list(self.captured)})"


@dataclass(frozen=True, eq=False)
class Trace:
    """One forward pass of one input, captured once.

    Shapes: ``n`` tokens, ``L`` layers, ``H`` heads, ``d`` = d_head, ``D`` = hidden size.
    ``attentions[l, h, q, k]`` is how much query ``q`` attends to key ``k`` (rows sum to 1
    unless overridden); ``values[l, h]`` is the ``n x d`` matrix that attention multiplies
    (``X W_v + b_v`` for that head).

    A full trace (the default) holds every head as numpy arrays. A selective trace
    (``Model.trace(text, heads=[(layer, head), ...])`` or ``layers=[...]``) holds only those
    heads: ``attentions`` and ``values`` are then :class:`HeadArray` (same logical shape, indexed
    ``[layer, head]``), ``captured`` lists the pairs held, and asking for any other head raises
    :class:`NotCapturedError`.
    """

    tokens: list[str]              # [n] token strings, special tokens included
    input_ids: np.ndarray          # [n] int
    attentions: np.ndarray | HeadArray  # [L, H, n, n] float32
    values: np.ndarray | HeadArray      # [L, H, n, d] float32
    hidden_states: np.ndarray      # [L+1, n, D] float32 (embeddings, then each layer's output)
    logits: np.ndarray             # [C] classifier, or [n, V] language model
    probs: np.ndarray              # softmax of logits over the last axis
    special: np.ndarray            # [n] bool: tokenizer special tokens ([CLS], [SEP], <s>, ...)
    task: Task                     # "sequence-classification", "masked-lm" or "causal-lm"
    labels: tuple[str, ...]        # class names (classifier) or () for language models
    text: str                      # the input before tokenisation
    removed: tuple[int, ...] = ()  # positions (in the full input) removed before this pass
    removal: Removal = "delete"    # how they were removed: delete, mask, pad, unk
    overridden: tuple[tuple[int, int], ...] = ()  # (layer, head) pairs whose attention was replaced
    model_name: str = ""
    is_causal: bool = False        # decoder model: token order is a causal order
    captured: tuple[tuple[int, int], ...] | None = None  # (layer, head) pairs held; None: every head
    precision: str = "float32"     # the dtype the model computed in (arrays are float32 whatever it is)

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
            self._check_captured(int(layer) % L, range(H))
            return int(layer) % L, head
        if not isinstance(head, (int, np.integer)) or not -H <= head < H:
            raise IndexError(f"head {head!r} is out of range: this model has {H} heads per layer (0..{H - 1})")
        self._check_captured(int(layer) % L, [int(head) % H])
        return int(layer) % L, int(head) % H

    def _check_captured(self, layer: int, heads: Any) -> None:
        if self.captured is None:
            return
        missing = [h for h in heads if (layer, h) not in set(self.captured)]
        if missing and isinstance(self.attentions, HeadArray):
            raise self.attentions._missing(f"layer {layer} head{'s' if len(missing) > 1 else ''} "
                                           f"{', '.join(map(str, missing))}")

    def __repr__(self) -> str:
        shown = " ".join(self.tokens[:12]) + (" ..." if self.n_tokens > 12 else "")
        pred = f", prediction={self.label!r} ({float(np.max(self.probs)):.3f})" if self.labels else ""
        return (f"Trace({self.n_tokens} tokens [{shown}], {self.n_layers} layers x {self.n_heads} heads"
                f"{pred}, model={self.model_name!r})")
