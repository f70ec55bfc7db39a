"""Item-sequence data for recommendation (MovieLens format, synthetic with planted causes).

Every loader returns a :class:`RecDataset`: one chronological item sequence per user, split
leave-last-out, the usual protocol for sequential recommenders such as BERT4Rec:

======= ============================== ====================================
split   ``sequences[u]``               ``targets``
======= ============================== ====================================
"all"   the full sequence              None
"train" the sequence without its last  None (the trainer holds out the
        item                           second-to-last item for validation)
"test"  the sequence without its last  the last item of each user
        item (the history)
======= ============================== ====================================

Users with fewer than ``MIN_LENGTH`` = 3 items are dropped from every split (train needs at
least one item after holding out the validation item, and test needs a history), so the
three splits always hold the same users in the same order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from analysis.data.synthetic_rec import RecGraph

__all__ = ["RecDataset", "REC_SPLITS", "MIN_LENGTH", "leave_last_out"]

REC_SPLITS = ("train", "test", "all")
MIN_LENGTH = 3


@dataclass(frozen=True, eq=False)
class RecDataset:
    """Chronological item sequences, one per user (``sequences[k]`` belongs to ``users[k]``).

    ``sequences``: tuple of tuples of int item ids, oldest first; ``targets``: the held-out
    last item per user for split "test", else None. ``item_ids``: every item id of the data
    set (sorted; the same for all splits, so a model's vocabulary does not depend on the
    split); ``n_items == len(item_ids)`` (synthetic ids are exactly ``0..n_items-1``).
    ``titles`` / ``genres``: item id -> title / genre names where known. ``graph``: the
    planted causal structure (synthetic data only; see ``analysis.data.synthetic_rec``).
    """

    name: str
    split: str
    sequences: tuple[tuple[int, ...], ...]
    targets: tuple[int, ...] | None
    users: tuple[int, ...]
    item_ids: tuple[int, ...]
    titles: Mapping[int, str] = field(default_factory=dict)
    genres: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    graph: "RecGraph | None" = None

    def __post_init__(self) -> None:
        if self.split not in REC_SPLITS:
            raise ValueError(f"unknown split {self.split!r}; use one of {', '.join(REC_SPLITS)}")
        if len(self.users) != len(self.sequences):
            raise ValueError(f"{len(self.users)} users for {len(self.sequences)} sequences")
        if (self.targets is None) != (self.split != "test"):
            raise ValueError("targets must be given for split 'test' and only for it")
        if self.targets is not None and len(self.targets) != len(self.sequences):
            raise ValueError(f"{len(self.targets)} targets for {len(self.sequences)} sequences")
        object.__setattr__(self, "titles", MappingProxyType(dict(self.titles)))
        object.__setattr__(self, "genres", MappingProxyType(dict(self.genres)))
        object.__setattr__(self, "_known", frozenset(self.item_ids))

    @property
    def n_items(self) -> int:
        """Number of distinct items in the data set (the size of ``item_ids``)."""
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, k: int) -> tuple[int, ...]:
        return self.sequences[k]

    def lengths(self) -> np.ndarray:
        """Sequence lengths (n_users,) int64."""
        return np.fromiter((len(s) for s in self.sequences), dtype=np.int64,
                           count=len(self.sequences))

    def title(self, item: int) -> str:
        """The title of ``item`` (``"item <id>"`` when the data set has none for it)."""
        if item not in self._known:
            raise KeyError(f"item {item!r} is not in {self.name}; item ids range over "
                           f"{min(self.item_ids)}..{max(self.item_ids)} ({self.n_items} items)"
                           if self.item_ids else f"{self.name} has no items")
        return self.titles.get(item, f"item {item}")

    def sample(self, k: int, seed: int = 0) -> "RecDataset":
        """A seeded random subset of ``k`` users (all of them if ``k >= len``), in user order;
        the ground-truth ``graph`` is subset along with the sequences."""
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        k = min(k, len(self))
        idx = np.sort(np.random.default_rng(seed).choice(len(self), size=k, replace=False))
        return self.subset(idx.tolist())

    def dense(self) -> "RecDataset":
        """The same data with item ids renumbered 0..n_items-1 (item k is ``item_ids[k]`` of
        this data set; keep it to map back). Titles, genres and targets follow; a data set
        whose ids already are 0..n_items-1 (synthetic) is returned as is."""
        if self.item_ids == tuple(range(self.n_items)):
            return self
        if self.graph is not None:  # pragma: no cover - graphs come with dense ids
            raise ValueError("cannot renumber the items of a data set with a ground-truth graph")
        new = {old: k for k, old in enumerate(self.item_ids)}
        return RecDataset(
            self.name, self.split, tuple(tuple(new[i] for i in s) for s in self.sequences),
            None if self.targets is None else tuple(new[i] for i in self.targets), self.users,
            tuple(range(self.n_items)), {new[i]: t for i, t in self.titles.items() if i in new},
            {new[i]: g for i, g in self.genres.items() if i in new})

    def subset(self, indices: Sequence[int]) -> "RecDataset":
        """The users at ``indices`` (positions into ``sequences``), in the order given."""
        idx = [int(i) for i in indices]
        bad = [i for i in idx if not 0 <= i < len(self)]
        if bad:
            raise IndexError(f"indices {bad[:5]} out of range 0..{len(self) - 1}")
        return RecDataset(
            self.name, self.split, tuple(self.sequences[i] for i in idx),
            None if self.targets is None else tuple(self.targets[i] for i in idx),
            tuple(self.users[i] for i in idx), self.item_ids, self.titles, self.genres,
            None if self.graph is None else self.graph.subset(idx))


def leave_last_out(sequences: Sequence[Sequence[int]], split: str) -> tuple[
        tuple[tuple[int, ...], ...], tuple[int, ...] | None]:
    """Apply the leave-last-out ``split`` to full sequences (each of length >= MIN_LENGTH).

    Returns the split's sequences and its targets (the last items for "test", else None).
    """
    if split not in REC_SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(REC_SPLITS)}")
    if split == "all":
        return tuple(tuple(s) for s in sequences), None
    seqs = tuple(tuple(s[:-1]) for s in sequences)
    return seqs, (tuple(int(s[-1]) for s in sequences) if split == "test" else None)


def _check_split(split: Any) -> str:
    if split not in REC_SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(REC_SPLITS)}")
    return split
