"""One attention function for every supported architecture: capture and override in one place.

Transformers 5 routes BERT, RoBERTa, DistilBERT, GPT-2, Llama (and most others) through
``AttentionInterface``. We register ``"attnlab"``: plain eager attention, plus a per-call
hook that records each head's weights and values and replaces chosen heads' weights.
The hook lives on the attention modules only inside :func:`attention_hooks`, which always
removes it in ``finally``; outside it the function is exactly eager attention. Hooks are kept
per thread, so two threads may run one model at once (a panel's job and the notebook).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

import torch
from torch import nn

IMPLEMENTATION = "attnlab"
_HOOK_ATTR = "_attnlab_hook"      # on a hooked module: {thread id: (hook, layers)}
_SITES_LOCK = threading.Lock()     # guards creating / removing those tables


@dataclass
class AttentionHook:
    """What one forward pass does at each attention site (one call of the attention function).

    ``overrides[(layer, head)]`` is a tensor ``[n, n]`` or ``[batch, n, n]`` used in place of
    that head's attention weights (rows: queries, columns: keys); with padding it fills the
    top-left ``n x n`` block and the rest of those rows is zero. With ``capture`` the weights
    ``[batch, head, query, key]`` and values ``[batch, head, key, d_head]`` of every layer are
    kept (detached) in ``weights`` and ``values``. ``keep`` limits what is kept:
    ``{layer: None}`` keeps every head of that layer, ``{layer: [h, ...]}`` only those heads
    (``weights[layer]`` is then ``[batch, len(heads), query, key]``, in the order given);
    layers absent from ``keep`` are not kept. ``keep=None`` keeps everything.
    """

    overrides: Mapping[tuple[int, int], torch.Tensor] = field(default_factory=dict)
    capture: bool = False
    weights: dict[int, torch.Tensor] = field(default_factory=dict)
    values: dict[int, torch.Tensor] = field(default_factory=dict)
    keep: Mapping[int, Sequence[int] | None] | None = None
    _calls: dict[int, int] = field(default_factory=dict, repr=False)

    def site(self, module: nn.Module, layers: Sequence[int]) -> int:
        """The layer index of this call of ``module``: a module shared by several layers
        (ALBERT) is called once per layer, so its k-th call in a pass is its k-th layer."""
        if len(layers) == 1:
            return layers[0]
        k = self._calls.get(id(module), 0)
        self._calls[id(module)] = k + 1
        return layers[k % len(layers)]

    def apply(self, layer: int, weights: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        heads = [h for (lay, h) in self.overrides if lay == layer]
        if heads:
            weights = weights.clone()
            for h in heads:
                m = self.overrides[(layer, h)].to(device=weights.device, dtype=weights.dtype)   # any dtype, any device
                n = m.shape[-1]
                weights[:, h] = 0.0
                weights[:, h, :n, :n] = m
        if self.capture and (self.keep is None or layer in self.keep):
            asked = None if self.keep is None else self.keep[layer]
            if asked is None:
                self.weights[layer] = weights.detach()   # [batch, head, query, key]
                self.values[layer] = value.detach()      # [batch, head, key, d_head]
            else:
                index = torch.as_tensor(list(asked), dtype=torch.long, device=weights.device)
                self.weights[layer] = weights.detach().index_select(1, index)   # [batch, asked, query, key]
                self.values[layer] = value.detach().index_select(1, index)      # [batch, asked, key, d_head]
        return weights


def attnlab_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, scaling: float | None = None,
                      dropout: float = 0.0, softcap: float | None = None,
                      position_bias: torch.Tensor | None = None, **kwargs: object
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention (``[batch, head, query, d]`` in), with the module's hook applied if set.

    ``position_bias`` ``[batch or 1, head, query, key]`` (T5's relative positions) is added to
    the scores; attention sinks (``s_aux``, gpt-oss) are refused rather than silently ignored.
    """
    if kwargs.get("s_aux") is not None:
        raise NotImplementedError(f"{type(module).__name__} uses attention sinks (s_aux), which attnlab's "
                                  "attention function does not implement")
    n_rep = query.shape[1] // key.shape[1]          # grouped-query attention (Llama)
    if n_rep > 1:
        key = key.repeat_interleave(n_rep, dim=1)
        value = value.repeat_interleave(n_rep, dim=1)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling   # [batch, head, query, key]
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if position_bias is not None:
        scores = scores + position_bias
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : key.shape[-2]]
    weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    table: dict[int, tuple[AttentionHook, list[int]]] | None = getattr(module, _HOOK_ATTR, None)
    hook = table.get(threading.get_ident()) if table else None
    if hook is not None:
        weights = hook[0].apply(hook[0].site(module, hook[1]), weights, value)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()  # [batch, query, head, d]
    return output, weights


def register() -> None:
    """Register ``"attnlab"`` with transformers' attention and mask interfaces (idempotent)."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import eager_mask

    AttentionInterface.register(IMPLEMENTATION, attnlab_attention)
    AttentionMaskInterface.register(IMPLEMENTATION, eager_mask)


@dataclass
class _Discovery(AttentionHook):
    """Records which module (by index in ``model.modules()``) called attention, in call order,
    with the query and key lengths of each call."""

    calls: list[int] = field(default_factory=list)
    lengths: list[tuple[int, int]] = field(default_factory=list)

    def apply(self, layer: int, weights: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        self.calls.append(layer)
        self.lengths.append((int(weights.shape[-2]), int(weights.shape[-1])))
        return weights


def _discover(model: nn.Module, dummy_inputs: Mapping[str, torch.Tensor]) -> tuple[list[nn.Module], _Discovery]:
    modules = list(model.modules())
    discovery = _Discovery()
    with attention_hooks(modules, discovery), torch.no_grad():
        model(**dummy_inputs)
    return [modules[i] for i in discovery.calls], discovery


def find_attention_modules(model: nn.Module, dummy_inputs: Mapping[str, torch.Tensor]) -> list[nn.Module]:
    """The modules that call the attention function, one entry per call, in call order (found by
    one dummy pass). A module shared across layers (ALBERT) appears once per layer."""
    return _discover(model, dummy_inputs)[0]


def find_attention_sites(model: nn.Module, dummy_inputs: Mapping[str, torch.Tensor]
                         ) -> tuple[list[nn.Module], list[str]]:
    """The attention modules (as :func:`find_attention_modules`) and a name for each site.

    Encoder-only and decoder-only models: ``"0"``, ``"1"``, ... . Encoder-decoder models:
    ``"encoder.i"``, ``"decoder.i.self"`` and ``"decoder.i.cross"``; a call is cross-attention
    when its keys are not its queries, so give the dummy pass encoder and decoder inputs of
    different lengths.
    """
    modules, discovery = _discover(model, dummy_inputs)
    if not getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        return modules, [str(i) for i in range(len(modules))]
    paths = {id(m): name for name, m in model.named_modules(remove_duplicate=False)}
    names: list[str] = []
    counts = {"encoder": 0, "decoder": 0}
    for m, (q, k) in zip(modules, discovery.lengths, strict=True):
        parts = paths.get(id(m), "").split(".")
        part = next((p for p in parts if p in counts), None)
        if part is None:
            raise ValueError(f"cannot tell whether attention module {paths.get(id(m))!r} belongs to the encoder or the decoder")
        if part == "encoder":
            names.append(f"encoder.{counts['encoder']}")
            counts["encoder"] += 1
        elif q != k:
            names.append(f"decoder.{counts['decoder'] - 1}.cross")
        else:
            names.append(f"decoder.{counts['decoder']}.self")
            counts["decoder"] += 1
    return modules, names


@contextmanager
def attention_hooks(modules: list[nn.Module], hook: AttentionHook) -> Iterator[AttentionHook]:
    """Attach ``hook`` to each attention module for the calling thread (layer = position in
    ``modules``; a module listed several times, shared across layers, takes those layers in call
    order); always detach. Other threads' hooks on the same modules are left alone."""
    sites: dict[int, tuple[nn.Module, list[int]]] = {}
    for layer, m in enumerate(modules):
        sites.setdefault(id(m), (m, []))[1].append(layer)
    thread = threading.get_ident()
    try:
        with _SITES_LOCK:
            for m, layers in sites.values():
                table = m.__dict__.get(_HOOK_ATTR)
                if table is None:
                    table = {}
                    setattr(m, _HOOK_ATTR, table)
                table[thread] = (hook, layers)
        yield hook
    finally:
        with _SITES_LOCK:
            for m, _ in sites.values():
                table = m.__dict__.get(_HOOK_ATTR)
                if table is not None:
                    table.pop(thread, None)
                    if not table:
                        delattr(m, _HOOK_ATTR)
