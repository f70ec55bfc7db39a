"""Causal discovery over tokens, numpy only: CI tests, PC / FCI / ICD, PDS-trees.

    >>> from analysis.causal import learn_graph
    >>> g = learn_graph(corr, n_samples=64, algorithm="icd")   # corr: (n, n)
    >>> print(g)                                               # e.g. "3 o-> 5"
    >>> g.to_matrix()                                          # causal-learn encoding

Learners visit pairs in lexicographic order of node positions and are deterministic.
Pass ``ci_test=DSeparationOracle(dag)`` to run against the exact truth.
"""
from __future__ import annotations

import time
import warnings
from typing import Any, Callable, Hashable, Sequence, get_args

import numpy as np

from analysis.types import Algorithm

from ._core import Tester, Work, make_graph
from .citest import (PSD_TOLERANCE, BatchedCITest, CITestResult, DSeparationOracle, FisherZTest,
                     correlation_from_covariance, nearest_correlation, partial_correlation,
                     partial_correlations)
from .fci import fci as _fci
from .graph import Edge, Graph, Mark
from .icd import icd as _icd
from .pc import pc as _pc
from .pds import PDSTree, pds_tree
from .scores import shd, skeleton_scores, skeleton_shd
from .synthetic import SEED_MAX, check_seed, random_dag, random_weights, sem_covariance, sem_mixing_matrix

__all__ = [
    "ALGORITHMS", "BatchedCITest", "CITestResult", "DSeparationOracle", "Edge", "FisherZTest",
    "Graph", "Mark", "PDSTree", "PSD_TOLERANCE", "SEED_MAX", "check_seed",
    "correlation_from_covariance", "graph_from_dag",
    "learn_graph", "nearest_correlation", "partial_correlation",
    "partial_correlations", "pds_tree", "random_dag", "random_weights", "sem_covariance",
    "sem_mixing_matrix", "shd", "skeleton_scores", "skeleton_shd",
]

ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)


def _resolve_nodes(nodes: Sequence[int] | None, n_vars: int) -> list[int]:
    if nodes is None:
        return list(range(n_vars))
    out = []
    for v in nodes:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"nodes must be integer indices into corr, got {v!r}")
        if not 0 <= int(v) < n_vars:
            raise IndexError(f"node {int(v)} is out of range: valid indices are 0..{n_vars - 1}")
        out.append(int(v))
    if len(set(out)) != len(out):
        raise ValueError(f"nodes must be distinct, got {out}")
    return out


def _resolve_order(order: Sequence[int] | None, nodes: list[int],
                   n_vars: int) -> dict[int, int] | None:
    """Position -> rank for the nodes that appear in ``order`` (others unconstrained)."""
    if order is None:
        return None
    order = [int(v) for v in order]
    if len(set(order)) != len(order):
        raise ValueError("order must not repeat a node")
    bad = [v for v in order if not 0 <= v < n_vars]
    if bad:
        raise IndexError(f"order has nodes {bad} out of range: valid indices are 0..{n_vars - 1}")
    pos = {v: k for k, v in enumerate(nodes)}
    return {pos[v]: r for r, v in enumerate(order) if v in pos}


def learn_graph(corr: np.ndarray | None, n_samples: float | None = None, *,
                alpha: float = 0.01, algorithm: Algorithm = "fci",
                nodes: Sequence[int] | None = None, order: Sequence[int] | None = None,
                max_r: int | None = None, labels: Sequence[str] | None = None,
                ci_test: Any = None, selection_bias: bool = True, stable: bool = False,
                repair: bool = False,
                callback: Callable[[int, Graph], None] | None = None,
                time_budget: float | None = None) -> Graph:
    """Learn a CPDAG ("pc") or PAG ("fci", "icd") over tokens from a correlation matrix.

    corr: (n, n) correlation or covariance (e.g. ``A A^T`` of an attention head);
    n_samples: effective sample size of the Fisher z test; alpha: its level.
    nodes: indices into corr forming the graph (the rest act as latent variables);
    ``to_matrix()`` is indexed by position in ``nodes``. order: a known causal order of
    node ids (earlier may cause later, never the reverse): PC orients a -> b for a before
    b; FCI/ICD put an arrowhead at b (a *-> b, "b is not an ancestor of a", which assumes
    no selection bias) and the rules may then turn the circle at a into a tail. max_r: for
    ICD the last iteration r (anytime; the result is r-representing), for PC/FCI the
    largest conditioning set (either way capped so that n_samples - |S| - 3 > 0).
    ci_test: any test called as ``ci_test(i, j, cond)`` (e.g. ``DSeparationOracle``)
    instead of a FisherZTest built from corr (a :class:`BatchedCITest` gets the vectorised
    path). selection_bias: apply R5-R7. callback(r, graph): ICD calls it after every
    iteration with the r-representing PAG. stable: ICD's order-independent skeleton phase
    (adjacencies frozen per iteration, as in PC-stable; PC and FCI always use one; see
    ``analysis.causal.icd``), about 1.5-1.7x the time of the literal ICD on attention of
    64-128 tokens; with the default ``stable=False`` ICD's skeleton can depend on the
    numbering of the nodes (pairs are visited in lexicographic order of positions).
    corr must be positive semi-definite (smallest eigenvalue >= -PSD_TOLERANCE, checked
    once): otherwise a ValueError, or with ``repair=True`` the nearest correlation matrix
    (Higham 2002) is used and a RuntimeWarning says so.
    time_budget: ICD only, seconds. ICD checks the clock after each iteration; once the
    budget is spent it stops there and returns the r-representing PAG reached (exactly
    what ``max_r=r`` gives), with a RuntimeWarning naming r and the budget; the graph's
    ``r`` and ``cut`` record it. An iteration is never interrupted, so a run can exceed
    the budget by up to one iteration.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}: choose one of "
                         f"{', '.join(repr(a) for a in ALGORITHMS)}")
    if max_r is not None and (not isinstance(max_r, (int, np.integer)) or max_r < 0):
        raise ValueError(f"max_r must be a non-negative integer or None, got {max_r!r}")
    budget = _check_budget(time_budget, algorithm)
    ci_test, n_vars = _make_test(corr, n_samples, alpha, ci_test, repair)
    node_ids = _resolve_nodes(nodes, n_vars)
    if labels is not None and len(labels) != len(node_ids):
        raise ValueError(f"labels must have one entry per node ({len(node_ids)}), "
                         f"got {len(labels)}")
    rank = _resolve_order(order, node_ids, n_vars)
    limit = getattr(ci_test, "max_cond_size", None)  # Fisher z needs n - |S| - 3 > 0
    if limit is not None:
        max_r = limit if max_r is None else min(max_r, limit)

    tester = Tester(ci_test, node_ids)
    work = Work(len(node_ids))
    sepsets: dict = {}
    meta = dict(nodes=node_ids, labels=labels, tester=tester, algorithm=algorithm,
                alpha=float(getattr(ci_test, "alpha", alpha)),
                n_samples=getattr(ci_test, "n_samples", n_samples))
    start = time.perf_counter()
    r, cut = None, False
    if algorithm == "pc":
        _pc(work, tester, sepsets, rank=rank, max_depth=max_r)
    elif algorithm == "fci":
        _fci(work, tester, sepsets, rank=rank, max_depth=max_r, selection_bias=selection_bias)
    else:
        def snapshot(level: int, w: Work) -> None:
            callback(level, make_graph(w, kind="pag", sepsets=dict(sepsets), r=level,
                                       seconds=time.perf_counter() - start, **meta))

        r, cut = _icd(work, tester, sepsets, rank=rank, max_r=max_r, selection_bias=selection_bias,
                      stable=stable, callback=snapshot if callback is not None else None,
                      deadline=None if budget is None else start + budget)
        if cut:
            warnings.warn(f"ICD stopped after iteration r={r}: the time budget of {budget:g} s "
                          f"was spent ({time.perf_counter() - start:.3g} s); the PAG is "
                          f"{r}-representing, not the completed ICD result", RuntimeWarning,
                          stacklevel=2)
    return make_graph(work, kind="cpdag" if algorithm == "pc" else "pag", sepsets=sepsets,
                      r=r, seconds=time.perf_counter() - start, time_budget=budget, cut=cut,
                      **meta)


def _check_budget(time_budget: float | None, algorithm: str) -> float | None:
    if time_budget is None:
        return None
    if isinstance(time_budget, bool) or not isinstance(time_budget, (int, float, np.integer,
                                                                     np.floating)):
        raise TypeError(f"time_budget must be a number of seconds or None, got {time_budget!r}")
    if not time_budget > 0:       # also NaN
        raise ValueError(f"time_budget must be a positive number of seconds, got {time_budget!r}")
    if algorithm != "icd":
        raise ValueError(f"time_budget works with algorithm='icd' only (its result is usable "
                         f"after every iteration), not {algorithm!r}; use max_r to bound "
                         f"PC or FCI")
    return float(time_budget)


def _make_test(corr, n_samples, alpha, ci_test, repair: bool = False) -> tuple[Any, int]:
    """The CI test to use (a FisherZTest unless one is given) and its number of variables."""
    if ci_test is None:
        if corr is None or n_samples is None:
            raise ValueError("give corr and n_samples (or a ci_test)")
        ci_test = FisherZTest(corr, n_samples, alpha, repair=repair)
    n_vars = getattr(ci_test, "n_variables", None)
    if n_vars is None:
        if corr is None:
            raise ValueError("ci_test has no n_variables: also pass corr to size the graph")
        n_vars = np.asarray(corr).shape[0]
    return ci_test, int(n_vars)


def graph_from_dag(dag_adjacency: np.ndarray, nodes: Sequence[Hashable] | None = None) -> Graph:
    """A DAG (n, n; ``[u, v]`` != 0 means u -> v) as a ``Graph`` of kind "dag"."""
    adj = np.asarray(dag_adjacency) != 0
    m = np.zeros(adj.shape, dtype=np.int8)
    m[adj] = int(Mark.TAIL)
    m[adj.T] = int(Mark.ARROW)
    return Graph.from_matrix(m, nodes, kind="dag")

