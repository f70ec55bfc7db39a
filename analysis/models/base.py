"""``TracedModel``: the one contract every model kind fulfils (transformers, single-attention
classifiers, recommenders).

A kind implements a few steps: ``encode`` one input into token ids, ``forward`` a batch with
attention overrides through an :class:`AttentionHook`, and says how to show its tokens and
read its logits. ``trace`` and ``predict`` (override checks, token removal, selective capture,
numpy conversion) are written once, here. Capabilities are declared as class attributes with
defaults, so analyses ask ``model.query_independent`` rather than sniffing attributes.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping, Sequence, get_args

import numpy as np
import torch
from torch import nn

from analysis.models.attention import AttentionHook
from analysis.models.trace import HeadArray, Trace
from analysis.types import Removal, Task

REMOVALS: tuple[Removal, ...] = get_args(Removal)

Override = Mapping[tuple[int, int], Any]


class InputError(ValueError):
    """Bad input a user can fix (text, positions, overrides, layer/head ranges)."""


@dataclass(frozen=True)
class Encoded:
    """One input ready for the model, after truncation and removal."""

    input_ids: list[int]          # [n]
    attend: list[int]             # [n] 1 = attended, 0 = padded out (removal="pad")
    removed: tuple[int, ...]      # positions removed, in the full (unremoved) input


@dataclass(frozen=True, eq=False)
class ForwardOutput:
    """What :meth:`TracedModel.forward` returns next to its hook: the network's outputs."""

    logits: torch.Tensor                                 # [b, C] classifier, or [b, n, V] per position
    hidden_states: tuple[torch.Tensor, ...] | None = None  # each [b, n, D], embeddings first (when asked)


class TracedModel(ABC):
    """A model whose attention attnlab can capture and override, behind one interface.

    Subclasses implement :meth:`encode`, :meth:`forward`, :meth:`display_tokens` and the
    sizes (``n_layers``, ``n_heads``, ``max_length``, ``labels``); everything else has a default.
    Attributes every kind sets: ``module`` (the ``nn.Module``), ``name``, ``device``.
    """

    # ----------------------------------------------------------------- declared capabilities
    #: what the model is: "transformer", "attention-classifier", "recommender", ...
    kind: ClassVar[str] = "model"
    #: "sequence-classification", "masked-lm", "causal-lm" or "recommendation" (may be set per instance)
    task: Task = "sequence-classification"
    #: every attention row is the same distribution (one query per input): analyses may use one row
    query_independent: ClassVar[bool] = False
    #: explanations trace the prediction appended to the input (:meth:`explanation_trace`)
    abductive: ClassVar[bool] = False
    #: what an input is: a text (str) or an item history (sequence of item ids)
    input_kind: ClassVar[Literal["text", "items"]] = "text"

    module: nn.Module
    name: str = ""
    device: torch.device = torch.device("cpu")

    # ----------------------------------------------------------------- abstract steps
    @property
    @abstractmethod
    def n_layers(self) -> int:
        """Number of attention layers."""

    @property
    @abstractmethod
    def n_heads(self) -> int:
        """Heads per layer."""

    @property
    @abstractmethod
    def max_length(self) -> int:
        """Longest input in tokens (special tokens included)."""

    @property
    @abstractmethod
    def labels(self) -> tuple[str, ...]:
        """Class names (index = class), or ``()`` when the output is a vocabulary."""

    @abstractmethod
    def encode(self, text: Any, *, remove: Sequence[int] | None = None, removal: Removal = "delete",
               truncate: bool = False) -> Encoded:
        """One input as token ids [n], with the positions ``remove`` removed (see :meth:`remove_positions`)."""

    @abstractmethod
    def forward(self, batch: Mapping[str, torch.Tensor], *,
                overrides: Mapping[tuple[int, int], torch.Tensor] | None = None, capture: bool = False,
                hidden_states: bool = False, keep: Mapping[int, Sequence[int] | None] | None = None
                ) -> tuple[ForwardOutput, AttentionHook]:
        """Run on a prepared batch with checked overrides (differentiable in them). Each
        attention site goes through ``AttentionHook(overrides, capture, keep).apply(layer, weights
        [b, H, n, n], values [b, H, n, d])``; return the outputs and that hook."""

    @abstractmethod
    def display_tokens(self, input_ids: Sequence[int]) -> list[str]:
        """Token text for people, one string per id [n]."""

    # ----------------------------------------------------------------- defaults
    @property
    def is_causal(self) -> bool:
        """Attention is lower-triangular and token order is a causal order (decoders)."""
        return False

    @property
    def attention_modules(self) -> tuple[nn.Module, ...]:
        """The modules that compute attention, in layer order (index = layer); ``()`` if none is one module."""
        return ()

    @property
    def dtype(self) -> torch.dtype:
        """The precision the model computes in: its first floating-point parameter's dtype
        (traces and predictions are float32 numpy whatever it is)."""
        return next((p.dtype for p in self.module.parameters() if p.is_floating_point()), torch.float32)

    @property
    def special_ids(self) -> frozenset[int]:
        """Token ids that are not content (``[CLS]``, ``[SEP]``, ``[MASK]``, padding, ...)."""
        return frozenset()

    @property
    def _pad_id(self) -> int:
        """Token id used to right-pad a batch."""
        return 0

    def replacement_id(self, removal: Removal) -> int | None:
        """The token id put in place of a removed token for ``removal`` "mask", "pad" or "unk" (None: none)."""
        return self._pad_id if removal == "pad" else None

    def batch(self, encoded: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        """Right-padded tensors {input_ids, attention_mask} [batch, n] for encoded inputs."""
        n = max(len(e.input_ids) for e in encoded)
        ids = torch.full((len(encoded), n), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), n), dtype=torch.long)
        for b, e in enumerate(encoded):
            ids[b, : len(e.input_ids)] = torch.tensor(e.input_ids)
            mask[b, : len(e.attend)] = torch.tensor(e.attend)
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}

    def output_logits(self, out: ForwardOutput, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The logits ``predict`` reports, [batch, classes or vocab], from a forward output."""
        return out.logits

    def trace_logits(self, out: ForwardOutput) -> torch.Tensor:
        """The logits a trace records for its single input: [C], or [n, V] per position."""
        return out.logits[0]

    def inputs(self, texts: Any) -> list[Any]:
        """``predict``'s inputs as a list (one input becomes a list of one)."""
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 0:
            raise InputError("predict needs at least one text")
        return list(texts)

    def explanation_trace(self, text: Any, prediction: int) -> tuple[Trace, int]:
        """The abductive step of :func:`analysis.abcd.explain` (models with ``abductive = True``):
        trace ``text`` with the prediction appended; return the trace and the target position."""
        raise NotImplementedError(f"{type(self).__name__} has no abductive explanation step (abductive=False); "
                                  "explain its predictions with the output as the target")

    # ----------------------------------------------------------------- checks
    def remove_positions(self, ids: list[int], remove: Sequence[int] | None, removal: Removal) -> Encoded:
        """``ids`` [n] with the tokens at ``remove`` deleted, or replaced by the mask / pad / unk token."""
        if removal not in REMOVALS:
            raise InputError(f"removal must be one of {', '.join(REMOVALS)}, not {removal!r}")
        positions = tuple(sorted(set(removal_positions(remove))))
        bad = [p for p in positions if not 0 <= p < len(ids)]
        if bad:
            raise InputError(f"cannot remove positions {bad}: the input has {len(ids)} tokens (0..{len(ids) - 1})")
        attend = [1] * len(ids)
        if removal == "delete":
            if len(positions) == len(ids):
                raise InputError("cannot remove every token of the input")
            keep = [i for i in range(len(ids)) if i not in set(positions)]
            return Encoded([ids[i] for i in keep], [1] * len(keep), positions)
        replacement = self.replacement_id(removal)
        if replacement is None:
            raise InputError(f"removal={removal!r} needs a {removal} token, which this tokenizer lacks; "
                             "use removal='delete'")
        for p in positions:
            ids[p] = int(replacement)
            if removal == "pad":
                attend[p] = 0
        return Encoded(ids, attend, positions)


    def check_overrides(self, overrides: Override | None, lengths: Sequence[int]) -> dict[tuple[int, int], torch.Tensor]:
        """Validate ``{(layer, head): [n, n] or [batch, n, n]}`` for inputs of these lengths;
        return tensors keyed by non-negative (layer, head). Torch tensors keep their gradients."""
        out: dict[tuple[int, int], torch.Tensor] = {}
        if overrides is not None and not isinstance(overrides, Mapping):
            raise InputError("attention_override must be a dict {(layer, head): n x n matrix}, not a "
                             f"{type(overrides).__name__}")
        for key, matrix in (overrides or {}).items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise InputError(f"attention_override keys are (layer, head) pairs, not {key!r}")
            layer, head = key
            if not all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in key):
                raise InputError(f"attention_override key {key!r}: layer and head must be integers "
                                 f"(layer 0..{self.n_layers - 1}, head 0..{self.n_heads - 1})")
            if not -self.n_layers <= layer < self.n_layers:
                raise InputError(f"override layer {layer} is out of range 0..{self.n_layers - 1}")
            if not -self.n_heads <= head < self.n_heads:
                raise InputError(f"override head {head} is out of range 0..{self.n_heads - 1}")
            m = matrix if isinstance(matrix, torch.Tensor) else torch.as_tensor(np.asarray(matrix, dtype=np.float32))
            n = set(lengths)
            if m.ndim not in (2, 3) or m.shape[-1] != m.shape[-2] or (len(n) == 1 and m.shape[-1] != next(iter(n))):
                raise InputError(f"override for (layer {layer}, head {head}) has shape {tuple(m.shape)}; "
                                 f"expected ({max(lengths)}, {max(lengths)}) for this input of {max(lengths)} tokens")
            if len(n) > 1:
                raise InputError("one attention_override applies to inputs of one length; these have "
                                 f"lengths {sorted(n)}")
            if m.ndim == 3 and m.shape[0] not in (1, len(lengths)):
                raise InputError(f"a batched override needs one matrix per input ({len(lengths)}), got {m.shape[0]}")
            if not bool(torch.isfinite(m).all()):
                raise InputError(f"override for (layer {layer}, head {head}) contains NaN or infinity")
            out[(layer % self.n_layers, head % self.n_heads)] = m.to(self.device)
        return out

    def check_capture(self, heads: Sequence[tuple[int, int]] | None,
                      layers: Sequence[int] | None) -> dict[int, list[int]] | None:
        """``{layer: [head, ...]}`` (non-negative, sorted) for ``trace(heads=, layers=)``; None: all."""
        if heads is None and layers is None:
            return None
        L, H = self.n_layers, self.n_heads
        keep: dict[int, set[int]] = {}
        for layer in layers or ():
            if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not -L <= layer < L:
                raise InputError(f"layers: {layer!r} is out of range; this model has {L} layers (0..{L - 1}, "
                                 "or negative from the end)")
            keep.setdefault(int(layer) % L, set()).update(range(H))
        for pair in heads or ():
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise InputError(f"heads lists (layer, head) pairs, not {pair!r}")
            layer, head = pair
            if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not -L <= layer < L:
                raise InputError(f"heads: layer {layer!r} is out of range; this model has {L} layers (0..{L - 1})")
            if isinstance(head, bool) or not isinstance(head, (int, np.integer)) or not -H <= head < H:
                raise InputError(f"heads: head {head!r} is out of range; this model has {H} heads per layer "
                                 f"(0..{H - 1})")
            keep.setdefault(int(layer) % L, set()).add(int(head) % H)
        if not keep:
            raise InputError("heads and layers are both empty: name at least one (layer, head) or layer, "
                             "or leave both out to capture every head")
        return {layer: sorted(hs) for layer, hs in sorted(keep.items())}


    # ----------------------------------------------------------------- trace and predict, once
    def trace(self, text: Any, *, attention_override: Override | None = None,
              remove: Sequence[int] | None = None, removal: Removal = "delete", truncate: bool = False,
              heads: Sequence[tuple[int, int]] | None = None, layers: Sequence[int] | None = None,
              **options: Any) -> Trace:
        """One forward pass capturing tokens, attentions [L,H,n,n], values [L,H,n,d], hidden
        states [L+1,n,D], logits and probabilities (numpy).

        ``heads=[(layer, head), ...]`` and/or ``layers=[layer, ...]`` capture only those heads
        (every head of the listed layers): the hook keeps nothing else, and ``Trace.attentions``
        / ``.values`` are :class:`HeadArray` holding just them. Default: every head.
        ``options`` go to :meth:`encode` and :meth:`trace_fields` (e.g. a recommender's ``append``).
        """
        keep = self.check_capture(heads, layers)
        enc = self.encode(text, remove=remove, removal=removal, truncate=truncate, **options)
        overrides = self.check_overrides(attention_override, [len(enc.input_ids)])
        with torch.no_grad():
            out, hook = self.forward(self.batch([enc]), overrides=overrides, capture=True, hidden_states=True,
                                     **({} if keep is None else {"keep": keep}))
        n = len(enc.input_ids)
        if keep is None:   # layer by layer into one array, freeing each captured layer as it is copied
            att = _stack_popping(hook.weights, self.n_layers)   # [L, H, n, n]
            val = _stack_popping(hook.values, self.n_layers)    # [L, H, n, d]
            captured = None
        else:              # the hook stored only the asked heads, in the order asked
            w = {(layer, h): hook.weights[layer][0, j] for layer, asked in keep.items() for j, h in enumerate(asked)}
            v = {(layer, h): hook.values[layer][0, j] for layer, asked in keep.items() for j, h in enumerate(asked)}
            d = next(iter(v.values())).shape[-1]
            att = HeadArray(w, (self.n_layers, self.n_heads, n, n))
            val = HeadArray(v, (self.n_layers, self.n_heads, n, d))
            captured = att.captured
        logits = self.trace_logits(out).float()
        states = (torch.stack([h[0] for h in out.hidden_states]).float().cpu().numpy() if out.hidden_states
                  else np.zeros((0, n, 0), dtype=np.float32))
        special = self.special_ids
        fields = dict(
            tokens=self.display_tokens(enc.input_ids), input_ids=np.array(enc.input_ids), attentions=att,
            values=val, hidden_states=states, logits=logits.cpu().numpy(),
            probs=torch.softmax(logits, -1).cpu().numpy(),
            special=np.array([i in special for i in enc.input_ids], dtype=bool), task=self.task,
            labels=self.labels, text=text, removed=enc.removed, removal=removal,
            overridden=tuple(sorted(overrides)), model_name=self.name, is_causal=self.is_causal, captured=captured,
            precision=str(self.dtype).removeprefix("torch."))
        fields.update(self.trace_fields(enc, **options))
        return self.trace_class(**fields)

    #: the :class:`Trace` subclass :meth:`trace` returns
    trace_class: ClassVar[type[Trace]] = Trace

    def trace_fields(self, encoded: Encoded, **options: Any) -> dict[str, Any]:
        """Extra (or replaced) fields of this kind's trace, from the encoded input and trace options."""
        return {}

    def predict(self, texts: Any, *, attention_override: Override | None = None,
                remove: Sequence[int] | Sequence[Sequence[int]] | None = None, removal: Removal = "delete",
                batch_size: int = 32, truncate: bool = False) -> np.ndarray:
        """Probabilities [batch, classes] (classifier) or [batch, vocab] (next / masked token).

        ``remove`` is one list of positions for every input, or a list of such lists, one per
        input (e.g. many candidate removals from one text, evaluated in one batch).
        """
        texts = self.inputs(texts)
        if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, not {batch_size!r}")
        removes = removals_per_input(remove, len(texts))
        encoded = [self.encode(t, remove=r, removal=removal, truncate=truncate) for t, r in zip(texts, removes)]
        overrides = self.check_overrides(attention_override, [len(e.input_ids) for e in encoded])
        probs = []
        with torch.no_grad():
            for s in range(0, len(encoded), batch_size):
                chunk = {k: (v[s: s + batch_size] if v.ndim == 3 and v.shape[0] > 1 else v) for k, v in overrides.items()}
                batch = self.batch(encoded[s: s + batch_size])
                out, _ = self.forward(batch, overrides=chunk)
                probs.append(torch.softmax(self.output_logits(out, batch).float(), -1).cpu().numpy())
        return np.concatenate(probs)


def removal_positions(remove: Sequence[int] | None) -> list[int]:
    """Token positions from ``remove`` (None, a list or a 1-D integer array); raises on anything
    that is not an integer (``1.7`` is not silently position 1)."""
    if remove is None:
        return []
    if isinstance(remove, (str, bytes)) or not hasattr(remove, "__iter__"):
        raise InputError(f"remove lists token positions (integers), not {remove!r}")
    out = []
    for p in remove:
        if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, np.integer)):
            raise InputError(f"remove lists token positions (integers); got {p!r}")
        out.append(int(p))
    return out


def removals_per_input(remove: Sequence[Any] | None, n_texts: int) -> list[Sequence[int] | None]:
    """``remove`` for each text: one shared list of positions, or one list per text."""
    if remove is None or len(remove) == 0 or not isinstance(remove[0], (list, tuple, np.ndarray)):
        return [remove] * n_texts
    if len(remove) != n_texts:
        raise InputError(f"remove has {len(remove)} lists of positions for {n_texts} texts; give one per text")
    return list(remove)


def _stack_popping(per_layer: dict[int, torch.Tensor], n_layers: int) -> np.ndarray:
    """``[L, ...]`` float32 numpy from ``{layer: [1, ...] tensor}``, emptying the dict as it goes
    (peak memory: the result plus one layer, not twice the result)."""
    first = per_layer[0][0]
    out = torch.empty((n_layers, *first.shape), dtype=torch.float32)
    for i in range(n_layers):
        out[i].copy_(per_layer.pop(i)[0])
    return out.numpy()
