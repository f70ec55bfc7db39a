"""Graph scores: skeleton precision/recall/F1, skeleton SHD and SHD on marks."""
from __future__ import annotations

import itertools
import math

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.causal import Graph, Mark, graph_from_dag, shd, skeleton_scores, skeleton_shd

T, A, C = int(Mark.TAIL), int(Mark.ARROW), int(Mark.CIRCLE)


def _graph(nodes, edges, kind="pag") -> Graph:
    """edges: (a, b, mark at a, mark at b) with node ids."""
    pos = {v: k for k, v in enumerate(nodes)}
    m = np.zeros((len(nodes), len(nodes)), dtype=int)
    for a, b, ma, mb in edges:
        m[pos[a], pos[b]], m[pos[b], pos[a]] = ma, mb
    return Graph.from_matrix(m, nodes, kind=kind)


def test_hand_built_example():
    # truth: 0 -> 1 -> 2, 0 -> 3 ; learned: 0 -> 1 (same), 1 <- 2 (reversed),
    # 0 o-> 3 (mark differs), 2 --> 3 (extra); nothing missing
    nodes = [0, 1, 2, 3]
    truth = _graph(nodes, [(0, 1, T, A), (1, 2, T, A), (0, 3, T, A)], kind="dag")
    learned = _graph(nodes, [(0, 1, T, A), (1, 2, A, T), (0, 3, C, A), (2, 3, T, A)])
    s = skeleton_scores(learned, truth)
    assert (s["tp"], s["fp"], s["fn"]) == (3, 1, 0)
    assert s["precision"] == 0.75 and s["recall"] == 1.0
    assert s["f1"] == pytest.approx(2 * 0.75 / 1.75)
    assert skeleton_shd(learned, truth) == 1
    assert shd(learned, truth) == 3  # reversed 1-2, mark at 0 on 0-3, extra 2-3
    # drop an edge from learned: one missing pair more
    fewer = _graph(nodes, [(1, 2, A, T), (0, 3, C, A), (2, 3, T, A)])
    s = skeleton_scores(fewer, truth)
    assert (s["tp"], s["fp"], s["fn"]) == (2, 1, 1)
    assert (skeleton_shd(fewer, truth), shd(fewer, truth)) == (2, 4)


def test_nodes_matched_by_id_not_position():
    truth = _graph(["a", "b", "c"], [("a", "b", T, A), ("b", "c", C, C)])
    same = _graph(["c", "a", "b"], [("a", "b", T, A), ("b", "c", C, C)])
    assert shd(same, truth) == 0 and skeleton_shd(same, truth) == 0
    assert skeleton_scores(same, truth)["f1"] == 1.0
    # positions equal, ids differ in meaning: the same matrix over reordered ids is different
    relabelled = Graph.from_matrix(truth.marks, ["c", "a", "b"])
    assert shd(relabelled, truth) == 3  # c --> a, a o-o b against a --> b, b o-o c


def test_different_node_sets_are_an_error():
    g = _graph([0, 1, 2], [(0, 1, T, A)])
    h = _graph([0, 1, 5], [(0, 1, T, A)])
    with pytest.raises(ValueError, match=r"same nodes: learned has extra \[5\], lacks \[2\]"):
        shd(h, g)
    with pytest.raises(ValueError, match="same nodes"):
        skeleton_scores(_graph([0, 1], [(0, 1, T, A)]), g)
    with pytest.raises(TypeError, match="must be an analysis.causal.Graph"):
        skeleton_shd(g.marks, g)


def test_undefined_ratios_are_nan():
    empty = _graph([0, 1, 2], [])
    full = _graph([0, 1, 2], [(0, 1, C, C), (1, 2, C, C)])
    s = skeleton_scores(empty, full)  # nothing learned: precision undefined
    assert math.isnan(s["precision"]) and s["recall"] == 0.0 and math.isnan(s["f1"])
    s = skeleton_scores(full, empty)  # nothing to find: recall undefined
    assert s["precision"] == 0.0 and math.isnan(s["recall"])
    s = skeleton_scores(empty, empty)
    assert (s["tp"], s["fp"], s["fn"]) == (0, 0, 0) and math.isnan(s["f1"])
    other = _graph([0, 1, 2], [(0, 2, T, A)])
    assert skeleton_scores(other, full)["f1"] == 0.0  # both defined, tp = 0


@st.composite
def graph_pairs(draw):
    """Two random mark graphs over the same node ids, listed in different orders."""
    p = draw(st.integers(1, 7))
    ids = draw(st.lists(st.integers(-50, 50), min_size=p, max_size=p, unique=True))
    pairs = list(itertools.combinations(range(p), 2))
    mark = st.sampled_from([T, A, C])

    def one() -> np.ndarray:
        m = np.zeros((p, p), dtype=int)
        for a, b in pairs:
            if draw(st.booleans()):
                m[a, b], m[b, a] = draw(mark), draw(mark)
        return m

    perm = draw(st.permutations(range(p)))
    g1 = Graph.from_matrix(one(), ids)
    g2 = Graph.from_matrix(one(), [ids[k] for k in perm])
    return g1, g2


def _nx_edges(g: Graph) -> set[frozenset]:
    return {frozenset(e) for e in g.to_networkx().edges()}


@settings(max_examples=80, deadline=None)
@given(graph_pairs())
def test_against_networkx_and_a_pairwise_loop(pair):
    learned, truth = pair
    el, et = _nx_edges(learned), _nx_edges(truth)
    s = skeleton_scores(learned, truth)
    assert (s["tp"], s["fp"], s["fn"]) == (len(el & et), len(el - et), len(et - el))
    # networkx's symmetric difference of the skeletons (over the common node set)
    gl, gt = learned.to_networkx(), truth.to_networkx()
    assert skeleton_shd(learned, truth) == nx.symmetric_difference(gl, gt).number_of_edges()
    # SHD on marks, independently: loop over node-id pairs with Graph.mark
    expected = sum(learned.mark(a, b) != truth.mark(a, b) or learned.mark(b, a) != truth.mark(b, a)
                   for a, b in itertools.combinations(truth.nodes, 2))
    assert shd(learned, truth) == expected
    assert shd(learned, truth) == shd(truth, learned) >= skeleton_shd(learned, truth)
    assert shd(truth, truth) == 0 and skeleton_scores(truth, truth)["fp"] == 0


def test_dag_against_its_own_skeleton_marks():
    dag = np.zeros((4, 4), dtype=bool)
    dag[0, 1] = dag[1, 2] = dag[2, 3] = True
    g = graph_from_dag(dag)
    circles = Graph.from_matrix(np.where(g.marks != 0, C, 0), kind="pag")
    assert skeleton_shd(circles, g) == 0
    assert shd(circles, g) == 3  # every edge differs in its marks
