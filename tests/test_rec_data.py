"""Recommendation data: the MovieLens-1M reader and the synthetic generator's ground truth."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from analysis import load_dataset
from analysis.causal import Mark
from analysis.data import RecDataset, load_movielens, synthetic_rec

# ---------------------------------------------------------------------------------------
# MovieLens
# ---------------------------------------------------------------------------------------

RATINGS = """\
1::30::5::978300760
1::10::3::978300760
1::20::4::978300100
1::40::1::978302000
2::10::4::978300000
2::50::2::978300001
3::60::5::5
3::20::2::3
3::10::4::4
"""
MOVIES = ("10::Amélie (2001)::Comedy|Romance\n20::Señor Ñandú (1999)::Drama\n"
          "60::Ça (1990)::Horror\n")


def _write(folder, ratings=RATINGS, movies=MOVIES):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.dat").write_text(ratings, encoding="ascii")
    if movies is not None:
        (folder / "movies.dat").write_bytes(movies.encode("latin-1"))  # as the real file
    return folder


def test_movielens_splits_ties_and_dropped_users(tmp_path):
    folder = _write(tmp_path / "ml")
    full = load_movielens(folder, "all")
    # user 1: 20 @ ...100, then 10 and 30 tie @ ...760 (item id breaks the tie), then 40;
    # user 2 has 2 ratings: dropped; user 3 by timestamp 20, 10, 60
    assert full.users == (1, 3)
    assert full.sequences == ((20, 10, 30, 40), (20, 10, 60))
    assert full.targets is None and full.graph is None
    assert full.item_ids == (10, 20, 30, 40, 60) and full.n_items == 5  # 50 only had user 2
    train = load_movielens(folder, "train")
    assert train.sequences == ((20, 10, 30), (20, 10)) and train.targets is None
    test = load_movielens(folder, "test")
    assert test.sequences == train.sequences and test.targets == (40, 60)
    assert test.item_ids == full.item_ids  # the vocabulary does not depend on the split
    assert isinstance(test, RecDataset) and len(test) == 2 and test[0] == (20, 10, 30)
    dense = test.dense()  # ids renumbered by position in item_ids (10, 20, 30, 40, 60)
    assert dense.sequences == ((1, 0, 2), (1, 0)) and dense.targets == (3, 4)
    assert dense.item_ids == tuple(range(5)) and dense.n_items == 5 and dense.users == (1, 3)


def test_movielens_titles_are_latin1_and_optional(tmp_path):
    ds = load_movielens(_write(tmp_path / "ml"), "all")
    assert ds.title(10) == "Amélie (2001)" and ds.title(20) == "Señor Ñandú (1999)"
    assert ds.genres[10] == ("Comedy", "Romance")
    assert ds.title(30) == "item 30"  # no line in movies.dat
    assert ds.dense().title(0) == "Amélie (2001)" and ds.dense().genres[1] == ("Drama",)
    with pytest.raises(KeyError, match="not in movielens-1m"):
        ds.title(50)  # only rated by a dropped user
    bare = load_movielens(_write(tmp_path / "bare", movies=None), "all")
    assert dict(bare.titles) == {} and bare.title(10) == "item 10"


def test_movielens_path_forms_and_registry(tmp_path, monkeypatch):
    folder = _write(tmp_path / "data" / "ml-1m")
    ref = load_movielens(folder, "test")
    for path in (folder / "ratings.dat", str(tmp_path / "data")):  # the file; the parent folder
        other = load_movielens(path, "test")
        assert other.sequences == ref.sequences and other.title(10) == "Amélie (2001)"
    via = load_dataset("movielens-1m", split="test", path=folder)
    assert via.sequences == ref.sequences and via.targets == ref.targets
    monkeypatch.delenv("ATTNLAB_MOVIELENS", raising=False)
    with pytest.raises(FileNotFoundError, match="ATTNLAB_MOVIELENS.*download ml-1m.zip"):
        load_dataset("movielens-1m")
    monkeypatch.setenv("ATTNLAB_MOVIELENS", str(folder))
    assert load_dataset("movielens-1m", "train").sequences == load_movielens(folder).sequences
    with pytest.raises(TypeError, match="only path="):
        load_dataset("movielens-1m", path=folder, seed=3)


@pytest.mark.parametrize("bad,why", [
    ("3::10::4", "expected 4 fields separated by '::'"),
    ("3::10::4::4::9", "found 5"),
    ("3::ten::4::4", "expected integer values"),
    ("3,10,4,4", "expected 4 fields"),
    ("3::10::4.5::4", "expected integer values"),
    ("3::10::9::4", "rating 9 is outside 1..5"),
])
def test_movielens_malformed_line_names_file_and_line(tmp_path, bad, why):
    lines = RATINGS.splitlines()
    lines[4] = bad  # line 5
    folder = _write(tmp_path / "ml", ratings="\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="ratings.dat, line 5: ") as e:
        load_movielens(folder)
    assert why in str(e.value) and repr(bad) in str(e.value)


def test_movielens_missing_and_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist: expected the ml-1m folder"):
        load_movielens(tmp_path / "nowhere")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(FileNotFoundError, match="no ratings.dat in"):
        load_movielens(tmp_path / "empty_dir")
    with pytest.raises(ValueError, match="is empty"):
        load_movielens(_write(tmp_path / "e", ratings="\n\n"))
    with pytest.raises(ValueError, match="no user has at least 3"):
        load_movielens(_write(tmp_path / "few", ratings="1::1::1::1\n1::2::1::2\n"))
    bad_movies = _write(tmp_path / "bm", movies="10::no genres field\n")
    with pytest.raises(ValueError, match="movies.dat, line 1: .*3 fields"):
        load_movielens(bad_movies)
    with pytest.raises(ValueError, match="use one of train, test, all"):
        load_movielens(_write(tmp_path / "ok"), "valid")


def test_movielens_reparses_a_changed_file(tmp_path):
    folder = _write(tmp_path / "ml")
    assert load_movielens(folder, "all").users == (1, 3)
    _write(folder, ratings=RATINGS + "2::70::3::978300002\n")  # user 2 now has 3 ratings
    assert load_movielens(folder, "all").users == (1, 2, 3)


def test_movielens_matches_pandas_on_random_data(tmp_path):
    rng = np.random.default_rng(0)
    n = 3000
    df = pd.DataFrame({"user": rng.integers(1, 300, n), "item": rng.integers(1, 400, n),
                       "rating": rng.integers(1, 6, n), "ts": rng.integers(0, 50, n)})  # many ties
    df = df.drop_duplicates(["user", "item"])
    lines = "\n".join("::".join(map(str, row)) for row in df.itertuples(index=False))
    ds = load_movielens(_write(tmp_path / "ml", ratings=lines, movies=None), "test")
    ref = df.sort_values(["user", "ts", "item"]).groupby("user")["item"].apply(tuple)
    ref = ref[ref.map(len) >= 3]
    assert ds.users == tuple(ref.index)
    assert ds.sequences == tuple(s[:-1] for s in ref) and ds.targets == tuple(s[-1] for s in ref)


def test_unknown_dataset_lists_all():
    with pytest.raises(ValueError, match="available: rotten_tomatoes, imdb, movielens-1m, "
                                         "synthetic-rec"):
        load_dataset("netflix")
    with pytest.raises(TypeError, match="takes no options"):
        load_dataset("imdb", "test", seed=1)


# ---------------------------------------------------------------------------------------
# synthetic
# ---------------------------------------------------------------------------------------

def _causes_ok(ds: RecDataset) -> None:
    """Causes point to an earlier position whose item is a DAG parent of the caused item."""
    g = ds.graph
    assert g.sequences == ds.sequences
    for seq, causes in zip(ds.sequences, g.causes):
        assert len(causes) == len(seq) and causes[:1] in ((), (-1,))
        for p, q in enumerate(causes):
            assert -1 <= q < p
            if q >= 0:
                assert g.item_dag[seq[q], seq[p]]


def test_synthetic_is_deterministic_and_prefix_stable():
    a = synthetic_rec("all", n_users=300, seed=4)
    b = synthetic_rec("all", n_users=300, seed=4)
    assert a.sequences == b.sequences and a.graph.causes == b.graph.causes
    assert np.array_equal(a.graph.item_dag, b.graph.item_dag)
    assert np.array_equal(a.graph.user_tastes, b.graph.user_tastes)
    c = synthetic_rec("all", n_users=300, seed=5)
    assert c.sequences != a.sequences and not np.array_equal(c.graph.item_dag, a.graph.item_dag)
    small = synthetic_rec("all", n_users=40, seed=4)  # users have their own random streams
    assert small.sequences == a.sequences[:40] and small.graph.causes == a.graph.causes[:40]


def test_synthetic_sequences_and_causes():
    ds = synthetic_rec("all", n_users=500, n_items=60, n_tastes=4, length=(5, 25), seed=1)
    assert ds.n_items == 60 and ds.item_ids == tuple(range(60)) and ds.users == tuple(range(500))
    lengths = ds.lengths()
    assert lengths.min() >= 5 and lengths.max() <= 25
    for seq in ds.sequences:
        assert len(set(seq)) == len(seq) and all(0 <= i < 60 for i in seq)
    _causes_ok(ds)
    g = ds.graph
    assert g.item_dag.shape == (60, 60) and not np.any(np.diag(g.item_dag))
    assert g.item_taste.tolist() == [i * 4 // 60 for i in range(60)]
    assert np.allclose(g.user_tastes.sum(axis=1), 1.0)
    assert ds.title(17) == "t1-item17" and ds.genres[17] == ("taste 1",)
    assert ds.dense() is ds
    # the item DAG is acyclic: item_graph builds a DAG and the oracle's Kahn check accepts it
    assert g.item_graph().kind == "dag" and len(g.item_graph()) == int(g.item_dag.sum())


def test_synthetic_follow_up_fallback_rule():
    """With p_follow = 1 a taste draw happens only when no earlier item has an unconsumed
    child (checked independently); with p_follow = 0 every item is a taste draw."""
    ds = synthetic_rec("all", n_users=200, p_follow=1.0, seed=2)
    dag = ds.graph.item_dag
    n_follow = 0
    for seq, causes in zip(ds.sequences, ds.graph.causes):
        for p in range(1, len(seq)):
            has_child = any(dag[seq[q], c] and c not in seq[:p]
                            for q in range(p) for c in range(dag.shape[0]))
            assert (causes[p] >= 0) == has_child
            n_follow += causes[p] >= 0
    assert n_follow > 0
    none = synthetic_rec("all", n_users=50, p_follow=0.0, seed=2)
    assert all(q == -1 for c in none.graph.causes for q in c)


def test_synthetic_taste_draws_follow_the_mixture():
    ds = synthetic_rec("all", n_users=2000, n_tastes=5, p_follow=0.3, seed=0)
    g = ds.graph
    share = np.zeros((len(ds), 5))
    for u, (seq, causes) in enumerate(zip(ds.sequences, g.causes)):
        for i, q in zip(seq, causes):
            if q < 0:
                share[u, g.item_taste[i]] += 1
    share /= share.sum(axis=1, keepdims=True)
    r = np.corrcoef(share.ravel(), g.user_tastes.ravel())[0, 1]
    assert r > 0.8, r


def test_synthetic_split_semantics():
    kw = dict(n_users=100, seed=3)
    full, train, test = (synthetic_rec(s, **kw) for s in ("all", "train", "test"))
    assert train.sequences == tuple(s[:-1] for s in full.sequences) == test.sequences
    assert train.targets is None and test.targets == tuple(s[-1] for s in full.sequences)
    assert train.graph.causes == tuple(c[:-1] for c in full.graph.causes) == test.graph.causes
    assert test.graph.target_causes == tuple(c[-1] for c in full.graph.causes)
    assert train.graph.target_causes is None
    _causes_ok(train)
    via = load_dataset("synthetic-rec", split="test", **kw)
    assert via.sequences == test.sequences and via.targets == test.targets


def test_synthetic_sample_subsets_the_truth():
    ds = synthetic_rec("test", n_users=100, seed=3)
    sub = ds.sample(10, seed=1)
    assert len(sub) == 10
    idx = [ds.users.index(u) for u in sub.users]
    assert idx == sorted(idx) and sub.sequences == tuple(ds.sequences[i] for i in idx)
    assert sub.graph.causes == tuple(ds.graph.causes[i] for i in idx)
    assert sub.targets == tuple(ds.targets[i] for i in idx)
    assert sub.graph.target_causes == tuple(ds.graph.target_causes[i] for i in idx)
    assert np.array_equal(sub.graph.user_tastes, ds.graph.user_tastes[idx])
    assert ds.sample(10, seed=1).users == sub.users and ds.sample(10, seed=2).users != sub.users
    _causes_ok(sub)


def _expected_skeleton(causes, parents) -> set[frozenset]:
    """m-adjacencies: trigger edges, plus pairs with the same latent parent."""
    adj = {frozenset((q, p)) for p, q in enumerate(causes) if q >= 0}
    for a, b in itertools.combinations(range(len(causes)), 2):
        if parents[a] >= 0 and parents[a] == parents[b]:
            adj.add(frozenset((a, b)))
    return adj


@pytest.mark.parametrize("latent", ["taste", "user"])
def test_sequence_graphs_match_the_planted_structure(latent):
    ds = synthetic_rec("all", n_users=8, length=(4, 9), p_follow=0.6, seed=7)
    g = ds.graph
    for s, (seq, causes) in enumerate(zip(ds.sequences, g.causes)):
        dag = g.sequence_dag(s)
        assert dag.kind == "dag" and dag.nodes == tuple(range(len(seq)))
        edges = {(e.a, e.b) for e in dag.edges()}
        assert edges == {(q, p) for p, q in enumerate(causes) if q >= 0}
        assert all(dag.mark(a, b) is Mark.TAIL and dag.mark(b, a) is Mark.ARROW
                   for a, b in edges)
        assert all(g.item_dag[seq[a], seq[b]] for a, b in edges)
        parents = g.latent_parents(s, latent)
        assert all((k >= 0) == (q < 0) for k, q in zip(parents, causes))
        if latent == "taste":
            assert all(k < 0 or g.item_taste[i] == k for i, k in zip(seq, parents))
        pag = g.sequence_pag(s, latent)
        skel = {frozenset((e.a, e.b)) for e in pag.edges()}
        dag_skel = {frozenset(e) for e in edges}
        assert dag_skel <= skel  # the true DAG's adjacencies survive, and every extra one is
        assert skel == _expected_skeleton(causes, parents)  # a pair sharing a latent parent
        assert all(m == Mark.CIRCLE for m in pag.marks[pag.marks != 0])  # no colliders
        ordered = g.sequence_pag(s, latent, order=True)
        assert {frozenset((e.a, e.b)) for e in ordered.edges()} == skel
        assert all(e.mark_b is Mark.ARROW for e in ordered.edges())  # a < b: b is later


def test_synthetic_bad_parameters():
    with pytest.raises(ValueError, match="3 <= min <= max <= n_items"):
        synthetic_rec(length=(2, 5))
    with pytest.raises(ValueError, match="3 <= min <= max <= n_items=10"):
        synthetic_rec(n_items=10, length=(5, 11))
    with pytest.raises(ValueError, match="p_follow must be in"):
        synthetic_rec(p_follow=1.5)
    with pytest.raises(ValueError, match="use one of train, test, all"):
        synthetic_rec("validation")
    with pytest.raises(ValueError, match="unknown latent"):
        synthetic_rec("all", n_users=2).graph.sequence_pag(0, "genre")
    with pytest.raises(IndexError, match="out of range"):
        synthetic_rec("all", n_users=2).graph.sequence_dag(2)
