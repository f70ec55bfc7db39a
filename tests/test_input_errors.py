"""Inputs that are wrong raise a clear error before any work (issue 16, point 8); inputs that
are fine in another type (numpy integers) work."""
from __future__ import annotations

import os

import numpy as np
import pytest

from analysis import abcd
from analysis.adversarial import search
from analysis.causal import check_seed, random_dag, random_weights
from analysis.data import load_movielens
from analysis.models import InputError
from tests.helpers import tiny_model

TEXT = "the film was a slow burn but the acting carried it"


@pytest.fixture(scope="module")
def bert(tiny_bert):
    return tiny_bert


@pytest.fixture(scope="module")
def trace(bert):
    return bert.trace(TEXT)


# ----------------------------------------------------------------------------- texts
@pytest.mark.parametrize("text", ["\u200b\u200b", "\x00\x01\x7f", "\u200b \t\n\u2060\ufeff", "\u00ad"])
def test_text_without_content_is_refused_before_tracing(bert, text):
    with pytest.raises(InputError, match="no content|no token"):
        bert.trace(text)
    with pytest.raises(InputError, match="no content|no token"):
        bert.predict([TEXT, text])


def test_text_with_one_word_among_zero_width_characters_traces(bert):
    t = bert.trace("\u200bgood\u200b")
    assert t.n_tokens >= 3


def test_over_long_text_raises_by_default(bert):
    long = "word " * (bert.max_length + 10)
    with pytest.raises(InputError, match=f"more than this model's limit of {bert.max_length}.*truncate=True"):
        bert.trace(long)
    with pytest.warns(UserWarning, match="truncated"):
        assert bert.trace(long, truncate=True).n_tokens == bert.max_length


# ----------------------------------------------------------------------------- overrides
def test_override_with_string_layer_is_refused(bert, trace):
    a = trace.attentions[0, 0]
    with pytest.raises(InputError, match=r"layer and head must be integers \(layer 0..1, head 0..3\)"):
        bert.trace(TEXT, attention_override={("5", 0): a})
    with pytest.raises(InputError, match="must be integers"):
        bert.predict(TEXT, attention_override={(0, 1.0): a})


def test_override_given_as_a_list_is_refused(bert, trace):
    with pytest.raises(InputError, match=r"attention_override must be a dict \{\(layer, head\).*not a list"):
        bert.trace(TEXT, attention_override=[((0, 0), trace.attentions[0, 0])])


def test_numpy_integer_override_keys_work(bert, trace):
    a = np.full_like(trace.attentions[0, 0], 1.0 / trace.n_tokens)
    t = bert.trace(TEXT, attention_override={(np.int64(0), np.int32(1)): a})
    np.testing.assert_allclose(t.attentions[0, 1], a, atol=1e-6)


# ----------------------------------------------------------------------------- removal
def test_remove_as_a_numpy_array_works(bert):
    a = bert.trace(TEXT, remove=np.array([1, 2]))
    b = bert.trace(TEXT, remove=[1, 2])
    assert a.removed == b.removed == (1, 2)
    np.testing.assert_allclose(a.probs, b.probs)
    np.testing.assert_allclose(bert.predict(TEXT, remove=np.array([1, 2])), bert.predict(TEXT, remove=[1, 2]))


@pytest.mark.parametrize("bad", [[1.7], [1.0], [True], ["1"]])
def test_remove_with_non_integers_is_refused(bert, bad):
    with pytest.raises(InputError, match="remove lists token positions"):
        bert.trace(TEXT, remove=bad)


@pytest.mark.parametrize("size", [0, -1, 2.5, True])
def test_predict_batch_size_must_be_positive(bert, size):
    with pytest.raises(InputError, match="batch_size must be a positive integer"):
        bert.predict([TEXT, TEXT], batch_size=size)


# ----------------------------------------------------------------------------- nodes
def test_nodes_none_is_refused_with_the_valid_choices(trace):
    with pytest.raises(TypeError, match="nodes must be one of 'all', 'content' or a list of token positions"):
        abcd.select_nodes(trace, None)
    with pytest.raises(TypeError, match="nodes must be one of"):
        abcd.learn_graph(trace, nodes=None)


def test_nodes_with_floats_are_refused_and_numpy_ints_work(trace):
    with pytest.raises(TypeError, match=r"integers 0..12\); got 1.7"):
        abcd.select_nodes(trace, [0, 1.7, 3])
    assert abcd.select_nodes(trace, np.array([3, 1, 2])) == [1, 2, 3]


# ----------------------------------------------------------------------------- seeds
@pytest.mark.parametrize("seed", [2**70, 2**32, -1, 1.5, True])
def test_out_of_range_seeds_name_the_range(seed):
    with pytest.raises(ValueError, match=r"seed must be an integer in 0..2\*\*32-1"):
        check_seed(seed)
    with pytest.raises(ValueError, match=r"0..2\*\*32-1"):
        random_dag(5, 0.5, seed=seed)
    with pytest.raises(ValueError, match=r"0..2\*\*32-1"):
        random_weights(np.zeros((3, 3), bool), seed=seed)


def test_adversarial_search_refuses_a_huge_seed_and_takes_the_largest_valid_one():
    gpt2 = tiny_model("gpt2")
    with pytest.raises(ValueError, match=r"seed must be an integer in 0..2\*\*32-1"):
        search(gpt2, TEXT, layer=0, head=0, k=2, steps=1, seed=2**70, progress=False)
    r = search(gpt2, TEXT, layer=0, head=0, k=2, steps=1, seed=2**32 - 1, progress=False)
    assert r.seed == 2**32 - 1


# ----------------------------------------------------------------------------- MovieLens
def _ratings(folder, text: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.dat").write_text(text, encoding="utf-8")
    return folder


GOOD = "1::10::5::1\n1::20::4::2\n1::30::3::3\n"


def test_movielens_id_of_20_digits_names_file_and_line(tmp_path):
    folder = _ratings(tmp_path / "big", GOOD + "1::12345678901234567890::4::4\n")
    with pytest.raises(ValueError, match=r"ratings.dat, line 4: .*'12345678901234567890' is too large.*64-bit"):
        load_movielens(folder)


def test_movielens_id_of_19_digits_that_fits_int64_loads(tmp_path):
    big = 2**63 - 1
    folder = _ratings(tmp_path / "ok", GOOD + f"1::{big}::4::4\n")
    data = load_movielens(folder, "all")
    assert big in data.item_ids


@pytest.mark.parametrize("field", ["1_0", "\u0661\u0662", "\uff11", "+7", " 7", "7 "])
def test_movielens_ids_must_be_ascii_digits(tmp_path, field):
    folder = _ratings(tmp_path / "odd", GOOD + f"1::{field}::4::4\n")
    with pytest.raises(ValueError, match=r"ratings.dat, line 4: .*is not an integer: expected integer values of ASCII digits"):
        load_movielens(folder)


def test_movielens_movie_id_must_be_ascii_digits(tmp_path):
    folder = _ratings(tmp_path / "mv", GOOD)
    (folder / "movies.dat").write_text("1_0::A title (1999)::Drama\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"movies.dat, line 1: .*item id '1_0' is not an integer of ASCII"):
        load_movielens(folder)


def test_movielens_cache_sees_a_rewrite_with_the_same_size_and_mtime(tmp_path):
    folder = _ratings(tmp_path / "stale", GOOD)
    path = folder / "ratings.dat"
    first = load_movielens(folder, "all")
    st = os.stat(path)
    path.write_text(GOOD.replace("1::30::3::3", "1::40::3::3"), encoding="utf-8")   # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))                            # same mtime
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns
    second = load_movielens(folder, "all")
    assert 30 in first.item_ids and 40 not in first.item_ids
    assert 40 in second.item_ids and 30 not in second.item_ids
