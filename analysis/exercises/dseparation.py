"""Exercise 2, partial correlation and d-separation on a planted SEM: mixing matrix, covariance,
partial correlations, d-separation statements (with every path explained)."""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from ._common import (Feedback, _as_bool, _as_float, _as_int, _as_matrix, _BadAnswer, _checker, _dag, _collection,
                      _is_placeholder, _Names)


@_checker("mixing matrix", "an [n, n] array")
def check_mixing_matrix(answer: Any, weights: np.ndarray, noise_var: np.ndarray, atol: float = 1e-6) -> Feedback:
    """``A = (I - B^T)^-1 diag(d)^1/2`` for ``B[u, v]`` the weight of u -> v; any A with
    ``A A^T`` equal to the SEM covariance is accepted (with a note)."""
    task = "mixing matrix"
    B = np.asarray(weights, dtype=np.float64)
    d = np.asarray(noise_var, dtype=np.float64)
    n = B.shape[0]
    arr = _as_matrix(answer, (n, n))
    I = np.eye(n)
    want = np.linalg.solve(I - B.T, np.diag(np.sqrt(d)))
    cov = want @ want.T
    if np.allclose(arr, want, atol=atol):
        return Feedback(task, True, "x = B^T x + e gives x = (I - B^T)^-1 e, and scaling unit noise by D^1/2 gives A.")
    if np.allclose(arr @ arr.T, cov, atol=atol * max(1.0, np.abs(cov).max())):
        return Feedback(task, True, "not the SEM's own A = (I - B^T)^-1 D^1/2, but A A^T equals the covariance, "
                                    "so it is an equally valid 'attention' for this SEM (any square root works).")
    if np.allclose(arr, np.linalg.solve(I - B, np.diag(np.sqrt(d))), atol=atol):
        return Feedback(task, False, "you used (I - B)^-1. With B[u, v] the weight of u -> v, node v is "
                                     "x_v = sum_u B[u, v] x_u + e_v, i.e. x = B^T x + e: invert I - B^T.")
    if np.allclose(arr, np.linalg.solve(I - B.T, np.diag(d)), atol=atol):
        return Feedback(task, False, "you scaled by D instead of D^1/2: the noise e_v has variance d_v, "
                                     "so its standard deviation sqrt(d_v) multiplies unit noise.")
    if np.allclose(arr, np.linalg.inv(I - B.T), atol=atol):
        return Feedback(task, False, "you left out the noise scale: multiply by D^1/2 = diag(sqrt(noise_var)) on the right.")
    if np.allclose(arr, np.diag(np.sqrt(d)) @ np.linalg.inv(I - B.T), atol=atol):
        return Feedback(task, False, "D^1/2 is on the wrong side: A = (I - B^T)^-1 D^1/2 scales the columns "
                                     "(the noise terms), not the rows.")
    return Feedback(task, False, f"A A^T differs from the SEM covariance by up to "
                                 f"{float(np.max(np.abs(arr @ arr.T - cov))):.3g}.")


@_checker("covariance", "an [n, n] array")
def check_covariance(answer: Any, mixing: np.ndarray, atol: float = 1e-6) -> Feedback:
    """The covariance of ``x = A e`` (e ~ N(0, I)): ``A A^T``."""
    task = "covariance"
    A = np.asarray(mixing, dtype=np.float64)
    arr = _as_matrix(answer, (A.shape[0], A.shape[0]))
    want = A @ A.T
    scale = max(1.0, float(np.abs(want).max()))
    if np.allclose(arr, want, atol=atol * scale):
        return Feedback(task, True, "Cov(A e) = A Cov(e) A^T = A A^T.")
    if np.allclose(arr, A.T @ A, atol=atol * scale):
        return Feedback(task, False, "that is A^T A. With x = A e, Cov(x) = E[A e e^T A^T] = A A^T "
                                     "(rows of A are the variables).")
    if not np.allclose(arr, arr.T, atol=atol * scale):
        return Feedback(task, False, "your matrix is not symmetric, so it cannot be a covariance.")
    return Feedback(task, False, f"your matrix differs from A A^T by up to {float(np.max(np.abs(arr - want))):.3g}.")


def _residual_pcorr(cov: np.ndarray, i: int, j: int, cond: Sequence[int]) -> float:
    """Partial correlation from regression residuals: Cov(x_ij - beta x_S)."""
    cov = np.asarray(cov, dtype=np.float64)
    ij, S = [i, j], list(cond)
    c = cov[np.ix_(ij, ij)]
    if S:
        beta = np.linalg.lstsq(cov[np.ix_(S, S)], cov[np.ix_(S, ij)], rcond=None)[0]
        c = c - cov[np.ix_(ij, S)] @ beta
    return float(c[0, 1] / np.sqrt(c[0, 0] * c[1, 1]))


def _precision_entry(cov: np.ndarray, idx: Sequence[int]) -> tuple[float, float]:
    p = np.linalg.inv(np.asarray(cov, dtype=np.float64)[np.ix_(idx, idx)])
    return float(-p[0, 1] / np.sqrt(p[0, 0] * p[1, 1])), float(p[0, 1])


@_checker("partial correlation", "a number in [-1, 1]")
def check_partial_correlation(answer: Any, cov: np.ndarray, i: int, j: int, cond: Sequence[int] = (), *,
                              names: Sequence[str] | None = None, atol: float = 5e-3) -> Feedback:
    """rho_{ij.S} of the covariance (or correlation) ``cov`` (indices i, j, cond; ``names``
    only label the message); ``atol`` allows rounding."""
    cov = np.asarray(cov, dtype=np.float64)
    nm = _Names(names, cov.shape[0])
    task = f"partial correlation rho({nm(i)}, {nm(j)} | {nm.set(cond)})"
    value = _as_float(answer)
    want = _residual_pcorr(cov, i, j, cond)
    if abs(value - want) <= atol:
        return Feedback(task, True, f"{want:+.4f}: -P_ij / sqrt(P_ii P_jj) with P the inverse of the block "
                                    f"over {{i, j}} + S, the correlation of the residuals after regressing on S.")
    msg = None
    sub, raw = _precision_entry(cov, [i, j, *cond])
    n = cov.shape[0]
    others = [k for k in range(n) if k not in (i, j)]
    full, _ = _precision_entry(cov, [i, j, *others])
    corr = cov[i, j] / np.sqrt(cov[i, i] * cov[j, j])
    if abs(value) > 1 + 1e-9:
        msg = "a correlation lies in [-1, 1]: normalise by sqrt(P_ii P_jj)"
        if abs(value - raw) <= atol or abs(value + raw) <= atol:
            msg += " (you gave the precision entry P_ij itself)"
        msg += "."
    elif abs(value + want) <= atol and abs(want) > atol:
        msg = "the sign is flipped: rho_ij.S = -P_ij / sqrt(P_ii P_jj) (note the minus)."
    elif abs(value - raw) <= atol or abs(value + raw) <= atol:
        msg = "that is the precision entry P_ij; normalise: rho = -P_ij / sqrt(P_ii P_jj)."
    elif cond and abs(value - corr) <= atol:
        msg = f"that is the plain correlation of {nm(i)} and {nm(j)}: you did not condition on S = {nm.set(cond)}."
    elif set(cond) != set(others) and abs(value - full) <= atol:
        msg = (f"you inverted the whole matrix, which conditions on every other variable {nm.set(others)}, not "
               f"only on S = {nm.set(cond)}: invert the block cov[idx][:, idx] with idx = [i, j] + S.")
    elif abs(value - cov[i, j]) <= atol:
        msg = "that is the covariance entry, not a (partial) correlation."
    if msg is None:
        msg = (f"{value:+.4f} is off by {abs(value - want):.3g}. Take idx = [i, j] + S, P = inv(cov[idx][:, idx]), "
               "rho = -P[0, 1] / sqrt(P[0, 0] P[1, 1]).")
    return Feedback(task, False, msg)


# ----------------------------------------------------------------------- d-separation
def d_separated(dag: np.ndarray, x: int, y: int, cond: Iterable[int] = ()) -> bool:
    """Whether x and y are d-separated by ``cond`` in ``dag`` (``[u, v]`` != 0: u -> v), via networkx."""
    import networkx as nx

    g = nx.DiGraph()
    adj = _dag(dag)
    g.add_nodes_from(range(adj.shape[0]))
    g.add_edges_from(zip(*map(np.ndarray.tolist, np.nonzero(adj))))
    finder = getattr(nx, "is_d_separator", None) or nx.d_separated
    return bool(finder(g, {int(x)}, {int(y)}, {int(c) for c in cond}))


def _descendants(adj: np.ndarray, v: int) -> set[int]:
    out, stack = set(), [v]
    while stack:
        u = stack.pop()
        for w in np.flatnonzero(adj[u]).tolist():
            if w not in out:
                out.add(w)
                stack.append(w)
    return out


def _path_text(adj: np.ndarray, path: Sequence[int], names: _Names) -> str:
    out = names(path[0])
    for u, v in zip(path, path[1:]):
        out += f" -> {names(v)}" if adj[u, v] else f" <- {names(v)}"
    return out


def _path_verdict(adj: np.ndarray, path: Sequence[int], cond: set[int], names: _Names) -> tuple[bool, str]:
    """(open?, why) for one path of the skeleton given ``cond``."""
    text = _path_text(adj, path, names)
    opened = []
    for u, v, w in zip(path, path[1:], path[2:]):
        collider = adj[u, v] and adj[w, v]
        if collider:
            if v in cond:
                opened.append(f"conditioning on the collider {names(v)} opens it")
                continue
            desc = sorted(_descendants(adj, v) & cond)
            if desc:
                opened.append(f"conditioning on {names(desc[0])}, a descendant of the collider {names(v)}, opens it")
                continue
            return False, f"{text} is blocked at the collider {names(v)} (neither it nor a descendant is conditioned on)"
        if v in cond:
            return False, f"{text} is blocked at {names(v)}, a non-collider in the conditioning set"
    why = "; ".join(opened) if opened else "no node on it is a blocking one"
    return True, f"{text} is open ({why})"


def explain_paths(dag: np.ndarray, x: int, y: int, cond: Iterable[int] = (),
                  names: Sequence[str] | None = None) -> list[tuple[bool, str]]:
    """Every path between x and y in the DAG's skeleton with (open?, explanation) given ``cond``."""
    import networkx as nx

    adj = _dag(dag)
    nm = _Names(names, adj.shape[0])
    skel = nx.Graph()
    skel.add_nodes_from(range(adj.shape[0]))
    skel.add_edges_from(zip(*map(np.ndarray.tolist, np.nonzero(adj))))
    cond_s = {int(c) for c in cond}
    return [_path_verdict(adj, p, cond_s, nm) for p in nx.all_simple_paths(skel, int(x), int(y))]


def _statement(s: Any, names: _Names) -> tuple[int, int, frozenset[int]]:
    x, y, *rest = s
    cond = names.node_set(rest[0]) if rest else frozenset()
    return names.index(x), names.index(y), cond


def _dsep_line(dag: np.ndarray, x: int, y: int, cond: frozenset[int], names: _Names, said: bool) -> tuple[bool, str]:
    truth = d_separated(dag, x, y, cond)
    stmt = f"{names(x)} _||_ {names(y)} | {names.set(cond)}"
    paths = explain_paths(dag, x, y, cond, names.names)
    if said == truth:
        return True, f"{stmt}: {'d-separated' if truth else 'd-connected'}, correct."
    if truth:   # student said connected
        blocked = "; ".join(why for _, why in paths) or "there is no path at all"
        return False, f"{stmt}: you said d-connected, but every path is blocked: {blocked}."
    open_paths = [why for ok, why in paths if ok]
    return False, f"{stmt}: you said d-separated, but {open_paths[0]}."


@_checker("d-separation", "a list of True (d-separated) / False (d-connected), one per statement")
def check_d_separation(answer: Any, dag: np.ndarray, statements: Sequence[Any],
                       names: Sequence[str] | None = None) -> Feedback:
    """Decide each statement ``(x, y, cond)`` ("x _||_ y | cond" in the DAG): answer one truth
    value per statement, as a list or a dict {statement index: value}."""
    task = "d-separation"
    adj = _dag(dag)
    nm = _Names(names, adj.shape[0])
    items = dict(answer) if isinstance(answer, dict) else dict(enumerate(_collection(answer)))
    if not isinstance(answer, dict) and len(items) != len(statements):
        raise _BadAnswer(f"you gave {len(items)} answers for {len(statements)} statements.")
    details, n_ok, missing = [], 0, []
    for k, s in enumerate(statements):
        x, y, cond = _statement(s, nm)
        said = items.get(k)
        if _is_placeholder(said):
            missing.append(k)
            details.append(f"{nm(x)} _||_ {nm(y)} | {nm.set(cond)}: not answered yet.")
            continue
        ok, line = _dsep_line(adj, x, y, cond, nm, _as_bool(said))
        n_ok += ok
        details.append(line)
    if missing and n_ok + len(missing) == len(statements):
        return Feedback(task, False, f"{n_ok} right so far; statements {missing} are not answered yet.",
                        tuple(details), answered=n_ok > 0)
    ok = n_ok == len(statements)
    msg = ("all statements right." if ok else
           f"{n_ok} of {len(statements)} right. A path is blocked by a conditioned non-collider, or by a "
           "collider with neither it nor a descendant conditioned on.")
    return Feedback(task, ok, msg, tuple(details))


@_checker("zero partial correlations", "a set of statement indices")
def check_zero_partial_correlations(answer: Any, cov: np.ndarray, statements: Sequence[Any],
                                    names: Sequence[str] | None = None, tol: float = 1e-8) -> Feedback:
    """Which statements ``(x, y, cond)`` have partial correlation |rho| < tol in ``cov``?"""
    task = "zero partial correlations"
    cov = np.asarray(cov, dtype=np.float64)
    nm = _Names(names, cov.shape[0])
    chosen = {_as_int(k) for k in _collection(answer)}
    bad = [k for k in chosen if not 0 <= k < len(statements)]
    if bad:
        raise _BadAnswer(f"indices {bad} are not statements (0..{len(statements) - 1}).")
    rhos = []
    for s in statements:
        x, y, cond = _statement(s, nm)
        rhos.append(_residual_pcorr(cov, x, y, sorted(cond)))
    want = {k for k, r in enumerate(rhos) if abs(r) < tol}
    details = []
    for k in sorted(chosen ^ want):
        x, y, cond = _statement(statements[k], nm)
        stmt = f"{k}: rho({nm(x)}, {nm(y)} | {nm.set(cond)}) = {rhos[k]:+.3g}"
        details.append(stmt + (" is not ~0, so it does not belong in the set." if k in chosen
                               else " is ~0 (float error only), so it belongs in the set."))
    if not details:
        return Feedback(task, True, f"statements {sorted(want)} have rho ~ 0 (compare with your d-separation answers: "
                                    "for a faithful linear SEM they are exactly the d-separated ones).")
    return Feedback(task, False, f"{len(details)} statement(s) misplaced.", tuple(details))
