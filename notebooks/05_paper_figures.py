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
# # Paper figures
#
# Draws every figure of the two reproductions inline, from the registry `analysis.experiments.paper.FIGURES` (the same one
# `python -m analysis.figures` uses), and saves each as PDF and PNG (written atomically) under `figures/` at the repository root,
# with the tables behind them as CSV under `figures/tables/`. Results shared by several figures are computed once.
#
# | figure | shows |
# | --- | --- |
# | `abcd_example_graphs` | learned PAGs of example sentences, CLEANN and attention-baseline sets |
# | `abcd_explanation_sizes` | explanation-set size, CLEANN vs the attention baseline |
# | `abcd_faithfulness` | every explainer under one call budget: flipped within k tokens, censored sentences kept |
# | `abcd_cleann_vs_exhaustive` | CLEANN's smallest flipping set vs the exhaustive minimum (short sentences) |
# | `abcd_faithfulness_bars` | ERASER AOPC comprehensiveness per explainer, 95% intervals |
# | `abcd_flip_rate` | flip rate by layer and head |
# | `abcd_alpha_n_samples` | graph density and CLEANN sets vs alpha and n_samples |
# | `abcd_stability` | raw vs efficient ABCD graphs over attentions with the same output |
# | `efficient_nullity_length` | nullity of every head vs sequence length |
# | `efficient_heatmaps` | raw vs efficient vs null attention for the same heads |
# | `efficient_adversarial` | adversaries' JSD vs efficient distance; efficient share vs random attention |
# | `efficient_wasserstein` | W1 between prediction distributions per edit |
#
# **Run time.** Full mode (the default; the sizes of `02_abcd_sentiment` and `04_efficient_attention`) took 23 minutes end to end
# with `WORKERS = 2` on a 2-core CPU (papermill `-p WORKERS 2`, load average 2-4: other jobs shared the machine), including the
# 30-sentence faithfulness evaluation (8 min) and the 20-sentence x 12-head stability table (38 s). The tables the earlier
# 32-minute run in one process had (explanations 351 s, flip grid 170 s, sweep 64 s, efficient runs 63 s, adversaries 197 s) took
# 14 minutes of it. **Fast mode** (`ATTNLAB_FAST=1`, about a minute and a half) uses tiny samples and writes to `figures/fast/` instead,
# so it never overwrites full-size figures. From a shell: `python -m analysis.figures --all --out figures/ [--fast]`.

# %% tags=["parameters"]
# parameters (papermill: -p NAME VALUE overrides them)
from analysis.experiments import fast_mode

FAST = fast_mode()   # tiny samples: True when ATTNLAB_FAST is 1 (how CI runs the notebooks)
WORKERS = 1          # processes for dataset-scale tables (the runner); None: all cores

# %%
from pathlib import Path

from IPython.display import display

from analysis.experiments.paper import FIGURES, PaperRun, make_figures

OUT = Path('..') / 'figures' / ('fast' if FAST else '')
run = PaperRun(fast=FAST, progress=not FAST, log=print, workers=WORKERS)
for name, spec in FIGURES.items():
    print(f'{name:26s} [{spec.paper}] {spec.description}')

# %%
for name, fig, paths in make_figures(OUT, run=run, formats=('pdf', 'png')):
    print(name, '->', ', '.join(str(p) for p in paths))
    display(fig)

# %% [markdown]
# The tables behind the figures (also saved as CSV):

# %%
from analysis.experiments import abcd_sentiment as ab, efficient_claims as ec

display(ab.summarize_explanations(run.explanations()))
display(run.wasserstein())
display(ec.adversarial_summary(run.adversarial()))
sorted(p.name for p in (OUT / 'tables').glob('*.csv'))
