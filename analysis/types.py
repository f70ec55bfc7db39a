"""The string options of attnlab's public API as ``Literal`` aliases, defined once.

Typing only (no numpy, torch or analysis imports), so every layer can use it, ``analysis.causal``
included. The runtime tuples of valid values (``ALGORITHMS``, ``REMOVALS``, ...) are derived from
these with ``typing.get_args``, so the type and the check cannot drift apart.
"""
from __future__ import annotations

from typing import Literal

__all__ = ["Algorithm", "AttentionKind", "Basis", "GraphKind", "NodeSet", "Removal", "Task"]

Algorithm = Literal["pc", "fci", "icd"]
"""A structure-learning algorithm of ``analysis.causal.learn_graph``."""

Removal = Literal["delete", "mask", "pad", "unk"]
"""How removed tokens are taken out of an input: dropped, or replaced by [MASK], [PAD] or [UNK]."""

Basis = Literal["value", "value_output", "hidden", "jacobian"]
"""The vectors an attention row is decomposed against (``analysis.efficient``)."""

AttentionKind = Literal["raw", "efficient"]
"""Which attention a graph is learned from: the raw matrix or its efficient (output-reaching) part."""

NodeSet = Literal["all", "content"]
"""Named token sets: every position, or the content tokens only (no special tokens)."""

Task = Literal["sequence-classification", "masked-lm", "causal-lm", "seq2seq-lm"]
"""The head a Hugging Face model is traced with ("seq2seq-lm": an encoder-decoder's next decoder token)."""

GraphKind = Literal["dag", "cpdag", "pag"]
"""What a learned ``Graph`` represents."""
