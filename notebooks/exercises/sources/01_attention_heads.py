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
# # Exercise 1: attention heads and what they attend to
#
# **Learning goals.** After this exercise you can
# - read an attention matrix: rows are *queries*, columns are *keys*, `attentions[layer, head, query, key]`;
# - find what a token attends to in one head, and find heads with a recognisable job (previous-token heads);
# - tell row sums (always 1) from column sums (the attention a token *receives*);
# - say what the mean over heads hides.
#
# **Time:** about 30 minutes. **Prerequisites:** Python and numpy indexing; what softmax does. No causal
# inference needed. **Needs:** the embedded default model (MiniLM fine-tuned for sentiment, 6 layers x 12
# heads; built offline on first use, about 4 minutes on 2 cores, then cached).
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
from analysis.exercises import (check_top_key, check_previous_token_head, check_attention_sum,
                                check_mean_attention, check_sharper)
from widgets import AttentionExplorer

model = load_model()
TEXT = 'a gorgeous, witty, seductive movie that never loses its nerve.'
trace = model.trace(TEXT)             # one forward pass; trace.attentions has shape (layers, heads, n, n)
print(trace.attentions.shape)
list(enumerate(trace.tokens))

# %% [markdown]
# ## The explorer
#
# Move the *layer* and *head* sliders (or the step buttons) and pick a *query* token: the highlighted
# text under the heatmap is that query's row. You can also drive it from code:
# `explorer.set_view(layer=5, head=0, query=0)` and read what it shows with
# `explorer.current_view().matrices[0]` (an `n x n` array).

# %%
explorer = AttentionExplorer(model, TEXT, layer=5, head=0)
explorer

# %% [markdown]
# ## Task 1.1: what does [CLS] attend to?
#
# In **layer 5, head 0**, which token does the query `[CLS]` (position 0) give the most attention to?
# Answer with a position (an int) or the token string.

# %% tags=["solution"]
# placeholder: answer_1_1 = None   # e.g. 3 or 'gorgeous'
# BEGIN SOLUTION
explorer.set_view(layer=5, head=0, query=0)
row = explorer.current_view().matrices[0][0]       # the row of query 0 = trace.attentions[5, 0, 0]
answer_1_1 = trace.tokens[int(np.argmax(row))]
print(answer_1_1, row.max().round(3))
# END SOLUTION

# %% tags=["check"]
check_top_key(answer_1_1, trace.attentions, trace.tokens, layer=5, head=0, query=0)

# %% [markdown]
# ## Task 1.2: a previous-token head
#
# Some heads have a simple job: each token attends to the token just before it (a stripe just below the
# diagonal). Find one: give `(layer, head)` of a head whose mean weight on the previous token is at least 0.5.
# Step through the heads in the explorer, or compute `trace.attentions[l, h, q, q - 1]` for all heads.

# %% tags=["solution"]
# placeholder: answer_1_2 = None   # (layer, head)
# BEGIN SOLUTION
A = trace.attentions
n = trace.n_tokens
prev = np.array([[np.mean([A[l, h, q, q - 1] for q in range(1, n)]) for h in range(A.shape[1])]
                 for l in range(A.shape[0])])          # [layers, heads]
answer_1_2 = tuple(int(i) for i in np.unravel_index(np.argmax(prev), prev.shape))
print(answer_1_2, prev.max().round(3))
# END SOLUTION

# %% tags=["check"]
check_previous_token_head(answer_1_2, trace.attentions, threshold=0.5)

# %% [markdown]
# ## Task 1.3: row sums and column sums
#
# In **layer 2, head 5**: (a) what is the sum of the row of the query `gorgeous` (position 2)?
# (b) what is the sum of the *column* of `[CLS]` (position 0): how much attention does `[CLS]` receive
# in total? (Many heads park attention on a special token when they have nothing better to do.)

# %% tags=["solution"]
# placeholder: answer_1_3a = None   # a number
# BEGIN SOLUTION
answer_1_3a = float(trace.attentions[2, 5, 2, :].sum())
# END SOLUTION

# %% tags=["check"]
check_attention_sum(answer_1_3a, trace.attentions, layer=2, head=5, index=2, axis='row')

# %% tags=["solution"]
# placeholder: answer_1_3b = None   # a number
# BEGIN SOLUTION
answer_1_3b = float(trace.attentions[2, 5, :, 0].sum())
print(f'[CLS] receives {answer_1_3b:.2f} of the {trace.n_tokens} units of attention handed out')
# END SOLUTION

# %% tags=["check"]
check_attention_sum(answer_1_3b, trace.attentions, layer=2, head=5, index=0, axis='column')

# %% [markdown]
# ## Task 1.4: the mean over heads
#
# Compute the mean over heads of **layer 5** as an `n x n` array (the explorer's *mean over heads* mode
# shows it).

# %% tags=["solution"]
# placeholder: answer_1_4 = None   # an n x n array
# BEGIN SOLUTION
explorer.mode.value = 'mean'
explorer.set_view(layer=5)
answer_1_4 = explorer.current_view().matrices[0]    # = trace.attentions[5].mean(0)
explorer.mode.value = 'head'
# END SOLUTION

# %% tags=["check"]
check_mean_attention(answer_1_4, trace.attentions, layer=5)


# %% [markdown]
# ## Task 1.5: one head or the mean, which is sharper?
#
# For the query `[CLS]` in layer 3: is the row of **head 11** or the row of the **mean over heads** sharper
# (lower entropy `-sum p log2 p`)? Answer `'head'` or `'mean'`.

# %% tags=["solution"]
# placeholder: answer_1_5 = None   # 'head' or 'mean'
# BEGIN SOLUTION
def entropy(p):
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())

h = entropy(trace.attentions[3, 11, 0])
m = entropy(trace.attentions[3].mean(0)[0])
answer_1_5 = 'head' if h < m else 'mean'
print(f'head 11: {h:.2f} bits, mean: {m:.2f} bits')
# END SOLUTION

# %% tags=["check"]
check_sharper(answer_1_5, trace.attentions, layer=3, head=11, query=0)

# %% [markdown]
# ## To discuss
#
# - Papers often show the mean over heads or over layers. What can a mean show that no single head does,
#   and what does it hide?
# - Does a large weight from `[CLS]` to a word mean that the word *causes* the prediction? (Exercise 4
#   shows part of an attention matrix that cannot reach the output at all.)
