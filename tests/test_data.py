"""Review datasets: fixed, documented, balanced, disjoint splits."""
from __future__ import annotations

import numpy as np
import pytest

from analysis import load_dataset


@pytest.mark.parametrize("name,n_train,n_test", [("rotten_tomatoes", 7464, 1066), ("imdb", 19904, 5000)])
def test_split_sizes_balance_and_disjointness(name, n_train, n_test):
    train, test = load_dataset(name, "train"), load_dataset(name, "test")
    assert (len(train), len(test)) == (n_train, n_test)
    assert test.labels.mean() == 0.5
    assert len(load_dataset(name, "all")) == n_train + n_test
    assert set(train.texts).isdisjoint(test.texts)  # duplicates are dropped before splitting
    again = load_dataset(name, "test")
    assert again.texts == test.texts and np.array_equal(again.labels, test.labels)


def test_sample_is_seeded():
    test = load_dataset("rotten_tomatoes", "test")
    a, b = test.sample(10, seed=3), test.sample(10, seed=3)
    assert a.texts == b.texts and len(a) == 10
    assert test.sample(10, seed=4).texts != a.texts
    text, label = a[0]
    assert isinstance(text, str) and label in (0, 1)


def test_bad_names():
    with pytest.raises(ValueError, match="available: rotten_tomatoes, imdb"):
        load_dataset("sst2")
    with pytest.raises(ValueError, match="use one of train, test, all"):
        load_dataset("imdb", "validation")
