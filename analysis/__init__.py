"""attnlab's analysis package: trace transformers, test and learn causal structure over
tokens, and measure what in an attention matrix reaches the output.

Heavy modules (torch, transformers) load on first use, so ``import analysis.causal`` stays
numpy-only and fast.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["load_model", "load_dataset", "Model", "TracedModel", "Trace"]

_LAZY = {
    "load_model": ("analysis.models", "load_model"),
    "Model": ("analysis.models", "Model"),
    "TracedModel": ("analysis.models", "TracedModel"),
    "Trace": ("analysis.models", "Trace"),
    "load_dataset": ("analysis.data", "load_dataset"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
