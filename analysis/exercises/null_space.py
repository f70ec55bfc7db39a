"""Exercise 4, efficient attention, null space and adversaries: nullity, ``A_eff = A P``, which
edits move the output, feasible adversaries, the null-space share of an adversary."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._common import (Feedback, _as_bool, _as_float, _as_int, _as_matrix, _BadAnswer, _checker, _collection,
                      _is_placeholder)


def _rank(t: np.ndarray, rtol: float | None = None) -> int:
    t = np.asarray(t, dtype=np.float64)
    s = np.linalg.svd(t, compute_uv=False)
    if s.size == 0 or s[0] == 0:
        return 0
    tol = max(t.shape) * float(np.finfo(np.float32).eps) if rtol is None else rtol
    return int(np.sum(s > tol * s[0]))


def _projection(t: np.ndarray, rtol: float | None = None) -> np.ndarray:
    t = np.asarray(t, dtype=np.float64)
    u, _, _ = np.linalg.svd(t, full_matrices=False)
    r = _rank(t, rtol)
    return u[:, :r] @ u[:, :r].T


@_checker("nullity", "an integer")
def check_nullity(answer: Any, t: np.ndarray, rtol: float | None = None) -> Feedback:
    """``n - rank(T)`` for the [n, k] matrix T that attention multiplies."""
    task = "nullity"
    t = np.asarray(t, dtype=np.float64)
    n, k = t.shape
    value = _as_int(answer)
    r = _rank(t, rtol)
    want = n - r
    if value == want:
        extra = (" Every attention row reaches the output: A_eff = A." if want == 0 else
                 f" Each attention row has {want} directions the output cannot see.")
        return Feedback(task, True, f"n = {n} tokens, rank(T) = {r}, nullity = {want}." + extra)
    if value == r:
        msg = f"{value} is the rank of T; the nullity is what is left: n - rank(T)."
    elif value == k - r and k > r:
        msg = (f"{value} = k - rank(T) is the null space of T acting on R^{k}. Attention rows live in R^n "
               "(one weight per token): count the directions a with a T = 0, which is n - rank(T).")
    elif value == max(n - k, 0) and r < min(n, k):
        msg = f"n - k = {value} assumes T has full column rank, but its rank is {r} < {min(n, k)}: use the rank."
    elif value == 0 and want > 0:
        msg = f"T has only {k} columns (rank {r}) for n = {n} tokens, so some attention directions cannot reach the output."
    elif value < 0:
        msg = "a dimension is never negative: when n <= rank the nullity is 0."
    else:
        msg = f"{value} is not n - rank(T) (n = {n} rows of T, one per token; compute the rank with an SVD)."
    return Feedback(task, False, msg)


@_checker("efficient attention", "an [n, n] array")
def check_efficient_attention(answer: Any, attention: np.ndarray, t: np.ndarray, atol: float = 1e-6) -> Feedback:
    """``A_eff = A P`` with P the orthogonal projection on col(T)."""
    task = "efficient attention"
    a = np.asarray(attention, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    arr = _as_matrix(answer, a.shape)
    P = _projection(t)
    want = a @ P
    scale = max(1.0, float(np.abs(a).max()))

    def close(x: np.ndarray) -> bool:
        return np.allclose(arr, x, atol=atol * scale)

    if close(want):
        return Feedback(task, True, "A P keeps exactly A T (A_eff T = A P T = A T) and drops the null part.")
    if close(P @ a):
        return Feedback(task, False, "you multiplied on the left (P A). The rows of A are what meets T "
                                     "(output = A T), so project each row: A_eff = A P.")
    if close(a - want):
        return Feedback(task, False, "that is the null part A (I - P): the piece with A_null T = 0. A_eff = A P.")
    if close(a @ t @ t.T):
        return Feedback(task, False, "T T^T is not a projection unless T has orthonormal columns: use "
                                     "P = T (T^T T)^+ T^T, or U U^T from an SVD of T.")
    if np.allclose(arr @ t, a @ t, atol=atol * scale * max(1.0, float(np.abs(t).max()))):
        return Feedback(task, False, "your matrix gives the same output (X T = A T), but it is not the orthogonal "
                                     "projection A P: A_eff is the minimum-norm such matrix.")
    return Feedback(task, False, f"your matrix differs from A P by up to {float(np.max(np.abs(arr - want))):.3g}; "
                                 "check P = T (T^T T)^+ T^T.")


@_checker("does the edit move the output?", "a list of True (moves) / False (keeps the output), one per edit")
def check_moves_output(answer: Any, edits: Sequence[np.ndarray], t: np.ndarray, rtol: float = 1e-8) -> Feedback:
    """For each edit E (A -> A + E), does the head output A T change, i.e. is E T != 0?"""
    task = "does the edit move the output?"
    t = np.asarray(t, dtype=np.float64)
    items = dict(answer) if isinstance(answer, dict) else dict(enumerate(_collection(answer)))
    if not isinstance(answer, dict) and len(items) != len(edits):
        raise _BadAnswer(f"you gave {len(items)} answers for {len(edits)} edits.")
    details, n_ok, missing = [], 0, []
    P = _projection(t)
    for k, e in enumerate(edits):
        e = np.asarray(e, dtype=np.float64)
        said = items.get(k)
        if _is_placeholder(said):
            missing.append(k)
            details.append(f"edit {k}: not answered yet.")
            continue
        moved = float(np.linalg.norm(e @ t)) > rtol * max(float(np.linalg.norm(e) * np.linalg.norm(t)), 1e-300)
        share = float(np.linalg.norm(e @ P) / max(np.linalg.norm(e), 1e-300))
        if _as_bool(said) == moved:
            n_ok += 1
            details.append(f"edit {k}: right ({'moves' if moved else 'keeps'} the output; "
                           f"{share:.0%} of its norm lies in col(T)).")
        elif moved:
            details.append(f"edit {k}: you said it keeps the output, but E T != 0: {share:.0%} of the edit's norm "
                           "lies in col(T), the part the output sees.")
        else:
            details.append(f"edit {k}: you said it moves the output, but E T = 0: every row of E is orthogonal to "
                           "col(T) (E = E (I - P)), so A + E gives the same A T.")
    ok = n_ok == len(edits)
    msg = "all right." if ok else (f"{n_ok} of {len(edits)} right" + (f"; edits {missing} not answered yet." if missing else "."))
    return Feedback(task, ok, msg, tuple(details), answered=len(missing) < len(edits))


@_checker("feasible adversaries", "a list of adversary indices")
def check_feasible(answer: Any, tvd: np.ndarray, eps: float) -> Feedback:
    """Which adversaries keep the prediction: TVD(y_i, y) <= eps?"""
    task = "feasible adversaries"
    tvd = np.asarray(tvd, dtype=np.float64)
    chosen = {_as_int(k) for k in _collection(answer)}
    bad = [k for k in chosen if not 0 <= k < len(tvd)]
    if bad:
        raise _BadAnswer(f"indices {bad} are out of range 0..{len(tvd) - 1}.")
    want = {k for k, v in enumerate(tvd) if v <= eps}
    if chosen == want:
        which = f"adversaries {sorted(want)} keep" if want else "no adversary keeps (the search needs more steps)"
        return Feedback(task, True, f"{which} TVD <= eps = {eps:g}.")
    details = [f"adversary {k}: TVD {tvd[k]:.4f} {'>' if tvd[k] > eps else '<='} eps = {eps:g}, so it "
               f"{'changes' if tvd[k] > eps else 'keeps'} the prediction." for k in sorted(chosen ^ want)]
    return Feedback(task, False, "feasible means TVD(prediction_i, prediction) <= eps (a small TVD, not a large JSD).",
                    tuple(details))


@_checker("null fraction", "a number in [0, 1]")
def check_null_fraction(answer: Any, adversary: np.ndarray, original: np.ndarray, projection: np.ndarray, *,
                        atol: float = 5e-3) -> Feedback:
    """``||D (I - P)||_F^2 / ||D||_F^2`` with D = adversary - original: the share of the change
    (its squared norm) that lies in the null space."""
    task = "null fraction"
    value = _as_float(answer)
    d = np.asarray(adversary, dtype=np.float64) - np.asarray(original, dtype=np.float64)
    P = np.asarray(projection, dtype=np.float64)
    total = float(np.sum(d * d))
    null = float(np.sum((d - d @ P) ** 2))
    want = null / total if total > 0 else 0.0
    if abs(value - want) <= atol:
        return Feedback(task, True, f"{want:.3f} of the change lies in the null space, invisible to the output"
                                    + (": the adversary is 'different' mostly where it does not matter." if want > 0.5 else "."))
    if abs(value - (1 - want)) <= atol:
        msg = "that is the efficient (col(T)) share; the null share is 1 minus it: ||D (I - P)||^2 / ||D||^2."
    elif abs(value - np.sqrt(want)) <= atol:
        msg = "you took the ratio of norms; the task asks for the ratio of squared norms (energy), which adds up to 1."
    elif not 0 <= value <= 1:
        msg = "a share of the squared norm lies in [0, 1]."
    else:
        msg = f"{value:.3f} is off by {abs(value - want):.3g}; D = adversary - original, null part D (I - P)."
    return Feedback(task, False, msg)


_KIND_WHY = {
    "efficient": ("A_eff T = A T, so the head's output, and everything after it, is unchanged.",
                  "A_eff T = A T exactly: swapping A_eff in cannot change the head output."),
    "null": ("a null-space edit E has E T = 0: the head's output does not change.",
             "a null-space edit E has E T = 0: the head output, and so the prediction, stays the same."),
    "efficient_shift": ("an edit inside col(T) changes A T, and the change propagates.",
                        "an edit inside col(T) changes A T; whether the prediction moves a lot depends on later layers, "
                        "but it does move."),
    "adversarial": ("the adversary was searched to keep TVD <= eps, yet its attention is different.",
                    "compare the two outputs, not the attention matrices."),
}


@_checker("does the output move?", "True (the output moves) or False (it stays the same)")
def check_output_moves(answer: Any, before: np.ndarray, after: np.ndarray, *, kind: str | None = None,
                       atol: float = 1e-4) -> Feedback:
    """Did the model's output (logits or probabilities) move by more than ``atol`` between
    ``before`` and ``after``? ``kind`` ("efficient", "null", "efficient_shift", "adversarial")
    selects the explanation."""
    task = "does the output move?" if kind is None else f"does the output move ({kind})?"
    said = _as_bool(answer)
    b, a = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    change = float(np.max(np.abs(a - b)))
    moved = change > atol
    why_ok, why_wrong = _KIND_WHY.get(kind or "", ("", ""))
    measured = f"the output changed by at most {change:.2e} ({'more' if moved else 'less'} than {atol:g})"
    if said == moved:
        return Feedback(task, True, f"{measured}. {why_ok}".strip())
    return Feedback(task, False, f"you predicted it {'moves' if said else 'stays'}, but {measured}. {why_wrong}".strip())
