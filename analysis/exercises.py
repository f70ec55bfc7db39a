"""Checkers for the classroom exercises in ``notebooks/exercises/``.

Each ``check_*`` function takes a student's answer plus the context it needs (arrays, a DAG,
a learned graph) and returns a :class:`Feedback`: ``.ok`` and a message that says *what* is
wrong (a path left open, a mark read at the wrong end, a sum over the wrong axis), not just
the right answer. Checkers never raise on an answer: a placeholder (``None`` or ``...``) gives
"not answered yet", an answer of the wrong shape or type gives "could not read".

Expected answers are computed here from independent closed forms (regression residuals for
partial correlations, ``networkx`` d-separation, ``numpy`` ranks and projections) or from the
learned graph passed in; nothing is hard-coded. Pure python + numpy (+ networkx); no torch.

    >>> fb = check_partial_correlation(-0.31, cov, 0, 1, [2])
    >>> fb.ok, str(fb)
"""
from __future__ import annotations

import functools
import html
import itertools
import re
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable, Sequence

import numpy as np

__all__ = [
    "Feedback",
    # exercise 1: attention heads
    "check_top_key", "check_previous_token_head", "check_attention_sum", "check_mean_attention",
    "check_sharper",
    # exercise 2: partial correlation and d-separation
    "check_mixing_matrix", "check_covariance", "check_partial_correlation", "check_d_separation",
    "check_zero_partial_correlations",
    # exercise 3: PC / FCI and PAG marks
    "check_skeleton", "check_sepset", "check_colliders", "check_mark", "check_edge",
    "check_mark_matrix",
    # exercise 4: efficient attention, null space, adversaries
    "check_nullity", "check_efficient_attention", "check_moves_output", "check_feasible",
    "check_null_fraction", "check_output_moves",
    # helpers used by the notebooks
    "d_separated", "explain_paths",
]


# =========================================================================================
# Feedback
# =========================================================================================

@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer: ``ok``, a one-paragraph ``message`` and optional ``details``
    (one line per sub-answer). ``answered`` is False for a placeholder. Renders as HTML,
    Markdown or text; ``bool(feedback)`` is ``feedback.ok``."""

    task: str
    ok: bool
    message: str
    details: tuple[str, ...] = ()
    answered: bool = True

    def __bool__(self) -> bool:
        return self.ok

    @property
    def status(self) -> str:
        """"correct", "not quite" or "not answered yet"."""
        return "correct" if self.ok else ("not quite" if self.answered else "not answered yet")

    def _text(self) -> str:
        return self.message[:1].upper() + self.message[1:]

    def _icon(self) -> str:
        return "✅" if self.ok else ("❌" if self.answered else "✏️")

    def __str__(self) -> str:
        lines = [f"{self._icon()} {self.task}: {self.status}. {self._text()}"]
        lines += [f"   - {d}" for d in self.details]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_markdown_(self) -> str:
        lines = [f"{self._icon()} **{self.task}: {self.status}.** {self._text()}"]
        if self.details:
            lines.append("")
            lines += [f"- {d}" for d in self.details]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.ok else ("#b35900" if self.answered else "#555")
        back = "#eefbf0" if self.ok else ("#fff4e5" if self.answered else "#f4f4f4")
        items = "".join(f"<li>{html.escape(d)}</li>" for d in self.details)
        items = f"<ul style='margin:4px 0 0 0'>{items}</ul>" if items else ""
        return (f"<div style='border-left:4px solid {colour};background:{back};padding:6px 10px;"
                f"margin:4px 0'>{self._icon()} <b>{html.escape(self.task)}: {self.status}.</b> "
                f"{html.escape(self._text())}{items}</div>")


class _BadAnswer(Exception):
    """An answer that cannot be read (wrong type or shape): becomes a 'could not read' Feedback."""


def _is_placeholder(answer: Any) -> bool:
    return answer is None or answer is Ellipsis


def _checker(task: str, what: str) -> Callable:
    """Wrap a checker: placeholders give 'not answered yet', unreadable answers 'could not read'."""
    def wrap(fn: Callable[..., Feedback]) -> Callable[..., Feedback]:
        @functools.wraps(fn)
        def run(answer: Any, *args: Any, **kwargs: Any) -> Feedback:
            if _is_placeholder(answer):
                return Feedback(task, False, f"replace the placeholder ({answer!r}) with {what}.", answered=False)
            try:
                return fn(answer, *args, **kwargs)
            except _BadAnswer as exc:
                return Feedback(task, False, f"I could not read your answer: {exc} Expected {what}.")
            except (TypeError, ValueError, IndexError, KeyError) as exc:
                return Feedback(task, False, f"I could not read your answer ({type(exc).__name__}: "
                                             f"{exc}). Expected {what}.")
        return run
    return wrap


# ----------------------------------------------------------------------- reading answers
_TRUE = {"true", "yes", "y", "1", "separated", "d-separated", "independent", "moves", "changes"}
_FALSE = {"false", "no", "n", "0", "connected", "d-connected", "dependent", "same", "stays"}


def _as_bool(x: Any) -> bool:
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)) and int(x) in (0, 1):
        return bool(x)
    if isinstance(x, str) and x.strip().lower() in _TRUE | _FALSE:
        return x.strip().lower() in _TRUE
    raise _BadAnswer(f"{x!r} is not True or False.")


def _as_float(x: Any) -> float:
    if isinstance(x, (bool, np.bool_)):
        raise _BadAnswer(f"{x!r} is a truth value, not a number.")
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise _BadAnswer(f"{x!r} is not a number.") from None
    if arr.size != 1:
        raise _BadAnswer(f"got an array of shape {arr.shape}, not a single number.")
    value = float(arr.reshape(()))
    if not np.isfinite(value):
        raise _BadAnswer(f"{value} is not a finite number.")
    return value


def _as_matrix(x: Any, shape: tuple[int, ...]) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise _BadAnswer(f"{type(x).__name__} is not a numeric array.") from None
    if arr.shape != tuple(shape):
        raise _BadAnswer(f"your array has shape {arr.shape}, expected {tuple(shape)}.")
    if not np.all(np.isfinite(arr)):
        raise _BadAnswer("your array has NaN or infinite entries.")
    return arr


def _as_int(x: Any) -> int:
    if isinstance(x, (bool, np.bool_)):
        raise _BadAnswer(f"{x!r} is a truth value, not an integer.")
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)) and float(x).is_integer():
        return int(x)
    raise _BadAnswer(f"{x!r} is not an integer.")


class _Names:
    """Node names <-> indices for a DAG or graph (accepts either form in answers)."""

    def __init__(self, names: Sequence[Hashable] | None, n: int) -> None:
        self.names = [str(v) for v in names] if names is not None else [str(k) for k in range(n)]
        if len(self.names) != n:
            raise ValueError(f"names has {len(self.names)} entries for {n} nodes")
        self._lookup = {nm.lower(): k for k, nm in enumerate(self.names)}

    def index(self, x: Any) -> int:
        if isinstance(x, str):
            k = self._lookup.get(x.strip().lower())
            if k is None and x.strip().isdigit():
                return self.index(int(x.strip()))
            if k is None:
                raise _BadAnswer(f"{x!r} is not a node; nodes are {', '.join(self.names)}.")
            return k
        if isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)):
            if 0 <= int(x) < len(self.names):
                return int(x)
            raise _BadAnswer(f"node index {int(x)} is out of range 0..{len(self.names) - 1}.")
        raise _BadAnswer(f"{x!r} is not a node name or index.")

    def __call__(self, k: int) -> str:
        return self.names[k]

    def set(self, xs: Iterable[int]) -> str:
        return "{" + ", ".join(self.names[k] for k in sorted(xs)) + "}"

    def node_set(self, x: Any) -> frozenset[int]:
        if isinstance(x, str):
            parts = [p for p in re.split(r"[\s,{}()\[\]]+", x) if p]
            return frozenset(self.index(p) for p in parts)
        if isinstance(x, (int, np.integer)):
            return frozenset({self.index(x)})
        try:
            return frozenset(self.index(p) for p in x)
        except TypeError:
            raise _BadAnswer(f"{x!r} is not a set of nodes.") from None


def _pair(x: Any, names: _Names) -> frozenset[int]:
    """An unordered pair of nodes from ("A", "B"), (0, 1), "A-B", "A -> B", "A o-> B"."""
    if isinstance(x, str):
        parts = [p for p in re.split(r"[\s,]+", x.strip()) if p]
        if len(parts) != 2:
            try:
                a, _, _, b = _parse_edge(x)
            except _BadAnswer:
                raise _BadAnswer(f"{x!r} is not a pair of nodes such as 'A - B'.") from None
            parts = [a, b]
        items = parts
    else:
        try:
            items = list(x)
        except TypeError:
            raise _BadAnswer(f"{x!r} is not a pair of nodes.") from None
    if len(items) != 2:
        raise _BadAnswer(f"{x!r} does not name exactly two nodes.")
    a, b = names.index(items[0]), names.index(items[1])
    if a == b:
        raise _BadAnswer(f"{x!r} joins a node to itself.")
    return frozenset({a, b})


def _collection(x: Any) -> list:
    if isinstance(x, (str, bytes)) or not isinstance(x, Iterable):
        raise _BadAnswer(f"{x!r} is not a list or set.")
    return list(x.keys() if isinstance(x, dict) else x)


# =========================================================================================
# exercise 1: attention heads
# =========================================================================================

def _head(attentions: np.ndarray, layer: int, head: int) -> np.ndarray:
    att = np.asarray(attentions, dtype=np.float64)
    return att[layer, head]


def _token_index(answer: Any, tokens: Sequence[str], row: np.ndarray) -> tuple[int, str]:
    """A key position from an int or a token string (a string matching several positions
    resolves to the one with the most weight in ``row``)."""
    if isinstance(answer, str):
        hits = [k for k, t in enumerate(tokens) if t == answer or t.lower() == answer.strip().lower()]
        if not hits:
            raise _BadAnswer(f"{answer!r} is not one of the tokens {list(tokens)}.")
        k = max(hits, key=lambda h: row[h])
        return k, tokens[k]
    k = _as_int(answer)
    if not -len(tokens) <= k < len(tokens):
        raise _BadAnswer(f"position {k} is out of range: the input has {len(tokens)} tokens (0..{len(tokens) - 1}).")
    k %= len(tokens)
    return k, tokens[k]


@_checker("top key", "a token position (int) or a token string")
def check_top_key(answer: Any, attentions: np.ndarray, tokens: Sequence[str], layer: int, head: int,
                  query: int = 0) -> Feedback:
    """Which key does ``query`` attend to most in ``attentions[layer, head]`` ([L, H, n, n])?
    Accepts a position or a token string; ties within 1e-6 all count."""
    task = "top key"
    att = np.asarray(attentions, dtype=np.float64)
    a = att[layer, head]
    row = a[query]
    k, tok = _token_index(answer, tokens, row)
    best = float(row.max())
    if row[k] >= best - 1e-6:
        return Feedback(task, True, f"{tokens[query]}@{query} gives {tok}@{k} weight {row[k]:.3f}, "
                                    f"the largest in its row of layer {layer}, head {head}.")
    hint = (f"{tok}@{k} gets weight {row[k]:.3f} from {tokens[query]}@{query}, but the largest weight in "
            f"that row is {best:.3f}.")
    if k == int(np.argmax(a[:, query])):
        hint += (f" {tok}@{k} is where the *column* of {tokens[query]} peaks: you read who attends *to* "
                 f"{tokens[query]}. Rows are queries, columns are keys: read row {query}, attentions[{layer}, {head}, {query}, :].")
    elif k == int(np.argmax(att[layer].mean(0)[query])):
        hint += f" {tok}@{k} is the top key of the mean over heads; the question is about head {head} alone."
    elif att.shape[0] > head and att.shape[1] > layer and k == int(np.argmax(att[head, layer, query])):
        hint += f" {tok}@{k} is the top key of layer {head}, head {layer}: layer and head are swapped (attentions[layer, head])."
    else:
        hint += f" Look at row {query} of layer {layer}, head {head} (the query dropdown in the explorer)."
    return Feedback(task, False, hint)


def _shift_scores(a: np.ndarray) -> dict[int, float]:
    """Mean weight on key q+offset over queries, for offsets -1 (previous), 0 (self), +1 (next)."""
    n = a.shape[0]
    return {off: float(np.mean([a[q, q + off] for q in range(n) if 0 <= q + off < n])) for off in (-1, 0, 1)}


@_checker("previous-token head", "a (layer, head) pair such as (0, 3)")
def check_previous_token_head(answer: Any, attentions: np.ndarray, threshold: float = 0.5) -> Feedback:
    """Is ``answer`` = (layer, head) a head whose mean weight on the previous token (key q-1,
    over queries q >= 1) is at least ``threshold``?"""
    task = "previous-token head"
    att = np.asarray(attentions, dtype=np.float64)
    items = _collection(answer)
    if len(items) != 2:
        raise _BadAnswer(f"{answer!r} is not a (layer, head) pair.")
    L, H = att.shape[:2]
    layer, head = _as_int(items[0]), _as_int(items[1])
    if not (-L <= layer < L and -H <= head < H):
        raise _BadAnswer(f"({layer}, {head}) is out of range: layers 0..{L - 1}, heads 0..{H - 1}.")
    layer, head = layer % L, head % H
    scores = _shift_scores(att[layer, head])
    best = max(_shift_scores(att[l, h])[-1] for l in range(L) for h in range(H))
    prev = scores[-1]
    if prev >= threshold:
        return Feedback(task, True, f"layer {layer}, head {head} puts on average {prev:.2f} of each query's "
                                    f"attention on the token just before it.")
    msg = (f"layer {layer}, head {head} puts on average only {prev:.2f} on the previous token "
           f"(key q-1); the task asks for at least {threshold:.2f} (the best head reaches {best:.2f}).")
    if scores[1] >= threshold:
        msg += (f" This head looks *forward*: {scores[1]:.2f} on the next token (key q+1). In row q, the "
                "previous token is column q-1, just left of the diagonal.")
    elif scores[0] >= threshold:
        msg += f" This head mostly attends to the query token itself (the diagonal, {scores[0]:.2f})."
    else:
        msg += " Look for a stripe just below the diagonal in the heatmap (step with the next button)."
    return Feedback(task, False, msg)


@_checker("attention sum", "a number")
def check_attention_sum(answer: Any, attentions: np.ndarray, layer: int, head: int, index: int, *,
                        axis: str = "row", atol: float = 1e-3) -> Feedback:
    """The sum of row ``index`` (a query's weights; 1 for softmax attention) or of column
    ``index`` (the attention a key receives) of ``attentions[layer, head]``."""
    if axis not in ("row", "column"):
        raise ValueError("axis must be 'row' or 'column'")
    task = f"{axis} sum"
    a = np.asarray(attentions, dtype=np.float64)[layer, head]
    value = _as_float(answer)
    row, col = float(a[index].sum()), float(a[:, index].sum())
    want, other = (row, col) if axis == "row" else (col, row)
    if abs(value - want) <= atol:
        extra = (" Every row of a softmax attention sums to 1: each query spreads one unit of attention over the keys."
                 if axis == "row" else
                 f" Columns need not sum to 1: this key receives {want:.2f} units of attention in total "
                 f"(out of {a.shape[0]}, one per query).")
        return Feedback(task, True, f"{want:.4f}." + extra)
    if abs(value - other) <= atol:
        where = "column" if axis == "row" else "row"
        return Feedback(task, False, f"{value:.4f} is the {where} sum. A row is one query's weights over all "
                                     f"keys (attentions[{layer}, {head}, {index}, :]); a column is what key {index} "
                                     f"receives from all queries (attentions[{layer}, {head}, :, {index}]).")
    return Feedback(task, False, f"{value:.4f} is neither the row nor the column sum of position {index} in "
                                 f"layer {layer}, head {head}; check the indices (attentions[layer, head, query, key]).")


@_checker("mean over heads", "an [n, n] array")
def check_mean_attention(answer: Any, attentions: np.ndarray, layer: int, atol: float = 1e-5) -> Feedback:
    """The mean over heads of layer ``layer``: ``attentions[layer].mean(0)`` [n, n]."""
    task = "mean over heads"
    att = np.asarray(attentions, dtype=np.float64)
    L, H, n, _ = att.shape
    arr = np.asarray(answer, dtype=np.float64) if not isinstance(answer, str) else None
    if arr is None:
        raise _BadAnswer("a string is not an array.")
    want = att[layer].mean(0)
    if arr.shape != (n, n):
        if arr.shape == (H, n):
            return Feedback(task, False, f"your array has shape {arr.shape}: you averaged over an axis of the "
                                         "matrices (queries or keys) instead of over heads (axis 0 of attentions[layer]).")
        raise _BadAnswer(f"your array has shape {arr.shape}, expected ({n}, {n}).")
    if np.allclose(arr, want, atol=atol):
        return Feedback(task, True, "each row of the mean is still a distribution (rows sum to 1), "
                                    "but it blurs heads that attend to different tokens.")
    if np.allclose(arr, att[layer].sum(0), atol=atol * H):
        return Feedback(task, False, f"you summed the heads: its rows sum to {H}, not 1. Divide by the number of heads.")
    if any(np.allclose(arr, att[:, h].mean(0), atol=atol) for h in range(H)):
        return Feedback(task, False, "you averaged over layers (axis 0 of attentions) for one head; "
                                     f"average over the heads of layer {layer}: attentions[{layer}].mean(0).")
    for l in range(L):
        if l != layer % L and np.allclose(arr, att[l].mean(0), atol=atol):
            return Feedback(task, False, f"that is the mean over heads of layer {l}, not layer {layer}.")
    for h in range(H):
        if np.allclose(arr, att[layer, h], atol=atol):
            return Feedback(task, False, f"that is head {h} alone; average all {H} heads of layer {layer}.")
    if np.allclose(arr, want.T, atol=atol):
        return Feedback(task, False, "your matrix is transposed: rows must be queries (each row sums to 1).")
    return Feedback(task, False, f"your matrix differs from the mean over heads by up to "
                                 f"{float(np.max(np.abs(arr - want))):.3g}.")


def _entropy(p: np.ndarray) -> float:
    p = np.clip(np.asarray(p, dtype=np.float64), 0, None)
    p = p / p.sum()
    nz = p[p > 0]
    return float(-(nz * np.log2(nz)).sum())


@_checker("sharper", "'head' or 'mean'")
def check_sharper(answer: Any, attentions: np.ndarray, layer: int, head: int, query: int = 0) -> Feedback:
    """Which is sharper (lower entropy) for ``query``: head ``head`` or the mean of layer ``layer``?"""
    task = "sharper"
    if not isinstance(answer, str) or answer.strip().lower() not in ("head", "mean"):
        raise _BadAnswer(f"{answer!r} is neither 'head' nor 'mean'.")
    att = np.asarray(attentions, dtype=np.float64)
    h_ent, m_ent = _entropy(att[layer, head, query]), _entropy(att[layer].mean(0)[query])
    truth = "head" if h_ent < m_ent else "mean"
    facts = (f"The row of query {query} has entropy {h_ent:.2f} bits in head {head} and {m_ent:.2f} bits in the "
             f"mean of layer {layer} (lower entropy = sharper).")
    if answer.strip().lower() == truth:
        return Feedback(task, True, facts + (" Averaging heads that look at different tokens spreads the weight."
                                             if truth == "head" else
                                             " This head is flatter than the average: the mean is dominated by sharper heads."))
    return Feedback(task, False, facts + " Compare the largest weight in each row, or the entropy "
                                         "-sum p log2 p, rather than the colours alone.")


# =========================================================================================
# exercise 2: partial correlation and d-separation
# =========================================================================================

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
def _dag(dag: np.ndarray) -> np.ndarray:
    adj = np.asarray(dag) != 0
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise ValueError(f"dag must be a square adjacency matrix, got shape {adj.shape}")
    return adj


def d_separated(dag: np.ndarray, x: int, y: int, cond: Iterable[int] = ()) -> bool:
    """Whether x and y are d-separated by ``cond`` in ``dag`` (``[u, v]`` != 0: u -> v), via networkx."""
    import networkx as nx

    g = nx.DiGraph()
    adj = _dag(dag)
    g.add_nodes_from(range(adj.shape[0]))
    g.add_edges_from(zip(*map(np.ndarray.tolist, np.nonzero(adj))))
    finder = getattr(nx, "is_d_separator", None) or getattr(nx, "d_separated")
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


# =========================================================================================
# exercise 3: PC / FCI and PAG marks
# =========================================================================================

def _observed(adj: np.ndarray, observed: Sequence[int] | None) -> list[int]:
    return list(range(adj.shape[0])) if observed is None else [int(v) for v in observed]


def _first_sepset(adj: np.ndarray, x: int, y: int, observed: list[int]) -> frozenset[int] | None:
    """The smallest (first by size, then lexicographic) subset of observed nodes separating x, y."""
    others = [v for v in observed if v not in (x, y)]
    for size in range(len(others) + 1):
        for s in itertools.combinations(others, size):
            if d_separated(adj, x, y, s):
                return frozenset(s)
    return None


def _true_skeleton(adj: np.ndarray, observed: list[int]) -> dict[frozenset[int], frozenset[int] | None]:
    """Each observed pair -> its first sepset (None: adjacent in the skeleton)."""
    return {frozenset({a, b}): _first_sepset(adj, a, b, observed) for a, b in itertools.combinations(observed, 2)}


@_checker("skeleton", "a list of pairs such as [('A', 'B'), 'B - C']")
def check_skeleton(answer: Any, dag: np.ndarray, names: Sequence[str] | None = None,
                   observed: Sequence[int] | None = None) -> Feedback:
    """The skeleton PC/FCI find with a d-separation oracle over the ``observed`` nodes of
    ``dag``: a pair stays adjacent iff no set of other observed nodes separates it."""
    task = "skeleton"
    adj = _dag(dag)
    nm = _Names(names, adj.shape[0])
    obs = _observed(adj, observed)
    given = {_pair(p, nm) for p in _collection(answer)}
    truth = _true_skeleton(adj, obs)
    want = {p for p, s in truth.items() if s is None}
    details = []
    for p in sorted(given - want, key=sorted):
        a, b = sorted(p)
        if p not in truth:
            details.append(f"{nm(a)} - {nm(b)}: {nm.set(set(p) - set(obs))} is not observed, so it is not in the graph.")
        else:
            details.append(f"{nm(a)} - {nm(b)} should be removed: the set {nm.set(truth[p])} d-separates them "
                           f"(that is the sepset the search finds first).")
    for p in sorted(want - given, key=sorted):
        a, b = sorted(p)
        why = ("they are adjacent in the DAG" if adj[a, b] or adj[b, a]
               else "no set of observed nodes separates them (an inducing path through hidden nodes)")
        details.append(f"{nm(a)} - {nm(b)} is missing: {why}, so no CI test can remove the edge.")
    if not details:
        return Feedback(task, True, f"{len(want)} edges: each pair without a separating set stays adjacent.")
    return Feedback(task, False, f"{len(details)} edge(s) wrong.", tuple(details))


@_checker("sepset", "a set of nodes, e.g. {'C'} or set() for the empty set")
def check_sepset(answer: Any, dag: np.ndarray, x: Any, y: Any, names: Sequence[str] | None = None,
                 observed: Sequence[int] | None = None) -> Feedback:
    """A set of observed nodes (not x, y) that d-separates x and y; any such set is right."""
    task = "sepset"
    adj = _dag(dag)
    nm = _Names(names, adj.shape[0])
    obs = _observed(adj, observed)
    xi, yi = nm.index(x), nm.index(y)
    task = f"sepset of {nm(xi)}, {nm(yi)}"
    cond = nm.node_set(answer)
    if {xi, yi} & cond:
        return Feedback(task, False, "a separating set never contains the two nodes themselves.")
    hidden = cond - set(obs)
    if hidden:
        return Feedback(task, False, f"{nm.set(hidden)} is hidden: the learner cannot condition on it.")
    if d_separated(adj, xi, yi, cond):
        first = _first_sepset(adj, xi, yi, obs)
        note = "" if first == cond else f" (the search, smallest sets first, records {nm.set(first)})"
        return Feedback(task, True, f"{nm.set(cond)} blocks every path between {nm(xi)} and {nm(yi)}{note}.")
    if _first_sepset(adj, xi, yi, obs) is None:
        return Feedback(task, False, f"{nm(xi)} and {nm(yi)} cannot be separated by any set of observed nodes, "
                                     "so the edge stays and there is no sepset.")
    open_paths = [why for ok, why in explain_paths(adj, xi, yi, cond, nm.names) if ok]
    return Feedback(task, False, f"{nm.set(cond)} leaves a path open: {open_paths[0]}.")


def _triple(x: Any, names: _Names) -> tuple[int, int, int]:
    if isinstance(x, str):
        parts = [p for p in re.split(r"\s*(?:<-+|-+>|o->|<-o|[\s,])\s*", x) if p]
    else:
        parts = _collection(x)
    if len(parts) != 3:
        raise _BadAnswer(f"{x!r} is not a triple (a, c, b) or 'A -> C <- B'.")
    a, c, b = (names.index(p) for p in parts)
    return a, c, b


@_checker("colliders", "a list of triples such as [('A', 'C', 'B')] or ['A -> C <- B']")
def check_colliders(answer: Any, dag: np.ndarray, names: Sequence[str] | None = None) -> Feedback:
    """The unshielded colliders (v-structures) a -> c <- b, a and b not adjacent, of ``dag``:
    what PC orients when c is not in sepset(a, b). Either order of a and b is fine."""
    task = "colliders"
    adj = _dag(dag)
    nm = _Names(names, adj.shape[0])
    obs = list(range(adj.shape[0]))
    given = {(frozenset({a, b}), c) for a, c, b in (_triple(t, nm) for t in _collection(answer))}
    n = adj.shape[0]
    linked = adj | adj.T
    want = {(frozenset({a, b}), c) for c in range(n) for a, b in itertools.combinations(range(n), 2)
            if adj[a, c] and adj[b, c] and not linked[a, b]}
    details = []
    for ends, c in sorted(given - want, key=lambda t: (t[1], sorted(t[0]))):
        a, b = sorted(ends)
        label = f"{nm(a)} - {nm(c)} - {nm(b)}"
        if c in ends:
            details.append(f"{label} repeats a node.")
        elif linked[a, b]:
            details.append(f"{label}: {nm(a)} and {nm(b)} are adjacent, so the triple is shielded; PC only "
                           "orients unshielded triples as v-structures.")
        elif not (linked[a, c] and linked[b, c]):
            details.append(f"{label}: {nm(c)} is not adjacent to both {nm(a)} and {nm(b)}.")
        else:
            sep = _first_sepset(adj, a, b, obs)
            details.append(f"{label} is not a collider: {nm(c)} is in sepset({nm(a)}, {nm(b)}) = {nm.set(sep)}, "
                           "so the path through it is a chain or a fork, not a -> c <- b.")
    for ends, c in sorted(want - given, key=lambda t: (t[1], sorted(t[0]))):
        a, b = sorted(ends)
        sep = _first_sepset(adj, a, b, obs)
        details.append(f"missing {nm(a)} -> {nm(c)} <- {nm(b)}: {nm(a)} and {nm(b)} are not adjacent and "
                       f"{nm(c)} is not in their sepset {nm.set(sep)}.")
    if not details:
        return Feedback(task, True, f"{len(want)} v-structure(s); PC orients them first, then Meek's rules follow.")
    return Feedback(task, False, f"{len(details)} triple(s) wrong.", tuple(details))


# ----------------------------------------------------------------------- PAG marks
_MARK_WORDS = {0: ("none", "no edge", "0", ""), -1: ("tail", "-", "-1"), 1: ("arrow", "arrowhead", ">", "<", "1"),
               2: ("circle", "o", "2")}
_MARK_NAMES = {0: "no edge (0)", -1: "a tail (-1)", 1: "an arrowhead (1)", 2: "a circle (2)"}


def _as_mark(x: Any) -> int:
    if isinstance(x, (bool, np.bool_)):
        raise _BadAnswer(f"{x!r} is not a mark.")
    if isinstance(x, (int, np.integer)):         # ints and Mark (an IntEnum)
        if int(x) in _MARK_NAMES:
            return int(x)
        raise _BadAnswer(f"{int(x)} is not a mark; marks are 0 none, -1 tail, 1 arrowhead, 2 circle.")
    if isinstance(x, str):
        word = x.strip().lower().removeprefix("mark.")
        for value, words in _MARK_WORDS.items():
            if word in words:
                return value
    raise _BadAnswer(f"{x!r} is not a mark; use 0/-1/1/2, Mark.TAIL, 'arrowhead', 'circle', ...")


def _graph_names(graph: Any) -> _Names:
    names = graph.labels if graph.labels is not None else graph.nodes
    return _Names([str(v) for v in names], graph.n_nodes)


def _edge_symbol(m: np.ndarray, a: int, b: int, nm: _Names) -> str:
    left = {-1: "-", 1: "<", 2: "o"}
    right = {-1: "-", 1: ">", 2: "o"}
    if m[a, b] == 0:
        return f"{nm(a)} and {nm(b)} not adjacent"
    return f"{nm(a)} {left[int(m[a, b])]}-{right[int(m[b, a])]} {nm(b)}"


_MEANING = {(-1, 1): "{a} causes {b} (an ancestor of it)", (1, 1): "neither causes the other: a hidden common cause",
            (2, 1): "{b} is not an ancestor of {a}; {a} may or may not cause {b}",
            (2, 2): "the data decide nothing about this edge's direction", (-1, -1): "an undirected (selection) edge",
            (2, -1): "{b} is an ancestor of {a}, or there is selection", (-1, 2): "{a} is an ancestor of {b}, or there is selection"}


@_checker("mark", "a mark: 0 none, -1 tail, 1 arrowhead, 2 circle (or Mark.TAIL, 'arrowhead', ...)")
def check_mark(answer: Any, graph: Any, a: Any, b: Any) -> Feedback:
    """``M[a, b]`` of ``graph.to_matrix()``: the mark at a's end of the edge a-b."""
    nm = _graph_names(graph)
    ai, bi = nm.index(a), nm.index(b)
    task = f"M[{nm(ai)}, {nm(bi)}]"
    m = graph.to_matrix()
    value, want, other = _as_mark(answer), int(m[ai, bi]), int(m[bi, ai])
    edge = _edge_symbol(m, ai, bi, nm)
    if value == want:
        return Feedback(task, True, f"{_MARK_NAMES[want]}: the edge is {edge}.")
    if value == other and want != 0:
        return Feedback(task, False, f"{_MARK_NAMES[value]} is the mark at {nm(bi)}'s end. M[a, b] is the mark at "
                                     f"a's end (the end touching {nm(ai)}): the edge is {edge} read from {nm(ai)}.")
    if want == 0:
        return Feedback(task, False, f"{nm(ai)} and {nm(bi)} are not adjacent, so M[a, b] = 0.")
    return Feedback(task, False, f"the mark at {nm(ai)}'s end is not {_MARK_NAMES[value]}; the edge is printed "
                                 f"{nm(ai)} ?-? {nm(bi)} with {nm(ai)}'s mark on the left ('<', '-' or 'o').")


_SYM_RE = re.compile(r"^\s*(\w+?)\s*([<o]?-+[>o]?)\s*(\w+)\s*$")


def _parse_edge(text: str) -> tuple[str, str, str, str]:
    """'A o-> B' -> ('A', 'o', '>', 'B'); the left char is '<', 'o' or '-', the right '>', 'o' or '-'."""
    text = text.replace("\u2014", "--").replace("\u2192", "->").replace("\u2190", "<-")
    parts = text.split()
    if len(parts) == 3 and re.fullmatch(r"[<o]?-+[>o]?", parts[1]):
        a, sym, b = parts
    else:
        m = _SYM_RE.match(text)
        if m is None:
            raise _BadAnswer(f"{text!r} is not an edge like 'A o-> B' (node, mark-dashes-mark, node).")
        a, sym, b = m.groups()
    left = sym[0] if sym[0] in "<o" else "-"
    right = sym[-1] if sym[-1] in ">o" else "-"
    return a, left, right, b


_LEFT_MARK = {"<": 1, "-": -1, "o": 2}
_RIGHT_MARK = {">": 1, "-": -1, "o": 2}


@_checker("edge", "a string such as 'A o-> B', 'B <-> C' or 'E <-- B'")
def check_edge(answer: Any, graph: Any, a: Any, b: Any) -> Feedback:
    """The edge between a and b as drawn in the PAG/CPDAG (either direction of writing)."""
    nm = _graph_names(graph)
    ai, bi = nm.index(a), nm.index(b)
    task = f"edge {nm(ai)} - {nm(bi)}"
    if not isinstance(answer, str):
        raise _BadAnswer(f"{answer!r} is not a string.")
    left_node, left, right, right_node = _parse_edge(answer)
    x, y = nm.index(left_node), nm.index(right_node)
    if {x, y} != {ai, bi}:
        raise _BadAnswer(f"{answer!r} is not about {nm(ai)} and {nm(bi)}.")
    mark = {x: _LEFT_MARK[left], y: _RIGHT_MARK[right]}
    m = graph.to_matrix()
    want = {ai: int(m[ai, bi]), bi: int(m[bi, ai])}
    edge = _edge_symbol(m, ai, bi, nm)
    if want[ai] == 0:
        return Feedback(task, False, f"{nm(ai)} and {nm(bi)} are not adjacent in this graph.")
    if mark == want:
        meaning = _MEANING.get((want[ai], want[bi]), "").format(a=nm(ai), b=nm(bi))
        if getattr(graph, "kind", "pag") != "pag" and want[ai] == want[bi] == -1:
            meaning = "undirected: both directions fit the same independences (Markov equivalent)"
        return Feedback(task, True, f"{edge}" + (f": {meaning}." if meaning else "."))
    if mark[ai] == want[bi] and mark[bi] == want[ai]:
        return Feedback(task, False, "you have the marks at swapped ends: each mark sits at the node it touches.")
    wrong = [v for v in (ai, bi) if mark[v] != want[v]]
    lines = [f"at {nm(v)}'s end you wrote {_MARK_NAMES[mark[v]]}, but the graph has {_MARK_NAMES[want[v]]}"
             for v in wrong]
    msg = "; ".join(lines) + "."
    if mark[ai] == -1 and mark[bi] == 1 and want[ai] == want[bi] == 1:
        msg += f" '<->' means neither causes the other: a hidden confounder of {nm(ai)} and {nm(bi)}."
    elif 2 in want.values() and 2 not in mark.values():
        msg += " A circle means the data cannot decide the mark: it could be a tail or an arrowhead."
    return Feedback(task, False, msg)


@_checker("mark matrix", "a [p, p] integer array in the causal-learn encoding")
def check_mark_matrix(answer: Any, graph: Any) -> Feedback:
    """The whole ``graph.to_matrix()`` (M[a, b] = mark at a's end: 0, -1 tail, 1 arrow, 2 circle)."""
    task = "mark matrix"
    want = graph.to_matrix()
    arr = _as_matrix(answer, want.shape)
    nm = _graph_names(graph)
    if np.array_equal(arr, want):
        return Feedback(task, True, "every entry M[a, b] holds the mark at a's end of the edge a-b.")
    if np.array_equal(arr, want.T):
        return Feedback(task, False, "your matrix has every mark at the wrong end (it is the transpose): "
                                     "M[a, b] is the mark at a's end, so a -> b is M[a, b] = -1, M[b, a] = 1.")
    wrong = [(int(i), int(j)) for i, j in zip(*np.nonzero(arr != want))]
    details = []
    for i, j in wrong:
        edge = _edge_symbol(want, i, j, nm) if want[i, j] or want[j, i] else f"{nm(i)} and {nm(j)} not adjacent"
        details.append(f"M[{nm(i)}, {nm(j)}] = {int(arr[i, j])}, expected the mark at {nm(i)}'s end of: {edge}.")
    asym = [(i, j) for i, j in wrong if (arr[i, j] == 0) != (arr[j, i] == 0)]
    msg = f"{len(wrong)} entr{'y' if len(wrong) == 1 else 'ies'} wrong."
    if asym:
        msg += " An edge has a mark at both ends: M[a, b] and M[b, a] are both 0 or both nonzero."
    return Feedback(task, False, msg, tuple(details))


# =========================================================================================
# exercise 4: efficient attention, null space, adversaries
# =========================================================================================

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
    close = lambda x: np.allclose(arr, x, atol=atol * scale)
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
