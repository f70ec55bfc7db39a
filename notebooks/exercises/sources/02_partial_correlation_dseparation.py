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
# # Exercise 2: partial correlation and d-separation on a planted SEM
#
# **Learning goals.** After this exercise you can
# - build a linear structural equation model (SEM) from a weighted DAG and write its "attention" matrix
#   `A = (I - B^T)^-1 D^1/2`, whose `A A^T` is the covariance (this is how ABCD reads an attention head);
# - compute a partial correlation by hand from a precision matrix;
# - decide d-separation statements (chains, forks, colliders, descendants of colliders);
# - see that, for this SEM, a partial correlation is zero exactly when the statement is a d-separation.
#
# **Time:** about 40 minutes. **Prerequisites:** matrix inverse, covariance and correlation; the idea of a
# DAG. **Needs:** numpy only (no model; runs in seconds).
#
# Run the cells from the top. Fill in each `answer_...` (the placeholder is `None`) and run the cell: the `check_...` call under it tells you whether the answer is right and, if not, *what* is wrong. The checks never stop the notebook; a solutions notebook is in `solutions/`.

# %% tags=["parameters"]
# parameters (papermill: -p NAME VALUE overrides them)
from analysis.experiments import fast_mode

FAST = fast_mode()   # tiny samples: True when ATTNLAB_FAST is 1 (how CI runs the notebooks)
WORKERS = 1          # processes for dataset-scale tables (the runner); None: all cores

# %%
import numpy as np
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
print(graph_from_dag(dag, names))

# %% [markdown]
# The SEM: every node is a weighted sum of its parents plus its own noise,
# `x_v = sum_u W[u, v] x_u + e_v`, that is `x = W^T x + e` with `Cov(e) = D = diag(noise_var)`.
#
# ## Task 2.1: the mixing ("attention") matrix
#
# Write `x = A z` with `z` standard normal noise: compute `A = (I - W^T)^-1 D^1/2` (5 x 5).

# %% tags=["solution"]
# placeholder: answer_2_1 = None   # a 5 x 5 array
# BEGIN SOLUTION
answer_2_1 = np.linalg.solve(np.eye(5) - W.T, np.diag(np.sqrt(noise_var)))
assert np.allclose(answer_2_1, sem_mixing_matrix(W, noise_var))   # the library agrees
# END SOLUTION

# %% tags=["check"]
check_mixing_matrix(answer_2_1, W, noise_var)

# %% [markdown]
# ## Task 2.2: the covariance
#
# Compute the covariance of `x = A z`. (ABCD reads one head the same way: `C = A A^T`.)

# %% tags=["solution"]
A = sem_mixing_matrix(W, noise_var)
# placeholder: answer_2_2 = None   # a 5 x 5 array
# BEGIN SOLUTION
answer_2_2 = A @ A.T
# END SOLUTION

# %% tags=["check"]
check_covariance(answer_2_2, A)

# %% [markdown]
# ## Task 2.3: a partial correlation by hand
#
# The partial correlation of `i` and `j` given a set `S` is `rho = -P_ij / sqrt(P_ii P_jj)`, where `P` is the
# inverse of the covariance (or correlation) block over `[i, j] + S`. Compute
# (a) `rho(A, B | E)` and (b) `rho(A, B | E, C)` by hand (no library call).

# %% tags=["solution"]
C = A @ A.T
# placeholder: answer_2_3a = None   # a number
# BEGIN SOLUTION
idx = [ix['A'], ix['B'], ix['E']]
P = np.linalg.inv(C[np.ix_(idx, idx)])
answer_2_3a = -P[0, 1] / np.sqrt(P[0, 0] * P[1, 1])
print(round(answer_2_3a, 6))
# END SOLUTION

# %% tags=["check"]
check_partial_correlation(answer_2_3a, C, ix['A'], ix['B'], [ix['E']], names=names)

# %% tags=["solution"]
# placeholder: answer_2_3b = None   # a number
# BEGIN SOLUTION
idx = [ix['A'], ix['B'], ix['E'], ix['C']]
P = np.linalg.inv(C[np.ix_(idx, idx)])
answer_2_3b = -P[0, 1] / np.sqrt(P[0, 0] * P[1, 1])
assert np.isclose(answer_2_3b, partial_correlation(C, ix['A'], ix['B'], [ix['E'], ix['C']]))
print(round(answer_2_3b, 4))
# END SOLUTION

# %% tags=["check"]
check_partial_correlation(answer_2_3b, C, ix['A'], ix['B'], [ix['E'], ix['C']], names=names)

# %% [markdown]
# ## Task 2.4: d-separation
#
# For each statement `x _||_ y | S` below, decide whether `S` d-separates `x` and `y` in the DAG
# (`True`) or not (`False`). A path is blocked by a non-collider in `S`, or by a collider such that neither
# it nor any of its descendants is in `S`.

# %%
statements = [('A', 'B', []), ('A', 'B', ['E']), ('A', 'B', ['E', 'C']), ('A', 'B', ['E', 'D']),
              ('E', 'D', ['C']), ('A', 'D', ['C']), ('E', 'C', ['A', 'B']), ('D', 'E', ['A'])]
for k, (x, y, s) in enumerate(statements):
    print(k, f'{x} _||_ {y} | {{{", ".join(s)}}}')

# %% tags=["solution"]
# placeholder: answer_2_4 = [None] * len(statements)   # True (d-separated) or False, one per statement
# BEGIN SOLUTION
answer_2_4 = [False, True, False, False, True, True, True, False]
# END SOLUTION

# %% tags=["check"]
check_d_separation(answer_2_4, dag, statements, names)

# %% [markdown]
# ## Task 2.5: which partial correlations vanish?
#
# Compute the partial correlation of every statement (now you may use
# `analysis.causal.partial_correlation(C, i, j, cond)`) and give the set of statement indices whose
# |rho| < 1e-8. Compare it with your answers to 2.4.

# %% tags=["solution"]
# placeholder: answer_2_5 = None   # a set of statement indices, e.g. {0, 3}
# BEGIN SOLUTION
rhos = [partial_correlation(C, ix[x], ix[y], [ix[s] for s in S]) for x, y, S in statements]
answer_2_5 = {k for k, r in enumerate(rhos) if abs(r) < 1e-8}
assert answer_2_5 == {k for k, sep in enumerate(answer_2_4) if sep}   # zero iff d-separated
print(np.round(rhos, 4))
# END SOLUTION

# %% tags=["check"]
check_zero_partial_correlations(answer_2_5, C, statements, names)

# %% [markdown]
# ## To discuss
#
# - *Zero iff d-separated* needs **faithfulness**: no two paths cancel. Can you pick a weight for `E -> B`
#   that makes `rho(A, D)` vanish although `A` and `D` are d-connected? (Hint: the covariance of A and D
#   is a sum over the open paths between them, each the product of its edge weights.) How likely is that for random weights?
# - With data, `rho` is never exactly 0: a Fisher z test with a sample size decides. In ABCD the "sample
#   size" is an explicit parameter (`n_samples`): how would a larger value change the learned graph?
