# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
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
# **Measured** (README, *Judging explanations*: 300 seeded Rotten Tomatoes test sentences, 6-61 tokens, deepest layer, head 0 and
# the pooled layer, ICD, alpha 0.01, n_samples 384, at most 1000 model calls per method and sentence, no size cap, removal by
# deletion, bootstrap 95% intervals; `python -m analysis.experiments run faithfulness --dataset rotten_tomatoes --n 300 --out DIR`,
# 22 minutes on 2 workers; the rows are committed in `results/faith-rt300/`). The cell above runs the same protocol on 30 of those
# sentences (3 in fast mode), so its counts are smaller.
#
# - Read with censoring, CLEANN (head 0) finds a **smaller** flipping set than the raw-attention baseline on 189 of 300 sentences
#   and a larger one on 18 (equal 22, undecided 71; sign test p = 3.8e-37): Kaplan-Meier median 3 tokens [3, 4] against the
#   baseline's 12 [10, 13]. Pooled over the layer: 138 smaller, 47 larger (p = 1.4e-11). The paper's "smaller CLEANN sets" holds
#   here against that baseline.
# - It does **not** hold against **random search given the same number of calls per set size**: random search finds the smaller
#   set more often (head 0: random smaller on 81 sentences, CLEANN smaller on 46, equal 116, undecided 57, p = 0.0024; pooled:
#   94 against 37, p = 6.7e-7), with the same median (3 tokens), though it flips a little less often within the calls (68%
#   against 75%). CLEANN's edge over the attention baseline comes from searching many subsets, not from the graph choosing them.
# - Integrated gradients ties with CLEANN on size (74 smaller, 82 larger, p = 0.58) and flips more often (98% [96, 99] against
#   75% [70, 80]); leave-one-out finds smaller sets (CLEANN larger on 113, smaller on 46); their ERASER AOPC comprehensiveness is
#   higher (0.36 and 0.41 against CLEANN's 0.24 [0.22, 0.27]).
# - On the 77 short sentences whose minimal set exhaustive search knows, CLEANN (head 0) reached the minimum size on 52% [40, 62],
#   as often as equal-budget random search (55%) and leave-one-out (53%).
# - **Every head** of the last layer (the same 300 sentences; `results/faith-rt300-heads/`; README, per-head table): CLEANN beats
#   the raw-attention baseline on all 12 heads and the pooled layer (every p <= 1.4e-11) and loses to equal-budget random search
#   on all 13 (random smaller on 74-104 sentences, CLEANN on 22-46; every p <= 0.0032, below the Bonferroni threshold 0.05/13).
#   No head's graph guides the search better than chance on this model.
#
# An earlier version of these numbers had "CLEANN never smaller than equal-budget random search": random search then counted a
# size as searched only once it had checked every subset of it, so the comparison could not call CLEANN smaller (fixed, tested,
# re-run). An earlier version of this notebook also compared sizes only where both methods found a set of at most 3 tokens and
# concluded the opposite of the first bullet; that protocol dropped the sentences where the baseline needs many tokens.
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
# Scope: one model, one dataset (Rotten Tomatoes), the last layer. On 100 IMDB excerpts (README, *Judging explanations*: the
# pooled layer only, `results/faith-imdb100-pooled/`) CLEANN flips within 1000 calls on only 23% of these 130-token inputs,
# equal-budget random search flips more often (12 excerpts against 3, p = 0.035) and finds the smaller set more often (15
# against 3), and leave-one-out is smaller on 26 and never larger: there too the graph does not beat chance.
# The tables above in fast mode use a handful of sentences and say nothing either way.
