"""Synthetic item sequences with a planted, exactly known causal structure.

The story. Items belong to ``n_tastes`` tastes (genres: contiguous blocks of ids, item i in
taste ``i * n_tastes // n_items``). A seeded random DAG over items holds "follow-up" edges
a -> b (b is a sequel / natural next step of a): pairs of a random topological order are
joined with probability ``within_density`` inside a taste and ``across_density`` across.
Each user has a latent taste mixture ``theta ~ Dirichlet(taste_concentration)`` and a length
uniform in ``length`` (inclusive). The sequence is generated in time order; at step t:

- with probability ``p_follow`` (never at t = 0) it is a **follow-up**: among the earlier
  positions whose item still has an unconsumed DAG child, one position q is chosen with
  weight ``recency ** (t - 1 - q)`` (recent items trigger more), then one of its unconsumed
  children uniformly. Its cause is position q. If no earlier item has an unconsumed child,
  the step falls back to a taste draw.
- otherwise it is a **taste draw**: a taste k with probability proportional to ``theta[k]``
  among tastes with unconsumed items, then an unconsumed item of k with probability
  proportional to its popularity ``1 / (1 + r) ** popularity`` (r: the item's seeded random
  rank inside its taste). Its cause is the latent taste: cause -1.

No item repeats in a sequence. The randomness of user u comes from its own stream spawned
from ``seed``, so the first users do not change when ``n_users`` grows.

The ground truth is mechanistic: ``graph.causes[s][p]`` is the position whose item triggered
position p of sequence s, or -1 for a taste draw. It states which mechanism produced each
item, not every statistical dependence: the no-repeat rule and the availability of
follow-ups make each position weakly depend on all earlier ones; those are not edges.

Over the positions of one sequence the truth is the DAG of trigger edges q -> p
(``sequence_dag``), plus latent parents of the taste draws (``sequence_oracle``):

- ``latent="taste"`` (default): one latent node per taste, parent of the taste draws of
  that taste, so positions drawn from the same taste are confounded ("genre" latents);
- ``latent="user"``: one latent node (the mixture theta) parent of every taste draw, the
  stricter reading, since theta ties all taste draws of a user together.

Every position then has exactly one parent (a trigger or a latent), so there are no
colliders: two positions are m-adjacent iff one triggered the other or both have the
same latent parent, and without background knowledge the PAG (``sequence_pag``) has that
skeleton with circles at every end. With ``order=True`` the time order adds arrowheads.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from analysis.causal import DSeparationOracle, Graph, graph_from_dag, learn_graph
from analysis.data.rec import RecDataset, _check_split, leave_last_out

__all__ = ["synthetic_rec", "RecGraph", "LATENTS"]

LATENTS = ("taste", "user")


def _title(item: int, taste: int) -> str:
    return f"t{taste}-item{item}"


@dataclass(frozen=True, eq=False)
class RecGraph:
    """The planted structure behind a synthetic RecDataset (one entry per sequence).

    ``item_dag`` [n_items, n_items] bool, ``[a, b]``: a -> b (b follows up a);
    ``item_taste`` [n_items] int; ``user_tastes`` [n_sequences, n_tastes] each user's
    mixture theta; ``sequences`` as in the data set; ``causes[s][p]``: the position that
    caused position p of sequence s, or -1 for a latent taste draw; ``target_causes[s]``
    (split "test"): the cause of the held-out target (a position in the history, or -1).
    """

    item_dag: np.ndarray
    item_taste: np.ndarray
    user_tastes: np.ndarray
    sequences: tuple[tuple[int, ...], ...]
    causes: tuple[tuple[int, ...], ...]
    target_causes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("item_dag", "item_taste", "user_tastes"):
            arr = np.array(getattr(self, name), copy=True)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def n_items(self) -> int:
        return int(self.item_taste.shape[0])

    @property
    def n_tastes(self) -> int:
        return int(self.user_tastes.shape[1])

    def subset(self, indices: Sequence[int]) -> "RecGraph":
        """The structure for the sequences at ``indices`` (in that order)."""
        idx = [int(i) for i in indices]
        return RecGraph(self.item_dag, self.item_taste, self.user_tastes[idx],
                        tuple(self.sequences[i] for i in idx), tuple(self.causes[i] for i in idx),
                        None if self.target_causes is None
                        else tuple(self.target_causes[i] for i in idx))

    def item_graph(self) -> Graph:
        """The planted follow-up DAG over item ids 0..n_items-1 (kind "dag")."""
        labels = [_title(i, int(t)) for i, t in enumerate(self.item_taste.tolist())]
        return Graph.from_matrix(graph_from_dag(self.item_dag).marks, kind="dag", labels=labels)

    def _check(self, s: int) -> tuple[int, ...]:
        if not 0 <= s < len(self.sequences):
            raise IndexError(f"sequence {s} out of range 0..{len(self.sequences) - 1}")
        return self.sequences[s]

    def _labels(self, seq: tuple[int, ...]) -> list[str]:
        """Position labels such as ``"3:t0-item17"`` (position:title)."""
        return [f"{p}:{_title(i, int(self.item_taste[i]))}" for p, i in enumerate(seq)]

    def sequence_dag(self, s: int) -> Graph:
        """The true trigger edges q -> p over the positions 0..len-1 of sequence s (kind
        "dag"); each edge joins two items adjacent in ``item_dag``."""
        seq = self._check(s)
        n = len(seq)
        adj = np.zeros((n, n), dtype=bool)
        for p, q in enumerate(self.causes[s]):
            if q >= 0:
                adj[q, p] = True
        return Graph.from_matrix(graph_from_dag(adj).marks, kind="dag", labels=self._labels(seq))

    def latent_parents(self, s: int, latent: str = "taste") -> tuple[int, ...]:
        """Per position of sequence s: its latent parent (a taste id for "taste", 0 for
        "user"), or -1 for a follow-up."""
        if latent not in LATENTS:
            raise ValueError(f"unknown latent {latent!r}; use one of {', '.join(LATENTS)}")
        seq = self._check(s)
        if latent == "user":
            return tuple(0 if q < 0 else -1 for q in self.causes[s])
        return tuple(int(self.item_taste[i]) if q < 0 else -1
                     for i, q in zip(seq, self.causes[s]))

    def sequence_oracle(self, s: int, latent: str = "taste") -> DSeparationOracle:
        """A d-separation oracle over the positions of sequence s with the latent parents.

        Its DAG has the n positions as nodes 0..n-1, then one node per latent (tastes in
        increasing order for "taste"); ``observed`` = the positions.
        """
        parents = self.latent_parents(s, latent)
        n = len(parents)
        latents = sorted({k for k in parents if k >= 0})
        slot = {k: n + j for j, k in enumerate(latents)}
        adj = np.zeros((n + len(latents), n + len(latents)), dtype=bool)
        adj[:n, :n] = self.sequence_dag(s).marks == -1  # trigger q -> p: mark at q is a tail
        for p, k in enumerate(parents):
            if k >= 0:
                adj[slot[k], p] = True
        return DSeparationOracle(adj, observed=tuple(range(n)))

    def sequence_pag(self, s: int, latent: str = "taste", *, order: bool = False) -> Graph:
        """The true PAG over the positions of sequence s: FCI run with ``sequence_oracle``.

        order: give FCI the time order as background knowledge (as ``learn_graph(...,
        order=...)`` does), for comparing with learners that were given it.
        """
        oracle = self.sequence_oracle(s, latent)
        n = len(self.sequences[s])
        return learn_graph(None, ci_test=oracle, algorithm="fci",
                           order=list(range(n)) if order else None,
                           labels=self._labels(self.sequences[s]))


def synthetic_rec(split: str = "train", *, n_users: int = 2000, n_items: int = 100,
                  n_tastes: int = 5, length: tuple[int, int] = (8, 20), p_follow: float = 0.5,
                  within_density: float = 0.1, across_density: float = 0.01,
                  taste_concentration: float = 0.3, popularity: float = 1.0,
                  recency: float = 0.7, seed: int = 0) -> RecDataset:
    """Item sequences generated from a planted causal structure (see the module docstring).

    Returns a RecDataset named "synthetic-rec" with item ids 0..n_items-1, users 0..n_users-1
    (no user is dropped: lengths are >= 3), leave-last-out ``split``, and ``graph`` a
    :class:`RecGraph` holding the truth for exactly the returned (truncated) sequences.
    """
    _check_split(split)
    _validate(n_users, n_items, n_tastes, length, p_follow, within_density, across_density,
              taste_concentration, popularity, recency)
    root = np.random.SeedSequence(seed)
    s_struct, s_users = root.spawn(2)
    taste, dag, pop = _structure(n_items, n_tastes, within_density, across_density, popularity,
                                 np.random.default_rng(s_struct))
    full, causes, theta = _users(n_users, taste, dag, pop, n_tastes, length, p_follow,
                                 taste_concentration, recency, s_users)
    seqs, targets = leave_last_out(full, split)
    if split == "all":
        cut, target_causes = causes, None
    else:
        cut = tuple(c[:-1] for c in causes)
        target_causes = tuple(c[-1] for c in causes) if split == "test" else None
    graph = RecGraph(dag, taste, theta, seqs, cut, target_causes)
    titles = {i: _title(i, int(t)) for i, t in enumerate(taste.tolist())}
    genres = {i: (f"taste {int(t)}",) for i, t in enumerate(taste.tolist())}
    return RecDataset("synthetic-rec", split, seqs, targets, tuple(range(n_users)),
                      tuple(range(n_items)), titles, genres, graph)


def _validate(n_users, n_items, n_tastes, length, p_follow, within, across, conc, pop,
              recency) -> None:
    def integer(x) -> bool:
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

    if not integer(n_users) or n_users < 1:
        raise ValueError(f"n_users must be a positive integer, got {n_users!r}")
    if not integer(n_items) or n_items < 3:
        raise ValueError(f"n_items must be an integer >= 3, got {n_items!r}")
    if not integer(n_tastes) or not 1 <= n_tastes <= n_items:
        raise ValueError(f"n_tastes must be an integer in 1..n_items={n_items}, got {n_tastes!r}")
    try:
        lo, hi = length
    except (TypeError, ValueError):
        raise ValueError(f"length must be a pair (min, max), got {length!r}") from None
    if not (integer(lo) and integer(hi) and 3 <= lo <= hi <= n_items):
        raise ValueError(f"length must be integers 3 <= min <= max <= n_items={n_items} "
                         f"(3: the leave-last-out split needs them), got {length!r}")
    for name, v in (("p_follow", p_follow), ("within_density", within),
                    ("across_density", across)):
        if not 0 <= v <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {v!r}")
    if not conc > 0:
        raise ValueError(f"taste_concentration must be > 0, got {conc!r}")
    if not pop >= 0:
        raise ValueError(f"popularity must be >= 0, got {pop!r}")
    if not 0 < recency <= 1:
        raise ValueError(f"recency must be in (0, 1], got {recency!r}")


def _structure(n_items: int, n_tastes: int, within: float, across: float, popularity: float,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Item tastes [n_items], the follow-up DAG [n_items, n_items] and popularity weights."""
    taste = (np.arange(n_items) * n_tastes) // n_items
    rank = np.empty(n_items, dtype=np.int64)
    rank[rng.permutation(n_items)] = np.arange(n_items)  # position in a topological order
    prob = np.where(taste[:, None] == taste[None, :], within, across)
    dag = (rng.random((n_items, n_items)) < prob) & (rank[:, None] < rank[None, :])
    keys = rng.random(n_items)
    pop = np.empty(n_items)
    for k in range(n_tastes):
        items = np.flatnonzero(taste == k)
        r = np.empty(len(items))
        r[np.argsort(keys[items], kind="stable")] = np.arange(len(items))
        pop[items] = 1.0 / (1.0 + r) ** popularity
    return taste, dag, pop


def _pick(weights: list[float], u: float) -> int:
    """Index drawn with probability proportional to ``weights`` by the uniform ``u``."""
    x = u * sum(weights)
    acc = 0.0
    last = 0
    for k, w in enumerate(weights):
        if w > 0:
            acc += w
            last = k
            if acc > x:
                return k
    return last  # float round-off at the very top


def _users(n_users, taste, dag, pop, n_tastes, length, p_follow, conc, recency,
           seeds: np.random.SeedSequence):
    """Full sequences, their causes and the users' mixtures theta [n_users, n_tastes]."""
    n_items = len(taste)
    children = [np.flatnonzero(dag[i]).tolist() for i in range(n_items)]
    taste_l = taste.tolist()
    pop_l = pop.tolist()
    by_taste = [np.flatnonzero(taste == k).tolist() for k in range(n_tastes)]
    decay = [recency ** a for a in range(length[1])]
    seqs, causes = [], []
    theta = np.empty((n_users, n_tastes))
    for u, ss in enumerate(seeds.spawn(n_users)):
        rng = np.random.default_rng(ss)
        th = rng.dirichlet(np.full(n_tastes, conc)) if n_tastes > 1 else np.ones(1)
        if not np.all(np.isfinite(th)) or th.sum() <= 0:  # tiny concentrations can underflow
            th = np.full(n_tastes, 1.0 / n_tastes)
        theta[u] = th
        th_l = th.tolist()
        L = int(rng.integers(length[0], length[1] + 1))
        draws = rng.random((L, 3)).tolist()
        seq: list[int] = []
        cause: list[int] = []
        used: set[int] = set()
        left = [len(b) for b in by_taste]
        for t, (u0, u1, u2) in enumerate(draws):
            q = -1
            if t > 0 and u0 < p_follow:
                elig = [p for p in range(t) if any(c not in used for c in children[seq[p]])]
                if elig:
                    q = elig[_pick([decay[t - 1 - p] for p in elig], u1)]
                    cand = [c for c in children[seq[q]] if c not in used]
                    item = cand[min(int(u2 * len(cand)), len(cand) - 1)]
            if q < 0:
                w = [th_l[k] if left[k] else 0.0 for k in range(n_tastes)]
                if sum(w) <= 0:  # the user's tastes are used up: any taste with items left
                    w = [1.0 if left[k] else 0.0 for k in range(n_tastes)]
                cand = [i for i in by_taste[_pick(w, u1)] if i not in used]
                item = cand[_pick([pop_l[i] for i in cand], u2)]
            used.add(item)
            left[taste_l[item]] -= 1
            seq.append(item)
            cause.append(q)
        seqs.append(tuple(seq))
        causes.append(tuple(cause))
    return seqs, tuple(causes), theta
