# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 3: PC, FCI and the marks of a PAG
#
# **Learning goals.** After this exercise you can
# - run the steps of PC by hand: remove edges with separating sets (sepsets), then orient v-structures;
# - say why a hidden common cause leaves an edge between two observed nodes, and how FCI marks it (`<->`);
# - read the marks of a PAG: `-->`, `o->`, `o-o`, `<->`, and write them in the mark matrix
#   (`M[a, b]` is the mark at *a's end* of the edge a-b: 0 none, -1 tail, 1 arrowhead, 2 circle).
#
# **Time:** about 45 minutes. **Prerequisites:** exercise 2 (d-separation). **Needs:** numpy only; every
# conditional-independence test is answered exactly by a d-separation oracle, so no statistics are involved.
#
# Run the cells from the top. Fill in each `answer_...` (the placeholder is `None`) and run the cell: the `check_...` call under it tells you whether the answer is right and, if not, *what* is wrong. The checks never stop the notebook; a solutions notebook is in `solutions/`.

# %% tags=["parameters"]
# parameters (papermill: -p NAME VALUE overrides them)
from analysis.experiments import fast_mode

FAST = fast_mode()   # tiny samples: True when ATTNLAB_FAST is 1 (how CI runs the notebooks)
WORKERS = 1          # processes for dataset-scale tables (the runner); None: all cores

# %%
import numpy as np
from analysis.causal import DSeparationOracle, learn_graph, graph_from_dag, Mark
from analysis.exercises import (check_skeleton, check_sepset, check_colliders, check_edge, check_mark,
                                check_mark_matrix)

names = ['A', 'B', 'C', 'D', 'E', 'F', 'H']
ix = {v: k for k, v in enumerate(names)}
dag = np.zeros((7, 7), dtype=bool)       # dag[u, v]: u -> v
for u, v in [('F', 'A'), ('A', 'B'), ('H', 'B'), ('H', 'C'), ('D', 'C'), ('B', 'E')]:
    dag[ix[u], ix[v]] = True
oracle = DSeparationOracle(dag)          # oracle(i, j, cond).independent: exact d-separation
print(graph_from_dag(dag, names))

# %% [markdown]
# ## Part 1: PC with every node observed
#
# PC starts from the complete graph. For each adjacent pair it looks for a set of other nodes that makes
# the pair independent (first the empty set, then sets of size 1 from the current neighbours, ...); if it
# finds one, it removes the edge and records the set as the pair's **sepset**.
#
# ### Task 3.1: the skeleton
#
# Which edges survive? Answer with a list of pairs, e.g. `[('A', 'B'), 'B - C']`.

# %% tags=["solution"]
# placeholder: answer_3_1 = None   # a list of pairs
# BEGIN SOLUTION
answer_3_1 = [('F', 'A'), ('A', 'B'), ('H', 'B'), ('H', 'C'), ('D', 'C'), ('B', 'E')]
# END SOLUTION

# %% tags=["check"]
check_skeleton(answer_3_1, dag, names)

# %% [markdown]
# ### Task 3.2: sepsets
#
# Give a set that separates **B and C**: the edge B - C is removed because of it. (Try
# `oracle(ix['B'], ix['C'], [...]).independent` to test a candidate.)

# %% tags=["solution"]
# placeholder: answer_3_2 = None   # a set of node names, e.g. {'A'}; set() for the empty set
# BEGIN SOLUTION
answer_3_2 = {'H'}
assert oracle(ix['B'], ix['C'], [ix['H']]).independent
# END SOLUTION

# %% tags=["check"]
check_sepset(answer_3_2, dag, 'B', 'C', names)

# %% [markdown]
# ### Task 3.3: v-structures
#
# For every unshielded triple `a - c - b` (a, b not adjacent), PC orients `a -> c <- b` when `c` is **not**
# in `sepset(a, b)`. List all these colliders as triples `(a, c, b)` or strings `'a -> c <- b'`.

# %% tags=["solution"]
# placeholder: answer_3_3 = None   # a list of triples
# BEGIN SOLUTION
answer_3_3 = ['A -> B <- H', ('H', 'C', 'D')]
# END SOLUTION

# %% tags=["check"]
check_colliders(answer_3_3, dag, names)

# %% [markdown]
# Now run PC with the oracle and compare with your answers. After the v-structures, Meek's rules
# orient more edges (`B -> E`: otherwise `A -> B - E` would make a new v-structure); one edge stays undirected.

# %%
cpdag = learn_graph(None, ci_test=DSeparationOracle(dag), algorithm='pc', labels=names)
print(cpdag)
print({tuple(names[k] for k in pair): [names[k] for k in s] for pair, s in cpdag.sepsets.items()})

# %% [markdown]
# ### Task 3.4: an edge PC cannot orient
#
# Write the CPDAG's edge between F and A as a string such as `'F --> A'`, `'F <-- A'` or `'F --- A'`.

# %% tags=["solution"]
# placeholder: answer_3_4 = None   # a string
# BEGIN SOLUTION
answer_3_4 = 'F --- A'
# END SOLUTION

# %% tags=["check"]
check_edge(answer_3_4, cpdag, 'F', 'A')

# %% [markdown]
# ## Part 2: FCI with H hidden
#
# Now **H is not observed** (it is a latent confounder of B and C). The learner sees only A-F; the oracle
# answers d-separation in the full DAG for the observed nodes.
#
# ### Task 3.5: the skeleton over A-F
#
# Which pairs of observed nodes can no set of *observed* nodes separate?

# %% tags=["solution"]
observed = [ix[v] for v in 'ABCDEF']
# placeholder: answer_3_5 = None   # a list of pairs
# BEGIN SOLUTION
answer_3_5 = ['F - A', 'A - B', 'B - C', 'D - C', 'B - E']   # B - C stays: only H separates them
# END SOLUTION

# %% tags=["check"]
check_skeleton(answer_3_5, dag, names, observed=observed)

# %%
pag = learn_graph(None, ci_test=DSeparationOracle(dag, observed=observed), algorithm='fci',
                 labels=[names[k] for k in observed])
print(pag)
M = pag.to_matrix()      # M[a, b]: mark at a's end; rows/columns in the order A, B, C, D, E, F
print(M)

# %% [markdown]
# ### Task 3.6: reading the PAG
#
# (a) Write the edge between B and C as drawn in the PAG. (b) What is `M[A, B]` (the mark at A's end of
# the edge A-B)? (c) Write the edge between B and E.

# %% tags=["solution"]
# placeholder: answer_3_6a = None   # a string such as 'B o-> C'
# BEGIN SOLUTION
answer_3_6a = 'B <-> C'
# END SOLUTION

# %% tags=["check"]
check_edge(answer_3_6a, pag, 'B', 'C')

# %% tags=["solution"]
# placeholder: answer_3_6b = None   # a mark: 0, -1, 1, 2 or Mark.TAIL, Mark.ARROW, Mark.CIRCLE
# BEGIN SOLUTION
answer_3_6b = Mark.CIRCLE
# END SOLUTION

# %% tags=["check"]
check_mark(answer_3_6b, pag, 'A', 'B')

# %% tags=["solution"]
# placeholder: answer_3_6c = None   # a string
# BEGIN SOLUTION
answer_3_6c = 'B --> E'
# END SOLUTION

# %% tags=["check"]
check_edge(answer_3_6c, pag, 'B', 'E')

# %% [markdown]
# ### Task 3.7: the whole mark matrix
#
# Write the 6 x 6 mark matrix of the PAG yourself (rows and columns in the order A, B, C, D, E, F) from
# the printed edges, without copying `M`.

# %% tags=["solution"]
# placeholder: answer_3_7 = None   # a 6 x 6 integer array
# BEGIN SOLUTION
obs_names = [names[k] for k in observed]
p = {v: k for k, v in enumerate(obs_names)}
answer_3_7 = np.zeros((6, 6), dtype=int)
marks = {'-': -1, '<': 1, '>': 1, 'o': 2}
for edge in pag.edge_strings():                  # e.g. 'A o-> B'
    a, sym, b = edge.split()
    answer_3_7[p[a], p[b]] = marks[sym[0]]        # the mark at a's end is the left character
    answer_3_7[p[b], p[a]] = marks[sym[-1]]
# END SOLUTION

# %% tags=["check"]
check_mark_matrix(answer_3_7, pag)

# %% [markdown]
# ## To discuss
#
# - Why does FCI leave circles at A (in `A o-> B`) and at D? Which DAGs over A-F plus hidden nodes are
#   consistent with the PAG?
# - `B --> E` has a tail at B: B is an ancestor of E in *every* consistent DAG. Which rule gave it?
# - In ABCD, tokens left out of the node set act like H here. What does a `<->` between two tokens say?
