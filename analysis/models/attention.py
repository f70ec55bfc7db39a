"""One attention function for every supported architecture: capture and override in one place.

Transformers 5 routes BERT, RoBERTa, DistilBERT, GPT-2, Llama (and most others) through
``AttentionInterface``. We register ``"attnlab"``: plain eager attention, plus a per-call
hook that records each head's weights and values and replaces chosen heads' weights.
The hook lives on the attention modules only inside :func:`attention_hooks`, which always
removes it in ``finally``; outside it the function is exactly eager attention.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Mapping

import torch
from torch import nn

IMPLEMENTATION = "attnlab"
_HOOK_ATTR = "_attnlab_hook"


@dataclass
class AttentionHook:
    """What one forward pass does at each attention call.

    ``overrides[(layer, head)]`` is a tensor ``[n, n]`` or ``[batch, n, n]`` used in place of
    that head's attention weights (rows: queries, columns: keys); with padding it fills the
    top-left ``n x n`` block and the rest of those rows is zero. With ``capture`` the weights
    ``[batch, head, query, key]`` and values ``[batch, head, key, d_head]`` of every layer are
    kept (detached) in ``weights`` and ``values``.
    """

    overrides: Mapping[tuple[int, int], torch.Tensor] = field(default_factory=dict)
    capture: bool = False
    weights: dict[int, torch.Tensor] = field(default_factory=dict)
    values: dict[int, torch.Tensor] = field(default_factory=dict)

    def apply(self, layer: int, weights: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        heads = [h for (lay, h) in self.overrides if lay == layer]
        if heads:
            weights = weights.clone()
            for h in heads:
                m = self.overrides[(layer, h)].to(weights.dtype)
                n = m.shape[-1]
                weights[:, h] = 0.0
                weights[:, h, :n, :n] = m
        if self.capture:
            self.weights[layer] = weights.detach()   # [batch, head, query, key]
            self.values[layer] = value.detach()      # [batch, head, key, d_head]
        return weights


def attnlab_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, scaling: float | None = None,
                      dropout: float = 0.0, softcap: float | None = None, **_: object
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention (``[batch, head, query, d]`` in), with the module's hook applied if set."""
    n_rep = query.shape[1] // key.shape[1]          # grouped-query attention (Llama)
    if n_rep > 1:
        key = key.repeat_interleave(n_rep, dim=1)
        value = value.repeat_interleave(n_rep, dim=1)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling   # [batch, head, query, key]
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : key.shape[-2]]
    weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    hook: tuple[AttentionHook, int] | None = getattr(module, _HOOK_ATTR, None)
    if hook is not None:
        weights = hook[0].apply(hook[1], weights, value)
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
    """Records which module (by index in ``model.modules()``) called attention, in call order."""

    calls: list[int] = field(default_factory=list)

    def apply(self, layer: int, weights: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        self.calls.append(layer)
        return weights


def find_attention_modules(model: nn.Module, dummy_inputs: Mapping[str, torch.Tensor]) -> list[nn.Module]:
    """The modules that call the attention function, in layer order (found by one dummy pass)."""
    modules = list(model.modules())
    discovery = _Discovery()
    with attention_hooks(modules, discovery), torch.no_grad():
        model(**dummy_inputs)
    return [modules[i] for i in discovery.calls]


@contextmanager
def attention_hooks(modules: list[nn.Module], hook: AttentionHook) -> Iterator[AttentionHook]:
    """Attach ``hook`` to each attention module (layer = position in ``modules``); always detach."""
    try:
        for layer, m in enumerate(modules):
            setattr(m, _HOOK_ATTR, (hook, layer))
        yield hook
    finally:
        for m in modules:
            if hasattr(m, _HOOK_ATTR):
                delattr(m, _HOOK_ATTR)
