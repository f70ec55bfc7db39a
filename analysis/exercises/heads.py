"""Exercise 1, attention heads: top keys, previous-token heads, row sums, means over heads, sharpness."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._common import Feedback, _as_float, _as_int, _BadAnswer, _checker, _collection


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
