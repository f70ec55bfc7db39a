"""FCI orientation rules R0-R10 (Zhang 2008) on a mutable mark matrix.

Notation: ``M[x][y]`` is the mark at x's end of the edge x-y, so ``x *-> y`` means
``M[y][x] == ARROW``. Rules only ever replace circles; a mark that is already an arrowhead
or a tail is never flipped to the other (with conflicting tests the first orientation wins),
so background knowledge placed before the rules is respected.
"""
from __future__ import annotations

from collections import deque
from itertools import combinations
from typing import Iterator

from ._core import ARROW, CIRCLE, TAIL, Sepsets, Work

__all__ = ["rule0", "orient_pag", "rules_1_to_4", "rules_5_to_7", "rules_8_to_10"]

_PATH_BUDGET = 50_000  # node expansions per uncovered-path search (then: "not found")


def _set(M: list[list[int]], at: int, other: int, mark: int) -> bool:
    """Set the mark at ``at``'s end of at-other if it is a circle; True if it changed."""
    if M[at][other] == CIRCLE:
        M[at][other] = mark
        return True
    return False


def collider_candidates(work: Work, sepsets: Sepsets) -> Iterator[tuple[int, int, int]]:
    """Unshielded triples (a, b, c), a < c, with a separating set for (a, c) not holding b,
    ordered by b, then (a, c). Found from whichever side is cheaper: the common neighbours
    of separated pairs (sparse separations) or the neighbour pairs of every node (dense)."""
    adj = work.adj
    degrees = [len(nb) for nb in adj]
    by_pairs = sum(d * (d - 1) // 2 for d in degrees)
    by_sepsets = len(sepsets) * (sum(degrees) // max(work.p, 1) + 1)
    if by_sepsets < by_pairs:
        found = []
        for (a, c), sep in sepsets.items():
            if c in adj[a]:
                continue
            common = adj[a] & adj[c]
            found.extend((a, b, c) if a < c else (c, b, a) for b in common if b not in sep)
        found.sort(key=lambda t: (t[1], t[0], t[2]))
        yield from found
        return
    for b in range(work.p):
        for a, c in combinations(sorted(adj[b]), 2):
            if c in adj[a]:
                continue
            sep = sepsets.get((a, c))
            if sep is not None and b not in sep:
                yield a, b, c


def rule0(work: Work, sepsets: Sepsets) -> None:
    """R0: for a *-o b o-* c with a, c not adjacent and b not in sepset(a, c): a *-> b <-* c."""
    M = work.M
    for a, b, c in collider_candidates(work, sepsets):
        if M[b][a] == TAIL or M[b][c] == TAIL:
            continue  # conflicts with an orientation already made
        M[b][a] = ARROW
        M[b][c] = ARROW


# ---------------------------------------------------------------------------------------
# R1-R4
# ---------------------------------------------------------------------------------------

def _r1_r2(work: Work) -> bool:
    M, adj = work.M, work.adj
    changed = False
    for b in range(work.p):
        nb = sorted(adj[b])
        for a in nb:
            if M[b][a] != ARROW:
                continue
            for c in nb:  # R1: a *-> b o-* c, a and c not adjacent => b -> c
                if c != a and M[b][c] == CIRCLE and c not in adj[a] and M[c][b] != TAIL:
                    M[b][c] = TAIL
                    M[c][b] = ARROW
                    changed = True
    for a in range(work.p):  # R2: a -> b *-> c or a *-> b -> c, and a *-o c => a *-> c
        out_of_a = {b for b in adj[a] if M[b][a] == ARROW}   # a *-> b, kept up to date below
        if not out_of_a:
            continue
        for c in sorted(adj[a]):
            if M[c][a] != CIRCLE:
                continue
            for b in out_of_a & adj[c]:
                if M[c][b] != ARROW:
                    continue
                if M[a][b] == TAIL or M[b][c] == TAIL:
                    M[c][a] = ARROW
                    out_of_a.add(c)
                    changed = True
                    break
    return changed


def _r3(work: Work) -> bool:
    """R3: a *-> b <-* c, a *-o d o-* c, a, c not adjacent, d *-o b => d *-> b."""
    M, adj = work.M, work.adj
    changed = False
    for b in range(work.p):
        into = sorted(x for x in adj[b] if M[b][x] == ARROW)
        if len(into) < 2:
            continue
        for d in sorted(adj[b]):
            if M[b][d] != CIRCLE:
                continue
            # only a, c with a *-o d o-* c can complete the pattern: filter before pairing
            cand = [x for x in into if x != d and x in adj[d] and M[d][x] == CIRCLE]
            for a, c in combinations(cand, 2):
                if c not in adj[a]:
                    M[b][d] = ARROW
                    changed = True
                    break
    return changed


def _is_parent(M: list[list[int]], x: int, y: int) -> bool:
    """x -> y."""
    return M[x][y] == TAIL and M[y][x] == ARROW


def _discriminating_source(work: Work, a: int, b: int, c: int) -> int | None:
    """Start u of a discriminating path <u, ..., a, b, c> for b (a <-* b, a -> c), or None."""
    M, adj = work.M, work.adj
    seen = {a, b, c}
    queue = deque([a])
    while queue:
        t = queue.popleft()
        for u in sorted(adj[t]):
            if u in seen or M[t][u] != ARROW:  # need u *-> t
                continue
            if u not in adj[c]:
                return u
            if _is_parent(M, u, c) and M[u][t] == ARROW:  # u <-> t, u -> c: extend
                seen.add(u)
                queue.append(u)
    return None


def _r4(work: Work, sepsets: Sepsets) -> bool:
    """R4 on discriminating paths, deciding with the recorded sepsets (Zhang 2008)."""
    M, adj = work.M, work.adj
    changed = False
    for b in range(work.p):
        into_b = {a for a in adj[b] if M[a][b] == ARROW}   # a <-* b, kept up to date below
        if not into_b:
            continue
        for c in sorted(adj[b]):
            if M[b][c] != CIRCLE:
                continue
            for a in sorted(into_b & adj[c]):
                if M[b][c] != CIRCLE:
                    break
                if M[a][b] != ARROW or not _is_parent(M, a, c):
                    continue
                u = _discriminating_source(work, a, b, c)
                if u is None:
                    continue
                sep = sepsets.get((min(u, c), max(u, c)))
                if sep is None:
                    continue
                if b in sep:
                    if M[c][b] != TAIL:
                        M[b][c] = TAIL
                        M[c][b] = ARROW
                        changed = True
                elif M[c][b] != TAIL and M[b][a] != TAIL:
                    _set(M, b, a, ARROW)
                    M[b][c] = ARROW
                    _set(M, c, b, ARROW)
                    changed = True
                if M[c][b] == ARROW:
                    into_b.add(c)
    return changed


def rules_1_to_4(work: Work, sepsets: Sepsets) -> bool:
    """Apply R1-R4 until nothing changes; True if anything changed."""
    any_change = False
    while True:
        changed = _r1_r2(work)
        changed |= _r3(work)
        changed |= _r4(work, sepsets)
        if not changed:
            return any_change
        any_change = True


# ---------------------------------------------------------------------------------------
# uncovered paths (R5, R9, R10)
# ---------------------------------------------------------------------------------------

def _uncovered_paths(work: Work, start: int, second: int, step, targets: set[int],
                     allowed: set[int] | None = None, through_targets: bool = False):
    """Yield uncovered paths <start, second, ..., t> with t in ``targets``; every edge x-y
    after the first satisfies ``step(x, y)``; intermediate nodes must be in ``allowed``
    (if given). Depth-first over simple paths, with an expansion budget (sound: a search
    that runs out of budget finds nothing more)."""
    adj = work.adj
    budget = [_PATH_BUDGET]
    path = [start, second]
    on_path = {start, second}

    def extend():
        prev, cur = path[-2], path[-1]
        for nxt in sorted(adj[cur]):
            if nxt in on_path or nxt in adj[prev] or not step(cur, nxt):
                continue
            hit = nxt in targets
            if not hit and allowed is not None and nxt not in allowed:
                continue
            budget[0] -= 1
            if budget[0] < 0:
                return
            path.append(nxt)
            if hit:
                yield list(path)
            if not hit or through_targets:
                on_path.add(nxt)
                yield from extend()
                on_path.discard(nxt)
            path.pop()

    if second in targets:
        yield list(path)
        if not through_targets:
            return
    yield from extend()


def _r5(work: Work) -> bool:
    """R5: a o-o b with an uncovered circle path <a, c, ..., d, b>, a, d and b, c not
    adjacent: a --- b and every edge on the path becomes ---."""
    M, adj = work.M, work.adj
    changed = False
    circ = lambda x, y: M[x][y] == CIRCLE and M[y][x] == CIRCLE  # noqa: E731
    for a in range(work.p):
        for b in sorted(adj[a]):
            if b < a or not circ(a, b):
                continue
            for c in sorted(adj[a]):
                if c == b or c in adj[b] or not circ(a, c):
                    continue
                found = None
                for path in _uncovered_paths(work, a, c, circ, {b}):
                    if len(path) >= 4 and path[-2] not in adj[a]:
                        found = path
                        break
                if found is None:
                    continue
                for x, y in zip(found, found[1:]):
                    M[x][y] = M[y][x] = TAIL
                M[a][b] = M[b][a] = TAIL
                changed = True
                break
    return changed


def _r6_r7(work: Work) -> bool:
    """R6: a --- b o-* c => b --* c.  R7: a -o b o-* c, a and c not adjacent => b --* c."""
    M, adj = work.M, work.adj
    changed = False
    for b in range(work.p):
        nb = sorted(adj[b])
        for c in nb:
            if M[b][c] != CIRCLE:
                continue
            for a in nb:
                if a == c:
                    continue
                if M[a][b] == TAIL and M[b][a] == TAIL:  # R6
                    M[b][c] = TAIL
                    changed = True
                    break
                if M[a][b] == TAIL and M[b][a] == CIRCLE and c not in adj[a]:  # R7
                    M[b][c] = TAIL
                    changed = True
                    break
    return changed


def rules_5_to_7(work: Work) -> bool:
    """Selection-bias rules R5-R7 until nothing changes; True if anything changed."""
    any_change = False
    while _r5(work) | _r6_r7(work):
        any_change = True
    return any_change


def _pd(M: list[list[int]], x: int, y: int) -> bool:
    """The edge x-y is possibly directed from x to y: no arrowhead at x, no tail at y."""
    return M[x][y] != ARROW and M[y][x] != TAIL and M[x][y] != 0


def pd_reach_to(work: Work, target: int, exclude: int = -1) -> set[int]:
    """Nodes with a possibly directed path to ``target`` avoiding ``exclude`` (target included)."""
    M, adj = work.M, work.adj
    seen = {target}
    queue = deque([target])
    while queue:
        y = queue.popleft()
        for x in adj[y]:
            if x not in seen and x != exclude and _pd(M, x, y):
                seen.add(x)
                queue.append(x)
    return seen


def _r8_r9(work: Work) -> bool:
    """R8: a -> b -> c or a -o b -> c, with a o-> c => a -> c.
    R9: a o-> c with an uncovered possibly directed path <a, b, ..., c>, b and c not
    adjacent => a -> c."""
    M, adj = work.M, work.adj
    changed = False
    step = lambda x, y: _pd(M, x, y)  # noqa: E731
    for a in range(work.p):
        for c in sorted(adj[a]):
            if M[a][c] != CIRCLE or M[c][a] != ARROW:
                continue
            done = False
            for b in sorted(adj[a] & adj[c]):  # R8
                if (M[a][b] == TAIL and M[b][a] in (ARROW, CIRCLE)
                        and M[b][c] == TAIL and M[c][b] == ARROW):
                    M[a][c] = TAIL
                    changed = done = True
                    break
            if done:
                continue
            reach = pd_reach_to(work, c, a)
            for b in sorted(adj[a]):  # R9
                if b == c or b in adj[c] or not _pd(M, a, b) or b not in reach:
                    continue
                if next(_uncovered_paths(work, a, b, step, {c}, reach), None) is not None:
                    M[a][c] = TAIL
                    changed = True
                    break
    return changed


def _r10(work: Work) -> bool:
    """R10: a o-> c, b -> c <- d, uncovered p.d. paths a..b and a..d whose second nodes
    mu, omega differ and are not adjacent => a -> c."""
    M, adj = work.M, work.adj
    changed = False
    step = lambda x, y: _pd(M, x, y)  # noqa: E731
    for c in range(work.p):
        parents = {x for x in adj[c] if _is_parent(M, x, c)}
        if len(parents) < 2:
            continue
        for a in sorted(adj[c]):
            if M[a][c] != CIRCLE or M[c][a] != ARROW:
                continue
            firsts = [m for m in sorted(adj[a]) if m != c and _pd(M, a, m)]
            reach: dict[int, set[int]] = {}
            for m in firsts:  # which parents of c an uncovered p.d. path a, m, ... reaches
                targets = parents - {a}
                got = set()
                for path in _uncovered_paths(work, a, m, step, targets, through_targets=True):
                    got.add(path[-1])
                    if got == targets:
                        break
                reach[m] = got
            hit = False
            for m, w in combinations(firsts, 2):
                if w in adj[m]:
                    continue
                if any(b != d for b in reach[m] for d in reach[w]):
                    hit = True
                    break
            if hit:
                M[a][c] = TAIL
                changed = True
    return changed


def rules_8_to_10(work: Work) -> bool:
    """Tail-completeness rules R8-R10 until nothing changes; True if anything changed."""
    any_change = False
    while _r8_r9(work) | _r10(work):
        any_change = True
    return any_change


def orient_pag(work: Work, sepsets: Sepsets, *, selection_bias: bool = True,
               tail_completeness: bool = True) -> None:
    """R1-R4 to a fixed point, then R5-R7 and R8-R10; repeat while anything changes."""
    while True:
        rules_1_to_4(work, sepsets)
        changed = rules_5_to_7(work) if selection_bias else False
        changed |= rules_8_to_10(work) if tail_completeness else False
        if not changed:
            return
