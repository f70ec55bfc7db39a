"""Helpers shared by the experiments: seeded text samples, atomic CSV tables, fast mode."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from analysis.files import atomic_path

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

__all__ = ["capped", "sample_texts", "save_table", "fast_mode"]


def fast_mode() -> bool:
    """True when ``ATTNLAB_FAST=1``: notebooks and scripts use tiny samples (CI)."""
    return os.environ.get("ATTNLAB_FAST") == "1"


def capped(model: TracedModel, text: str, max_tokens: int) -> str:
    """``text`` cut to at most ``max_tokens`` tokens (special tokens included), decoded back."""
    if max_tokens < 3:
        raise ValueError(f"max_tokens must be at least 3 (two special tokens and a word), got {max_tokens}")
    ids = model.tokenizer(text, add_special_tokens=False, truncation=True, max_length=max_tokens - 2)["input_ids"]
    return text if len(ids) < max_tokens - 2 else model.tokenizer.decode(ids)


def sample_texts(model: TracedModel, dataset: str, n: int, *, max_tokens: int | None = None, seed: int = 0,
                 split: str = "test") -> list[str]:
    """``n`` seeded texts of ``dataset`` ("rotten_tomatoes" or "imdb"), each cut to ``max_tokens``
    (default: the model's limit)."""
    from analysis.data import load_dataset

    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    data = load_dataset(dataset, split).sample(n, seed=seed)
    limit = min(max_tokens or model.max_length, model.max_length)
    return [capped(model, t, limit) for t in data.texts]


def save_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` as CSV (no index) to ``path`` atomically: a temporary file, then a rename."""
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path
