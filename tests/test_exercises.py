"""The exercise checkers: right answers in every equivalent form pass, wrong answers fail with a
message naming the mistake, placeholders and garbage never raise. No model is loaded here (the
notebooks themselves run in test_notebooks.py)."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

import analysis.exercises as ex
from analysis.causal import DSeparationOracle, Mark, learn_graph, partial_correlation, sem_mixing_matrix
from analysis.exercises import Feedback


def ok(fb: Feedback) -> Feedback:
    assert isinstance(fb, Feedback)
    assert fb.ok, str(fb)
    return fb


def wrong(fb: Feedback, *phrases: str) -> Feedback:
    assert isinstance(fb, Feedback)
    assert not fb.ok, str(fb)
    text = str(fb).lower()
    for p in phrases:
        assert p.lower() in text, f"{p!r} not in feedback: {fb}"
    return fb


# ----------------------------------------------------------------------------- fixtures
def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def att():
    """[L=3, H=4, n=6, n] attention: (1, 2) attends to the previous token, (1, 3) to the next."""
    rng = np.random.default_rng(0)
    a = _softmax(rng.normal(size=(3, 4, 6, 6)) * 2)
    n = 6
    prev = np.zeros((n, n))
    prev[0, 0] = 1
    for q in range(1, n):
        prev[q, q - 1] = 1
    nxt = np.zeros((n, n))
    nxt[n - 1, n - 1] = 1
    for q in range(n - 1):
        nxt[q, q + 1] = 1
    a[1, 2] = 0.9 * prev + 0.1 / n
    a[1, 3] = 0.9 * nxt + 0.1 / n
    a[2, 0] = 0.9 * np.eye(n) + 0.1 / n
    return a


TOKENS = ["[CLS]", "a", "fine", ",", "film", "[SEP]"]

# exercise 2's DAG: E -> A, E -> B, A -> C, B -> C, C -> D
NAMES2 = ["A", "B", "C", "D", "E"]


@pytest.fixture(scope="module")
def sem():
    ix = {v: k for k, v in enumerate(NAMES2)}
    W = np.zeros((5, 5))
    for u, v, w in [("E", "A", 0.8), ("E", "B", -0.6), ("A", "C", 1.0), ("B", "C", 0.7), ("C", "D", -1.2)]:
        W[ix[u], ix[v]] = w
    d = np.array([1.0, 0.5, 1.0, 2.0, 1.0])
    return W, d, W != 0


# exercise 3's DAG: F -> A -> B <- H -> C <- D, B -> E; H hidden in the FCI part
NAMES3 = ["A", "B", "C", "D", "E", "F", "H"]


@pytest.fixture(scope="module")
def dag3():
    ix = {v: k for k, v in enumerate(NAMES3)}
    dag = np.zeros((7, 7), dtype=bool)
    for u, v in [("F", "A"), ("A", "B"), ("H", "B"), ("H", "C"), ("D", "C"), ("B", "E")]:
        dag[ix[u], ix[v]] = True
    return dag


@pytest.fixture(scope="module")
def pag(dag3):
    return learn_graph(None, ci_test=DSeparationOracle(dag3, observed=list(range(6))), algorithm="fci",
                       labels=NAMES3[:6])


@pytest.fixture(scope="module")
def cpdag(dag3):
    return learn_graph(None, ci_test=DSeparationOracle(dag3), algorithm="pc", labels=NAMES3)


# ----------------------------------------------------------------------------- Feedback and placeholders
def test_feedback_renders_as_text_markdown_and_html():
    fb = Feedback("task", False, "you conditioned on <C>", ("line 1",))
    assert "task" in str(fb) and "line 1" in str(fb) and not bool(fb)
    assert "**task: not quite.**" in fb._repr_markdown_()
    html = fb._repr_html_()
    assert "&lt;C&gt;" in html and "<li>line 1</li>" in html
    assert Feedback("t", True, "fine").status == "correct"
    assert Feedback("t", False, "", answered=False).status == "not answered yet"


def _contexts(att, sem, dag3, pag):
    """One call per checker with a placeholder answer slot: (checker, args, kwargs)."""
    W, d, dag2 = sem
    cov = sem_mixing_matrix(W, d) @ sem_mixing_matrix(W, d).T
    T = np.random.default_rng(1).normal(size=(6, 2))
    stmts = [("A", "B", []), ("A", "B", ["E"])]
    return [
        (ex.check_top_key, (att, TOKENS, 0, 0), {}),
        (ex.check_previous_token_head, (att,), {}),
        (ex.check_attention_sum, (att, 0, 0, 1), {}),
        (ex.check_mean_attention, (att, 0), {}),
        (ex.check_sharper, (att, 0, 0), {}),
        (ex.check_mixing_matrix, (W, d), {}),
        (ex.check_covariance, (sem_mixing_matrix(W, d),), {}),
        (ex.check_partial_correlation, (cov, 0, 1, [4]), {}),
        (ex.check_d_separation, (dag2, stmts, NAMES2), {}),
        (ex.check_zero_partial_correlations, (cov, stmts, NAMES2), {}),
        (ex.check_skeleton, (dag3, NAMES3), {}),
        (ex.check_sepset, (dag3, "B", "C", NAMES3), {}),
        (ex.check_colliders, (dag3, NAMES3), {}),
        (ex.check_mark, (pag, "A", "B"), {}),
        (ex.check_edge, (pag, "B", "C"), {}),
        (ex.check_mark_matrix, (pag,), {}),
        (ex.check_nullity, (T,), {}),
        (ex.check_efficient_attention, (att[0, 0], T), {}),
        (ex.check_moves_output, ([T @ T.T],), {}),
        (ex.check_feasible, (np.array([0.001, 0.2]), 0.01), {}),
        (ex.check_null_fraction, (att[0, 0], att[0, 1], np.eye(6)), {}),
        (ex.check_output_moves, (np.zeros(2), np.ones(2)), {}),
    ]


def test_every_checker_is_covered(att, sem, dag3, pag):
    covered = {fn.__name__ for fn, _, _ in _contexts(att, sem, dag3, pag)}
    public = {name for name in ex.__all__ if name.startswith("check_")}
    assert public == covered


@pytest.mark.parametrize("placeholder", [None, ...])
def test_placeholders_never_raise(att, sem, dag3, pag, placeholder):
    for fn, args, kwargs in _contexts(att, sem, dag3, pag):
        fb = fn(placeholder, *args, **kwargs)
        assert isinstance(fb, Feedback) and not fb.ok and not fb.answered, fn.__name__
        assert "placeholder" in fb.message
        fb._repr_html_(), fb._repr_markdown_(), str(fb)


@pytest.mark.parametrize("garbage", ["???", object(), [1, 2, 3, 4, 5, 6, 7], {"x": None}, np.ones((2, 3)), -7, 2.5])
def test_garbage_answers_never_raise(att, sem, dag3, pag, garbage):
    for fn, args, kwargs in _contexts(att, sem, dag3, pag):
        fb = fn(garbage, *args, **kwargs)
        assert isinstance(fb, Feedback), fn.__name__
        str(fb)


def test_every_checker_has_a_docstring_and_hints():
    for name in ex.__all__:
        obj = getattr(ex, name)
        assert obj.__doc__, name
        if name.startswith("check_"):
            assert "answer" in inspect.signature(obj).parameters


EXERCISE_MODULES = {"heads": 1, "dseparation": 2, "pag_marks": 3, "null_space": 4}


def test_one_module_per_exercise_all_reexported():
    """Every check_ helper lives in its exercise's module and is the very object the package exports;
    the notebooks' ``from analysis.exercises import check_...`` lines all resolve."""
    import importlib
    import re
    from pathlib import Path

    defined = {}
    for name in EXERCISE_MODULES:
        module = importlib.import_module(f"analysis.exercises.{name}")
        for attr, obj in vars(module).items():
            if attr.startswith("check_") and getattr(obj, "__module__", None) == module.__name__:
                defined[attr] = name
                assert getattr(ex, attr) is obj, attr
    assert set(defined) == {n for n in ex.__all__ if n.startswith("check_")}
    notebooks = Path(__file__).resolve().parent.parent / "notebooks" / "exercises" / "sources"
    for source in notebooks.glob("*.py"):
        block = re.search(r"from analysis\.exercises import \(([^)]*)\)", source.read_text())
        assert block, source.name
        names = {n.strip() for n in block.group(1).split(",") if n.strip()}
        assert names <= set(ex.__all__), (source.name, names - set(ex.__all__))
        assert {defined[n] for n in names} == {list(EXERCISE_MODULES)[int(source.name[:2]) - 1]}, source.name


def test_the_checkers_import_no_torch():
    """analysis.exercises is numpy (+ networkx, lazily) only: importing it loads no torch or pandas."""
    import subprocess
    import sys

    code = "import sys, analysis.exercises; print(sorted({'torch', 'pandas', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------------------- exercise 1
def test_top_key(att):
    row = att[2, 1, 0]
    k = int(np.argmax(row))
    ok(ex.check_top_key(k, att, TOKENS, 2, 1))
    ok(ex.check_top_key(np.int64(k), att, TOKENS, 2, 1))
    ok(ex.check_top_key(TOKENS[k], att, TOKENS, 2, 1))
    ok(ex.check_top_key(k - len(TOKENS), att, TOKENS, 2, 1))        # negative position
    other = int(np.argmin(row))
    wrong(ex.check_top_key(other, att, TOKENS, 2, 1), "largest weight in that row")
    col = int(np.argmax(att[2, 1, :, 0]))
    if col != k:
        wrong(ex.check_top_key(col, att, TOKENS, 2, 1), "rows are queries, columns are keys")
    wrong(ex.check_top_key("movie", att, TOKENS, 2, 1), "not one of the tokens")
    wrong(ex.check_top_key(17, att, TOKENS, 2, 1), "out of range")


def test_top_key_detects_swapped_layer_and_head():
    a = np.full((3, 3, 4, 4), 0.25)
    a[0, 2, 0] = [0.1, 0.1, 0.1, 0.7]       # the asked head: key 3
    a[2, 0, 0] = [0.1, 0.7, 0.1, 0.1]       # layer and head swapped: key 1
    a[0, 2, 2] = [0.7, 0.1, 0.1, 0.1]       # the column of query 0 peaks at 2, not 1
    ok(ex.check_top_key(3, a, list("wxyz"), 0, 2))
    wrong(ex.check_top_key(1, a, list("wxyz"), 0, 2), "swapped")


def test_previous_token_head(att):
    ok(ex.check_previous_token_head((1, 2), att))
    ok(ex.check_previous_token_head([1, 2], att))
    ok(ex.check_previous_token_head((-2, -2), att))
    wrong(ex.check_previous_token_head((1, 3), att), "next token")
    wrong(ex.check_previous_token_head((2, 0), att), "itself")
    wrong(ex.check_previous_token_head((0, 0), att), "previous token")
    wrong(ex.check_previous_token_head((9, 0), att), "out of range")
    wrong(ex.check_previous_token_head(3, att), "could not read")


def test_attention_sums(att):
    ok(ex.check_attention_sum(1.0, att, 0, 1, 2))
    ok(ex.check_attention_sum(np.float32(att[0, 1, 2].sum()), att, 0, 1, 2))
    col = float(att[0, 1, :, 2].sum())
    ok(ex.check_attention_sum(col, att, 0, 1, 2, axis="column"))
    ok(ex.check_attention_sum(round(col, 3), att, 0, 1, 2, axis="column"))
    wrong(ex.check_attention_sum(col, att, 0, 1, 2, axis="row"), "column sum")
    wrong(ex.check_attention_sum(1.0, att, 0, 1, 2, axis="column"), "row sum")
    wrong(ex.check_attention_sum(42.0, att, 0, 1, 2), "neither")
    wrong(ex.check_attention_sum(True, att, 0, 1, 2), "truth value")


def test_mean_attention(att):
    want = att[1].mean(0)
    ok(ex.check_mean_attention(want, att, 1))
    ok(ex.check_mean_attention(want.tolist(), att, 1))
    ok(ex.check_mean_attention(want.astype(np.float32), att, 1))
    wrong(ex.check_mean_attention(att[1].sum(0), att, 1), "summed")
    wrong(ex.check_mean_attention(att[:, 0].mean(0), att, 1), "over layers")
    wrong(ex.check_mean_attention(att[0].mean(0), att, 1), "layer 0")
    wrong(ex.check_mean_attention(att[1, 3], att, 1), "head 3 alone")
    wrong(ex.check_mean_attention(att[1].mean(-1), att, 1), "instead of over heads")
    wrong(ex.check_mean_attention(np.ones((2, 2)), att, 1), "shape")


def test_sharper(att):
    # (2, 0) is nearly one-hot on the diagonal: sharper than the mean of layer 2
    ok(ex.check_sharper("head", att, 2, 0, query=1))
    ok(ex.check_sharper(" Head ", att, 2, 0, query=1))
    wrong(ex.check_sharper("mean", att, 2, 0, query=1), "entropy")
    flat = att.copy()
    flat[2, 1] = 1 / 6
    ok(ex.check_sharper("mean", flat, 2, 1, query=1))
    wrong(ex.check_sharper("both", att, 2, 0), "neither")


# ----------------------------------------------------------------------------- exercise 2
def test_mixing_matrix(sem):
    W, d, _ = sem
    A = sem_mixing_matrix(W, d)
    ok(ex.check_mixing_matrix(A, W, d))
    ok(ex.check_mixing_matrix(A.tolist(), W, d))
    ok(ex.check_mixing_matrix(np.linalg.cholesky(A @ A.T), W, d))      # another square root
    I = np.eye(5)
    wrong(ex.check_mixing_matrix(np.linalg.solve(I - W, np.diag(np.sqrt(d))), W, d), "(I - B)^-1", "B^T")
    wrong(ex.check_mixing_matrix(np.linalg.solve(I - W.T, np.diag(d)), W, d), "D^1/2")
    wrong(ex.check_mixing_matrix(np.linalg.inv(I - W.T), W, d), "noise scale")
    wrong(ex.check_mixing_matrix(np.diag(np.sqrt(d)) @ np.linalg.inv(I - W.T), W, d), "wrong side")
    wrong(ex.check_mixing_matrix(np.ones((4, 4)), W, d), "shape")


def test_covariance(sem):
    W, d, _ = sem
    A = sem_mixing_matrix(W, d)
    ok(ex.check_covariance(A @ A.T, A))
    wrong(ex.check_covariance(A.T @ A, A), "A^T A")
    wrong(ex.check_covariance(A, A), "not symmetric")


def test_partial_correlation(sem):
    W, d, _ = sem
    A = sem_mixing_matrix(W, d)
    C = A @ A.T
    rho = partial_correlation(C, 0, 1, [4, 2])
    assert abs(rho) > 0.1
    ok(ex.check_partial_correlation(rho, C, 0, 1, [4, 2], names=NAMES2))
    ok(ex.check_partial_correlation(round(rho, 3), C, 0, 1, [4, 2]))
    ok(ex.check_partial_correlation(np.array([rho]), C, 0, 1, (2, 4)))
    corr = C / np.sqrt(np.outer(np.diag(C), np.diag(C)))
    ok(ex.check_partial_correlation(rho, corr, 0, 1, [4, 2]))               # scale-free
    ok(ex.check_partial_correlation(0.0, C, 0, 1, [4]))                     # d-separated: exactly 0
    wrong(ex.check_partial_correlation(-rho, C, 0, 1, [4, 2]), "sign")
    wrong(ex.check_partial_correlation(C[0, 1] / np.sqrt(C[0, 0] * C[1, 1]), C, 0, 1, [4, 2], names=NAMES2),
          "plain correlation", "did not condition")
    P = np.linalg.inv(C)
    full = -P[0, 1] / np.sqrt(P[0, 0] * P[1, 1])       # given C, D, E; but asked: given E only (= 0)
    wrong(ex.check_partial_correlation(full, C, 0, 1, [4]), "whole matrix", "every other variable")
    sub = np.linalg.inv(C[np.ix_([0, 1, 4, 2], [0, 1, 4, 2])])
    wrong(ex.check_partial_correlation(sub[0, 1], C, 0, 1, [4, 2]), "P_ij")
    wrong(ex.check_partial_correlation(1.7, C, 0, 1, [4, 2]), "[-1, 1]")
    wrong(ex.check_partial_correlation([0.1, 0.2], C, 0, 1, [4, 2]), "single number")


STATEMENTS = [("A", "B", []), ("A", "B", ["E"]), ("A", "B", ["E", "C"]), ("A", "B", ["E", "D"]),
              ("E", "D", ["C"]), ("A", "D", ["C"]), ("E", "C", ["A", "B"]), ("D", "E", ["A"])]
TRUTH = [False, True, False, False, True, True, True, False]


def test_d_separation_right_forms(sem):
    _, _, dag = sem
    ok(ex.check_d_separation(TRUTH, dag, STATEMENTS, NAMES2))
    ok(ex.check_d_separation(["yes" if t else "no" for t in TRUTH], dag, STATEMENTS, NAMES2))
    ok(ex.check_d_separation([int(t) for t in TRUTH], dag, STATEMENTS, NAMES2))
    ok(ex.check_d_separation(np.array(TRUTH), dag, STATEMENTS, NAMES2))
    ok(ex.check_d_separation(dict(enumerate(TRUTH)), dag, STATEMENTS, NAMES2))
    idx = [(0, 1, "{4}"), (0, 1, [])]                      # indices and string sets work too
    ok(ex.check_d_separation([True, False], dag, idx, NAMES2))


def test_d_separation_explains_the_open_path(sem):
    _, _, dag = sem
    said = list(TRUTH)
    said[2] = True          # A _||_ B | {E, C}: conditioning on the collider C
    fb = wrong(ex.check_d_separation(said, dag, STATEMENTS, NAMES2), "7 of 8 right")
    line = fb.details[2]
    assert "conditioning on the collider C opens it" in line and "A -> C <- B" in line
    said = list(TRUTH)
    said[3] = True          # ... | {E, D}: D is a descendant of the collider
    fb = wrong(ex.check_d_separation(said, dag, STATEMENTS, NAMES2))
    assert "descendant of the collider C" in fb.details[3]
    said = list(TRUTH)
    said[0] = True          # A _||_ B: the fork through E is open
    fb = wrong(ex.check_d_separation(said, dag, STATEMENTS, NAMES2))
    assert "A <- E -> B is open" in fb.details[0]
    said = list(TRUTH)
    said[1] = False         # A _||_ B | E is true: every path is blocked
    fb = wrong(ex.check_d_separation(said, dag, STATEMENTS, NAMES2))
    assert "every path is blocked" in fb.details[1] and "blocked at E" in fb.details[1] \
        and "blocked at the collider C" in fb.details[1]


def test_d_separation_partial_and_bad_answers(sem):
    _, _, dag = sem
    part = list(TRUTH[:3]) + [None] * 5
    fb = ex.check_d_separation(part, dag, STATEMENTS, NAMES2)
    assert not fb.ok and fb.answered and "not answered yet" in fb.message
    fb = ex.check_d_separation([None] * 8, dag, STATEMENTS, NAMES2)
    assert not fb.ok and not fb.answered
    wrong(ex.check_d_separation(TRUTH[:3], dag, STATEMENTS, NAMES2), "3 answers for 8")
    wrong(ex.check_d_separation(["maybe"] * 8, dag, STATEMENTS, NAMES2), "not true or false")


def test_d_separated_matches_the_library_oracle(sem, dag3):
    import itertools

    for dag in (sem[2], dag3):
        oracle = DSeparationOracle(dag)
        n = dag.shape[0]
        for x, y in itertools.combinations(range(n), 2):
            rest = [v for v in range(n) if v not in (x, y)]
            for size in range(3):
                for cond in itertools.combinations(rest, size):
                    truth = ex.d_separated(dag, x, y, cond)
                    assert truth == oracle(x, y, cond).independent
                    paths = ex.explain_paths(dag, x, y, cond)
                    assert truth == (not any(open_ for open_, _ in paths))


def test_zero_partial_correlations(sem):
    W, d, _ = sem
    A = sem_mixing_matrix(W, d)
    C = A @ A.T
    want = {k for k, t in enumerate(TRUTH) if t}
    ok(ex.check_zero_partial_correlations(want, C, STATEMENTS, NAMES2))
    ok(ex.check_zero_partial_correlations(sorted(want), C, STATEMENTS, NAMES2))
    ok(ex.check_zero_partial_correlations(np.array(sorted(want)), C, STATEMENTS, NAMES2))
    fb = wrong(ex.check_zero_partial_correlations(want | {2}, C, STATEMENTS, NAMES2), "misplaced")
    assert "is not ~0" in fb.details[0]
    fb = wrong(ex.check_zero_partial_correlations(want - {1}, C, STATEMENTS, NAMES2))
    assert "belongs in the set" in fb.details[0]
    wrong(ex.check_zero_partial_correlations({99}, C, STATEMENTS, NAMES2), "not statements")


# ----------------------------------------------------------------------------- exercise 3
SKELETON = [("F", "A"), ("A", "B"), ("H", "B"), ("H", "C"), ("D", "C"), ("B", "E")]


def test_skeleton(dag3):
    ok(ex.check_skeleton(SKELETON, dag3, NAMES3))
    ok(ex.check_skeleton({frozenset(p) for p in SKELETON}, dag3, NAMES3))
    ok(ex.check_skeleton([f"{b} - {a}" for a, b in SKELETON], dag3, NAMES3))
    ok(ex.check_skeleton(["F->A", "A --> B", "H o-> B", "C <- H", "D,C", "B E"], dag3, NAMES3))
    ix = {v: k for k, v in enumerate(NAMES3)}
    ok(ex.check_skeleton([(ix[a], ix[b]) for a, b in SKELETON], dag3, NAMES3))
    fb = wrong(ex.check_skeleton(SKELETON + [("A", "E")], dag3, NAMES3), "should be removed")
    assert "{B}" in fb.details[0]
    fb = wrong(ex.check_skeleton(SKELETON[1:], dag3, NAMES3), "missing", "adjacent in the DAG")
    wrong(ex.check_skeleton([("A", "A")], dag3, NAMES3), "itself")
    wrong(ex.check_skeleton([("A", "Z")], dag3, NAMES3), "not a node")


def test_skeleton_with_a_hidden_node(dag3):
    obs = list(range(6))
    right = ["F - A", "A - B", "B - C", "D - C", "B - E"]
    ok(ex.check_skeleton(right, dag3, NAMES3, observed=obs))
    wrong(ex.check_skeleton(right[:2] + right[3:], dag3, NAMES3, observed=obs), "B - C is missing",
          "inducing path")
    wrong(ex.check_skeleton(right + ["H - B"], dag3, NAMES3, observed=obs), "not observed")


def test_skeleton_agrees_with_the_learners(dag3, pag, cpdag):
    learned = [tuple(e.split()[::2]) for e in cpdag.edge_strings()]
    ok(ex.check_skeleton(learned, dag3, NAMES3))
    learned = [tuple(e.split()[::2]) for e in pag.edge_strings()]
    ok(ex.check_skeleton(learned, dag3, NAMES3, observed=range(6)))


def test_sepset(dag3):
    ok(ex.check_sepset({"H"}, dag3, "B", "C", NAMES3))
    ok(ex.check_sepset(["H", "A"], dag3, "B", "C", NAMES3))    # any separating set, with a note
    ok(ex.check_sepset("H", dag3, "B", "C", NAMES3))
    ok(ex.check_sepset(set(), dag3, "A", "H", NAMES3))
    ok(ex.check_sepset([], dag3, "A", "H", NAMES3))
    wrong(ex.check_sepset({"E"}, dag3, "A", "H", NAMES3), "collider B")
    wrong(ex.check_sepset(set(), dag3, "B", "C", NAMES3), "B <- H -> C is open")
    wrong(ex.check_sepset({"B"}, dag3, "B", "C", NAMES3), "never contains")
    wrong(ex.check_sepset(set(), dag3, "A", "B", NAMES3), "cannot be separated")
    wrong(ex.check_sepset({"H"}, dag3, "B", "C", NAMES3, observed=range(6)), "hidden")


def test_colliders(dag3):
    ok(ex.check_colliders([("A", "B", "H"), ("H", "C", "D")], dag3, NAMES3))
    ok(ex.check_colliders(["H -> B <- A", "D -> C <- H"], dag3, NAMES3))
    ok(ex.check_colliders({("D", "C", "H"), ("A", "B", "H")}, dag3, NAMES3))
    fb = wrong(ex.check_colliders([("A", "B", "H"), ("H", "C", "D"), ("F", "A", "B")], dag3, NAMES3))
    assert "A is in sepset(B, F) = {A}" in fb.details[0]
    fb = wrong(ex.check_colliders([("A", "B", "H")], dag3, NAMES3), "missing D -> C <- H")
    fb = wrong(ex.check_colliders([("A", "B", "H"), ("H", "C", "D"), ("A", "E", "H")], dag3, NAMES3))
    assert "not adjacent to both" in fb.details[0]
    shielded = dag3.copy()
    shielded[0, 6] = True                  # A -> H: now A -> B <- H is shielded
    fb = wrong(ex.check_colliders([("A", "B", "H"), ("H", "C", "D")], shielded, NAMES3), "shielded")
    wrong(ex.check_colliders(["A B"], dag3, NAMES3), "triple")


def test_marks(pag):
    ok(ex.check_mark(2, pag, "A", "B"))
    ok(ex.check_mark(Mark.CIRCLE, pag, "A", "B"))
    ok(ex.check_mark("circle", pag, 0, 1))
    ok(ex.check_mark("o", pag, "a", "b"))
    ok(ex.check_mark(Mark.ARROW, pag, "B", "A"))
    ok(ex.check_mark("arrowhead", pag, "B", "C"))
    ok(ex.check_mark(-1, pag, "B", "E"))
    ok(ex.check_mark(0, pag, "A", "C"))
    wrong(ex.check_mark(1, pag, "A", "B"), "at B's end", "mark at a's end")
    wrong(ex.check_mark(-1, pag, "A", "B"), "not a tail")
    wrong(ex.check_mark(1, pag, "A", "C"), "not adjacent")
    wrong(ex.check_mark(5, pag, "A", "B"), "not a mark")
    wrong(ex.check_mark("banana", pag, "A", "B"), "not a mark")


def test_edges(pag, cpdag):
    ok(ex.check_edge("B <-> C", pag, "B", "C"))
    ok(ex.check_edge("C <-> B", pag, "B", "C"))
    ok(ex.check_edge("B<->C", pag, "C", "B"))
    ok(ex.check_edge("A o-> B", pag, "A", "B"))
    ok(ex.check_edge("B <-o A", pag, "A", "B"))
    ok(ex.check_edge("B --> E", pag, "B", "E"))
    ok(ex.check_edge("B -> E", pag, "B", "E"))
    ok(ex.check_edge("E <-- B", pag, "B", "E"))
    ok(ex.check_edge("A o-o F", pag, "A", "F"))
    ok(ex.check_edge("F --- A", cpdag, "F", "A"))
    ok(ex.check_edge("F - A", cpdag, "A", "F"))
    ok(ex.check_edge("A -- F", cpdag, "F", "A"))
    wrong(ex.check_edge("B --> C", pag, "B", "C"), "hidden confounder")
    wrong(ex.check_edge("A <-o B", pag, "A", "B"), "swapped ends")
    wrong(ex.check_edge("B <-- A", pag, "A", "B"), "at A's end you wrote a tail")
    wrong(ex.check_edge("A --> B", pag, "A", "B"), "circle", "cannot decide")
    wrong(ex.check_edge("A --> C", pag, "A", "C"), "not adjacent")
    wrong(ex.check_edge("A --> E", pag, "B", "C"), "not about")
    wrong(ex.check_edge("A => B", pag, "A", "B"), "not an edge")
    wrong(ex.check_edge(3, pag, "A", "B"), "not a string")


def test_mark_matrix(pag):
    M = pag.to_matrix()
    ok(ex.check_mark_matrix(M, pag))
    ok(ex.check_mark_matrix(M.tolist(), pag))
    ok(ex.check_mark_matrix(M.astype(float), pag))
    wrong(ex.check_mark_matrix(M.T, pag), "wrong end", "transpose")
    bad = M.copy()
    bad[0, 1] = 1                          # A's end of A o-> B as an arrow
    fb = wrong(ex.check_mark_matrix(bad, pag), "1 entry wrong")
    assert "M[A, B] = 1" in fb.details[0] and "A o-> B" in fb.details[0]
    bad = M.copy()
    bad[0, 2] = 1                          # one end of a non-edge
    wrong(ex.check_mark_matrix(bad, pag), "both 0 or both nonzero")
    wrong(ex.check_mark_matrix(np.zeros((3, 3)), pag), "shape")


# ----------------------------------------------------------------------------- exercise 4
@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(3)
    T = rng.normal(size=(6, 2))
    A = _softmax(rng.normal(size=(6, 6)))
    P = T @ np.linalg.pinv(T.T @ T) @ T.T
    return A, T, P, rng


def test_nullity(toy):
    A, T, P, rng = toy
    ok(ex.check_nullity(4, T))
    ok(ex.check_nullity(np.int64(4), T))
    ok(ex.check_nullity(4.0, T))
    wrong(ex.check_nullity(2, T), "rank of t")
    wrong(ex.check_nullity(0, T), "some attention directions")
    wrong(ex.check_nullity(-1, T), "never negative")
    wrong(ex.check_nullity(4.5, T), "not an integer")
    low = np.column_stack([T[:, 0], T[:, 0], T[:, 1]])        # 6 x 3, rank 2
    ok(ex.check_nullity(4, low))
    wrong(ex.check_nullity(3, low), "full column rank")
    wrong(ex.check_nullity(1, low), "r^3")                    # k - rank: T's own null space
    ok(ex.check_nullity(0, rng.normal(size=(4, 8))))          # n <= rank: nothing hidden


def test_efficient_attention(toy):
    A, T, P, _ = toy
    ok(ex.check_efficient_attention(A @ P, A, T))
    U = np.linalg.svd(T, full_matrices=False)[0]
    ok(ex.check_efficient_attention(A @ U @ U.T, A, T))
    ok(ex.check_efficient_attention((A @ P).tolist(), A, T))
    wrong(ex.check_efficient_attention(P @ A, A, T), "on the left")
    wrong(ex.check_efficient_attention(A - A @ P, A, T), "null part")
    wrong(ex.check_efficient_attention(A @ T @ T.T, A, T), "not a projection")
    N = np.eye(6) - P
    wrong(ex.check_efficient_attention(A @ P + 0.3 * np.ones((6, 1)) @ np.ones((1, 6)) @ N, A, T),
          "same output", "minimum-norm")
    wrong(ex.check_efficient_attention(2 * A @ P, A, T), "differs from a p")
    wrong(ex.check_efficient_attention(A, A, T), "same output")       # A itself keeps A T


def test_moves_output(toy):
    A, T, P, rng = toy
    R = rng.normal(size=(6, 6))
    edits = [R @ (np.eye(6) - P), R @ P, np.full((6, 6), 1 / 6) - A, A @ P - A]
    truth = [False, True, True, False]
    ok(ex.check_moves_output(truth, edits, T))
    ok(ex.check_moves_output(["no", "yes", "yes", "no"], edits, T))
    ok(ex.check_moves_output({0: False, 1: True, 2: True, 3: False}, edits, T))
    fb = wrong(ex.check_moves_output([True, True, True, False], edits, T), "3 of 4")
    assert "E T = 0" in fb.details[0]
    fb = wrong(ex.check_moves_output([False, False, True, False], edits, T))
    assert "lies in col(T)" in fb.details[1]
    fb = ex.check_moves_output([False, None, None, None], edits, T)
    assert not fb.ok and fb.answered and "not answered yet" in fb.message
    wrong(ex.check_moves_output([True], edits, T), "1 answers for 4")


def test_feasible():
    tvd = np.array([0.004, 0.2, 0.01, 0.03])
    ok(ex.check_feasible([0, 2], tvd, 0.01))
    ok(ex.check_feasible({2, 0}, tvd, 0.01))
    ok(ex.check_feasible(np.array([0, 2]), tvd, 0.01))
    ok(ex.check_feasible([], np.array([0.5]), 0.01))
    fb = wrong(ex.check_feasible([0, 1, 2], tvd, 0.01), "small tvd")
    assert "adversary 1" in fb.details[0] and "changes the prediction" in fb.details[0]
    wrong(ex.check_feasible([9], tvd, 0.01), "out of range")


def test_null_fraction(toy):
    A, T, P, rng = toy
    adv = _softmax(rng.normal(size=(6, 6)) * 3)
    D = adv - A
    frac = float(np.sum((D - D @ P) ** 2) / np.sum(D ** 2))
    ok(ex.check_null_fraction(frac, adv, A, P))
    ok(ex.check_null_fraction(round(frac, 3), adv, A, P))
    wrong(ex.check_null_fraction(1 - frac, adv, A, P), "efficient (col(t)) share")
    wrong(ex.check_null_fraction(np.sqrt(frac), adv, A, P), "squared norms")
    wrong(ex.check_null_fraction(1.5, adv, A, P), "[0, 1]")


def test_output_moves():
    before = np.array([0.2, 0.8])
    ok(ex.check_output_moves(False, before, before + 1e-7, kind="efficient"))
    ok(ex.check_output_moves("no", before, before, kind="null"))
    ok(ex.check_output_moves(True, before, before[::-1], kind="efficient_shift"))
    wrong(ex.check_output_moves(True, before, before + 1e-7, kind="efficient"), "a_eff t = a t")
    wrong(ex.check_output_moves(False, before, before[::-1]), "predicted it stays")
    wrong(ex.check_output_moves(True, before, before, kind="null"), "e t = 0")
