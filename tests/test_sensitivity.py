"""Head sensitivity: ablating a head that cannot reach the output moves nothing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.sensitivity import ablated_attention, head_sensitivity
from tests.helpers import tiny_model

TEXTS = ["A wonderful little film, moving and funny.", "a terrible ending and a dull cast"]


@pytest.fixture(scope="module")
def silenced():
    """A tiny BERT whose layer-1 head 2 is irrelevant: its slice of the output projection is zero."""
    m = tiny_model("bert")
    d = m.module.config.hidden_size // m.n_heads
    with torch.no_grad():
        m.module.bert.encoder.layer[1].attention.output.dense.weight[:, 2 * d:3 * d] = 0.0
    return m


def test_irrelevant_head_has_zero_sensitivity(silenced):
    table = head_sensitivity(silenced, TEXTS, seed=0)
    assert table.tvd.shape == (2, 2, 4, 3)
    # float noise only (1.8e-8 seen on one machine): the head's output is multiplied by zero
    assert np.abs(table.tvd[:, 1, 2]).max() < 1e-6 and np.abs(table.logit[:, 1, 2]).max() < 1e-6
    others = [(lay, h) for lay in range(2) for h in range(4) if (lay, h) != (1, 2)]
    assert all(table.tvd[:, lay, h].max() > 1e-3 for lay, h in others)     # the rest do move the output
    assert (1, 2) not in table.qualifying(0.01)
    assert table.per_layer(0.01)[1] <= 3
    assert len(table.rows()) == 2 * 8 * 3


def test_head_selection_and_seeded_permutation(silenced):
    a = head_sensitivity(silenced, TEXTS[0], heads=[(0, 1)], ablations=["permute"], seed=5)
    b = head_sensitivity(silenced, TEXTS[0], heads=[(0, 1)], ablations=["permute"], seed=5)
    np.testing.assert_array_equal(a.tvd, b.tvd)
    assert a.heads == ((0, 1),) and np.isnan(a.tvd[0, 1]).all() and not np.isnan(a.tvd[0, 0, 1]).any()


def test_ablations():
    a = np.random.default_rng(0).dirichlet(np.ones(4), size=4)
    np.testing.assert_allclose(ablated_attention(a, "uniform"), 0.25)
    low = ablated_attention(a, "uniform", causal=True)
    np.testing.assert_allclose(low.sum(1), 1.0)
    assert np.all(np.triu(low, 1) == 0)
    assert np.all(ablated_attention(a, "zero") == 0)
    p = ablated_attention(a, "permute", rng=np.random.default_rng(1))
    assert sorted(map(tuple, p)) == sorted(map(tuple, a))


def test_bad_input(silenced):
    table = head_sensitivity(silenced, TEXTS[0], layers=[0])
    with pytest.raises(ValueError, match="eps must be a number > 0"):
        table.qualifying(0.0)
    with pytest.raises(ValueError, match="eps must be a number > 0"):
        table.qualifying(-0.01)
    with pytest.raises(IndexError, match=r"0\.\.3"):
        head_sensitivity(silenced, TEXTS, heads=[(0, 4)])
    with pytest.raises(IndexError, match=r"0\.\.1"):
        head_sensitivity(silenced, TEXTS, layers=[2])
    with pytest.raises(ValueError, match="ablation must be one of"):
        head_sensitivity(silenced, TEXTS, ablations=["shuffle"])
