"""Graph (marks, printing, conversions) and PDS-trees."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.causal import Graph, Mark, PDSTree, graph_from_dag, pds_tree

T, A, C = int(Mark.TAIL), int(Mark.ARROW), int(Mark.CIRCLE)


def _pag(p: int, edges: list[tuple[int, int, int, int]], nodes=None, labels=None) -> Graph:
    """edges: (a, b, mark at a, mark at b)."""
    m = np.zeros((p, p), dtype=int)
    for a, b, ma, mb in edges:
        m[a, b], m[b, a] = ma, mb
    return Graph.from_matrix(m, nodes, kind="pag", labels=labels)


def test_mark_encoding_is_causallearns():
    assert (Mark.NONE, Mark.TAIL, Mark.ARROW, Mark.CIRCLE) == (0, -1, 1, 2)
    g = graph_from_dag(np.array([[0, 1], [0, 0]]))  # 0 -> 1
    assert g.to_matrix().tolist() == [[0, -1], [1, 0]]
    assert g.mark(0, 1) is Mark.TAIL and g.mark(1, 0) is Mark.ARROW
    assert str(g).splitlines()[1].strip() == "0 --> 1"


def test_printing_all_edge_kinds_with_labels():
    g = _pag(6, [(0, 1, C, A), (1, 2, T, A), (2, 3, A, A), (3, 4, C, C), (4, 5, T, T),
                 (0, 5, A, C)], labels=["the", "cat", "sat", "on", "a", "mat"])
    lines = g.edge_strings()
    assert lines == ["the o-> cat", "the <-o mat", "cat --> sat", "sat <-> on", "on o-o a",
                     "a --- mat"]
    assert "the o-> cat" in str(g)
    assert {e.symbol for e in g.edges()} == {"o->", "<-o", "-->", "<->", "o-o", "---"}


def test_node_ids_are_used_not_positions():
    g = _pag(3, [(0, 1, C, A), (1, 2, T, A)], nodes=[7, 3, 11])
    assert g.adjacent(3) == [7, 11]
    assert g.mark(7, 3) is Mark.CIRCLE and g.mark(3, 7) is Mark.ARROW
    assert g.is_adjacent(3, 11) and not g.is_adjacent(7, 11)
    assert [(e.a, e.b) for e in g.edges()] == [(7, 3), (3, 11)]
    with pytest.raises(KeyError, match="not a node"):
        g.mark(0, 1)


def test_possible_ancestors():
    # 0 o-> 1 --> 2 <-> 3, 4 o-o 0
    g = _pag(5, [(0, 1, C, A), (1, 2, T, A), (2, 3, A, A), (0, 4, C, C)])
    assert g.is_possible_ancestor(0, 2) and g.is_possible_ancestor(4, 2)
    assert not g.is_possible_ancestor(2, 0)  # arrowhead at 2's end
    assert not g.is_possible_ancestor(3, 2) and not g.is_possible_ancestor(2, 3)
    assert g.possible_descendants(0) == [1, 2, 4]
    cp = Graph.from_matrix(_pag(3, [(0, 1, T, T), (1, 2, T, A)]).marks, kind="cpdag")
    assert cp.is_possible_ancestor(1, 0) and cp.is_possible_ancestor(0, 2)
    assert not cp.is_possible_ancestor(2, 1)


def test_to_networkx_carries_marks_and_labels():
    g = _pag(3, [(0, 1, C, A), (1, 2, T, A)], nodes=["a", "b", "c"], labels=["x", "y", "z"])
    nxg = g.to_networkx()
    assert set(nxg.nodes) == {"a", "b", "c"} and nxg.nodes["b"]["label"] == "y"
    assert nxg.edges["a", "b"]["marks"] == {"a": Mark.CIRCLE, "b": Mark.ARROW}
    assert nxg.edges["b", "a"]["symbol"] == "o->"
    assert nxg.graph["kind"] == "pag"


@st.composite
def mark_matrices(draw):
    p = draw(st.integers(1, 8))
    m = np.zeros((p, p), dtype=int)
    for a in range(p):
        for b in range(a + 1, p):
            if draw(st.booleans()):
                m[a, b] = draw(st.sampled_from([T, A, C]))
                m[b, a] = draw(st.sampled_from([T, A, C]))
    return m


@settings(max_examples=60, deadline=None)
@given(m=mark_matrices(), kind=st.sampled_from(["dag", "cpdag", "pag"]))
def test_matrix_round_trip(m, kind):
    g = Graph.from_matrix(m, kind=kind)
    assert np.array_equal(g.to_matrix(), m)
    again = Graph.from_matrix(g.to_matrix(), g.nodes, kind=kind)
    assert again == g and hash(again) == hash(g)
    assert len(g.edges()) == len(g) == int((m != 0).sum() // 2)
    back = np.zeros_like(m)
    for e in g.edges():
        back[e.a, e.b], back[e.b, e.a] = int(e.mark_a), int(e.mark_b)
    assert np.array_equal(back, m)


def test_graph_is_immutable_and_validated():
    g = _pag(2, [(0, 1, C, A)])
    with pytest.raises(ValueError):
        g.marks[0, 1] = 1
    m = g.to_matrix()
    m[0, 1] = 1  # a copy: the graph is unchanged
    assert g.mark(0, 1) is Mark.CIRCLE
    with pytest.raises(ValueError, match="both ends"):
        Graph.from_matrix(np.array([[0, 2], [0, 0]]))
    with pytest.raises(ValueError, match="may only hold"):
        Graph.from_matrix(np.array([[0, 5], [5, 0]]))
    with pytest.raises(ValueError, match="square"):
        Graph.from_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="kind"):
        Graph.from_matrix(np.zeros((2, 2)), kind="mag")
    with pytest.raises(ValueError, match="labels"):
        Graph.from_matrix(np.zeros((2, 2)), labels=["a"])


def test_pds_tree_follows_possible_colliders():
    # 0 o-o 1 o-> 2 <-o 3 o-o 4, 1 o-o 5, 3 o-o 5 (5 adjacent to 1 and 3 only)
    g = _pag(6, [(0, 1, C, C), (1, 2, C, A), (3, 2, C, A), (3, 4, C, C), (1, 5, C, C),
                 (3, 5, C, C)])
    tree = pds_tree(g, 0, max_depth=None)
    assert isinstance(tree, PDSTree)
    assert tree.nodes[0] == 0 and tree.parent[0] == -1 and tree.depth[0] == 0
    # 1 is not a collider on 0-1-x and 0,x not adjacent: the tree stops at 1
    assert tree.members == {1}
    tree2 = pds_tree(g, 1, max_depth=None)
    # from 1: 0, 2, 5 at depth 1; 2 is a collider on 1 *-> 2 <-* 3: 3 at depth 2
    assert tree2.min_depth(2) == 1 and tree2.min_depth(3) == 2
    assert 4 not in tree2.members  # 3 is not a collider on 2-3-4, 2 and 4 not adjacent
    assert tree2.path_to_root(tree2.nodes.index(3)) == [3, 2, 1]
    limited = pds_tree(g, 1, max_depth=1)
    assert limited.members == {0, 2, 5} and max(limited.depth) == 1


def test_pds_tree_triangles_and_edges_used_once():
    # triangle 0-1-2 (all o-o) plus 2 o-o 3: from 0, 1 then 2 via the triangle
    g = _pag(4, [(0, 1, C, C), (1, 2, C, C), (0, 2, C, C), (2, 3, C, C)])
    tree = pds_tree(g, 0)
    entries = list(zip(tree.nodes, tree.parent, tree.depth))
    assert entries[:3] == [(0, -1, 0), (1, 0, 1), (2, 0, 1)]
    # 1 -> 2 (triangle 0,1,2) uses edge 1-2, so 2 -> 1 is not added again
    assert (2, 1, 2) in entries and sum(1 for v, *_ in entries if v == 1) == 1
    assert 3 not in tree.members  # 1-2-3: 1, 3 not adjacent and 2 no collider


def test_closed_subsets_are_ordered_by_depth_sum():
    # chain of colliders: 0 *-> 1 <-> 2 <-> 3 <-* 4 ; tree from 0: 1 (d1), 2 (d2), 3 (d3)
    g = _pag(5, [(0, 1, C, A), (1, 2, A, A), (2, 3, A, A), (4, 3, C, A), (0, 4, C, C)])
    tree = pds_tree(g, 0)
    assert tree.is_closed([1, 2]) and not tree.is_closed([2]) and not tree.is_closed([2, 3])
    # depths: 1 and 4 at 1, 2 at 2, 3 at 3, 4 again at 4 (3 <-* 4 is a collider at 3)
    assert tree.min_depth(4) == 1 and tree.depth[-1] == 4
    subs = tree.closed_subsets(2)
    assert subs == [((1, 4), 2), ((1, 2), 3)]
    assert tree.closed_subsets(3) == [((1, 2, 4), 4), ((1, 2, 3), 6)]
    assert all(1 not in z for z, _ in tree.closed_subsets(2, exclude=[1]))
    with pytest.raises(ValueError, match="max_depth"):
        pds_tree(g, 0, max_depth=-1)
