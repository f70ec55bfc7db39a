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
# # ABCD on sentiment: causal graphs over tokens and CLEANN explanations
#
# This notebook reproduces the sentiment experiment of **ABCD** (Rohekar, Gurwicz & Nisimov, *Causal Interpretation of
# Self-Attention in Pre-Trained Transformers*, NeurIPS 2023) on attnlab's embedded default model (MiniLM, 6 layers x 12
# heads, fine-tuned on Rotten Tomatoes) with Rotten Tomatoes test sentences and IMDB excerpts:
#
# 1. learned causal graphs (PAGs) over the tokens of example sentences, with the CLEANN explanation and the attention baseline;
# 2. CLEANN vs the raw-attention baseline over a test sample: explanation-set size and how often a set that flips the prediction is found;
# 3. the same per layer and per head;
# 4. the effect of the CI-test level `alpha` and the effective sample size `n_samples` on the graph and on the explanations;
# 5. judging explanations fairly: every explainer under one budget of model calls, censored sizes, an equal-budget random control,
#    exhaustive search on short sentences, ERASER faithfulness, confidence intervals;
# 6. what the measured numbers say about the paper's claim.
#
# **Run time.** Full mode (the default: 100 Rotten Tomatoes sentences and 20 IMDB excerpts of 48 tokens, a 6 x 13 layer/head grid on
# 10 sentences, a 4 x 4 alpha x n_samples sweep) took 22 minutes end to end on a 2-core CPU (one thread, other work on the
# second core). **Fast mode** uses a handful of sentences
# and runs in about a minute: `ATTNLAB_FAST=1 jupyter lab notebooks/02_abcd_sentiment.ipynb` (CI runs it that way). The numbers in fast
# mode are far too few to conclude anything. The same computations draw the paper figures in `05_paper_figures.ipynb`.

# %% tags=["parameters"]
# parameters (papermill: -p NAME VALUE overrides them)
from analysis.experiments import fast_mode

FAST = fast_mode()   # tiny samples: True when ATTNLAB_FAST is 1 (how CI runs the notebooks)
WORKERS = 1          # processes for dataset-scale tables (the runner); None: all cores

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis import load_model
from analysis.experiments import paper, sample_texts

S = paper.FAST if FAST else paper.FULL     # the sample sizes, shared with python -m analysis.figures
pd.set_option('display.precision', 3)
print('fast mode' if FAST else 'full mode', S)
from analysis import abcd
from analysis.experiments import abcd_sentiment as ab
from analysis.figures import paper as pf

model = load_model()
model

# %% [markdown]
# ## 1. Graphs and explanations for example sentences
#
# For one head of the deepest layer, `C = A A^T` is read as the covariance of the token variables; Fisher-z tests on its partial
# correlations feed ICD, which returns a PAG over the content tokens ([CLS] is kept as the target; [SEP] and punctuation act as latent
# variables). CLEANN searches the PDS-tree of [CLS] for the smallest token sets whose removal (deletion) flips the prediction; the model
# checks every candidate. The baseline removes the top-k tokens by [CLS]'s raw attention, k = 1, 2, ... until the prediction flips.
#
# In the figure the target is vermillion, its neighbours orange and its PDS-tree blue; CLEANN's set is ringed in green, the baseline's
# in purple.

# %%
examples = [abcd.explain(model, text, head=0, max_set_size=S.max_set_size) for text in paper.EXAMPLES]
for e in examples:
    print(e, end='\n\n')
pf.example_graphs(examples, labels=model.labels);

# %% [markdown]
# ## 2. CLEANN vs the attention baseline over a test sample
#
# One explanation per sentence and head setting (head 0 and the pooled layer `head="all"`, deepest layer, ICD, alpha = 0.01,
# n_samples = hidden size 384, sets of at most `max_set_size` tokens, removal by deletion). *found* is the flip rate: the share of
# sentences with a flipping set of at most `max_set_size` tokens. Nothing is dropped: a sentence where a method found no set within
# its budget is *censored* at that budget, the medians are Kaplan-Meier medians, and the paired counts (smaller / equal / larger /
# undecided) use every sentence, with a sign test and bootstrap 95% intervals.

# %%
rt = ab.explanation_table(model, sample_texts(model, 'rotten_tomatoes', S.explain_n), heads=S.explain_heads,
                          max_set_size=S.max_set_size, dataset='rotten_tomatoes', progress=not FAST)
imdb = ab.explanation_table(model, sample_texts(model, 'imdb', S.imdb_n, max_tokens=S.imdb_max_tokens),
                            heads=S.explain_heads, max_set_size=S.max_set_size, dataset='imdb', progress=not FAST)
explanations = pd.concat([rt, imdb], ignore_index=True)
ab.summarize_explanations(explanations)

# %%
fig, axes = plt.subplots(1, len(S.explain_heads), figsize=(7, 2.6), sharey=True)
for ax, head in zip(np.atleast_1d(axes), S.explain_heads):
    pf.explanation_size_hist(rt, head=str(head), ax=ax)
fig.tight_layout()

# %% [markdown]
# A few of the sentences with both sets, side by side (tokens are word pieces):

# %%
both = explanations[explanations.cleann_found & explanations.baseline_found]
both[['dataset', 'head', 'n_tokens', 'cleann_set', 'baseline_set', 'cleann_calls', 'baseline_calls']].head(10)

# %% [markdown]
# ## 3. Per layer and per head
#
# The same comparison in every layer and head (and each layer pooled), on fewer sentences and sets of at most `grid_max_set_size`
# tokens. Since the model decides every candidate, a head only matters through which candidates its graph offers (and in which
# order); the baseline ranks tokens by that head's [CLS] attention row.

# %%
grid = ab.explanation_table(model, sample_texts(model, 'rotten_tomatoes', S.grid_n), layers=S.grid_layers,
                            heads=S.grid_heads, max_set_size=S.grid_max_set_size, dataset='rotten_tomatoes',
                            progress=not FAST)
pf.flip_rate_grid(grid)
per_layer = grid.groupby('layer')[['cleann_found', 'baseline_found', 'cleann_calls']].mean()
per_layer

# %% [markdown]
# ## 4. The effect of alpha and n_samples
#
# `n_samples` is the effective sample size of the Fisher-z tests (SCIENCE.md): the head dimension (32) is the literal reading of the
# derivation, 128 and 768 are the choices of other implementations, the hidden size (384) is our default. A larger `n_samples` or
# `alpha` rejects independence more easily, so the graph gets denser; CLEANN's candidates are closed subsets of the target's
# PDS-tree, so a sparser graph offers fewer candidates.

# %%
sweep_texts = sample_texts(model, 'rotten_tomatoes', S.sweep_n)
density = ab.graph_sweep(model, sweep_texts, alphas=S.alphas, n_samples=S.n_samples, progress=not FAST)
sets = ab.graph_sweep(model, sweep_texts[:S.sweep_explain_n], alphas=S.alphas, n_samples=S.n_samples, explain=True,
                      max_set_size=S.grid_max_set_size, progress=not FAST)
sweep = density.merge(sets[['text_id', 'alpha', 'n_samples', 'cleann_found', 'cleann_size', 'cleann_calls']],
                      on=['text_id', 'alpha', 'n_samples'], how='left')
pf.sweep_figure(sweep)
sweep.pivot_table(index='alpha', columns='n_samples', values='density').round(3)

# %% [markdown]
# ## 5. Judging explanations fairly
#
# `analysis.evaluation` runs every explainer on the same inputs under the same budget of model calls (`max_calls`, no size cap):
# CLEANN (head 0 and the pooled layer), the raw- and efficient-attention baselines (uncapped), attention rollout, gradient x input
# and integrated gradients (captum), leave-one-out, **random search with CLEANN's number of calls per set size** (the fair control)
# and **exhaustive search** (the true minimal flipping sets) on sentences with at most 14 candidate tokens. The table is computed by
# the experiment runner (`WORKERS` processes; `python -m analysis.experiments run faithfulness ...` does the same from a shell).

# %%
from analysis.evaluation import summarize_results
from analysis.experiments import faithfulness as fa
from analysis.experiments import get_task, run
from analysis.figures import evaluation as fe

FAITH_N = 3 if FAST else 30
settings = dict(heads=[0, 'all'], max_calls=60 if FAST else 1000)
if FAST:   # the gradient methods and rollout are cheap; CLEANN, random and exhaustive search spend the budget
    settings['methods'] = ['cleann', 'attention', 'leave_one_out', 'random', 'exhaustive']
units = fa.make_units(dataset='rotten_tomatoes', n=FAITH_N, **settings)
faith = run(get_task('faithfulness'), units, model=model, workers=WORKERS, progress=not FAST)
summary = summarize_results(faith)
summary['sizes']

# %%
summary['paired']

# %%
fe.censored_size_curves(faith);

# %% [markdown]
# ## 6. What the measured numbers say about the paper's claim
#
# **Measured** (README, *Judging explanations*: 30 Rotten Tomatoes test sentences, deepest layer, head 0 and the pooled layer, ICD,
# alpha 0.01, n_samples 384, at most 1000 model calls per method and sentence, no size cap, removal by deletion, bootstrap 95%
# intervals):
#
# - Read with censoring, CLEANN (head 0) finds a **smaller** flipping set than the raw-attention baseline on 18 of 30 sentences and a
#   larger one on none (equal 3, undecided 9; sign test p < 1e-5): the Kaplan-Meier median is 3 tokens [3, 4] against the baseline's
#   15 [12, 27]. The paper's "smaller CLEANN sets" holds here against that baseline. Pooled over the layer the difference is not
#   significant (11 smaller, 5 larger, p = 0.21).
# - CLEANN is **never smaller than random search given the same number of calls per set size** (equal 11, larger 8, undecided 11):
#   on these sentences the graph gave CLEANN no advantage over trying random sets with the same number of model calls.
# - Leave-one-out and integrated gradients flip the prediction more often (29 of 30) with smaller sets (median 2 and 3), and have a
#   higher ERASER AOPC comprehensiveness (0.39 and 0.37 against CLEANN's 0.23 [0.16, 0.30]).
# - On the 5 short sentences whose minimal set exhaustive search knows, CLEANN (head 0) reached it in 3: too few for a rate.
#
# An earlier version of this notebook compared sizes only where both methods found a set of at most 3 tokens and concluded the
# opposite; that protocol dropped the sentences where the baseline needs many tokens, so its conclusion came from the protocol.
#
# **Why numbers may still differ from the paper's** (none of these is tested separately here):
#
# - *Model.* The paper explains BERT-base (12 layers x 12 heads, d_head 64, hidden 768) fine-tuned on SST-2; ours is MiniLM
#   (6 x 12, d_head 32, hidden 384) fine-tuned on Rotten Tomatoes sentences (83.7% test accuracy).
# - *n_samples and alpha.* We use the hidden size (384) at alpha = 0.01; section 4 shows how strongly the graph's density, and so
#   CLEANN's candidate sets, depend on this choice.
# - *Removal.* We delete tokens (`removal="delete"`); masking with [MASK], [PAD] or [UNK] changes which sets flip the prediction.
# - *Search order.* Within a size, CLEANN returns the *first* flipping sets in the order of tree distance; a smaller flipping set
#   outside the PDS-tree is never tried.
#
# 30 sentences and two head settings are a small sample; the full run (300 sentences, 12 heads and the pooled layer, IMDB)
# has not been made. The tables above in fast mode use a handful of sentences and say nothing either way.
