"""Internals shared by the learners: a mutable mark matrix, a CI-test adapter that batches
when it can, and the stable (order-independent) adjacency search used by PC and FCI.

Everything here works on node *positions* 0..p-1; ``_Tester`` maps positions to the CI
test's variable indices.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from itertools import chain, combinations, islice, repeat
from typing import Any, Iterator, Sequence

import numpy as np

from .citest import BatchedCITest
from .graph import Graph, Mark

# plain-int aliases of the Mark enum for the hot loops over list-of-list marks
TAIL, ARROW, CIRCLE = int(Mark.TAIL), int(Mark.ARROW), int(Mark.CIRCLE)
Sepsets = dict  # {(a, b) with a < b: tuple of positions}


class Work:
    """Mutable graph over positions 0..p-1: ``M[a][b]`` mark at a's end, ``adj`` sets."""

    __slots__ = ("p", "M", "adj")

    def __init__(self, p: int, mark: int = CIRCLE) -> None:
        self.p = p
        self.M = [self._full_row(a, mark) for a in range(p)]
        self.adj = [set(range(p)) - {a} for a in range(p)]

    def _full_row(self, a: int, mark: int) -> list[int]:
        row = [mark] * self.p
        row[a] = 0
        return row

    def remove(self, a: int, b: int) -> None:
        self.M[a][b] = self.M[b][a] = 0
        self.adj[a].discard(b)
        self.adj[b].discard(a)

    def reset(self, mark: int) -> None:
        """Put ``mark`` at both ends of every edge."""
        M = self.M
        full = self.p - 1
        for a in range(self.p):
            nb = self.adj[a]
            if len(nb) == full:
                M[a] = self._full_row(a, mark)
                continue
            row = M[a]
            for b in nb:
                row[b] = mark

    def pairs(self) -> list[tuple[int, int]]:
        """Adjacent pairs (a, b), a < b, in lexicographic order."""
        return [(a, b) for a in range(self.p) for b in sorted(self.adj[a]) if b > a]

    def adjacency(self) -> np.ndarray:
        """Adjacency as a bool matrix (p, p)."""
        adj = np.zeros((self.p, self.p), dtype=bool)
        for a, nb in enumerate(self.adj):
            adj[a, list(nb)] = True
        return adj

    def pair_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``pairs()`` as two int arrays (k,)."""
        a, b = np.nonzero(np.triu(self.adjacency(), 1))
        return a.astype(np.intp), b.astype(np.intp)

    def masks(self) -> list[int]:
        """Adjacency as bitmask rows (bit b of row a: a and b adjacent)."""
        if not self.p:
            return []
        bits = np.packbits(self.adjacency(), axis=1, bitorder="little")
        return [int.from_bytes(r.tobytes(), "little") for r in bits]

    def set_adjacency(self, masks: Sequence[int]) -> None:
        """Keep only the edges in ``masks`` (bitmask rows; a subset of the current edges;
        their marks stay)."""
        nbytes = (self.p + 7) // 8
        for a, mask in enumerate(masks):
            raw = np.frombuffer(mask.to_bytes(nbytes, "little"), dtype=np.uint8)
            keep = np.flatnonzero(np.unpackbits(raw, bitorder="little")).tolist()
            old = self.M[a]
            row = [0] * self.p
            for b in keep:
                row[b] = old[b]
            self.M[a] = row
            self.adj[a] = set(keep)

    def to_array(self) -> np.ndarray:
        return np.array(self.M, dtype=np.int8).reshape(self.p, self.p)


def apply_order(work: Work, rank: dict[int, int] | None) -> None:
    """Background knowledge from a causal order: for a before b, b is not an ancestor of a,
    so the mark at b's end of an edge a-b is an arrowhead (a *-> b)."""
    if not rank:
        return
    M = work.M
    for a, b in work.pairs():
        ra, rb = rank.get(a), rank.get(b)
        if ra is None or rb is None or ra == rb:
            continue
        later, earlier = (b, a) if ra < rb else (a, b)
        if M[later][earlier] != TAIL:
            M[later][earlier] = ARROW


# ---------------------------------------------------------------------------------------
# CI-test adapter
# ---------------------------------------------------------------------------------------

@dataclass
class Tester:
    """Positions -> CI-test indices; vectorized for any :class:`BatchedCITest` (``batched``),
    a loop otherwise.

    ``ci`` is a BatchedCITest (e.g. FisherZTest), a DSeparationOracle or any callable
    ``ci(i, j, cond)`` returning an object with ``.independent`` (or a bool).
    """

    ci: Any
    ids: Sequence[int]
    n_requests: int = 0
    batched: bool = field(init=False)
    _ids_arr: np.ndarray = field(init=False, repr=False)
    _identity: bool = field(init=False, repr=False)
    _records: list = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self._ids_arr = np.asarray(self.ids, dtype=np.intp)
        self._identity = bool(np.array_equal(self._ids_arr, np.arange(len(self._ids_arr))))
        self.batched = isinstance(self.ci, BatchedCITest)

    def _one(self, a: int, b: int, cond: Sequence[int]) -> bool:
        ids = self.ids
        res = self.ci(ids[a], ids[b], tuple(ids[c] for c in cond))
        self._records.append(res)
        return bool(getattr(res, "independent", res))

    def _record(self, I, J, S, rho, z, p) -> None:
        if len(I):
            self.ci.record(I, J, S, rho, z, p)
            self._records.append((I, J, S))

    def order1(self, A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Batched tests only: rho (m, p) and decisions (m, p) of ``A[m] _||_ B[m] | k`` for every
        position k (False at k in {A[m], B[m]}); nothing counted or logged."""
        ids = self._ids_arr
        rho, ind = self.ci.order1_all(ids[A], ids[B])
        if len(ids) != rho.shape[1] or np.any(ids != np.arange(len(ids))):
            rho, ind = rho[:, ids], ind[:, ids]
        return rho, ind

    def order1_grid(self, A: np.ndarray, B: np.ndarray,
                    K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Batched tests only: rho (m, c) and decisions (m, c) of ``A[m] _||_ B[m] | K[m, c]``
        (positions; False where K[m, c] is A[m] or B[m]); nothing counted or logged."""
        ids = self._ids_arr
        if self._identity:
            return self.ci.order1_grid(A, B, K)
        return self.ci.order1_grid(ids[A], ids[B], ids[K])

    def record_order1_tests(self, A: np.ndarray, B: np.ndarray, K: np.ndarray) -> None:
        """Count and log the consumed order-1 tests ``A _||_ B | K`` (positions, (t,) each,
        in the order consumed); their values are computed when the log is read."""
        if len(A):
            ids = self._ids_arr
            I, J, S = ids[A], ids[B], ids[K]
            if len(ids) and ids.max() < 1 << 15:      # the log of a long input: 2 bytes an index
                I, J, S = I.astype(np.int16), J.astype(np.int16), S.astype(np.int16)
                if I.min() == I.max():
                    I = np.broadcast_to(I[:1], I.shape)
            self.ci.record_order1(I, J, S)
            self._records.append((I, J, S[:, None]))
            self.n_requests += len(A)

    def record_order1(self, A: np.ndarray, B: np.ndarray, K: np.ndarray,
                      rho: np.ndarray) -> np.ndarray:
        """Count and log consumed order-1 tests (positions A, B, K (t,), their rho (t,));
        returns their p-values (t,)."""
        ids = self._ids_arr
        z, p = self.ci.order1_stats(ids[A], ids[B], ids[K], rho)
        self._record(ids[A], ids[B], ids[K][:, None], rho, z, p)
        self.n_requests += len(A)
        return p

    def results(self, upto: int | None = None) -> list:
        """The distinct CI-test results this tester consumed, in order (materialised now);
        ``upto``: only those recorded before ``len(self._records)`` was ``upto``."""
        records = self._records if upto is None else self._records[:upto]
        if not self.batched:
            out, seen = [], set()
            for res in records:
                key = id(res) if not hasattr(res, "cond") else (res.i, res.j, tuple(res.cond))
                if key not in seen:
                    seen.add(key)
                    out.append(res)
            return out
        out, seen = [], set()
        for I, J, S in records:
            for a, b, c in zip(I.tolist(), J.tolist(), S.tolist()):
                key = (min(a, b), max(a, b), tuple(sorted(c)))
                if key not in seen:
                    seen.add(key)
                    out.append(self.ci.result(a, b, c))   # recorded, so a cache hit
        return out

    def first(self, a: int, b: int, conds: Sequence[Sequence[int]]) -> int:
        """Index of the first set in ``conds`` (positions) separating a and b; -1 if none.

        For a batched test each run of equal-size sets is one vectorized call; only the tests
        up to the first independence are counted and logged.
        """
        if len(conds) == 0:
            return -1
        if not self.batched:
            for k, cond in enumerate(conds):
                self.n_requests += 1
                if self._one(a, b, [int(c) for c in cond]):
                    return k
            return -1
        if isinstance(conds, np.ndarray):
            return self._first_run(a, b, conds)
        n, start = len(conds), 0
        while start < n:
            size = len(conds[start])
            stop = start + 1
            while stop < n and len(conds[stop]) == size:
                stop += 1
            k = self._first_run(a, b, conds[start:stop] if start or stop < n else conds)
            if k >= 0:
                return start + k
            start = stop
        return -1

    def test_all(self, a: int, b: int, conds: Sequence[Sequence[int]]
                 ) -> tuple[np.ndarray, np.ndarray]:
        """p-values and decisions (K,) of ``a _||_ b | conds[k]`` for every set (positions,
        one size); all K are counted and logged. Non-batched results without ``.p`` get
        p = 1 if independent, else 0."""
        n = len(conds)
        if n == 0:
            return np.zeros(0), np.zeros(0, dtype=bool)
        self.n_requests += n
        if not self.batched:
            ps, ind = np.zeros(n), np.zeros(n, dtype=bool)
            ids = self.ids
            for k, cond in enumerate(conds):
                res = self.ci(ids[a], ids[b], tuple(ids[int(c)] for c in cond))
                self._records.append(res)
                ind[k] = bool(getattr(res, "independent", res))
                ps[k] = float(getattr(res, "p", 1.0 if ind[k] else 0.0))
            return ps, ind
        ids = self._ids_arr
        S = ids[np.asarray(conds, dtype=np.intp).reshape(n, -1)]
        I = np.full(n, ids[a], dtype=np.intp)
        J = np.full(n, ids[b], dtype=np.intp)
        rho, z, p = self.ci.evaluate(I, J, S)
        self._record(I, J, S, rho, z, p)
        return p, p > self.ci.alpha

    def first_blocks(self, a: int, b: int, blocks: Sequence[np.ndarray]) -> np.ndarray | None:
        """The first separating set among ``blocks`` ((k_i, s_i) position arrays, visited in
        order), or None. For a batched test: one mixed-size call for all of them."""
        if not self.batched or len(blocks) == 1:
            for conds in blocks:
                k = self.first(a, b, conds)
                if k >= 0:
                    return conds[k]
            return None
        sizes = np.concatenate([np.full(len(c), c.shape[1], dtype=np.intp) for c in blocks])
        smax = int(sizes.max())
        S = np.zeros((len(sizes), smax), dtype=np.intp)
        start = 0
        for c in blocks:
            S[start:start + len(c), :c.shape[1]] = c
            start += len(c)
        ids = self._ids_arr
        n = len(sizes)
        I = np.full(n, ids[a], dtype=np.intp)
        J = np.full(n, ids[b], dtype=np.intp)
        S_pos, S = S, ids[S]
        rho, z, p = self.ci.evaluate_mixed(I, J, S, sizes)
        ind = p > self.ci.alpha
        k = int(ind.argmax())
        last = k + 1 if ind[k] else n
        for size in np.unique(sizes[:last]).tolist():
            rows = np.flatnonzero(sizes[:last] == size)
            self._record(I[rows], J[rows], S[rows, :size], rho[rows], z[rows], p[rows])
        self.n_requests += last
        return S_pos[k, :sizes[k]] if ind[k] else None

    def _first_run(self, a: int, b: int, conds: Sequence[Sequence[int]]) -> int:
        """``first`` for sets of one size, in one numpy call."""
        ids = self._ids_arr
        n = len(conds)
        S = ids[np.asarray(conds, dtype=np.intp).reshape(n, -1)]
        I = np.full(n, ids[a], dtype=np.intp)
        J = np.full(n, ids[b], dtype=np.intp)
        rho, z, p = self.ci.evaluate(I, J, S)
        ind = p > self.ci.alpha
        k = int(ind.argmax())
        if not ind[k]:
            self._record(I, J, S, rho, z, p)
            self.n_requests += n
            return -1
        k1 = k + 1
        self._record(I[:k1], J[:k1], S[:k1], rho[:k1], z[:k1], p[:k1])
        self.n_requests += k1
        return k

    def first_segments(self, A: np.ndarray, B: np.ndarray, S: np.ndarray,
                       seg: np.ndarray) -> np.ndarray:
        """For rows grouped into consecutive segments (one per pair; ``seg`` (K,) segment id,
        non-decreasing), the row index of each segment's first independence, or -1.

        Returns (n_segments,) global row indices. A, B (K,), S (K, s) are positions.
        """
        n_seg = int(seg[-1]) + 1 if len(seg) else 0
        out = np.full(n_seg, -1, dtype=np.intp)
        if not len(seg):
            return out
        if not self.batched:
            done = np.zeros(n_seg, dtype=bool)
            for k in range(len(seg)):
                g = seg[k]
                if done[g]:
                    continue
                self.n_requests += 1
                if self._one(int(A[k]), int(B[k]), S[k].tolist()):
                    out[g] = k
                    done[g] = True
            return out
        ids = self._ids_arr
        I, J, SS = ids[A], ids[B], ids[S]
        rho, z, p = self.ci.evaluate(I, J, SS)
        ind = p > self.ci.alpha
        rows = np.arange(len(seg))
        big = len(seg)
        cand = np.where(ind, rows, big)
        starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
        firsts = np.minimum.reduceat(cand, starts)
        present = seg[starts]
        out[present] = np.where(firsts < big, firsts, -1)
        # consumed rows: up to and including the first independence of the segment
        limit = np.full(n_seg, big, dtype=np.intp)
        limit[present] = firsts
        keep = rows <= limit[seg]
        self._record(I[keep], J[keep], SS[keep], rho[keep], z[keep], p[keep])
        self.n_requests += int(keep.sum())
        return out


# ---------------------------------------------------------------------------------------
# stable adjacency search (PC-stable skeleton, FCI's first phase)
# ---------------------------------------------------------------------------------------

def combination_chunks(n: int, size: int, chunk: int = 1 << 15) -> Iterator[np.ndarray]:
    """All ``size``-combinations of range(n) in lexicographic order, as (k, size) int
    arrays of at most ``chunk`` rows."""
    it = combinations(range(n), size)
    while True:
        flat = np.fromiter(chain.from_iterable(islice(it, chunk)), dtype=np.intp)
        if not len(flat):
            return
        yield flat.reshape(-1, size)


def _pair_candidates(nb_a: list[int], nb_b: list[int], d: int) -> Iterator[tuple[int, ...]]:
    """d-subsets of adj(a)-{b}, then those of adj(b)-{a} not already among the first."""
    set_a = set(nb_a)
    first = combinations(nb_a, d)
    if d == 0:
        return first
    second = (c for c in combinations(nb_b, d) if not set_a.issuperset(c))
    return chain(first, second)


def stable_skeleton(work: Work, tester: Tester, sepsets: Sepsets,
                    max_depth: int | None = None, chunk: int = 32,
                    max_rows: int = 1 << 17) -> None:
    """Remove edges by the order-independent (stable) adjacency search of PC-stable.

    At depth d every adjacent pair (a, b) is tested given the d-subsets of adj(a)-{b} and
    then of adj(b)-{a} (those not already tested), with adjacencies frozen for the whole
    depth; the first separating set found, in that order, becomes the sepset. Depths 0
    and 1 run as whole-array batches; deeper ones pull growing chunks per pair.
    """
    d = 0
    while max_depth is None or d <= max_depth:
        frozen = [sorted(s) for s in work.adj]
        pairs = [(a, b) for a, b in work.pairs()
                 if len(frozen[a]) - 1 >= d or len(frozen[b]) - 1 >= d]
        if not pairs:
            return
        if d <= 1:
            removed = _shallow_level(work, pairs, tester, d, max_rows)
        else:
            streams = {(a, b): _pair_candidates([v for v in frozen[a] if v != b],
                                                [v for v in frozen[b] if v != a], d)
                       for a, b in pairs}
            removed = _run_rounds(streams, tester, d, chunk, max_rows)
        for (a, b), cond in removed.items():
            work.remove(a, b)
            sepsets[(a, b)] = cond
        d += 1


def _shallow_level(work: Work, pairs: list[tuple[int, int]], tester: Tester, d: int,
                   max_rows: int) -> dict[tuple[int, int], tuple[int, ...]]:
    """Depth 0 or 1 of the stable search, vectorized over pairs (in slices of pairs)."""
    P = np.asarray(pairs, dtype=np.intp).reshape(-1, 2)
    found: dict[tuple[int, int], tuple[int, ...]] = {}
    if d == 0:
        for lo in range(0, len(P), max_rows):
            blk = P[lo:lo + max_rows]
            firsts = tester.first_segments(blk[:, 0], blk[:, 1],
                                           np.zeros((len(blk), 0), dtype=np.intp),
                                           np.arange(len(blk)))
            for g in np.flatnonzero(firsts >= 0).tolist():
                found[(int(blk[g, 0]), int(blk[g, 1]))] = ()
        return found
    adj = np.zeros((work.p, work.p), dtype=bool)
    for a, nb in enumerate(work.adj):
        adj[a, list(nb)] = True
    step = max(1, max_rows // max(1, 2 * work.p))
    for lo in range(0, len(P), step):
        blk = P[lo:lo + step]
        A, B = blk[:, 0], blk[:, 1]
        side_a = adj[A].copy()                     # (n_pairs, p): k in adj(a)
        side_a[np.arange(len(blk)), B] = False
        side_b = adj[B] & ~adj[A]                  # k in adj(b), not already tested
        side_b[np.arange(len(blk)), A] = False
        if tester.batched:
            found.update(_order1_firsts(tester, A, B, side_a, side_b))
            continue
        ga, ka = np.nonzero(side_a)
        gb, kb = np.nonzero(side_b)
        g = np.concatenate([ga, gb])
        k = np.concatenate([ka, kb])
        side = np.concatenate([np.zeros(len(ga), np.intp), np.ones(len(gb), np.intp)])
        order = np.lexsort((k, side, g))           # by pair, a-side first, then k
        g, k = g[order], k[order]
        if not len(g):
            continue
        firsts = tester.first_segments(A[g], B[g], k[:, None], _dense_ids(g))
        present = np.unique(g)
        for seg_id in np.flatnonzero(firsts >= 0).tolist():
            pair_row = int(present[seg_id])
            found[(int(A[pair_row]), int(B[pair_row]))] = (int(k[firsts[seg_id]]),)
    return found


def _order1_firsts(tester: Tester, A: np.ndarray, B: np.ndarray, side_a: np.ndarray,
                   side_b: np.ndarray) -> dict[tuple[int, int], tuple[int]]:
    """Order-1 level for a batched test, dense: for each pair the first k (a-side candidates in
    ascending order, then b-side ones) that separates it; logs exactly the consumed tests."""
    rho, ind = tester.order1(A, B)
    p = rho.shape[1]
    cols = np.arange(p)[None, :]
    hit_a = ind & side_a
    has_a = hit_a.any(1)
    ka = np.where(has_a, hit_a.argmax(1), p)
    hit_b = ind & side_b & ~has_a[:, None]
    has_b = hit_b.any(1)
    kb = np.where(has_b, hit_b.argmax(1), p)
    used_a = side_a & (cols <= ka[:, None])
    used_b = side_b & (cols <= kb[:, None]) & ~has_a[:, None]
    ga, ka_ = np.nonzero(used_a)
    gb, kb_ = np.nonzero(used_b)
    g, k = np.concatenate([ga, gb]), np.concatenate([ka_, kb_])
    side = np.concatenate([np.zeros(len(ga), np.intp), np.ones(len(gb), np.intp)])
    order = np.lexsort((k, side, g))             # by pair, a-side first, then k
    g, k = g[order], k[order]
    tester.record_order1(A[g], B[g], k, rho[g, k])
    found = {}
    for m in np.flatnonzero(has_a | has_b).tolist():
        found[(int(A[m]), int(B[m]))] = (int(ka[m] if has_a[m] else kb[m]),)
    return found


def _dense_ids(g: np.ndarray) -> np.ndarray:
    """Non-decreasing group labels -> consecutive segment ids 0, 1, 2, ..."""
    if not len(g):
        return g
    return np.concatenate([[0], np.cumsum(g[1:] != g[:-1])]).astype(np.intp)


def _run_rounds(streams: dict, tester: Tester, d: int, chunk: int,
                max_rows: int) -> dict[tuple[int, int], tuple[int, ...]]:
    """Pull growing chunks of candidate sets from every pair's stream until each pair is
    separated or exhausted; returns {pair: first separating set}."""
    active = list(streams)
    found: dict[tuple[int, int], tuple[int, ...]] = {}
    while active:
        flat_a: list[int] = []
        flat_b: list[int] = []
        flat_s: list[int] = []
        flat_g: list[int] = []
        owners: list[tuple[tuple[int, int], list, int]] = []
        still = []
        for pair in active:
            if len(flat_a) >= max_rows:
                still.append(pair)
                continue
            block = list(islice(streams[pair], chunk))
            if not block:
                continue
            still.append(pair)
            g = len(owners)
            owners.append((pair, block, len(flat_a)))
            n = len(block)
            flat_a.extend(repeat(pair[0], n))
            flat_b.extend(repeat(pair[1], n))
            flat_g.extend(repeat(g, n))
            flat_s.extend(chain.from_iterable(block))
        if not owners:
            break
        A = np.array(flat_a, dtype=np.intp)
        S = np.array(flat_s, dtype=np.intp).reshape(len(A), d)
        firsts = tester.first_segments(A, np.array(flat_b, dtype=np.intp), S,
                                       np.array(flat_g, dtype=np.intp))
        done = set()
        for g, (pair, block, start) in enumerate(owners):
            if firsts[g] >= 0:
                found[pair] = tuple(int(v) for v in block[firsts[g] - start])
                done.add(pair)
        active = [p for p in still if p not in done]
        chunk = min(chunk * 4, 4096)
    return found


# ---------------------------------------------------------------------------------------
# Graph construction
# ---------------------------------------------------------------------------------------

def make_graph(work: Work, *, kind: str, nodes: Sequence, labels: Sequence | None,
               sepsets: Sepsets, tester: Tester, algorithm: str, alpha: float | None,
               n_samples: float | None, seconds: float | None, r: int | None = None,
               time_budget: float | None = None, cut: bool = False) -> Graph:
    """Wrap a finished Work as an immutable Graph with node ids and metadata."""
    nodes = tuple(nodes)
    if nodes == tuple(range(len(nodes))):
        seps = {key: tuple(sorted(cond)) for key, cond in sorted(sepsets.items())}
    else:
        seps = {(nodes[a], nodes[b]): tuple(nodes[c] for c in sorted(cond))
                for (a, b), cond in sorted(sepsets.items())}
    return Graph(nodes=nodes, marks=work.to_array(), kind=kind,
                 labels=None if labels is None else tuple(labels), sepsets=seps,
                 n_tests=tester.n_requests, algorithm=algorithm, alpha=alpha,
                 n_samples=n_samples, seconds=seconds, r=r, time_budget=time_budget, cut=cut,
                 _tests=functools.partial(tester.results, len(tester._records)))
