"""``Model``: any supported Hugging Face transformer behind one trace/predict interface."""
from __future__ import annotations

import unicodedata
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from analysis.models.attention import (IMPLEMENTATION, AttentionHook, attention_hooks,
                                       find_attention_modules, register)
from analysis.models.trace import HeadArray, Trace

#: config.model_type values known to work: their attention runs through transformers'
#: AttentionInterface and tests/test_architectures.py checks each with a tiny random model.
#: Any other architecture whose attention routes through AttentionInterface works too.
SUPPORTED_ARCHITECTURES = ("bert", "roberta", "xlm-roberta", "distilbert", "albert", "electra", "modernbert",
                           "gpt2", "gpt_neox", "opt", "llama", "mistral", "qwen2", "qwen3", "gemma2", "phi3")
TASKS = ("sequence-classification", "masked-lm", "causal-lm")
REMOVALS = ("delete", "mask", "pad", "unk")

Override = Mapping[tuple[int, int], Any]


class InputError(ValueError):
    """Bad input a user can fix (text, positions, overrides, layer/head ranges)."""


@dataclass(frozen=True)
class Encoded:
    """One input ready for the model, after truncation and removal."""

    input_ids: list[int]          # [n]
    attend: list[int]             # [n] 1 = attended, 0 = padded out (removal="pad")
    removed: tuple[int, ...]      # positions removed, in the full (unremoved) input


def _display(token: str) -> str:
    """Token text for people: drop byte-level / sentencepiece space markers."""
    return token.replace("Ġ", " ").replace("▁", " ").replace("Ċ", "\\n").strip() or token


class Model:
    """A transformer ready for tracing: eager attention through attnlab's hookable function.

    Build with :func:`analysis.load_model`, or wrap an in-memory model with
    ``Model(hf_model, tokenizer, task=...)``.
    """

    def __init__(self, module: nn.Module, tokenizer: Any, *, task: str | None = None,
                 name: str = "", device: str = "cpu") -> None:
        config = module.config
        if getattr(config, "is_encoder_decoder", False):
            raise ValueError(f"architecture {config.model_type!r} is an encoder-decoder model, which Model does "
                             "not support yet (its attention sites have different shapes); known to work: "
                             f"{', '.join(SUPPORTED_ARCHITECTURES)}")
        self.task = task or infer_task(config)
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is not supported; use one of {', '.join(TASKS)}")
        register()
        try:
            module.set_attn_implementation(IMPLEMENTATION)
        except (ValueError, NotImplementedError) as e:   # some models refuse outright
            raise ValueError(_unsupported(config.model_type)) from e
        self.module = module.to(device).eval()
        self.tokenizer = tokenizer
        self.name = name or getattr(config, "_name_or_path", "") or config.model_type
        self.device = torch.device(device)
        self.config = config
        probe = {"input_ids": torch.tensor([[self._pad_id] * 3], device=self.device),
                 "attention_mask": torch.ones((1, 3), dtype=torch.long, device=self.device)}
        self._attention_modules = find_attention_modules(self.module, probe)
        if not self._attention_modules:
            raise ValueError(_unsupported(config.model_type))
        with torch.no_grad():   # causal iff no query attends to a later key, at every site
            _, hook = self.forward(probe, capture=True)
        self._causal = all(bool((w.triu(1) == 0).all()) for w in hook.weights.values())
        # RoBERTa-style position tables reserve rows 0..padding_idx: positions start at padding_idx + 1
        pads = [m.padding_idx for name, m in self.module.named_modules()
                if isinstance(m, nn.Embedding) and name.endswith("position_embeddings") and m.padding_idx is not None]
        self._position_offset = pads[0] + 1 if pads else 0

    # ----------------------------------------------------------------- properties
    @property
    def attention_modules(self) -> tuple[nn.Module, ...]:
        """The modules that compute attention, in layer order (index = layer)."""
        return tuple(self._attention_modules)

    @property
    def n_layers(self) -> int:
        return len(self._attention_modules)

    @property
    def n_heads(self) -> int:
        return int(self.config.num_attention_heads)

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names of a classifier (from ``config.id2label``); ``()`` for language models."""
        if self.task != "sequence-classification":
            return ()
        return tuple(str(self.config.id2label[i]) for i in range(self.config.num_labels))

    @property
    def is_causal(self) -> bool:
        """Decoder models: attention is lower-triangular and token order is a causal order."""
        return self._causal   # measured at construction: every site's attention is lower-triangular

    @property
    def max_length(self) -> int:
        """Longest input in tokens (special tokens included)."""
        limits = [int(self.tokenizer.model_max_length)] if self.tokenizer.model_max_length < 100_000 else []
        pos = getattr(self.config, "max_position_embeddings", None) or getattr(self.config, "n_positions", None)
        if pos:
            limits.append(int(pos) - self._position_offset)
        return min(limits) if limits else 512

    @property
    def _pad_id(self) -> int:
        for tid in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, self.tokenizer.unk_token_id, 0):
            if tid is not None:
                return int(tid)
        return 0  # pragma: no cover

    def __repr__(self) -> str:
        return (f"Model({self.name!r}, {self.config.model_type}, {self.task}, "
                f"{self.n_layers} layers x {self.n_heads} heads)")

    # ----------------------------------------------------------------- inputs
    def encode(self, text: str, *, remove: Sequence[int] | None = None, removal: str = "delete",
               truncate: bool = False) -> Encoded:
        """Tokenise ``text`` (special tokens added), raise past ``max_length`` (or with
        ``truncate=True`` cut it there, with a warning), remove
        the tokens at positions ``remove`` (positions in the full tokenised input)."""
        if not isinstance(text, str):
            raise InputError(f"text must be a string, not {type(text).__name__}")
        if not text.strip():
            raise InputError("text is empty: give at least one word")
        if not any(unicodedata.category(ch)[0] in "LMNPS" for ch in text):
            raise InputError(f"text {text[:40]!r} has no content: only whitespace, control or "
                             "zero-width characters; give at least one word")
        ids = list(self.tokenizer(text, add_special_tokens=True)["input_ids"])
        special = set(self.tokenizer.all_special_ids)
        if all(i in special for i in ids):
            raise InputError(f"text {text[:40]!r} gives no token but special ones for this "
                             "tokenizer; give at least one word")
        if len(ids) > self.max_length:
            if not truncate:
                raise InputError(f"text has {len(ids)} tokens, more than this model's limit of "
                                 f"{self.max_length}; shorten it or pass truncate=True")
            warnings.warn(f"text has {len(ids)} tokens; truncated to the model's limit of {self.max_length}",
                          stacklevel=3)
            ids = self.tokenizer(text, add_special_tokens=True, truncation=True,
                                 max_length=self.max_length)["input_ids"]
        return self._remove(list(ids), remove, removal)

    def _remove(self, ids: list[int], remove: Sequence[int] | None, removal: str) -> Encoded:
        if removal not in REMOVALS:
            raise InputError(f"removal must be one of {', '.join(REMOVALS)}, not {removal!r}")
        positions = tuple(sorted(set(_positions(remove))))
        bad = [p for p in positions if not 0 <= p < len(ids)]
        if bad:
            raise InputError(f"cannot remove positions {bad}: the input has {len(ids)} tokens (0..{len(ids) - 1})")
        attend = [1] * len(ids)
        if removal == "delete":
            if len(positions) == len(ids):
                raise InputError("cannot remove every token of the input")
            keep = [i for i in range(len(ids)) if i not in set(positions)]
            return Encoded([ids[i] for i in keep], [1] * len(keep), positions)
        replacement = {"mask": self.tokenizer.mask_token_id, "unk": self.tokenizer.unk_token_id,
                       "pad": self._pad_id}[removal]
        if replacement is None:
            raise InputError(f"removal={removal!r} needs a {removal} token, which this tokenizer lacks; "
                             "use removal='delete'")
        for p in positions:
            ids[p] = int(replacement)
            if removal == "pad":
                attend[p] = 0
        return Encoded(ids, attend, positions)

    def batch(self, encoded: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        """Right-padded tensors {input_ids, attention_mask} [batch, n] for encoded inputs."""
        n = max(len(e.input_ids) for e in encoded)
        ids = torch.full((len(encoded), n), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), n), dtype=torch.long)
        for b, e in enumerate(encoded):
            ids[b, : len(e.input_ids)] = torch.tensor(e.input_ids)
            mask[b, : len(e.attend)] = torch.tensor(e.attend)
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}

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

    # ----------------------------------------------------------------- running
    def forward(self, batch: Mapping[str, torch.Tensor], *, overrides: Mapping[tuple[int, int], torch.Tensor] | None = None,
                capture: bool = False, hidden_states: bool = False,
                keep: Mapping[int, Sequence[int] | None] | None = None) -> tuple[Any, AttentionHook]:
        """Run the model on a prepared batch with the given (already checked) overrides.

        Differentiable with respect to override tensors; the hook holds captured weights/values
        (only the layers/heads in ``keep`` when given, see :class:`AttentionHook`).
        """
        hook = AttentionHook(overrides=dict(overrides or {}), capture=capture, keep=keep)
        with attention_hooks(self._attention_modules, hook):
            out = self.module(**batch, output_hidden_states=hidden_states)
        return out, hook

    def trace(self, text: str, *, attention_override: Override | None = None,
              remove: Sequence[int] | None = None, removal: str = "delete", truncate: bool = False,
              heads: Sequence[tuple[int, int]] | None = None, layers: Sequence[int] | None = None) -> Trace:
        """One forward pass capturing tokens, attentions [L,H,n,n], values [L,H,n,d], hidden
        states [L+1,n,D], logits and probabilities (numpy).

        ``heads=[(layer, head), ...]`` and/or ``layers=[layer, ...]`` capture only those heads
        (every head of the listed layers): the hook keeps nothing else, and ``Trace.attentions``
        / ``.values`` are :class:`HeadArray` holding just them. Default: every head.
        """
        keep = self._check_capture(heads, layers)
        enc = self.encode(text, remove=remove, removal=removal, truncate=truncate)
        overrides = self.check_overrides(attention_override, [len(enc.input_ids)])
        with torch.no_grad():
            out, hook = self.forward(self.batch([enc]), overrides=overrides, capture=True, hidden_states=True,
                                     **({} if keep is None else {"keep": keep}))
        if keep is None:   # layer by layer into one array, freeing each captured layer as it is copied
            att = _stack_popping(hook.weights, self.n_layers)   # [L, H, n, n]
            val = _stack_popping(hook.values, self.n_layers)    # [L, H, n, d]
            captured = None
        else:
            selected = getattr(hook, "keep", None) is not None   # the hook stored only the asked heads
            w, v = {}, {}
            for layer, asked in keep.items():
                for j, h in enumerate(asked):
                    w[(layer, h)] = hook.weights[layer][0, j if selected else h]   # [n, n]
                    v[(layer, h)] = hook.values[layer][0, j if selected else h]    # [n, d]
            n, d = len(enc.input_ids), next(iter(v.values())).shape[-1]
            att = HeadArray(w, (self.n_layers, self.n_heads, n, n))
            val = HeadArray(v, (self.n_layers, self.n_heads, n, d))
            captured = att.captured
        logits = out.logits[0].float()
        tokens = [_display(t) for t in self.tokenizer.convert_ids_to_tokens(enc.input_ids)]
        special_ids = set(self.tokenizer.all_special_ids)
        return Trace(
            tokens=tokens, input_ids=np.array(enc.input_ids), attentions=att, values=val,
            hidden_states=torch.stack([h[0] for h in out.hidden_states]).float().cpu().numpy(),
            logits=logits.cpu().numpy(), probs=torch.softmax(logits, -1).cpu().numpy(),
            special=np.array([i in special_ids for i in enc.input_ids]), task=self.task, labels=self.labels,
            text=text, removed=enc.removed, removal=removal, overridden=tuple(sorted(overrides)),
            model_name=self.name, is_causal=self.is_causal, captured=captured)

    def _check_capture(self, heads: Sequence[tuple[int, int]] | None,
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

    def output_logits(self, out: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The logits ``predict`` reports, [batch, classes or vocab], from a forward output."""
        logits = out.logits
        if self.task == "sequence-classification":
            return logits
        lengths = batch["attention_mask"].shape[1] - 1 - batch["attention_mask"].flip(1).argmax(1)
        rows = torch.arange(logits.shape[0], device=logits.device)
        if self.task == "causal-lm":
            return logits[rows, lengths]            # next token after the last real token
        is_mask = batch["input_ids"] == self.tokenizer.mask_token_id
        if not bool(is_mask.any(1).all()):
            raise InputError("a masked-LM prediction is read at the last mask token: put "
                             f"{self.tokenizer.mask_token!r} in every input")
        last = is_mask.shape[1] - 1 - is_mask.flip(1).int().argmax(1)
        return logits[rows, last]

    def predict(self, texts: str | Sequence[str], *, attention_override: Override | None = None,
                remove: Sequence[int] | None = None, removal: str = "delete", batch_size: int = 32,
                truncate: bool = False) -> np.ndarray:
        """Probabilities [batch, classes] (classifier) or [batch, vocab] (next / masked token).

        ``remove`` is one list of positions for every text, or a list of such lists, one per
        text (e.g. many candidate removals from one text, evaluated in one batch).
        """
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 0:
            raise InputError("predict needs at least one text")
        if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, not {batch_size!r}")
        removes = _per_text(remove, len(texts))
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


def _positions(remove: Sequence[int] | None) -> list[int]:
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


def _per_text(remove: Sequence[Any] | None, n_texts: int) -> list[Sequence[int] | None]:
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


def _unsupported(model_type: str) -> str:
    return (f"architecture {model_type!r} is not supported: its attention does not go through transformers' "
            "AttentionInterface, so attnlab cannot capture or override it; known to work: "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}")


def infer_task(config: Any) -> str:
    """The task from ``config.architectures`` (e.g. ``BertForSequenceClassification``)."""
    for arch in getattr(config, "architectures", None) or []:
        if arch.endswith("ForSequenceClassification"):
            return "sequence-classification"
        if arch.endswith("ForMaskedLM"):
            return "masked-lm"
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return "causal-lm"
    raise ValueError(f"cannot infer the task of this {config.model_type} model from its config "
                     f"(architectures={getattr(config, 'architectures', None)}); pass task= one of {', '.join(TASKS)}")
