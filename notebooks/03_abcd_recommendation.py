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
# # ABCD for recommendation: explaining BERT4Rec
#
# A sequential recommender reads a user's history (items, oldest first) and ranks the next item. This
# notebook explains one recommendation of the embedded **BERT4Rec** (2 layers x 2 heads, trained on
# synthetic item sequences whose causal structure is planted and known) with ABCD:
#
# 1. **recommend**: the top-10 next items for a test user, beside the item the user really took next;
# 2. **explain** (the abductive step): trace the history *with the recommended item appended*, learn a
#    causal graph over the positions from the attention, and search the graph for the smallest set of
#    history items whose removal changes the top-1 recommendation (CLEANN);
# 3. **compare** with the attention baseline (remove the most-attended items until the top-1 changes);
# 4. **score** the learned graphs against the planted ground truth over several users
#    (skeleton precision / recall / F1, SHD);
# 5. the **Lab**: every panel on the same history (type item ids such as `3 17 42` in its text box);
# 6. **MovieLens-1M**, when you have it: train a small BERT4Rec on it and explain one recommendation.
#    Set `MOVIELENS_PATH` in the parameters cell below (or the environment variable `ATTNLAB_MOVIELENS`)
#    to the unzipped `ml-1m` folder; without it the section says how to enable it and is skipped.
#
# **Time.** `load_model("bert4rec")` trains the model on first use (about 75 s on 2 cores), then loads
# it from the cache. Full mode scores 100 users (the notebook takes about 40 s) and, with MovieLens-1M, trains on all 6040
# users for 10 epochs (about 4 minutes on one core); `ATTNLAB_FAST=1` (how CI runs it) scores 10 users and
# trains on 500 MovieLens users for 2 epochs: under a minute in all once the model is cached.

# %% tags=["parameters"]
# parameters (papermill: -p NAME VALUE overrides them)
from analysis.experiments import fast_mode

FAST = fast_mode()   # tiny samples: True when ATTNLAB_FAST is 1 (how CI runs the notebooks)
WORKERS = 1          # processes for dataset-scale tables (the runner); None: all cores

# the unzipped MovieLens-1M folder (ratings.dat, movies.dat), or None to use the environment
# variable ATTNLAB_MOVIELENS; without either the MovieLens section is skipped
MOVIELENS_PATH = None

# %%
import os
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis import abcd, load_dataset, load_model
from analysis.causal import Graph
from analysis.causal.scores import shd, skeleton_scores
from analysis.figures import draw_graph, explanation_figure
from widgets import ExplanationPanel, Lab

rec = load_model('bert4rec')   # trained on the synthetic-rec train split on first use, then cached
m = rec.info.get('test', {})
print(rec)
print(f"test split (history -> held-out last item, full catalogue): HR@10 {m.get('hr@10')} "
      f"(popularity {m.get('popularity_hr@10')}), "
      f"NDCG@10 {m.get('ndcg@10')} (popularity {m.get('popularity_ndcg@10')})")

# %% [markdown]
# ## A test user and the recommendation
#
# Items of the synthetic data are named `t<taste>-item<id>`: five tastes (genres) and a planted DAG of
# *follow-ups* (item b is a natural next step after item a). Each position of a sequence was either
# triggered by an earlier position (a follow-up) or drawn from the user's tastes; `data.graph` records
# which. We pick a test user whose held-out next item is a follow-up and is also the model's top-1, so
# the explanation can be checked against the truth.

# %%
test = load_dataset('synthetic-rec', 'test', **rec.info.get('recipe', {}).get('data', {}))
LIMIT = rec.max_length - 1                     # the model reads the most recent 31 items
histories = [s[-LIMIT:] for s in test.sequences]
top1 = rec.predict(histories[:300]).argmax(1)
candidates = [u for u in range(300) if top1[u] == test.targets[u] and test.graph.target_causes[u] >= 0
              and len(test.sequences[u]) <= LIMIT]

def contains_cause(u):
    e = abcd.explain(rec, histories[u], head='all', max_set_size=3)
    return any(test.graph.target_causes[u] in s for s in e.sets)

user = next((u for u in candidates if contains_cause(u)), candidates[0] if candidates else 0)
history = histories[user]
cause = test.graph.target_causes[user]
target = test.targets[user]
why = f"a follow-up of position {cause} ({rec.title(history[cause])})" if cause >= 0 else "a taste draw"
print(f"user {user}: {len(history)} items; held-out next item: {rec.title(target)} (#{target}), {why}")
pd.DataFrame({'item': history, 'title': [rec.title(i) for i in history],
              'caused by position (-1: a taste draw)': test.graph.causes[user]}).rename_axis('position')

# %%
top = rec.recommend(history, k=10)
pd.DataFrame([{'rank': r + 1, 'item': i, 'title': rec.title(i), 'p': round(p, 4),
               'held-out next item': i == test.targets[user]} for r, (i, p) in enumerate(top)]).set_index('rank')

# %% [markdown]
# ## Explaining the recommendation (the abductive step)
#
# `abcd.explain` traces the history with the recommended item appended (`rec.explanation_trace`), so the
# graph's target node is *the recommendation itself*. It pools the heads of the last layer
# (`head='all'`), learns a PAG with ICD, and checks candidate sets from the target's PDS-tree, smallest
# first, by re-ranking the history without them: a set explains the recommendation when removing it
# changes the top-1. The graph only orders the search; the model decides.

# %%
e = abcd.explain(rec, history, head='all', max_set_size=3)
print(e)
new_top1 = next((c.prediction for c in e.checks if c.changed), None)
print('new top-1 after removing the first set:',
      f"{rec.title(new_top1)} (#{new_top1}), ranked {e.new_rank} before" if e.changed else '-')
print(f"true cause of the held-out item: position {cause}; in an explanation set: {any(cause in s for s in e.sets)}")
fig, axes = plt.subplots(2, 1, figsize=(11, 7.5), gridspec_kw={'height_ratios': [1, 2]})
explanation_figure(e, labels=rec.labels, ax=axes[0])
draw_graph(e.graph, ax=axes[1], highlight=e.tree,
           title='learned PAG (last layer, heads pooled); PDS-tree of the recommendation')
plt.show()

# %% [markdown]
# ## Against the attention baseline
#
# The baseline removes the history items the recommendation attends to most (last layer, heads pooled),
# one more at a time, until the top-1 changes. A smaller set, or a set that holds the true cause, is the
# better explanation.

# %%
b = e.baseline
rows = [{'method': 'CLEANN (graph)', 'items removed': [rec.title(history[p]) for p in (e.sets[0] if e.sets else [])],
         'size': e.size, 'top-1 changed': e.changed, 'new top-1 rank before': e.new_rank,
         'holds the true cause': any(cause in s for s in e.sets)},
        {'method': 'attention top-k', 'items removed': [rec.title(history[p]) for p in b.set],
         'size': b.size, 'top-1 changed': b.size is not None, 'new top-1 rank before': b.new_rank,
         'holds the true cause': cause in b.set}]
pd.DataFrame(rows).set_index('method')

# %% [markdown]
# The same explanation as a panel: change the layer, head, algorithm or maximum set size and press
# *explain*; *copy as code* prints the `abcd.explain` call.

# %%
ExplanationPanel(rec, history, head='all')


# %% [markdown]
# ## The learned graph against the planted truth
#
# For each user the truth over the history positions is a PAG (`data.graph.sequence_pag`): follow-up
# edges, plus latent tastes confounding the positions drawn from the same taste. The graph is learned
# over the history positions only (the appended recommendation left latent) and scored on its skeleton
# (precision, recall, F1, micro-averaged over users) and on its marks (SHD). A random graph with the
# same number of edges per user gives the chance level.

# %%
def as_matrix_graph(n, edges):
    m = np.zeros((n, n), dtype=int)
    for a, b in edges:
        m[a, b] = m[b, a] = 2          # circle marks at both ends, as an undirected PAG edge
    return Graph.from_matrix(m)

n_users = 10 if FAST else 100
sample = test.sample(n_users, seed=0)
rng = np.random.default_rng(0)
counts = {'learned': np.zeros(3, int), 'random': np.zeros(3, int)}
shds, flips = [], []
for u in range(len(sample)):
    h = sample.sequences[u][-LIMIT:]
    truth = sample.graph.sequence_pag(u, 'taste')
    ex = abcd.explain(rec, h, head='all', max_set_size=3, baseline_max_size=3)
    trace = rec.explanation_trace(h, ex.prediction)[0]
    learned = abcd.learn_graph(trace, layer=-1, head='all', nodes=list(range(len(h))))
    pairs = [(a, b) for a in range(len(h)) for b in range(a + 1, len(h))]
    chosen = rng.choice(len(pairs), size=len(learned), replace=False)
    for name, g in (('learned', learned), ('random', as_matrix_graph(len(h), [pairs[k] for k in chosen]))):
        s = skeleton_scores(g, truth)
        counts[name] += [s['tp'], s['fp'], s['fn']]
    shds.append(shd(learned, truth))
    flips.append({'CLEANN': ex.changed, 'attention': ex.baseline.size is not None})

def prf(tp, fp, fn):
    p, r = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return {'precision': round(p, 3), 'recall': round(r, 3), 'F1': round(2 * p * r / (p + r) if tp else 0.0, 3)}

scores = pd.DataFrame({name: prf(*c) for name, c in counts.items()}).T
scores.loc['learned', 'mean SHD'] = round(float(np.mean(shds)), 1)
print(f"{len(sample)} users; top-1 changed by a set of <= 3 items: CLEANN "
      f"{np.mean([f['CLEANN'] for f in flips]):.0%}, attention baseline {np.mean([f['attention'] for f in flips]):.0%}")
scores

# %%
k = list(range(len(history)))
trace = rec.explanation_trace(history, e.prediction)[0]
fig, axes = plt.subplots(2, 1, figsize=(11, 9))
draw_graph(abcd.learn_graph(trace, layer=-1, head='all', nodes=k), ax=axes[0], title=f'learned, user {user}')
draw_graph(test.graph.sequence_pag(user, 'taste'), ax=axes[1], title='planted truth (PAG, latent tastes)')
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Every panel on one history: the Lab
#
# The text box takes a history as item ids separated by spaces or commas (ids 0..99 here); a word or an
# unknown id shows a message naming the valid range. Items are shown by title and id, and where a
# classifier would list its classes the panels list the top-10 recommendations.

# %%
lab = Lab(rec, history)
lab.select('Explanation')
lab

# %% [markdown]
# ## MovieLens-1M
#
# MovieLens-1M is not shipped: download `ml-1m.zip` from https://grouplens.org/datasets/movielens/1m/,
# unzip it, and set `MOVIELENS_PATH` in the parameters cell (or `ATTNLAB_MOVIELENS`). Item ids are renumbered
# to 0..n_items-1 (`ds.dense()`), a small BERT4Rec (not tuned: a demonstration, not a benchmark) is
# trained on the train split (each user's sequence without its last item), its HR@10 is printed beside
# popularity's, and one recommendation is explained. Without the data this cell says so and
# does nothing else.

# %%
from analysis.zoo.bert4rec import train_bert4rec

path = MOVIELENS_PATH or os.environ.get('ATTNLAB_MOVIELENS')
if not path or not os.path.exists(os.path.expanduser(path)):
    print('MovieLens-1M skipped: ' + ('no data set given' if not path else f'{path!r} does not exist') + '. '
          'Download ml-1m.zip from https://grouplens.org/datasets/movielens/1m/, unzip it, and set '
          "MOVIELENS_PATH = '/path/to/ml-1m' in the parameters cell (or the environment variable ATTNLAB_MOVIELENS).")
    ml_rec = None
else:
    path = os.path.expanduser(path)
    ml_train = load_dataset('movielens-1m', 'train', path=path).dense()
    ml_test = load_dataset('movielens-1m', 'test', path=path).dense()     # same items, same renumbering
    print(f"{len(ml_train)} users, {ml_train.n_items} movies, median length {int(np.median(ml_train.lengths()))}")
    fit = ml_train.sample(500, seed=0) if FAST else ml_train
    ml_rec, ml_metrics = train_bert4rec(fit.sequences, n_items=ml_train.n_items, titles=dict(ml_train.titles),
                                        hidden=64, layers=2, heads=2, max_len=32, epochs=2 if FAST else 10,
                                        seed=0, name='bert4rec-ml1m')
    print({k: ml_metrics[k] for k in ('hr@10', 'popularity_hr@10', 'ndcg@10', 'train_seconds')})

# %%
if ml_rec is not None:
    ml_history = ml_test.sequences[0][-(ml_rec.max_length - 1):]
    print('last movies:', '; '.join(ml_rec.title(i) for i in ml_history[-5:]))
    print('top-5:', '; '.join(f"{ml_rec.title(i)} ({p:.3f})" for i, p in ml_rec.recommend(ml_history, k=5)))
    ml_e = abcd.explain(ml_rec, ml_history, head='all', max_set_size=2, baseline_max_size=5)
    print(ml_e)
    print('explanation sets:', [[ml_rec.title(ml_history[p]) for p in s] for s in ml_e.sets] or 'none up to 2 movies')
    print('attention baseline:',
          [ml_rec.title(ml_history[p]) for p in ml_e.baseline.set] or 'no prefix of 5 changed it')
    explanation_figure(ml_e, labels=ml_rec.labels, width=11)
    plt.show()
