"""Scores of a learned graph against the true one (numpy only).

Both graphs must have the same node set; nodes are matched by id, not by position, so
the two may list them in different orders. Pairs are unordered: an edge counts once.

- ``skeleton_scores``: adjacency precision / recall / F1 (marks ignored). ``tp`` pairs
  adjacent in both, ``fp`` adjacent only in ``learned``, ``fn`` only in ``truth``.
  precision = tp / (tp + fp), recall = tp / (tp + fn), F1 their harmonic mean; a ratio
  with a zero denominator is NaN (nothing learned, or nothing to find), and F1 is 0 when
  tp = 0 and both ratios are defined.
- ``skeleton_shd``: the number of pairs adjacent in one graph and not in the other (fp + fn).
- ``shd``: structural Hamming distance on marks: the number of pairs {a, b} for which the
  edge is present in one graph only, or present in both with a different mark at a's end
  or at b's end. Each pair counts at most 1 (a reversed DAG edge counts 1, as in
  Tsamardinos et al. 2006). Compare like with like: a PAG's circles differ from a DAG's
  tails and arrowheads, so score a learned PAG against the true PAG.
"""
from __future__ import annotations

import numpy as np

from .graph import Graph

__all__ = ["skeleton_scores", "skeleton_shd", "shd"]


def _aligned(learned: Graph, truth: Graph) -> tuple[np.ndarray, np.ndarray]:
    """Both mark matrices (p, p) indexed by ``truth.nodes``."""
    for name, g in (("learned", learned), ("truth", truth)):
        if not isinstance(g, Graph):
            raise TypeError(f"{name} must be an analysis.causal.Graph, got {type(g).__name__}")
    if set(learned.nodes) != set(truth.nodes):
        extra = [v for v in learned.nodes if v not in set(truth.nodes)]
        missing = [v for v in truth.nodes if v not in set(learned.nodes)]
        raise ValueError("learned and truth must have the same nodes: learned has extra "
                         f"{extra[:10]}, lacks {missing[:10]}")
    idx = [learned.position(v) for v in truth.nodes]
    return learned.marks[np.ix_(idx, idx)], truth.marks


def _upper_pairs(a: np.ndarray) -> np.ndarray:
    """The strict upper triangle of a (p, p) boolean matrix, flattened."""
    return a[np.triu_indices(a.shape[0], 1)]


def skeleton_scores(learned: Graph, truth: Graph) -> dict[str, float]:
    """Adjacency precision, recall, F1 and counts tp, fp, fn of ``learned`` vs ``truth``."""
    ml, mt = _aligned(learned, truth)
    al, at = _upper_pairs(ml != 0), _upper_pairs(mt != 0)
    tp = int(np.count_nonzero(al & at))
    fp = int(np.count_nonzero(al & ~at))
    fn = int(np.count_nonzero(~al & at))
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    if np.isnan(precision) or np.isnan(recall):
        f1 = float("nan")
    else:
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def skeleton_shd(learned: Graph, truth: Graph) -> int:
    """Number of node pairs adjacent in exactly one of the two graphs (marks ignored)."""
    ml, mt = _aligned(learned, truth)
    return int(np.count_nonzero(_upper_pairs((ml != 0) != (mt != 0))))


def shd(learned: Graph, truth: Graph) -> int:
    """Structural Hamming distance on marks: pairs whose edge or either end mark differs."""
    ml, mt = _aligned(learned, truth)
    diff = ml != mt
    return int(np.count_nonzero(_upper_pairs(diff | diff.T)))
