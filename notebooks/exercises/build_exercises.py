"""Write the classroom exercise notebooks and their solutions (no outputs) with nbformat.

    python notebooks/exercises/build_exercises.py

Each exercise is a list of cells: ("md", text), ("code", source) or ("task", exercise_source,
solution_source, check_expression). A task cell becomes, in the exercise notebook,
``exercise_source`` followed by the check (which shows feedback and never raises); in the
solution notebook ``solution_source``, then ``fb = <check>``, ``assert fb.ok, fb`` and ``fb``,
so CI fails when a solution stops passing its own check.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

SETUP_NOTE = ("Run the cells from the top. Fill in each `answer_...` (the placeholder is `None`) and run the "
              "cell: the `check_...` call under it tells you whether the answer is right and, if not, *what* "
              "is wrong. The checks never stop the notebook; a solutions notebook is in `solutions/`.")

# ----------------------------------------------------------------------------------------------
EX1 = [
    ("md", """# Exercise 1: attention heads and what they attend to

**Learning goals.** After this exercise you can
- read an attention matrix: rows are *queries*, columns are *keys*, `attentions[layer, head, query, key]`;
- find what a token attends to in one head, and find heads with a recognisable job (previous-token heads);
- tell row sums (always 1) from column sums (the attention a token *receives*);
- say what the mean over heads hides.

**Time:** about 30 minutes. **Prerequisites:** Python and numpy indexing; what softmax does. No causal
inference needed. **Needs:** the embedded default model (MiniLM fine-tuned for sentiment, 6 layers x 12
heads; built offline on first use, about 4 minutes on 2 cores, then cached).

""" + SETUP_NOTE),
    ("code", """import os
import numpy as np
from analysis import load_model
from analysis.exercises import (check_top_key, check_previous_token_head, check_attention_sum,
                                check_mean_attention, check_sharper)
from widgets import AttentionExplorer

FAST = os.environ.get('ATTNLAB_FAST') == '1'   # nothing here is slow; kept for uniformity
model = load_model()
TEXT = 'a gorgeous, witty, seductive movie that never loses its nerve.'
trace = model.trace(TEXT)             # one forward pass; trace.attentions has shape (layers, heads, n, n)
print(trace.attentions.shape)
list(enumerate(trace.tokens))"""),
    ("md", """## The explorer

Move the *layer* and *head* sliders (or the step buttons) and pick a *query* token: the highlighted
text under the heatmap is that query's row. You can also drive it from code:
`explorer.set_view(layer=5, head=0, query=0)` and read what it shows with
`explorer.current_view().matrices[0]` (an `n x n` array)."""),
    ("code", """explorer = AttentionExplorer(model, TEXT, layer=5, head=0)
explorer"""),
    ("md", """## Task 1.1: what does [CLS] attend to?

In **layer 5, head 0**, which token does the query `[CLS]` (position 0) give the most attention to?
Answer with a position (an int) or the token string."""),
    ("task",
     """answer_1_1 = None   # e.g. 3 or 'gorgeous'
""",
     """explorer.set_view(layer=5, head=0, query=0)
row = explorer.current_view().matrices[0][0]       # the row of query 0 = trace.attentions[5, 0, 0]
answer_1_1 = trace.tokens[int(np.argmax(row))]
print(answer_1_1, row.max().round(3))
""",
     "check_top_key(answer_1_1, trace.attentions, trace.tokens, layer=5, head=0, query=0)"),
    ("md", """## Task 1.2: a previous-token head

Some heads have a simple job: each token attends to the token just before it (a stripe just below the
diagonal). Find one: give `(layer, head)` of a head whose mean weight on the previous token is at least 0.5.
Step through the heads in the explorer, or compute `trace.attentions[l, h, q, q - 1]` for all heads."""),
    ("task",
     """answer_1_2 = None   # (layer, head)
""",
     """A = trace.attentions
n = trace.n_tokens
prev = np.array([[np.mean([A[l, h, q, q - 1] for q in range(1, n)]) for h in range(A.shape[1])]
                 for l in range(A.shape[0])])          # [layers, heads]
answer_1_2 = tuple(int(i) for i in np.unravel_index(np.argmax(prev), prev.shape))
print(answer_1_2, prev.max().round(3))
""",
     "check_previous_token_head(answer_1_2, trace.attentions, threshold=0.5)"),
    ("md", """## Task 1.3: row sums and column sums

In **layer 2, head 5**: (a) what is the sum of the row of the query `gorgeous` (position 2)?
(b) what is the sum of the *column* of `[CLS]` (position 0): how much attention does `[CLS]` receive
in total? (Many heads park attention on a special token when they have nothing better to do.)"""),
    ("task",
     """answer_1_3a = None   # a number
""",
     """answer_1_3a = float(trace.attentions[2, 5, 2, :].sum())
""",
     "check_attention_sum(answer_1_3a, trace.attentions, layer=2, head=5, index=2, axis='row')"),
    ("task",
     """answer_1_3b = None   # a number
""",
     """answer_1_3b = float(trace.attentions[2, 5, :, 0].sum())
print(f'[CLS] receives {answer_1_3b:.2f} of the {trace.n_tokens} units of attention handed out')
""",
     "check_attention_sum(answer_1_3b, trace.attentions, layer=2, head=5, index=0, axis='column')"),
    ("md", """## Task 1.4: the mean over heads

Compute the mean over heads of **layer 5** as an `n x n` array (the explorer's *mean over heads* mode
shows it)."""),
    ("task",
     """answer_1_4 = None   # an n x n array
""",
     """explorer.mode.value = 'mean'
explorer.set_view(layer=5)
answer_1_4 = explorer.current_view().matrices[0]    # = trace.attentions[5].mean(0)
explorer.mode.value = 'head'
""",
     "check_mean_attention(answer_1_4, trace.attentions, layer=5)"),
    ("md", """## Task 1.5: one head or the mean, which is sharper?

For the query `[CLS]` in layer 3: is the row of **head 11** or the row of the **mean over heads** sharper
(lower entropy `-sum p log2 p`)? Answer `'head'` or `'mean'`."""),
    ("task",
     """answer_1_5 = None   # 'head' or 'mean'
""",
     """def entropy(p):
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())

h = entropy(trace.attentions[3, 11, 0])
m = entropy(trace.attentions[3].mean(0)[0])
answer_1_5 = 'head' if h < m else 'mean'
print(f'head 11: {h:.2f} bits, mean: {m:.2f} bits')
""",
     "check_sharper(answer_1_5, trace.attentions, layer=3, head=11, query=0)"),
    ("md", """## To discuss

- Papers often show the mean over heads or over layers. What can a mean show that no single head does,
  and what does it hide?
- Does a large weight from `[CLS]` to a word mean that the word *causes* the prediction? (Exercise 4
  shows part of an attention matrix that cannot reach the output at all.)"""),
]

# ----------------------------------------------------------------------------------------------
EX2 = [
    ("md", """# Exercise 2: partial correlation and d-separation on a planted SEM

**Learning goals.** After this exercise you can
- build a linear structural equation model (SEM) from a weighted DAG and write its "attention" matrix
  `A = (I - B^T)^-1 D^1/2`, whose `A A^T` is the covariance (this is how ABCD reads an attention head);
- compute a partial correlation by hand from a precision matrix;
- decide d-separation statements (chains, forks, colliders, descendants of colliders);
- see that, for this SEM, a partial correlation is zero exactly when the statement is a d-separation.

**Time:** about 40 minutes. **Prerequisites:** matrix inverse, covariance and correlation; the idea of a
DAG. **Needs:** numpy only (no model; runs in seconds).

""" + SETUP_NOTE),
    ("code", """import numpy as np
from analysis.causal import partial_correlation, sem_mixing_matrix, graph_from_dag
from analysis.exercises import (check_mixing_matrix, check_covariance, check_partial_correlation,
                                check_d_separation, check_zero_partial_correlations)

names = ['A', 'B', 'C', 'D', 'E']
ix = {v: k for k, v in enumerate(names)}
W = np.zeros((5, 5))                     # W[u, v] = weight of the edge u -> v
for u, v, w in [('E', 'A', 0.8), ('E', 'B', -0.6), ('A', 'C', 1.0), ('B', 'C', 0.7), ('C', 'D', -1.2)]:
    W[ix[u], ix[v]] = w
dag = W != 0
noise_var = np.array([1.0, 0.5, 1.0, 2.0, 1.0])   # variance of each node's own noise e_v
print(graph_from_dag(dag, names))"""),
    ("md", """The SEM: every node is a weighted sum of its parents plus its own noise,
`x_v = sum_u W[u, v] x_u + e_v`, that is `x = W^T x + e` with `Cov(e) = D = diag(noise_var)`.

## Task 2.1: the mixing ("attention") matrix

Write `x = A z` with `z` standard normal noise: compute `A = (I - W^T)^-1 D^1/2` (5 x 5)."""),
    ("task",
     """answer_2_1 = None   # a 5 x 5 array
""",
     """answer_2_1 = np.linalg.solve(np.eye(5) - W.T, np.diag(np.sqrt(noise_var)))
assert np.allclose(answer_2_1, sem_mixing_matrix(W, noise_var))   # the library agrees
""",
     "check_mixing_matrix(answer_2_1, W, noise_var)"),
    ("md", """## Task 2.2: the covariance

Compute the covariance of `x = A z`. (ABCD reads one head the same way: `C = A A^T`.)"""),
    ("task",
     """A = sem_mixing_matrix(W, noise_var)
answer_2_2 = None   # a 5 x 5 array
""",
     """A = sem_mixing_matrix(W, noise_var)
answer_2_2 = A @ A.T
""",
     "check_covariance(answer_2_2, A)"),
    ("md", """## Task 2.3: a partial correlation by hand

The partial correlation of `i` and `j` given a set `S` is `rho = -P_ij / sqrt(P_ii P_jj)`, where `P` is the
inverse of the covariance (or correlation) block over `[i, j] + S`. Compute
(a) `rho(A, B | E)` and (b) `rho(A, B | E, C)` by hand (no library call)."""),
    ("task",
     """C = A @ A.T
answer_2_3a = None   # a number
""",
     """C = A @ A.T
idx = [ix['A'], ix['B'], ix['E']]
P = np.linalg.inv(C[np.ix_(idx, idx)])
answer_2_3a = -P[0, 1] / np.sqrt(P[0, 0] * P[1, 1])
print(round(answer_2_3a, 6))
""",
     "check_partial_correlation(answer_2_3a, C, ix['A'], ix['B'], [ix['E']], names=names)"),
    ("task",
     """answer_2_3b = None   # a number
""",
     """idx = [ix['A'], ix['B'], ix['E'], ix['C']]
P = np.linalg.inv(C[np.ix_(idx, idx)])
answer_2_3b = -P[0, 1] / np.sqrt(P[0, 0] * P[1, 1])
assert np.isclose(answer_2_3b, partial_correlation(C, ix['A'], ix['B'], [ix['E'], ix['C']]))
print(round(answer_2_3b, 4))
""",
     "check_partial_correlation(answer_2_3b, C, ix['A'], ix['B'], [ix['E'], ix['C']], names=names)"),
    ("md", """## Task 2.4: d-separation

For each statement `x _||_ y | S` below, decide whether `S` d-separates `x` and `y` in the DAG
(`True`) or not (`False`). A path is blocked by a non-collider in `S`, or by a collider such that neither
it nor any of its descendants is in `S`."""),
    ("code", """statements = [('A', 'B', []), ('A', 'B', ['E']), ('A', 'B', ['E', 'C']), ('A', 'B', ['E', 'D']),
              ('E', 'D', ['C']), ('A', 'D', ['C']), ('E', 'C', ['A', 'B']), ('D', 'E', ['A'])]
for k, (x, y, s) in enumerate(statements):
    print(k, f'{x} _||_ {y} | {{{", ".join(s)}}}')"""),
    ("task",
     """answer_2_4 = [None] * len(statements)   # True (d-separated) or False, one per statement
""",
     """answer_2_4 = [False, True, False, False, True, True, True, False]
""",
     "check_d_separation(answer_2_4, dag, statements, names)"),
    ("md", """## Task 2.5: which partial correlations vanish?

Compute the partial correlation of every statement (now you may use
`analysis.causal.partial_correlation(C, i, j, cond)`) and give the set of statement indices whose
|rho| < 1e-8. Compare it with your answers to 2.4."""),
    ("task",
     """answer_2_5 = None   # a set of statement indices, e.g. {0, 3}
""",
     """rhos = [partial_correlation(C, ix[x], ix[y], [ix[s] for s in S]) for x, y, S in statements]
answer_2_5 = {k for k, r in enumerate(rhos) if abs(r) < 1e-8}
assert answer_2_5 == {k for k, sep in enumerate(answer_2_4) if sep}   # zero iff d-separated
print(np.round(rhos, 4))
""",
     "check_zero_partial_correlations(answer_2_5, C, statements, names)"),
    ("md", """## To discuss

- *Zero iff d-separated* needs **faithfulness**: no two paths cancel. Can you pick a weight for `E -> B`
  that makes `rho(A, D)` vanish although `A` and `D` are d-connected? (Hint: the covariance of A and D
  is a sum over the open paths between them, each the product of its edge weights.) How likely is that for random weights?
- With data, `rho` is never exactly 0: a Fisher z test with a sample size decides. In ABCD the "sample
  size" is an explicit parameter (`n_samples`): how would a larger value change the learned graph?"""),
]

# ----------------------------------------------------------------------------------------------
EX3 = [
    ("md", """# Exercise 3: PC, FCI and the marks of a PAG

**Learning goals.** After this exercise you can
- run the steps of PC by hand: remove edges with separating sets (sepsets), then orient v-structures;
- say why a hidden common cause leaves an edge between two observed nodes, and how FCI marks it (`<->`);
- read the marks of a PAG: `-->`, `o->`, `o-o`, `<->`, and write them in the mark matrix
  (`M[a, b]` is the mark at *a's end* of the edge a-b: 0 none, -1 tail, 1 arrowhead, 2 circle).

**Time:** about 45 minutes. **Prerequisites:** exercise 2 (d-separation). **Needs:** numpy only; every
conditional-independence test is answered exactly by a d-separation oracle, so no statistics are involved.

""" + SETUP_NOTE),
    ("code", """import numpy as np
from analysis.causal import DSeparationOracle, learn_graph, graph_from_dag, Mark
from analysis.exercises import (check_skeleton, check_sepset, check_colliders, check_edge, check_mark,
                                check_mark_matrix)

names = ['A', 'B', 'C', 'D', 'E', 'F', 'H']
ix = {v: k for k, v in enumerate(names)}
dag = np.zeros((7, 7), dtype=bool)       # dag[u, v]: u -> v
for u, v in [('F', 'A'), ('A', 'B'), ('H', 'B'), ('H', 'C'), ('D', 'C'), ('B', 'E')]:
    dag[ix[u], ix[v]] = True
oracle = DSeparationOracle(dag)          # oracle(i, j, cond).independent: exact d-separation
print(graph_from_dag(dag, names))"""),
    ("md", """## Part 1: PC with every node observed

PC starts from the complete graph. For each adjacent pair it looks for a set of other nodes that makes
the pair independent (first the empty set, then sets of size 1 from the current neighbours, ...); if it
finds one, it removes the edge and records the set as the pair's **sepset**.

### Task 3.1: the skeleton

Which edges survive? Answer with a list of pairs, e.g. `[('A', 'B'), 'B - C']`."""),
    ("task",
     """answer_3_1 = None   # a list of pairs
""",
     """answer_3_1 = [('F', 'A'), ('A', 'B'), ('H', 'B'), ('H', 'C'), ('D', 'C'), ('B', 'E')]
""",
     "check_skeleton(answer_3_1, dag, names)"),
    ("md", """### Task 3.2: sepsets

Give a set that separates **B and C**: the edge B - C is removed because of it. (Try
`oracle(ix['B'], ix['C'], [...]).independent` to test a candidate.)"""),
    ("task",
     """answer_3_2 = None   # a set of node names, e.g. {'A'}; set() for the empty set
""",
     """answer_3_2 = {'H'}
assert oracle(ix['B'], ix['C'], [ix['H']]).independent
""",
     "check_sepset(answer_3_2, dag, 'B', 'C', names)"),
    ("md", """### Task 3.3: v-structures

For every unshielded triple `a - c - b` (a, b not adjacent), PC orients `a -> c <- b` when `c` is **not**
in `sepset(a, b)`. List all these colliders as triples `(a, c, b)` or strings `'a -> c <- b'`."""),
    ("task",
     """answer_3_3 = None   # a list of triples
""",
     """answer_3_3 = ['A -> B <- H', ('H', 'C', 'D')]
""",
     "check_colliders(answer_3_3, dag, names)"),
    ("md", """Now run PC with the oracle and compare with your answers. After the v-structures, Meek's rules
orient more edges (`B -> E`: otherwise `A -> B - E` would make a new v-structure); one edge stays undirected."""),
    ("code", """cpdag = learn_graph(None, ci_test=DSeparationOracle(dag), algorithm='pc', labels=names)
print(cpdag)
print({tuple(names[k] for k in pair): [names[k] for k in s] for pair, s in cpdag.sepsets.items()})"""),
    ("md", """### Task 3.4: an edge PC cannot orient

Write the CPDAG's edge between F and A as a string such as `'F --> A'`, `'F <-- A'` or `'F --- A'`."""),
    ("task",
     """answer_3_4 = None   # a string
""",
     """answer_3_4 = 'F --- A'
""",
     "check_edge(answer_3_4, cpdag, 'F', 'A')"),
    ("md", """## Part 2: FCI with H hidden

Now **H is not observed** (it is a latent confounder of B and C). The learner sees only A-F; the oracle
answers d-separation in the full DAG for the observed nodes.

### Task 3.5: the skeleton over A-F

Which pairs of observed nodes can no set of *observed* nodes separate?"""),
    ("task",
     """observed = [ix[v] for v in 'ABCDEF']
answer_3_5 = None   # a list of pairs
""",
     """observed = [ix[v] for v in 'ABCDEF']
answer_3_5 = ['F - A', 'A - B', 'B - C', 'D - C', 'B - E']   # B - C stays: only H separates them
""",
     "check_skeleton(answer_3_5, dag, names, observed=observed)"),
    ("code", """pag = learn_graph(None, ci_test=DSeparationOracle(dag, observed=observed), algorithm='fci',
                 labels=[names[k] for k in observed])
print(pag)
M = pag.to_matrix()      # M[a, b]: mark at a's end; rows/columns in the order A, B, C, D, E, F
print(M)"""),
    ("md", """### Task 3.6: reading the PAG

(a) Write the edge between B and C as drawn in the PAG. (b) What is `M[A, B]` (the mark at A's end of
the edge A-B)? (c) Write the edge between B and E."""),
    ("task",
     """answer_3_6a = None   # a string such as 'B o-> C'
""",
     """answer_3_6a = 'B <-> C'
""",
     "check_edge(answer_3_6a, pag, 'B', 'C')"),
    ("task",
     """answer_3_6b = None   # a mark: 0, -1, 1, 2 or Mark.TAIL, Mark.ARROW, Mark.CIRCLE
""",
     """answer_3_6b = Mark.CIRCLE
""",
     "check_mark(answer_3_6b, pag, 'A', 'B')"),
    ("task",
     """answer_3_6c = None   # a string
""",
     """answer_3_6c = 'B --> E'
""",
     "check_edge(answer_3_6c, pag, 'B', 'E')"),
    ("md", """### Task 3.7: the whole mark matrix

Write the 6 x 6 mark matrix of the PAG yourself (rows and columns in the order A, B, C, D, E, F) from
the printed edges, without copying `M`."""),
    ("task",
     """answer_3_7 = None   # a 6 x 6 integer array
""",
     """obs_names = [names[k] for k in observed]
p = {v: k for k, v in enumerate(obs_names)}
answer_3_7 = np.zeros((6, 6), dtype=int)
marks = {'-': -1, '<': 1, '>': 1, 'o': 2}
for edge in pag.edge_strings():                  # e.g. 'A o-> B'
    a, sym, b = edge.split()
    answer_3_7[p[a], p[b]] = marks[sym[0]]        # the mark at a's end is the left character
    answer_3_7[p[b], p[a]] = marks[sym[-1]]
""",
     "check_mark_matrix(answer_3_7, pag)"),
    ("md", """## To discuss

- Why does FCI leave circles at A (in `A o-> B`) and at D? Which DAGs over A-F plus hidden nodes are
  consistent with the PAG?
- `B --> E` has a tail at B: B is an ancestor of E in *every* consistent DAG. Which rule gave it?
- In ABCD, tokens left out of the node set act like H here. What does a `<->` between two tokens say?"""),
]

# ----------------------------------------------------------------------------------------------
EX4 = [
    ("md", """# Exercise 4: adversarial attention and the null space

**Learning goals.** After this exercise you can
- compute the nullity `n - rank(T)` of an attention head, where `T` is the matrix the attention
  multiplies (for a transformer head, its values `V`, `n x d_head`);
- split an attention matrix into its efficient part `A_eff = A P` (P the projection on col(T)) and its
  null part, and explain why swapping `A_eff` in keeps the output;
- predict whether an edit of the attention moves the output;
- measure how much of an adversarial attention (Jain & Wallace) differs from the original only in the
  null space (Naim & Asher's observation).

**Time:** about 45 minutes (the adversarial search takes about 5 s in fast mode, `ATTNLAB_FAST=1`, and about
15 s in full mode on one CPU core). **Prerequisites:** rank, column space and orthogonal projection; exercise 1. **Needs:** the
embedded default model and the embedded single-attention classifier `attention-classifier-rt` (both built
offline on first use, then cached).

""" + SETUP_NOTE),
    ("code", """import os
import numpy as np
from analysis import load_model
from analysis.efficient import decompose
from analysis.adversarial import search
from analysis.exercises import (check_nullity, check_efficient_attention, check_moves_output,
                                check_output_moves, check_feasible, check_null_fraction)

FAST = os.environ.get('ATTNLAB_FAST') == '1'
rng = np.random.default_rng(0)"""),
    ("md", """## Part 1: a toy head

Six tokens, values of dimension 2: `T` is 6 x 2, and the head's output is `A T`."""),
    ("code", """n = 6
T = rng.normal(size=(n, 2))
logits = rng.normal(size=(n, n))
A_toy = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)   # rows are distributions
print(np.round(A_toy, 2))"""),
    ("md", """### Task 4.1: the nullity

How many independent directions does an attention row have that the output `A T` cannot see?"""),
    ("task",
     """answer_4_1 = None   # an integer
""",
     """answer_4_1 = n - np.linalg.matrix_rank(T)
""",
     "check_nullity(answer_4_1, T)"),
    ("md", """### Task 4.2: the efficient attention

Compute `P = T (T^T T)^+ T^T` (the orthogonal projection on col(T)) and `A_eff = A P`. Check that
`A_eff @ T` equals `A_toy @ T`. Is `A_eff` still a probability distribution per row?"""),
    ("task",
     """answer_4_2 = None   # a 6 x 6 array
""",
     """P = T @ np.linalg.pinv(T.T @ T) @ T.T
answer_4_2 = A_toy @ P
assert np.allclose(answer_4_2 @ T, A_toy @ T)
print('row sums', answer_4_2.sum(1).round(3), 'min entry', answer_4_2.min().round(3))
""",
     "check_efficient_attention(answer_4_2, A_toy, T)"),
    ("md", """### Task 4.3: which edits move the output?

Each edit `E` changes the attention to `A + E`. For each, predict whether the head output `(A + E) T`
differs from `A T` (`True`: it moves)."""),
    ("code", """P = T @ np.linalg.pinv(T.T @ T) @ T.T
R = rng.normal(size=(n, n))
edits = [
    R @ (np.eye(n) - P),            # 0: R with its col(T) part removed
    R @ P,                          # 1: R's col(T) part only
    np.full((n, n), 1 / n) - A_toy, # 2: make the attention uniform
    A_toy @ P - A_toy,              # 3: replace A by A_eff
]"""),
    ("task",
     """answer_4_3 = [None] * len(edits)   # True (moves) or False, one per edit
""",
     """answer_4_3 = [bool(np.linalg.norm(E @ T) > 1e-9) for E in edits]
print(answer_4_3)
""",
     "check_moves_output(answer_4_3, edits, T)"),
    ("md", """## Part 2: a real transformer head

In MiniLM each head has `d_head = 32`, so `T = V` (n x 32) has rank at most 32: a sentence of more than
32 tokens leaves a null space in every head."""),
    ("code", """model = load_model()
TEXT = ('the acting is superb and the story moves along briskly, but the ending feels rushed and a little '
        'too neat for such a thoughtful, patient film about grief, memory and the families we choose.')
trace = model.trace(TEXT)
LAYER, HEAD = 4, 3
V = trace.values[LAYER, HEAD]     # [n, d_head]: what this head's attention multiplies
print(trace.n_tokens, 'tokens; V has shape', V.shape)"""),
    ("md", """### Task 4.4: the nullity of a real head"""),
    ("task",
     """answer_4_4 = None   # an integer
""",
     """answer_4_4 = decompose(trace, LAYER, HEAD).nullity
print(answer_4_4, '=', trace.n_tokens, '-', np.linalg.matrix_rank(V))
""",
     "check_nullity(answer_4_4, V)"),
    ("md", """### Task 4.5: swap in the efficient attention

*Before running anything*, predict: if the model runs with this head's attention replaced by `A_eff`,
do its logits move (by more than 1e-4)? Then run the cell and read the check."""),
    ("task",
     """answer_4_5 = None   # True (the logits move) or False
part = decompose(trace, LAYER, HEAD)
swapped = model.trace(TEXT, attention_override={(LAYER, HEAD): part.effective})
""",
     """answer_4_5 = False
part = decompose(trace, LAYER, HEAD)
swapped = model.trace(TEXT, attention_override={(LAYER, HEAD): part.effective})
print(np.abs(swapped.logits - trace.logits).max())
""",
     "check_output_moves(answer_4_5, trace.logits, swapped.logits, kind='efficient')"),
    ("md", """### Task 4.6: a large null-space edit

Add a null-space matrix five times as large as the attention itself (the new "attention" has negative
entries and rows that do not sum to 1!). Predict: do the logits move?"""),
    ("task",
     """answer_4_6 = None   # True or False
E = rng.normal(size=part.null.shape) @ (np.eye(trace.n_tokens) - part.projection)
E *= 5 * np.linalg.norm(part.attention) / np.linalg.norm(E)
edited = model.trace(TEXT, attention_override={(LAYER, HEAD): part.attention + E})
""",
     """answer_4_6 = False
E = rng.normal(size=part.null.shape) @ (np.eye(trace.n_tokens) - part.projection)
E *= 5 * np.linalg.norm(part.attention) / np.linalg.norm(E)
edited = model.trace(TEXT, attention_override={(LAYER, HEAD): part.attention + E})
print(np.abs(edited.logits - trace.logits).max())
""",
     "check_output_moves(answer_4_6, trace.logits, edited.logits, kind='null')"),
    ("md", """## Part 3: adversarial attention

Jain & Wallace search attention distributions far from the original (large JSD) that keep the prediction
(TVD <= eps). We search on the single-attention classifier (embeddings -> BiLSTM -> one additive attention
-> linear decoder). Its output is `decoder(a H)`: with the decoder inside `T = H U^T` (n x 2), the null
space has dimension n - 2. (The `efficient/raw distance` that `search` prints uses the value basis `H`,
n x 256, which has full rank for a short sentence, so there it is 1: nothing is hidden from `a H` itself,
only from the decoder's two outputs.)"""),
    ("code", """clf = load_model('attention-classifier-rt')
TEXT2 = 'the acting is superb and the story moves along briskly, but the ending feels rushed.'
res = search(clf, TEXT2, layer=0, head=0, k=3, steps=100 if FAST else 500, seed=0, progress=False)
print(res)
part2 = decompose(clf.trace(TEXT2), 0, 0, basis='value_output', model=clf)
print(part2)"""),
    ("md", """### Task 4.7: which adversaries keep the prediction?

List the indices of the adversaries that are *feasible* (`res.tvd`, `res.eps`)."""),
    ("task",
     """answer_4_7 = None   # a list of indices
""",
     """answer_4_7 = [k for k in range(res.k) if res.tvd[k] <= res.eps]
""",
     "check_feasible(answer_4_7, res.tvd, res.eps)"),
    ("md", """### Task 4.8: where does adversary 0 differ?

With `D = res.attentions[0] - res.original_attention`, what fraction of `||D||_F^2` lies in the null
space, `||D (I - P)||_F^2 / ||D||_F^2` (with `P = part2.projection`)?"""),
    ("task",
     """answer_4_8 = None   # a number in [0, 1]
""",
     """D = res.attentions[0] - res.original_attention
Pc = part2.projection
answer_4_8 = float(np.sum((D - D @ Pc) ** 2) / np.sum(D ** 2))
print(round(answer_4_8, 4))
""",
     "check_null_fraction(answer_4_8, res.attentions[0], res.original_attention, part2.projection)"),
    ("md", """### Task 4.9: keep only the null part of the adversary

Run the classifier with `A + D (I - P)`: the original attention plus only the null-space part of
adversary 0's change. Predict: does the prediction move (by more than 1e-4)?"""),
    ("task",
     """answer_4_9 = None   # True or False
D = res.attentions[0] - res.original_attention
null_only = res.original_attention + D @ (np.eye(D.shape[0]) - part2.projection)
p_null = clf.predict(TEXT2, attention_override={(0, 0): null_only})[0]
""",
     """answer_4_9 = False
D = res.attentions[0] - res.original_attention
null_only = res.original_attention + D @ (np.eye(D.shape[0]) - part2.projection)
p_null = clf.predict(TEXT2, attention_override={(0, 0): null_only})[0]
print(np.abs(p_null - res.original).max())
""",
     "check_output_moves(answer_4_9, res.original, p_null, kind='null')"),
    ("md", """## To discuss

- Jain & Wallace conclude that "attention is not explanation" because very different attention keeps the
  prediction. How much of that difference, by task 4.8, is in a part of the attention the output cannot see?
- Would you explain a prediction with `A` or with `A_eff`? What is lost when `A_eff` is not a
  distribution (negative entries, rows not summing to 1)?
- For a transformer head the null space exists only for sentences longer than `d_head`. What about the
  other heads of the layer, and the layers after it?"""),
]

EXERCISES = {
    "01_attention_heads": EX1,
    "02_partial_correlation_dseparation": EX2,
    "03_pc_fci_pag_marks": EX3,
    "04_adversarial_null_space": EX4,
}


def _cells(spec: list[tuple], solution: bool) -> list:
    cells = []
    for item in spec:
        kind = item[0]
        if kind == "md":
            text = item[1]
            if solution and text.startswith("# Exercise"):
                title, _, rest = text.partition("\n")
                text = f"{title} (solutions)\n\n*Solutions: every check below is asserted to pass.*\n{rest}"
            cells.append(new_markdown_cell(text))
        elif kind == "code":
            cells.append(new_code_cell(item[1]))
        else:
            _, exercise, answer, check = item
            if solution:
                cells.append(new_code_cell(f"{answer.rstrip()}\nfb = {check}\nassert fb.ok, fb\nfb"))
            else:
                cells.append(new_code_cell(f"{exercise.rstrip()}\n{check}"))
    return cells


def _write(path: Path, cells: list) -> None:
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.validate(nb)
    nbformat.write(nb, path)


def main() -> None:
    """Write every exercise notebook and its solutions notebook (no outputs)."""
    for name, spec in EXERCISES.items():
        _write(HERE / f"{name}.ipynb", _cells(spec, solution=False))
        _write(HERE / "solutions" / f"{name}_solutions.ipynb", _cells(spec, solution=True))


if __name__ == "__main__":
    main()
