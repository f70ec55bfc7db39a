"""ICD: Iterative Causal Discovery (Rohekar et al., NeurIPS 2021) -> PAG.

Iteration r tests each remaining edge given r-subsets drawn from the PDS-trees of its
endpoints (radius r), then re-orients; after each iteration the PAG is r-representing, so
the search can stop early (``max_r``) and ``callback(r, work)`` sees every iteration.
See SCIENCE.md, "ICD step by step", which this follows literally (``stable=False``).

Order dependence. With ``stable=False`` (the default: the literal ICD) an edge removed
while iteration r runs changes the candidate sets of the pairs visited after it, and the
first separating set found becomes the sepset; pairs are visited in lexicographic order of
node positions, so on finite-sample tests the skeleton can depend on how the nodes are
numbered (it did on all 24 heads of layers 4-5 of pretrained MiniLM, at 64 and at 128
tokens, under one random renumbering each). ``stable=True`` (as in PC-stable) freezes the
adjacencies for the whole iteration and removes the separated edges at its end; takes as
sepset the separating set with the largest p-value among the candidates of smallest
tree-depth sum; and draws the candidates of r >= 2 from the skeleton oriented by R0 (and
a known order) only, since R1-R10 settle conflicting finite-sample orientations by
whichever rule fires first, through PDS-trees whose edges are frozen per depth (the
literal tree gives a contested edge to whichever node is visited first). So neither the
skeleton nor the sepsets depend on the numbering (up to exact p-value ties); the final
marks still can where orientations conflict. With an exact oracle both modes give the
same PAG. The stable mode takes about 1.5-1.7x the time of the literal one on attention
of 64-128 tokens (more candidate sets, and every candidate of a pair is tested) and logs
correspondingly more tests.

Speed. With a batched test (Fisher z) the literal r = 1 runs lazily (``_Order1Search``):
it evaluates only the order-1 tests the sequential loop can reach (about 12M of the 67M a
dense table holds at 512 tokens) and logs the ones it consumes, in order, evaluating their
statistics only when the log is read; same graphs, sepsets and logs as the loop of
one test at a time (``tests/causal/test_order1_search.py``).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ._core import ARROW, CIRCLE, TAIL, Sepsets, Tester, Work, apply_order
from .pds import _tree_entries, closed_subsets, masks_from
from .rules import rule0, rules_1_to_4, rules_5_to_7, rules_8_to_10

__all__ = ["icd"]


def _pd_parent_masks(work: Work) -> list[int]:
    """Bit x of row y: the edge x-y could be x => y (no arrowhead at x, no tail at y)."""
    M = work.M
    return [sum(1 << x for x in work.adj[y] if M[x][y] != ARROW and M[y][x] != TAIL)
            for y in range(work.p)]


def _ancestor_mask(target: int, adjm: list[int], pdpar: list[int]) -> int:
    """Bitmask of possible ancestors of ``target`` (possibly directed paths into it)."""
    seen = frontier = 1 << target
    while frontier:
        new = 0
        while frontier:
            low = frontier & -frontier
            frontier ^= low
            y = low.bit_length() - 1
            new |= pdpar[y] & adjm[y]
        new &= ~seen
        seen |= new
        frontier = new
    return seen & ~(1 << target)


def _count_within(root: int, allowed: int, adjm: list[int], r: int) -> int:
    """How many ``allowed`` nodes are reachable from root in at most r steps through
    allowed nodes only (an upper bound on the nodes a closed subset can use)."""
    seen = frontier = 1 << root
    for _ in range(r):
        new = 0
        while frontier:
            low = frontier & -frontier
            frontier ^= low
            new |= adjm[low.bit_length() - 1]
        new &= allowed & ~seen
        if not new:
            break
        seen |= new
        frontier = new
    return bin(seen).count("1") - 1


def _candidates(i: int, j: int, r: int, adjm: list[int], arrowm: list[int],
                pdpar: list[int], stable: bool = False) -> tuple[list[tuple[int, ...]], list[int]]:
    """ICD-Sep candidate sets for the edge i-j at radius r >= 2 (SCIENCE.md): closed
    r-subsets of i's then j's PDS-tree, of possible ancestors of i or j, without i and j;
    stably sorted by the sum of smallest tree depths; repeats dropped. Returns the sets
    and their depth sums. ``stable``: order-independent PDS-trees (``_tree_entries``)."""
    allowed = (_ancestor_mask(i, adjm, pdpar) | _ancestor_mask(j, adjm, pdpar))
    allowed &= ~((1 << i) | (1 << j))
    if bin(allowed).count("1") < r:
        return [], []
    allowed_set = {v for v in range(len(adjm)) if (allowed >> v) & 1}
    out: list[tuple[tuple[int, ...], int]] = []
    for root in (i, j):
        if _count_within(root, allowed, adjm, r) < r:
            continue  # fewer than r allowed nodes within r hops: no closed r-subset here
        nodes, parent, _ = _tree_entries(adjm, arrowm, root, r, stable)
        out.extend(closed_subsets(nodes, parent, r, allowed_set))
    out.sort(key=lambda t: t[1])  # stable: i's tree first within equal distance sums
    seen: set[tuple[int, ...]] = set()
    result, sums = [], []
    for z, d in out:
        if z not in seen:
            seen.add(z)
            result.append(z)
            sums.append(d)
    return result, sums


def _orient(work: Work, sepsets: Sepsets, rank, *, complete: bool,
            selection_bias: bool = True) -> None:
    """Reset marks to circles, R0, R1-R4 (and R5-R10 when ``complete``)."""
    work.reset(CIRCLE)
    apply_order(work, rank)
    rule0(work, sepsets)
    _close(work, sepsets, complete, selection_bias)


def _close(work: Work, sepsets: Sepsets, complete: bool, selection_bias: bool = True) -> None:
    """R1-R4 to a fixed point; with ``complete`` also R5-R7 (if ``selection_bias``) and
    R8-R10, repeating while anything changes."""
    while True:
        rules_1_to_4(work, sepsets)
        if not complete:
            return
        changed = rules_5_to_7(work) if selection_bias else False
        changed |= rules_8_to_10(work)
        if not changed:
            return


def _iteration_0(work: Work, tester: Tester, sepsets: Sepsets) -> None:
    """r = 0: every pair given the empty set (one batch: deletions cannot change it)."""
    A, B = work.pair_arrays()
    if not len(A):
        return
    S = np.zeros((len(A), 0), dtype=np.intp)
    firsts = tester.first_segments(A, B, S, np.arange(len(A)))
    for k in np.flatnonzero(firsts >= 0).tolist():
        a, b = int(A[k]), int(B[k])
        work.remove(a, b)
        sepsets[(a, b)] = ()


def _iteration_1(work: Work, tester: Tester, sepsets: Sepsets) -> bool:
    """r = 1; returns whether any pair had a candidate. Candidates of i-j: adj(i) - {j}
    ascending, then the nodes of adj(j) - {i} not in adj(i), ascending (bitmasks)."""
    if tester.batched:
        adjm = work.masks()
        any_candidate = _Order1Search(tester, adjm, sepsets).run()
        work.set_adjacency(adjm)
        return any_candidate
    adjm, _ = masks_from(work.adj, work.M)
    any_candidate = False
    for i, j in work.pairs():
        if not (adjm[i] >> j) & 1:
            continue
        first = adjm[i] & ~(1 << j)
        second = adjm[j] & ~adjm[i] & ~(1 << i)
        if not (first or second):
            continue
        any_candidate = True
        conds = [(c,) for c in _bits(first) + _bits(second)]
        hit = tester.first(i, j, conds)
        k = conds[hit][0] if hit >= 0 else -1
        if k >= 0:
            work.remove(i, j)
            adjm[i] &= ~(1 << j)
            adjm[j] &= ~(1 << i)
            sepsets[(i, j)] = (k,)
    return any_candidate


class _Order1Search:
    """ICD's r = 1 for a batched test: the same pairs, candidate order, removals, sepsets and
    logged tests as the loop of ``_iteration_1``, with only the tests it needs evaluated.

    Pairs are visited row by row (i, then j > i); within row i only the edges i-j change.
    So when i-j is visited, the first-part candidates adj(i) - {j} are, in ascending order:
    (1) the neighbours of i below i (fixed for the row), (2) the row's nodes below j whose
    edge to i was kept (their decisions are computed when they are kept, or when first
    needed), (3) the row's nodes above j (not yet visited). Group 1 is tested for every pair
    of the row in one block, group 3 as a band widened 4x at a time for the pairs with no
    separating node yet, and the pairs with none in groups 1 and 3 get their whole row of
    nodes (for the second part, adj(j) - adj(i)). Each pair consumes a prefix of each group,
    so the log is assembled from ranges, in the order the sequential search consumes tests.
    """

    def __init__(self, tester: Tester, adjm: list[int], sepsets: Sepsets, band: int = 32) -> None:
        self.tester, self.adjm, self.sepsets = tester, adjm, sepsets
        self.p = len(adjm)
        self.band = band
        self.all_nodes = np.arange(self.p, dtype=np.intp)

    def run(self) -> bool:
        any_candidate = False
        for i in range(self.p):
            if self.adjm[i] >> (i + 1):
                any_candidate |= self._row(i)
        return any_candidate

    def _grid(self, i: int, J: np.ndarray, K: np.ndarray) -> np.ndarray:
        """Decisions (m, c) of ``i _||_ J[m] | K[m, c]`` (K (c,): the same for every m)."""
        return self.tester.order1_grid(i, J, K)[1]

    def _row(self, i: int) -> bool:
        adjm = self.adjm
        cols = _bit_array(adjm[i], self.p)          # A = adj(i) at the row's start
        a = len(cols)
        a0 = int(np.searchsorted(cols, i))
        J = cols[a0:]                               # the row's pairs i-j, j > i
        n_pairs = len(J)
        low_nodes = cols[:a0]                       # group 1
        n_above = n_pairs - 1 - np.arange(n_pairs)  # group 3 sizes
        h1 = _first_true(self._grid(i, J, low_nodes)) if a0 else np.full(n_pairs, -1)
        # group 3: the band of row nodes above j, widened for the pairs with no hit yet
        h3 = np.full(n_pairs, -1)
        todo = np.flatnonzero((h1 < 0) & (n_above > 0))
        lo, hi = 0, self.band
        while len(todo):
            idx = (a0 + 1 + todo)[:, None] + np.arange(lo, hi)[None, :]
            ind = self.tester.order1_grid(i, J[todo], cols[np.minimum(idx, a - 1)])[1]
            ind &= idx < a
            found = ind.any(axis=1)
            h3[todo[found]] = lo + ind[found].argmax(axis=1)
            todo = todo[~found & (n_above[todo] > hi)]
            lo, hi = hi, 4 * hi
        # Pairs with a hit in group 1 or 3 are removed whatever happens; the others
        # ("exhausted") may be kept, so group 2 only ever holds exhausted nodes, and the
        # second part is only reached by them.
        exhausted = np.flatnonzero((h1 < 0) & (h3 < 0))
        node_rows = dict(zip(exhausted.tolist(), _int_rows(self._grid(i, J[exhausted], self.all_nodes))))
        open_pairs = np.flatnonzero(h1 < 0)
        # group 2 decisions: bit e of bits2[m] = exhausted node J[exhausted[e]] separates i-J[m]
        bits2 = dict(zip(open_pairs.tolist(), _int_rows(self._grid(i, J[open_pairs], J[exhausted]))))
        e_rank = dict(zip(exhausted.tolist(), range(len(exhausted))))
        js = J.tolist()
        h3l = h3.tolist()
        n_above_l = n_above.tolist()
        sep_k = np.where(h1 >= 0, low_nodes[np.maximum(h1, 0)] if a0 else -1, -1)
        n2 = np.zeros(n_pairs, dtype=np.intp)
        n3 = np.zeros(n_pairs, dtype=np.intp)
        second_used: dict[int, int] = {}
        kept: list[int] = []                        # group 2, ascending
        kept_bits = 0                               # kept nodes as bits of exhausted ranks
        bit_i = 1 << i
        low_mask = adjm[i] & (bit_i - 1)
        kept_mask = 0
        any_candidate = bool(n_pairs > 1 or a0)
        for m in open_pairs.tolist():
            j = js[m]
            hits = bits2[m] & kept_bits
            if hits:
                low = hits & -hits
                q = bin(kept_bits & (low - 1)).count("1")
                n2[m] = q + 1
                sep_k[m] = kept[q]
                continue
            n2[m] = len(kept)
            c = h3l[m]
            if c >= 0:
                n3[m] = c + 1
                sep_k[m] = cols[a0 + 1 + m + c]
                continue
            n3[m] = n_above_l[m]
            adj_i = low_mask | kept_mask | (adjm[i] & ~((1 << j) - 1))
            second = adjm[j] & ~adj_i & ~bit_i
            if second:
                any_candidate = True
                hits = node_rows[m] & second
                if hits:
                    low = hits & -hits
                    second_used[m] = second & ((low << 1) - 1)
                    sep_k[m] = low.bit_length() - 1
                    continue
                second_used[m] = second
            kept.append(j)
            kept_bits |= 1 << e_rank[m]
            kept_mask |= 1 << j
        removed = np.flatnonzero(sep_k >= 0)
        self.sepsets.update(zip(zip([i] * len(removed), J[removed].tolist()),
                                ((k,) for k in sep_k[removed].tolist())))
        for j in J[removed].tolist():
            adjm[j] &= ~bit_i
        adjm[i] = low_mask | kept_mask
        n1 = np.where(h1 >= 0, h1 + 1, a0)
        self._log(i, J, cols, a0, n1, n2, n3, second_used, np.asarray(kept, dtype=np.intp))
        return any_candidate

    def _log(self, i: int, J: np.ndarray, cols: np.ndarray, a0: int, n1: np.ndarray,
             n2: np.ndarray, n3: np.ndarray, second_used: dict[int, int], kept: np.ndarray) -> None:
        """Count and log the consumed tests of row i in the order the sequential search
        consumed them: by pair; groups 1, 2, 3 of the first part (each a prefix), then the
        second part."""
        g_parts, k_parts, part_parts = [], [], []
        for part, counts in enumerate((n1, n2, n3)):
            total = int(counts.sum())
            if not total:
                continue
            g = np.repeat(np.arange(len(counts)), counts)
            t = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            k = cols[t] if part == 0 else kept[t] if part == 1 else cols[a0 + 1 + g + t]
            g_parts.append(g)
            k_parts.append(k)
            part_parts.append(np.full(total, part, dtype=np.intp))
        if second_used:
            sec = list(second_used)
            g, k = _unpack([second_used[m] for m in sec])
            g_parts.append(np.asarray(sec, dtype=np.intp)[g])
            k_parts.append(k)
            part_parts.append(np.full(len(g), 3, dtype=np.intp))
        if not g_parts:
            return
        g, k, part = (np.concatenate(x) for x in (g_parts, k_parts, part_parts))
        if len(g_parts) > 1:
            order = np.argsort(g * 4 + part, kind="stable")
            g, k = g[order], k[order]
        self.tester.record_order1_tests(np.full(len(g), i, dtype=np.intp), J[g], k)


def _first_true(ind: np.ndarray) -> np.ndarray:
    """Column of the first True per row (m,), -1 where none."""
    if ind.shape[1] == 0:
        return np.full(ind.shape[0], -1)
    first = ind.argmax(axis=1)
    return np.where(ind[np.arange(len(first)), first], first, -1)


def _int_rows(ind: np.ndarray) -> list[int]:
    """Rows of a bool matrix (m, c) as bitmasks (bit c = column c)."""
    if ind.shape[1] == 0:
        return [0] * ind.shape[0]
    bits = np.packbits(ind, axis=1, bitorder="little")
    return [int.from_bytes(r.tobytes(), "little") for r in bits]


def _bit_array(mask: int, p: int) -> np.ndarray:
    """Positions of the set bits of ``mask`` (< 2**p), ascending, as an int array."""
    raw = np.frombuffer(mask.to_bytes((p + 7) // 8, "little"), dtype=np.uint8)
    return np.flatnonzero(np.unpackbits(raw, bitorder="little")).astype(np.intp)


def _unpack(masks: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Set bits of many bitmasks: (mask index, bit) pairs, by mask, then bit ascending.
    Masks are grouped by length so that the work follows the number of bits in use."""
    lengths = np.array([mk.bit_length() for mk in masks], dtype=np.intp)
    g_out, k_out = [], []
    for lo, hi in ((0, 64), (64, 512), (512, None)):
        sel = np.flatnonzero((lengths > lo) & ((lengths <= hi) if hi is not None else True))
        if not len(sel):
            continue
        nbytes = (int(lengths[sel].max()) + 7) // 8
        raw = np.frombuffer(b"".join(masks[n].to_bytes(nbytes, "little") for n in sel.tolist()),
                            dtype=np.uint8).reshape(len(sel), nbytes)
        g, k = np.nonzero(np.unpackbits(raw, axis=1, bitorder="little"))
        g_out.append(sel[g])
        k_out.append(k)
    if not g_out:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    g, k = np.concatenate(g_out), np.concatenate(k_out)
    order = np.lexsort((k, g))
    return g[order], k[order].astype(np.intp)


def _bits(mask: int) -> list[int]:
    """Positions of the set bits, ascending."""
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


def _iteration_r(work: Work, tester: Tester, sepsets: Sepsets, r: int) -> bool:
    """r >= 2; returns whether any pair had a candidate. Marks stay fixed during the
    iteration; edge deletions take effect at once (bitmask rows kept in step)."""
    adjm, arrowm = masks_from(work.adj, work.M)
    pdpar = _pd_parent_masks(work)
    any_candidate = False
    for i, j in work.pairs():
        if j not in work.adj[i]:
            continue
        conds, _ = _candidates(i, j, r, adjm, arrowm, pdpar)
        if not conds:
            continue
        any_candidate = True
        k = tester.first(i, j, conds)
        if k >= 0:
            work.remove(i, j)
            adjm[i] &= ~(1 << j)
            adjm[j] &= ~(1 << i)
            sepsets[(i, j)] = conds[k]
    return any_candidate


def _pick(p: np.ndarray, independent: np.ndarray, sums: np.ndarray | None = None) -> int:
    """The separating set to keep (order-independent): among the separating sets of the
    smallest depth sum, the one with the largest p-value (first on ties); -1 if none."""
    if not independent.any():
        return -1
    ok = independent if sums is None else independent & (sums == sums[independent].min())
    rows = np.flatnonzero(ok)
    return int(rows[np.argmax(p[rows])])


def _iteration_1_stable(work: Work, tester: Tester, sepsets: Sepsets,
                        max_rows: int = 1 << 20) -> bool:
    """r = 1 with adjacencies frozen: every pair i-j is tested given each node of
    adj(i) | adj(j) - {i, j}; separated edges are removed at the end, each with the
    separating node of largest p-value. Returns whether any pair had a candidate."""
    pairs = work.pairs()
    p = work.p
    adj = np.zeros((p, p), dtype=bool)
    for a, nb in enumerate(work.adj):
        adj[a, list(nb)] = True
    found: dict[tuple[int, int], tuple[int]] = {}
    any_candidate = False
    P = np.asarray(pairs, dtype=np.intp).reshape(-1, 2)
    step = max(1, max_rows // max(p, 1))
    for lo in range(0, len(P), step):
        A, B = P[lo:lo + step, 0], P[lo:lo + step, 1]
        rows = np.arange(len(A))
        cand = adj[A] | adj[B]                       # (pairs, p): candidate nodes k
        cand[rows, A] = cand[rows, B] = False
        g, k = np.nonzero(cand)                      # by pair, then k ascending
        if not len(g):
            continue
        any_candidate = True
        if tester.batched:
            rho, ind = tester.order1(A, B)
            sep = ind[g, k]
            pv = tester.record_order1(A[g], B[g], k, rho[g, k])
        else:
            pv, sep = np.zeros(len(g)), np.zeros(len(g), dtype=bool)
            starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
            for s0, s1 in zip(starts.tolist(), np.r_[starts[1:], len(g)].tolist()):
                m = int(g[s0])
                pv[s0:s1], sep[s0:s1] = tester.test_all(int(A[m]), int(B[m]),
                                                        [(int(c),) for c in k[s0:s1]])
        idx = np.flatnonzero(sep)
        order = idx[np.lexsort((-pv[idx], g[idx]))]  # by pair, then largest p first
        first = order[np.r_[True, g[order][1:] != g[order][:-1]]] if len(order) else order
        for t in first.tolist():
            found[(int(A[g[t]]), int(B[g[t]]))] = (int(k[t]),)
    for (a, b), cond in found.items():
        work.remove(a, b)
        sepsets[(a, b)] = cond
    return any_candidate


def _collider_marks(work: Work, sepsets: Sepsets, rank) -> Work:
    """A copy of ``work``'s skeleton oriented by background order and R0 only. Both only add
    arrowheads, so unlike R1-R10 (where conflicting finite-sample orientations are settled
    by whichever fires first) the result does not depend on the numbering of the nodes."""
    copy = Work.__new__(Work)
    copy.p, copy.adj = work.p, [set(nb) for nb in work.adj]
    copy.M = [[0] * work.p for _ in range(work.p)]
    copy.reset(CIRCLE)
    apply_order(copy, rank)
    rule0(copy, sepsets)
    return copy


def _iteration_r_stable(work: Work, tester: Tester, sepsets: Sepsets, r: int, rank=None) -> bool:
    """r >= 2 with adjacencies frozen: every edge is tested given all its candidate sets,
    drawn from the PAG oriented by R0 only (:func:`_collider_marks`: fewer marks, so a
    superset of the possible ancestors and PDS paths); separated edges are removed at the
    end (sepsets by :func:`_pick`)."""
    marked = _collider_marks(work, sepsets, rank)
    adjm, arrowm = masks_from(marked.adj, marked.M)
    pdpar = _pd_parent_masks(marked)
    any_candidate = False
    found = []
    for i, j in work.pairs():
        conds, sums = _candidates(i, j, r, adjm, arrowm, pdpar, stable=True)
        if not conds:
            continue
        any_candidate = True
        pv, ind = tester.test_all(i, j, conds)
        k = _pick(pv, ind, np.asarray(sums))
        if k >= 0:
            found.append((i, j, conds[k]))
    for i, j, cond in found:
        work.remove(i, j)
        sepsets[(i, j)] = cond
    return any_candidate


def icd(work: Work, tester: Tester, sepsets: Sepsets, *, rank: dict[int, int] | None = None,
        max_r: int | None = None, selection_bias: bool = True, stable: bool = False,
        callback: Callable[[int, Work], None] | None = None,
        deadline: float | None = None) -> tuple[int, bool]:
    """Run ICD on a complete o-o ``work`` graph in place; returns the last r completed and
    whether ``deadline`` (a ``time.perf_counter()`` value) stopped it.

    The result is r-representing; without ``max_r`` (or if ICD concludes first) it is the
    completed PAG. ``stable``: the order-independent skeleton search (module docstring).
    The deadline is checked after each iteration: past it, ICD stops there with the graph
    oriented as ``max_r=r`` would leave it.
    """
    def late() -> bool:
        return deadline is not None and time.perf_counter() > deadline

    work.reset(CIRCLE)
    r = 0
    _iteration_0(work, tester, sepsets)
    cut = late() and max_r != 0
    if callback or (max_r is not None and max_r <= 0) or cut:
        # r = 1 candidates depend on adjacencies only, so this orientation is for the caller
        _orient(work, sepsets, rank, complete=False)
        if callback:
            callback(0, work)
        if (max_r is not None and max_r <= 0) or cut:
            return 0, cut
    r = 1
    more = (_iteration_1_stable if stable else _iteration_1)(work, tester, sepsets)
    _orient(work, sepsets, rank, complete=True, selection_bias=selection_bias)
    if callback:
        callback(1, work)
    while more and (max_r is None or r < max_r):
        if late():
            return r, True
        r += 1
        more = (_iteration_r_stable(work, tester, sepsets, r, rank) if stable
                else _iteration_r(work, tester, sepsets, r))
        if more:
            _orient(work, sepsets, rank, complete=False)
        else:
            _close(work, sepsets, True, selection_bias)
        if callback:
            callback(r, work)
    return r, False
