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
# # Exercise 4: adversarial attention and the null space
#
# **Learning goals.** After this exercise you can
# - compute the nullity `n - rank(T)` of an attention head, where `T` is the matrix the attention
#   multiplies (for a transformer head, its values `V`, `n x d_head`);
# - split an attention matrix into its efficient part `A_eff = A P` (P the projection on col(T)) and its
#   null part, and explain why swapping `A_eff` in keeps the output;
# - predict whether an edit of the attention moves the output;
# - measure how much of an adversarial attention (Jain & Wallace) differs from the original only in the
#   null space (Naim & Asher's observation).
#
# **Time:** about 45 minutes (the adversarial search takes about 5 s in fast mode, `ATTNLAB_FAST=1`, and about
# 15 s in full mode on one CPU core). **Prerequisites:** rank, column space and orthogonal projection; exercise 1. **Needs:** the
# embedded default model and the embedded single-attention classifier `attention-classifier-rt` (both built
# offline on first use, then cached).
#
# Run the cells from the top. Fill in each `answer_...` (the placeholder is `None`) and run the cell: the `check_...` call under it tells you whether the answer is right and, if not, *what* is wrong. The checks never stop the notebook; a solutions notebook is in `solutions/`.

# %% tags=["parameters"]
# parameters (papermill: -p NAME VALUE overrides them)
from analysis.experiments import fast_mode

FAST = fast_mode()   # tiny samples: True when ATTNLAB_FAST is 1 (how CI runs the notebooks)
WORKERS = 1          # processes for dataset-scale tables (the runner); None: all cores

# %%
import numpy as np
from analysis import load_model
from analysis.efficient import decompose
from analysis.adversarial import search
from analysis.exercises import (check_nullity, check_efficient_attention, check_moves_output,
                                check_output_moves, check_feasible, check_null_fraction)

rng = np.random.default_rng(0)

# %% [markdown]
# ## Part 1: a toy head
#
# Six tokens, values of dimension 2: `T` is 6 x 2, and the head's output is `A T`.

# %%
n = 6
T = rng.normal(size=(n, 2))
logits = rng.normal(size=(n, n))
A_toy = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)   # rows are distributions
print(np.round(A_toy, 2))

# %% [markdown]
# ### Task 4.1: the nullity
#
# How many independent directions does an attention row have that the output `A T` cannot see?

# %% tags=["solution"]
# placeholder: answer_4_1 = None   # an integer
# BEGIN SOLUTION
answer_4_1 = n - np.linalg.matrix_rank(T)
# END SOLUTION

# %% tags=["check"]
check_nullity(answer_4_1, T)

# %% [markdown]
# ### Task 4.2: the efficient attention
#
# Compute `P = T (T^T T)^+ T^T` (the orthogonal projection on col(T)) and `A_eff = A P`. Check that
# `A_eff @ T` equals `A_toy @ T`. Is `A_eff` still a probability distribution per row?

# %% tags=["solution"]
# placeholder: answer_4_2 = None   # a 6 x 6 array
# BEGIN SOLUTION
P = T @ np.linalg.pinv(T.T @ T) @ T.T
answer_4_2 = A_toy @ P
assert np.allclose(answer_4_2 @ T, A_toy @ T)
print('row sums', answer_4_2.sum(1).round(3), 'min entry', answer_4_2.min().round(3))
# END SOLUTION

# %% tags=["check"]
check_efficient_attention(answer_4_2, A_toy, T)

# %% [markdown]
# ### Task 4.3: which edits move the output?
#
# Each edit `E` changes the attention to `A + E`. For each, predict whether the head output `(A + E) T`
# differs from `A T` (`True`: it moves).

# %%
P = T @ np.linalg.pinv(T.T @ T) @ T.T
R = rng.normal(size=(n, n))
edits = [
    R @ (np.eye(n) - P),            # 0: R with its col(T) part removed
    R @ P,                          # 1: R's col(T) part only
    np.full((n, n), 1 / n) - A_toy, # 2: make the attention uniform
    A_toy @ P - A_toy,              # 3: replace A by A_eff
]

# %% tags=["solution"]
# placeholder: answer_4_3 = [None] * len(edits)   # True (moves) or False, one per edit
# BEGIN SOLUTION
answer_4_3 = [bool(np.linalg.norm(E @ T) > 1e-9) for E in edits]
print(answer_4_3)
# END SOLUTION

# %% tags=["check"]
check_moves_output(answer_4_3, edits, T)

# %% [markdown]
# ## Part 2: a real transformer head
#
# In MiniLM each head has `d_head = 32`, so `T = V` (n x 32) has rank at most 32: a sentence of more than
# 32 tokens leaves a null space in every head.

# %%
model = load_model()
TEXT = ('the acting is superb and the story moves along briskly, but the ending feels rushed and a little '
        'too neat for such a thoughtful, patient film about grief, memory and the families we choose.')
trace = model.trace(TEXT)
LAYER, HEAD = 4, 3
V = trace.values[LAYER, HEAD]     # [n, d_head]: what this head's attention multiplies
print(trace.n_tokens, 'tokens; V has shape', V.shape)

# %% [markdown]
# ### Task 4.4: the nullity of a real head

# %% tags=["solution"]
# placeholder: answer_4_4 = None   # an integer
# BEGIN SOLUTION
answer_4_4 = decompose(trace, LAYER, HEAD).nullity
print(answer_4_4, '=', trace.n_tokens, '-', np.linalg.matrix_rank(V))
# END SOLUTION

# %% tags=["check"]
check_nullity(answer_4_4, V)

# %% [markdown]
# ### Task 4.5: swap in the efficient attention
#
# *Before running anything*, predict: if the model runs with this head's attention replaced by `A_eff`,
# do its logits move (by more than 1e-4)? Then run the cell and read the check.

# %% tags=["solution"]
# placeholder: answer_4_5 = None   # True (the logits move) or False
# BEGIN SOLUTION
answer_4_5 = False
# END SOLUTION
part = decompose(trace, LAYER, HEAD)
swapped = model.trace(TEXT, attention_override={(LAYER, HEAD): part.effective})
# BEGIN SOLUTION
print(np.abs(swapped.logits - trace.logits).max())
# END SOLUTION

# %% tags=["check"]
check_output_moves(answer_4_5, trace.logits, swapped.logits, kind='efficient')

# %% [markdown]
# ### Task 4.6: a large null-space edit
#
# Add a null-space matrix five times as large as the attention itself (the new "attention" has negative
# entries and rows that do not sum to 1!). Predict: do the logits move?

# %% tags=["solution"]
# placeholder: answer_4_6 = None   # True or False
# BEGIN SOLUTION
answer_4_6 = False
# END SOLUTION
E = rng.normal(size=part.null.shape) @ (np.eye(trace.n_tokens) - part.projection)
E *= 5 * np.linalg.norm(part.attention) / np.linalg.norm(E)
edited = model.trace(TEXT, attention_override={(LAYER, HEAD): part.attention + E})
# BEGIN SOLUTION
print(np.abs(edited.logits - trace.logits).max())
# END SOLUTION

# %% tags=["check"]
check_output_moves(answer_4_6, trace.logits, edited.logits, kind='null')

# %% [markdown]
# ## Part 3: adversarial attention
#
# Jain & Wallace search attention distributions far from the original (large JSD) that keep the prediction
# (TVD <= eps). We search on the single-attention classifier (embeddings -> BiLSTM -> one additive attention
# -> linear decoder). Its output is `decoder(a H)`: with the decoder inside `T = H U^T` (n x 2), the null
# space has dimension n - 2. (The `efficient/raw distance` that `search` prints uses the value basis `H`,
# n x 256, which has full rank for a short sentence, so there it is 1: nothing is hidden from `a H` itself,
# only from the decoder's two outputs.)

# %%
clf = load_model('attention-classifier-rt')
TEXT2 = 'the acting is superb and the story moves along briskly, but the ending feels rushed.'
res = search(clf, TEXT2, layer=0, head=0, k=3, steps=100 if FAST else 500, seed=0, progress=False)
print(res)
part2 = decompose(clf.trace(TEXT2), 0, 0, basis='value_output', model=clf)
print(part2)

# %% [markdown]
# ### Task 4.7: which adversaries keep the prediction?
#
# List the indices of the adversaries that are *feasible* (`res.tvd`, `res.eps`).

# %% tags=["solution"]
# placeholder: answer_4_7 = None   # a list of indices
# BEGIN SOLUTION
answer_4_7 = [k for k in range(res.k) if res.tvd[k] <= res.eps]
# END SOLUTION

# %% tags=["check"]
check_feasible(answer_4_7, res.tvd, res.eps)

# %% [markdown]
# ### Task 4.8: where does adversary 0 differ?
#
# With `D = res.attentions[0] - res.original_attention`, what fraction of `||D||_F^2` lies in the null
# space, `||D (I - P)||_F^2 / ||D||_F^2` (with `P = part2.projection`)?

# %% tags=["solution"]
# placeholder: answer_4_8 = None   # a number in [0, 1]
# BEGIN SOLUTION
D = res.attentions[0] - res.original_attention
Pc = part2.projection
answer_4_8 = float(np.sum((D - D @ Pc) ** 2) / np.sum(D ** 2))
print(round(answer_4_8, 4))
# END SOLUTION

# %% tags=["check"]
check_null_fraction(answer_4_8, res.attentions[0], res.original_attention, part2.projection)

# %% [markdown]
# ### Task 4.9: keep only the null part of the adversary
#
# Run the classifier with `A + D (I - P)`: the original attention plus only the null-space part of
# adversary 0's change. Predict: does the prediction move (by more than 1e-4)?

# %% tags=["solution"]
# placeholder: answer_4_9 = None   # True or False
# BEGIN SOLUTION
answer_4_9 = False
# END SOLUTION
D = res.attentions[0] - res.original_attention
null_only = res.original_attention + D @ (np.eye(D.shape[0]) - part2.projection)
p_null = clf.predict(TEXT2, attention_override={(0, 0): null_only})[0]
# BEGIN SOLUTION
print(np.abs(p_null - res.original).max())
# END SOLUTION

# %% tags=["check"]
check_output_moves(answer_4_9, res.original, p_null, kind='null')

# %% [markdown]
# ## To discuss
#
# - Jain & Wallace conclude that "attention is not explanation" because very different attention keeps the
#   prediction. How much of that difference, by task 4.8, is in a part of the attention the output cannot see?
# - Would you explain a prediction with `A` or with `A_eff`? What is lost when `A_eff` is not a
#   distribution (negative entries, rows not summing to 1)?
# - For a transformer head the null space exists only for sentences longer than `d_head`. What about the
#   other heads of the layer, and the layers after it?
