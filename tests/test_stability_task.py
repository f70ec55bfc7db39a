"""The ``stability`` runner task: graph stability of every head over sentences, resumable."""
from __future__ import annotations

import pandas as pd
import pytest

from analysis.experiments import stability as st
from analysis.experiments.runner import load_results, run, status
from analysis.experiments.tasks import get_task, task_names
from analysis.stability import graph_stability

LONG = "A wonderful little film, moving and funny, with a great cast and a terrible ending."   # 20 tokens
SHORT = "a dull film."                                                                         # no null space


def test_registered_and_settings_checked():
    assert "stability" in task_names() and get_task("stability").name == "stability"
    with pytest.raises(ValueError, match="unknown settings"):
        st.units_for_texts([LONG], extremes=2)
    with pytest.raises(ValueError, match="n_extreme \\+ n_mix"):
        st.units_for_texts([LONG], n_extreme=0, n_mix=0)
    with pytest.raises(ValueError, match="n must be at least 1"):
        st.make_units(dataset="rotten_tomatoes", n=0)


def test_rows_equal_graph_stability_and_short_sentences_give_none(tiny_bert, tmp_path):
    model = tiny_bert
    d_head = model.trace(LONG).values.shape[-1]
    assert st.has_null_space(model, LONG, d_head) and not st.has_null_space(model, SHORT, d_head)
    units = st.units_for_texts([LONG, SHORT], dataset="demo", heads=[0, 3, 7], n_extreme=1, n_mix=1, seed=3)
    df = run("stability", units, model=model, workers=1, out=tmp_path / "r", progress=False)
    # head 7 does not exist in the 4-head model: clipped; the short sentence yields no rows
    assert set(df["head"]) == {0, 3} and set(df.text_id) == {0} and len(df) == 2 * 2
    state = status(tmp_path / "r")
    assert state["done"] == ["demo-00000", "demo-00001"] and not state["failed"] and not state["missing"]
    for h in (0, 3):
        want = pd.DataFrame(graph_stability(model, LONG, layer=-1, head=h, n_extreme=1, n_mix=1, seed=3).rows())
        got = df[df["head"] == h].reset_index(drop=True)[want.columns]
        pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert (df.efficient_skeleton_shd == 0).all() and df.logit_change.max() < 1e-4
    # resuming computes nothing and gives the same table
    again = run("stability", units, model=model, workers=1, out=tmp_path / "r", progress=False)
    assert again.attrs["computed"] == 0
    pd.testing.assert_frame_equal(again, load_results(tmp_path / "r"))


def test_summary_keeps_every_attention_kind_with_intervals(tiny_bert):
    rows = st.run_unit(tiny_bert, st.units_for_texts([LONG], heads=[0, 1, 2], n_extreme=2, n_mix=1)[0])
    table = st.summarize(pd.DataFrame(rows))["summary"]
    assert list(table.attention) == ["raw", "efficient"] and (table.a_prime == 9).all()
    eff = table.set_index("attention").loc["efficient"]
    assert eff.skeleton_changed == 0 and eff.shd_per_edge_mean == 0
    raw = table.set_index("attention").loc["raw"]
    assert raw.sentences == 1 and raw.heads == 3
    with pytest.raises(ValueError, match="no stability rows"):
        st.summary_table(pd.DataFrame())
