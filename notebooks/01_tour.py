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
# # attnlab tour
#
# attnlab looks inside a transformer's attention and asks causal questions of it. This tour goes from nothing to every panel on the embedded default model: MiniLM (6 layers x 12 heads) fine-tuned for sentiment on Rotten Tomatoes, built offline on first use (about 4 minutes on 2 cores) and cached.
#
# Every panel is a view over the `analysis` package: its *copy as code* button prints the calls that reproduce what you see, and *save figure* writes a publication-size PNG, SVG or PDF.
#
# `ATTNLAB_FAST=1` shortens the slow steps (CI runs the tour that way).

# %% tags=["parameters"]
# parameters (papermill: -p NAME VALUE overrides them)
from analysis.experiments import fast_mode

FAST = fast_mode()   # tiny samples: True when ATTNLAB_FAST is 1 (how CI runs the notebooks)
WORKERS = 1          # processes for dataset-scale tables (the runner); None: all cores

# %%
import numpy as np
from analysis import load_model, load_dataset
from widgets import (Lab, AttentionExplorer, CITestPanel, CausalGraphPanel, ExplanationPanel,
                     AdversarialPanel, InterventionPanel)

model = load_model()   # the embedded default: built on first use, then loaded from the cache
TEXT = 'a gorgeous, witty, seductive movie that never loses its nerve.'
model

# %% [markdown]
# ## The attention explorer
#
# Step through layers and heads (sliders, or the previous/next buttons). *mean* averages the heads of a layer and *grid* shows all of them; pick a query token to see its row as highlighted text. The *efficient* and *null* views split the head's attention into the part that reaches the output and the part that cannot (its null space has dimension *nullity*).

# %%
explorer = AttentionExplorer(model, TEXT, layer=0)
explorer

# %% [markdown]
# ## Conditional independence between tokens
#
# ABCD reads a head as a linear structural equation model: `C = A A^T` is the covariance of the tokens, and partial correlations of it test whether two tokens are independent given others (Fisher z). Click tokens to set X, Y and the conditioning set; `n_samples` (the effective sample size) controls how easily dependence is declared.

# %%
ci = CITestPanel(model, TEXT)
ci.x.value, ci.y.value = 2, 4   # 'gorgeous' and 'witty'
ci

# %% [markdown]
# ## The causal graph over tokens
#
# PC, FCI or ICD turn those tests into a graph. FCI and ICD return a PAG: circles mark what the data cannot decide, and tokens left out of the node set act as latent confounders. Select a node to see its neighbourhood and PDS-tree.

# %%
graph_panel = CausalGraphPanel(model, TEXT, algorithm='icd')
graph_panel

# %% [markdown]
# ## Explanations
#
# CLEANN searches the PDS-tree of [CLS] in the learned graph for the smallest token sets whose removal changes the prediction; the model checks each candidate. The attention baseline (tokens ranked by raw attention) is shown beside it.

# %%
explanation = ExplanationPanel(model, TEXT, max_set_size=2)
explanation

# %% [markdown]
# ## Adversarial attention
#
# Jain & Wallace search attention matrices far from the original (JSD) that keep the prediction (TVD <= eps). Do the adversaries share the original's *efficient* attention? The panel measures it. Click *run* (or call `.run()`); the cancel button stops a long search.

# %%
adversarial = AdversarialPanel(model, TEXT, k=3, steps=40 if FAST else 300)
adversarial.run(block=True)
adversarial

# %% [markdown]
# ## Interventions
#
# Replace a head by its efficient attention, add a null-space component (neither should move the output), shift the efficient component (it should), or zero or flatten a head.

# %%
intervention = InterventionPanel(model, TEXT, intervention='add_null')
intervention.run(block=True)
intervention

# %% [markdown]
# ## Everything at once: the Lab
#
# All panels in tabs sharing one text box: edit the text once and every panel follows. The model picker loads another model (a zoo name, a local folder or a hub id).

# %%
lab = Lab(model, TEXT)
lab

# %% [markdown]
# ## The same, as code
#
# `Model.trace` runs the model once and keeps tokens, attentions `(layers, heads, n, n)`, values `(layers, heads, n, d_head)`, hidden states, logits and probabilities as numpy arrays; `attention_override` and `remove` are the one mechanism behind every counterfactual.

# %%
trace = model.trace(TEXT)
print(trace)
n = trace.n_tokens
uniform = np.full((n, n), 1.0 / n)
edited = model.trace(TEXT, attention_override={(model.n_layers - 1, 0): uniform})
without = model.trace(TEXT, remove=[trace.tokens.index('gorgeous')])
print('original    ', trace.probs.round(4))
print('uniform head', edited.probs.round(4))
print('no gorgeous ', without.probs.round(4))

# %% [markdown]
# ## The model on held-out data

# %%
print({k: model.info[k] for k in ('test_accuracy', 'n_test', 'train_seconds')})
test = load_dataset('rotten_tomatoes', 'test').sample(50 if FAST else 500, seed=0)
pred = model.predict(list(test.texts)).argmax(1)
print(f'accuracy on {len(test)} test sentences: {np.mean(pred == test.labels):.3f}')
