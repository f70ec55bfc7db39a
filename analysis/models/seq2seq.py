"""``Seq2SeqModel``: an encoder-decoder transformer (T5, BART, ...) behind the :class:`Model` interface.

What is traced and predicted
    The input is the *source* text, read by the encoder. The decoder reads a fixed *decoder
    input*: the model's decoder start token followed by the tokens of ``target_text`` (a prefix of
    the output, ``""`` by default; tokenised without special tokens). The prediction is the
    decoder's top-1 next token after that input: with the default empty prefix, the first token
    the model would generate (greedy). ``target_text`` belongs to the model, not to a call, so
    ``trace``, ``predict`` and every analysis built on them (``abcd.explain``, efficient
    attention, interventions) see the same decoder input; ``model.with_target("Das Haus")`` gives
    a view of the same weights with another prefix.

Attention sites
    Every call of the attention function is a named site (:func:`find_attention_sites`):
    ``"encoder.i"`` (encoder self-attention, ``[H, n, n]``), ``"decoder.i.self"`` (causal
    decoder self-attention, ``[H, m, m]``) and ``"decoder.i.cross"`` (decoder queries over
    encoder keys, ``[H, m, n]``), ``n`` source tokens and ``m`` decoder input tokens.
    ``trace.attentions`` / ``trace.values`` are the **encoder** self-attention ``[L, H, n, n]`` /
    ``[L, H, n, d]`` (``n_layers`` / ``n_heads`` are the encoder's), so ABCD, efficient attention,
    ``explain`` and the panels work on the source tokens unchanged. Every site is in
    ``trace.sites[name]`` (numpy ``[H, queries, keys]``; ``trace.site_values[name]`` the
    ``[H, keys, d]`` values it multiplies), names in order in ``trace.site_names``. A selective
    trace (``heads=`` / ``layers=``) keeps only the asked encoder heads; its ``sites`` then holds
    the decoder sites only (always captured in full: they are ``m`` rows).

Overrides and removal
    ``attention_override={(layer, head): [n, n]}`` replaces an encoder head, as for every model.
    Any site can be replaced by name: ``{("decoder.0.cross", head): [m, n]}``,
    ``{("decoder.1.self", head): [m, m]}`` (``("encoder.0", h)`` is the same as ``(0, h)``); the
    trace lists the replaced decoder sites in ``overridden_sites``. ``remove=`` positions are
    source (encoder) positions; the decoder input is never changed.

Any encoder-decoder model whose attention goes through transformers' ``AttentionInterface``
works; T5 (relative position bias) and BART are tested against Hugging Face's eager attention.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from analysis.models.attention import AttentionHook, attention_hooks, find_attention_sites
from analysis.models.base import Encoded, ForwardOutput, InputError, Override, _stack_popping
from analysis.models.model import Model
from analysis.models.text import _display
from analysis.models.trace import HeadArray, Trace
from analysis.types import Removal, Task

__all__ = ["Seq2SeqModel", "Seq2SeqTrace", "Seq2SeqEncoded", "Seq2SeqHook"]

#: T5-family models start the decoder with the pad token (their configs may omit the start id)
_PAD_STARTS = ("t5", "mt5", "umt5", "longt5")


@dataclass(frozen=True)
class Seq2SeqEncoded(Encoded):
    """An encoded source text plus the decoder input it is read with."""

    decoder_ids: tuple[int, ...] = ()     # [m] decoder start token + target_text's tokens


@dataclass(frozen=True, eq=False)
class Seq2SeqTrace(Trace):
    """A :class:`Trace` of an encoder-decoder model: the inherited fields describe the source
    (encoder) tokens; ``logits`` / ``probs`` are ``[m, V]``, one row per decoder input position,
    and :attr:`prediction` is the top next token after the last one."""

    site_names: tuple[str, ...] = ()                                  # every site, in call order
    sites: Mapping[str, np.ndarray] = field(default_factory=dict)     # name -> [H, queries, keys]
    site_values: Mapping[str, np.ndarray] = field(default_factory=dict)  # name -> [H, keys, d]
    decoder_tokens: tuple[str, ...] = ()     # [m] the decoder input, for people
    decoder_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))   # [m]
    target_text: str = ""                    # the decoder prefix after the start token
    overridden_sites: tuple[tuple[str, int], ...] = ()   # (decoder site, head) pairs replaced
    next_token: str = ""                     # the predicted token, for people

    def site(self, name: str) -> np.ndarray:
        """The ``[H, queries, keys]`` attention of one named site, with a clear error."""
        if name not in self.site_names:
            raise KeyError(f"no attention site {name!r}; this model's sites are {', '.join(self.site_names)}")
        if name not in self.sites:
            raise KeyError(f"site {name!r} was not captured: a selective trace (heads=/layers=) keeps only the "
                           "asked encoder heads (trace.attentions) and the decoder sites")
        return self.sites[name]

    def __repr__(self) -> str:
        shown = " ".join(self.tokens[:12]) + (" ..." if self.n_tokens > 12 else "")
        return (f"Seq2SeqTrace({self.n_tokens} source tokens [{shown}], decoder input "
                f"[{' '.join(self.decoder_tokens)}], next token {self.next_token!r} "
                f"({float(np.max(self.probs[-1])):.3f}), {self.n_layers} encoder layers x {self.n_heads} heads, "
                f"{len(self.site_names)} sites, model={self.model_name!r})")


@dataclass
class Seq2SeqHook(AttentionHook):
    """An :class:`AttentionHook` over every site of an encoder-decoder model.

    Encoder sites are handled as usual with the *encoder layer* as the layer (``overrides[(layer,
    head)]``, ``weights`` / ``values`` / ``keep`` keyed by encoder layer). Decoder sites take
    ``overrides[(name, head)]`` (``[q, k]`` or ``[batch, q, k]``, filling the top-left block of
    that head's rows) and, with ``capture``, are kept whole in ``site_weights[name]``
    ``[batch, H, q, k]`` and ``site_values[name]`` ``[batch, H, k, d]``.
    """

    names: Sequence[str] = ()
    encoder_layer: Mapping[int, int] = field(default_factory=dict)   # site index -> encoder layer
    site_weights: dict[str, torch.Tensor] = field(default_factory=dict)
    site_values: dict[str, torch.Tensor] = field(default_factory=dict)

    def apply(self, layer: int, weights: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        if layer in self.encoder_layer:
            return super().apply(self.encoder_layer[layer], weights, value)
        name = self.names[layer]
        heads = [h for (site, h) in self.overrides if site == name]
        if heads:
            weights = weights.clone()
            for h in heads:
                m = self.overrides[(name, h)].to(device=weights.device, dtype=weights.dtype)  # type: ignore[index]
                q, k = m.shape[-2:]
                weights[:, h] = 0.0
                weights[:, h, :q, :k] = m
        if self.capture:
            self.site_weights[name] = weights.detach()
            self.site_values[name] = value.detach()
        return weights


class Seq2SeqModel(Model):
    """An encoder-decoder Hugging Face model (``T5ForConditionalGeneration``,
    ``BartForConditionalGeneration``, any ``AutoModelForSeq2SeqLM``) ready for tracing; see the
    module docstring for what is traced. :func:`analysis.load_model` builds one for such models.

    ``Seq2SeqModel(hf_model, tokenizer, target_text="", decoder_start_token_id=None, **model_options)``:
    ``decoder_start_token_id`` defaults to the config's (or generation config's), T5's pad token.
    ``model_options`` (``name``, ``device``, ...) are :class:`Model`'s.
    """

    #: Model's constructor accepts encoder-decoder configs only for this class
    encoder_decoder: ClassVar[bool] = True

    def __init__(self, module: nn.Module, tokenizer: Any, *, task: Task | None = None, target_text: str = "",
                 decoder_start_token_id: int | None = None, **options: Any) -> None:
        config = module.config
        if not getattr(config, "is_encoder_decoder", False):
            raise ValueError(f"Seq2SeqModel wraps encoder-decoder models (T5, BART, ...); {config.model_type!r} is "
                             "not one: use Model")
        if task not in (None, "seq2seq-lm"):
            raise ValueError(f"an encoder-decoder model is traced as task 'seq2seq-lm' (next decoder token), not "
                             f"{task!r}")
        head = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None
        if head is None:
            raise ValueError(f"Seq2SeqModel needs an encoder-decoder with a language-model head "
                             f"(...ForConditionalGeneration), not a {type(module).__name__}")
        start = decoder_start_token_id
        for source in (config, getattr(module, "generation_config", None)):
            if start is None:
                start = getattr(source, "decoder_start_token_id", None)
        if start is None and config.model_type in _PAD_STARTS:
            start = config.pad_token_id
        if start is None:
            raise ValueError(f"this {config.model_type} model has no decoder_start_token_id in its config; pass "
                             "Seq2SeqModel(..., decoder_start_token_id=<id>)")
        self._start_id = int(start)

        def with_decoder_input(_: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            # Model's constructor probes the module with input ids only; give it a decoder input
            if kwargs.get("decoder_input_ids") is None and kwargs.get("decoder_inputs_embeds") is None:
                ids = kwargs.get("input_ids", args[0] if args else None)
                kwargs["decoder_input_ids"] = torch.full((ids.shape[0], 1), self._start_id, dtype=torch.long,
                                                         device=ids.device)
            return args, kwargs

        handle = module.register_forward_pre_hook(with_decoder_input, with_kwargs=True)
        try:
            super().__init__(module, tokenizer, task="seq2seq-lm", **options)
        finally:
            handle.remove()
        self.target_text = target_text      # checks and tokenises
        # name every site with encoder and decoder inputs of different lengths (cross: keys != queries)
        probe = {"input_ids": torch.full((1, 4), self._pad_id, device=self.device),
                 "attention_mask": torch.ones((1, 4), dtype=torch.long, device=self.device),
                 "decoder_input_ids": torch.full((1, 2), self._start_id, device=self.device)}
        modules, names = find_attention_sites(self.module, probe)
        self._site_modules: list[nn.Module] = modules
        self._site_names: tuple[str, ...] = tuple(names)
        self._encoder_layer = {i: int(s.split(".")[1]) for i, s in enumerate(names) if s.startswith("encoder.")}
        self._attention_modules = [modules[i] for i in self._encoder_layer]   # encoder layers, in order
        if not self._attention_modules or len(self._encoder_layer) == len(names):
            raise ValueError(f"found no {'encoder' if not self._attention_modules else 'decoder'} attention in this "
                             f"{config.model_type} model: its attention does not go through transformers' "
                             "AttentionInterface")
        with torch.no_grad():
            _, hook = self.forward(probe, capture=True)
        self._site_heads = {s: int(w.shape[1]) for s, w in hook.site_weights.items()}
        self._site_heads.update({s: self.n_heads for s in names if s.startswith("encoder.")})
        self._causal = False    # the source is read both ways

    # ----------------------------------------------------------------- decoder input
    @property
    def target_text(self) -> str:
        """The decoder prefix (after the start token) whose next token is predicted; ``""``: the first token."""
        return self._target_text

    @target_text.setter
    def target_text(self, text: str) -> None:
        if not isinstance(text, str):
            raise InputError(f"target_text must be a string, not {type(text).__name__}")
        ids = [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]] if text.strip() else []
        if 1 + len(ids) > self.max_length:
            raise InputError(f"target_text has {len(ids)} tokens; the decoder input may have at most "
                             f"{self.max_length - 1} after the start token")
        self._target_text = text
        self._decoder_ids = (self._start_id, *ids)

    @property
    def decoder_ids(self) -> tuple[int, ...]:
        """The decoder input ``[m]``: the start token, then ``target_text``'s tokens."""
        return self._decoder_ids

    def with_target(self, target_text: str) -> "Seq2SeqModel":
        """The same model (same weights, not copied) reading the decoder prefix ``target_text``."""
        other = copy.copy(self)
        other.target_text = target_text
        return other

    @property
    def site_names(self) -> tuple[str, ...]:
        """Every attention site, in call order: ``encoder.i``, then ``decoder.i.self`` / ``decoder.i.cross``."""
        return self._site_names

    @property
    def site_modules(self) -> tuple[nn.Module, ...]:
        """The attention module of each site (same order as :attr:`site_names`)."""
        return tuple(self._site_modules)

    def __repr__(self) -> str:
        return (f"Seq2SeqModel({self.name!r}, {self.config.model_type}, {len(self._attention_modules)} encoder "
                f"layers x {self.n_heads} heads, {len(self._site_names)} attention sites, "
                f"target_text={self.target_text!r})")

    # ----------------------------------------------------------------- inputs
    def encode(self, text: str, *, remove: Sequence[int] | None = None, removal: Removal = "delete",
               truncate: bool = False) -> Seq2SeqEncoded:
        """The source text as encoder ids (``remove`` = source positions), with the decoder input."""
        enc = super().encode(text, remove=remove, removal=removal, truncate=truncate)
        return Seq2SeqEncoded(enc.input_ids, enc.attend, enc.removed, self._decoder_ids)

    def batch(self, encoded: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        """Right-padded ``input_ids`` / ``attention_mask`` [b, n] and ``decoder_input_ids`` /
        ``decoder_attention_mask`` [b, m]."""
        out = super().batch(encoded)
        decoder = [tuple(getattr(e, "decoder_ids", ()) or self._decoder_ids) for e in encoded]
        m = max(len(d) for d in decoder)
        ids = torch.full((len(decoder), m), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(decoder), m), dtype=torch.long)
        for b, d in enumerate(decoder):
            ids[b, : len(d)] = torch.tensor(d)
            mask[b, : len(d)] = 1
        out["decoder_input_ids"] = ids.to(self.device)
        out["decoder_attention_mask"] = mask.to(self.device)
        return out

    def check_overrides(self, overrides: Override | None, lengths: Sequence[int]) -> dict[Any, torch.Tensor]:
        """``(layer, head)`` keys replace encoder heads (checked as for every model); ``(site name,
        head)`` keys replace any site, ``[q, k]`` or ``[batch, q, k]`` for its query and key lengths."""
        if overrides is not None and not isinstance(overrides, Mapping):
            return super().check_overrides(overrides, lengths)   # raises the usual message
        plain: dict[Any, Any] = {}
        named: dict[tuple[str, int], torch.Tensor] = {}
        m = len(self._decoder_ids)
        for key, matrix in (overrides or {}).items():
            if not (isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str)):
                plain[key] = matrix
                continue
            site, head = key
            if site not in self._site_names:
                raise InputError(f"attention_override key {key!r}: no attention site {site!r}; this model's sites are "
                                 f"{', '.join(self._site_names)} (or use (layer, head) for encoder layers)")
            heads = self._site_heads[site]
            if isinstance(head, (bool, np.bool_)) or not isinstance(head, (int, np.integer)) or not -heads <= head < heads:
                raise InputError(f"attention_override key {key!r}: head must be an integer in 0..{heads - 1}")
            if site.startswith("encoder."):
                plain[(int(site.split(".")[1]), int(head))] = matrix
                continue
            mat = matrix if isinstance(matrix, torch.Tensor) else torch.as_tensor(np.asarray(matrix, dtype=np.float32))
            n = set(lengths)
            keys = m if site.endswith(".self") else max(lengths)
            if len(n) > 1 and site.endswith(".cross"):
                raise InputError("one attention_override applies to inputs of one length; these have "
                                 f"lengths {sorted(n)}")
            if mat.ndim not in (2, 3) or tuple(mat.shape[-2:]) != (m, keys):
                raise InputError(f"override for ({site!r}, head {head}) has shape {tuple(mat.shape)}; expected "
                                 f"({m}, {keys}): {m} decoder input token(s) x {keys} "
                                 f"{'decoder input' if site.endswith('.self') else 'source'} token(s)")
            if mat.ndim == 3 and mat.shape[0] not in (1, len(lengths)):
                raise InputError(f"a batched override needs one matrix per input ({len(lengths)}), got {mat.shape[0]}")
            if not bool(torch.isfinite(mat).all()):
                raise InputError(f"override for ({site!r}, head {head}) contains NaN or infinity")
            named[(site, int(head) % heads)] = mat.to(self.device)
        out: dict[Any, torch.Tensor] = dict(super().check_overrides(plain, lengths))
        out.update(named)
        return out

    # ----------------------------------------------------------------- running
    def forward(self, batch: Mapping[str, torch.Tensor], *, overrides: Mapping[Any, torch.Tensor] | None = None,
                capture: bool = False, hidden_states: bool = False,
                keep: Mapping[int, Sequence[int] | None] | None = None) -> tuple[ForwardOutput, Seq2SeqHook]:
        """Run on a prepared batch (without ``decoder_input_ids`` the model's decoder input is used).
        ``hidden_states`` are the encoder's; ``logits`` ``[b, m, V]`` the decoder's."""
        if not hasattr(self, "_site_names"):     # inside Model's constructor, before the sites are named
            return super().forward(batch, overrides=overrides, capture=capture, hidden_states=hidden_states, keep=keep)
        batch = dict(batch)
        if batch.get("decoder_input_ids") is None:
            ids = torch.tensor([self._decoder_ids], device=self.device)
            batch["decoder_input_ids"] = ids.expand(batch["input_ids"].shape[0], -1)
        hook = Seq2SeqHook(overrides=dict(overrides or {}), capture=capture, keep=keep, names=self._site_names,
                           encoder_layer=self._encoder_layer)
        with attention_hooks(self._site_modules, hook):
            out = self.module(**batch, output_hidden_states=hidden_states, use_cache=False)
        return ForwardOutput(logits=out.logits, hidden_states=out.encoder_hidden_states if hidden_states else None), hook

    def output_logits(self, out: ForwardOutput, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The next-token logits [b, V] after each input's last decoder token."""
        mask = batch.get("decoder_attention_mask")
        if mask is None:
            return out.logits[:, -1]
        last = mask.shape[1] - 1 - mask.flip(1).argmax(1)
        return out.logits[torch.arange(out.logits.shape[0], device=out.logits.device), last]

    def trace(self, text: Any, *, attention_override: Override | None = None,
              remove: Sequence[int] | None = None, removal: Removal = "delete", truncate: bool = False,
              heads: Sequence[tuple[int, int]] | None = None, layers: Sequence[int] | None = None,
              **options: Any) -> Seq2SeqTrace:
        """One forward pass: encoder attentions [L,H,n,n], values [L,H,n,d] and hidden states
        [L+1,n,D] of the source; every site in ``sites``; decoder logits [m, V] (see the module
        docstring). ``heads`` / ``layers`` select encoder heads as for :meth:`Model.trace`."""
        if options:
            raise InputError(f"unknown trace option(s) {', '.join(options)}; set the decoder prefix with "
                             "model.target_text or model.with_target(...)")
        keep = self.check_capture(heads, layers)
        enc = self.encode(text, remove=remove, removal=removal, truncate=truncate)
        overrides = self.check_overrides(attention_override, [len(enc.input_ids)])
        with torch.no_grad():
            out, hook = self.forward(self.batch([enc]), overrides=overrides, capture=True, hidden_states=True,
                                     **({} if keep is None else {"keep": keep}))
        n = len(enc.input_ids)
        sites = {s: w[0].float().cpu().numpy() for s, w in hook.site_weights.items()}
        values = {s: v[0].float().cpu().numpy() for s, v in hook.site_values.items()}
        if keep is None:
            att: np.ndarray | HeadArray = _stack_popping(hook.weights, self.n_layers)   # [L, H, n, n]
            val: np.ndarray | HeadArray = _stack_popping(hook.values, self.n_layers)    # [L, H, n, d]
            for i in range(self.n_layers):
                sites[f"encoder.{i}"], values[f"encoder.{i}"] = att[i], val[i]
            captured = None
        else:
            w = {(layer, h): hook.weights[layer][0, j] for layer, asked in keep.items() for j, h in enumerate(asked)}
            v = {(layer, h): hook.values[layer][0, j] for layer, asked in keep.items() for j, h in enumerate(asked)}
            att = HeadArray(w, (self.n_layers, self.n_heads, n, n))
            val = HeadArray(v, (self.n_layers, self.n_heads, n, next(iter(v.values())).shape[-1]))
            captured = att.captured
        logits = out.logits[0].float()
        probs = torch.softmax(logits, -1).cpu().numpy()
        special = self.special_ids
        order = {s: i for i, s in enumerate(self._site_names)}
        return Seq2SeqTrace(
            tokens=self.display_tokens(enc.input_ids), input_ids=np.array(enc.input_ids), attentions=att, values=val,
            hidden_states=torch.stack([h[0] for h in out.hidden_states]).float().cpu().numpy(),
            logits=logits.cpu().numpy(), probs=probs,
            special=np.array([i in special for i in enc.input_ids], dtype=bool), task=self.task, labels=(),
            text=text, removed=enc.removed, removal=removal,
            overridden=tuple(sorted(k for k in overrides if not isinstance(k[0], str))), model_name=self.name,
            is_causal=False, captured=captured, site_names=self._site_names,
            sites={s: sites[s] for s in self._site_names if s in sites},
            site_values={s: values[s] for s in self._site_names if s in values},
            decoder_tokens=tuple(self.display_tokens(self._decoder_ids)), decoder_ids=np.array(self._decoder_ids),
            target_text=self.target_text,
            overridden_sites=tuple(sorted((k for k in overrides if isinstance(k[0], str)), key=lambda k: (order[k[0]], k[1]))),
            next_token=_display(self.tokenizer.convert_ids_to_tokens(int(np.argmax(probs[-1])))))
