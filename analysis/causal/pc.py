"""PC (stable skeleton) -> CPDAG: unshielded colliders from sepsets, then Meek R1-R4."""
from __future__ import annotations

from itertools import combinations

from ._core import ARROW, TAIL, Sepsets, Tester, Work, stable_skeleton
from .rules import collider_candidates

__all__ = ["pc"]


def _directed(M, a: int, b: int) -> bool:
    """a -> b."""
    return M[a][b] == TAIL and M[b][a] == ARROW


def _undirected(M, a: int, b: int) -> bool:
    return M[a][b] == TAIL and M[b][a] == TAIL


def _allowed(rank: dict[int, int] | None, a: int, b: int) -> bool:
    """Orienting a -> b does not contradict the causal order (b is not before a)."""
    if not rank or a not in rank or b not in rank:
        return True
    return rank[a] <= rank[b]


def _orient(M, a: int, b: int) -> None:
    M[a][b] = TAIL
    M[b][a] = ARROW


def orient_by_order(work: Work, rank: dict[int, int] | None) -> None:
    """Orient every edge between two ordered nodes from the earlier to the later one."""
    if not rank:
        return
    for a, b in work.pairs():
        if a in rank and b in rank and rank[a] != rank[b]:
            _orient(work.M, *((a, b) if rank[a] < rank[b] else (b, a)))


def orient_colliders(work: Work, sepsets: Sepsets, rank: dict[int, int] | None = None) -> None:
    """a -> b <- c for unshielded a - b - c with b not in sepset(a, c). Orientations made
    earlier (by the order or an earlier collider) take priority over conflicting ones."""
    M = work.M
    for a, b, c in collider_candidates(work, sepsets):
        if _directed(M, b, a) or _directed(M, b, c):
            continue
        if not (_allowed(rank, a, b) and _allowed(rank, c, b)):
            continue
        _orient(M, a, b)
        _orient(M, c, b)


def _meek_once(work: Work, rank: dict[int, int] | None) -> bool:
    M, adj = work.M, work.adj
    changed = False
    for a, b in work.pairs():
        for x, y in ((a, b), (b, a)):
            if not _undirected(M, x, y) or not _allowed(rank, x, y):
                continue
            if _meek_applies(M, adj, x, y):
                _orient(M, x, y)
                changed = True
                break
    return changed


def _meek_applies(M, adj, x: int, y: int) -> bool:
    """Whether one of Meek's rules orients the undirected edge x - y as x -> y."""
    for w in adj[x]:  # R1: w -> x - y, w and y not adjacent
        if w != y and _directed(M, w, x) and w not in adj[y]:
            return True
    common = adj[x] & adj[y]
    for w in common:  # R2: x -> w -> y
        if _directed(M, x, w) and _directed(M, w, y):
            return True
    mids = sorted(w for w in common if _undirected(M, x, w) and _directed(M, w, y))
    for k, l in combinations(mids, 2):  # R3: x - k -> y, x - l -> y, k and l not adjacent
        if l not in adj[k]:
            return True
    for k in adj[x]:  # R4: x - k -> l -> y, k and y not adjacent
        if k == y or not _undirected(M, x, k) or k in adj[y]:
            continue
        for l in adj[k] & adj[y]:
            if _directed(M, k, l) and _directed(M, l, y):
                return True
    return False


def meek(work: Work, rank: dict[int, int] | None = None) -> None:
    """Apply Meek's rules R1-R4 until nothing changes (never against the order)."""
    while _meek_once(work, rank):
        pass


def pc(work: Work, tester: Tester, sepsets: Sepsets, *, rank: dict[int, int] | None = None,
       max_depth: int | None = None) -> None:
    """Run PC on a complete ``work`` graph in place: the result is a CPDAG (marks TAIL /
    ARROW; ``a --- b`` undirected)."""
    work.reset(TAIL)
    stable_skeleton(work, tester, sepsets, max_depth=max_depth)
    work.reset(TAIL)
    orient_by_order(work, rank)
    orient_colliders(work, sepsets, rank)
    meek(work, rank)
