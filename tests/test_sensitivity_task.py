"""The ``sensitivity`` and ``sensitivity_adversarial`` runner tasks: rows equal the direct calls
(``head_sensitivity`` over the whole list, ``adversarial.search``), resumable, settings checked."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.adversarial import search
from analysis.experiments import sensitivity as se
from analysis.experiments.runner import load_results, run, status
from analysis.experiments.tasks import get_task, task_names
from analysis.sensitivity import head_sensitivity

TEXTS = ["A wonderful little film, moving and funny, with a great cast.",   # different lengths: the
         "a dull film.",                                                      # permutations of a sentence
         "The plot drags, yet the actors keep it alive until the end."]     # depend on the earlier ones


def test_registered_and_settings_checked(tiny_bert):
    assert {"sensitivity", "sensitivity_adversarial"} <= set(task_names())
    assert get_task("sensitivity").name == "sensitivity"
    assert get_task("sensitivity_adversarial") is se.ADVERSARIAL
    with pytest.raises(ValueError, match="unknown settings"):
        se.units_for_texts(TEXTS, model=tiny_bert, ablation="zero")
    with pytest.raises(ValueError, match="ablations must be"):
        se.units_for_texts(TEXTS, model=tiny_bert, ablations=["shuffle"])
    with pytest.raises(ValueError, match="\\[layer, head\\] pairs"):
        se.units_for_texts(TEXTS, model=tiny_bert, heads=[1])
    with pytest.raises(IndexError, match="layer 5 is out of range"):
        se.units_for_texts(TEXTS, model=tiny_bert, heads=[[5, 0]])
    with pytest.raises(ValueError, match="n must be at least 1"):
        se.make_units(n=0)
    with pytest.raises(ValueError, match="needs heads"):
        se.adversarial_units(TEXTS, [])
    with pytest.raises(ValueError, match="needs heads"):
        se.adversarial_make_units(n=2)
    with pytest.raises(ValueError, match="k must be >= 1"):
        se.adversarial_units(TEXTS, [[1, 0]], k=0)
    with pytest.raises(ValueError, match="eps must be a number > 0"):
        se.adversarial_units(TEXTS, [[1, 0]], eps=0)
    with pytest.raises(ValueError, match="constraints lists"):
        se.adversarial_units(TEXTS, [[1, 0]], constraints=[["tvd", "exact"]])
    with pytest.raises(ValueError, match="unknown settings"):
        se.adversarial_units(TEXTS, [[1, 0]], step=3)


def test_rows_equal_one_head_sensitivity_call_and_resume(tiny_bert, tmp_path):
    model = tiny_bert
    units = se.units_for_texts(TEXTS, model=model, dataset="demo", seed=3)
    df = run("sensitivity", units, model=model, workers=1, out=tmp_path / "r", progress=False)
    assert df.error.isna().all() and df.attrs["computed"] == 3
    got = df.drop(columns=["unit_id", "error"])
    want = pd.DataFrame(head_sensitivity(model, TEXTS, seed=3).rows())
    pd.testing.assert_frame_equal(got, want)
    assert len(got) == 3 * 2 * 4 * 3                   # texts x layers x heads x ablations
    # the carried generator state matters: alone, the third sentence draws other permutations
    alone = pd.DataFrame(head_sensitivity(model, TEXTS[2:], seed=3).rows())
    third = got[got.text == 2].reset_index(drop=True)
    assert not np.allclose(third[third.ablation == "permute"].tvd, alone[alone.ablation == "permute"].tvd)
    assert np.array_equal(third[third.ablation == "uniform"].tvd, alone[alone.ablation == "uniform"].tvd)
    # resuming computes nothing and gives the same table
    again = run("sensitivity", units, model=model, workers=1, out=tmp_path / "r", progress=False)
    assert again.attrs["computed"] == 0 and status(tmp_path / "r")["done"] == [u["id"] for u in units]
    pd.testing.assert_frame_equal(again, load_results(tmp_path / "r"))
    # a unit run with a model that reads its sentence differently is refused, naming the cause
    bad = dict(units[0], n_tokens=units[0]["n_tokens"] + 1)
    with pytest.raises(ValueError, match="Make the units with the model you run"):
        se.run_unit(model, bad)


def test_subset_of_heads_and_summary_tables(tiny_bert):
    model = tiny_bert
    settings = dict(layers=[0], heads=[[1, 2]], ablations=["permute", "uniform"], seed=1)
    rows = [r for u in se.units_for_texts(TEXTS, model=model, **settings) for r in se.run_unit(model, u)]
    direct = head_sensitivity(model, TEXTS, layers=[0], heads=[(1, 2)], ablations=["permute", "uniform"], seed=1)
    pd.testing.assert_frame_equal(pd.DataFrame(rows), pd.DataFrame(direct.rows()))
    sens = se.sensitivity_table(pd.DataFrame(rows), n_layers=model.n_layers, n_heads=model.n_heads)
    np.testing.assert_array_equal(sens.tvd, direct.tvd)
    np.testing.assert_array_equal(sens.logit, direct.logit)
    assert sens.heads == direct.heads and sens.n_tokens == direct.n_tokens
    tables = se.summarize(pd.DataFrame(rows))
    heads = tables["heads"]
    assert [tuple(p) for p in heads[["layer", "head"]].to_numpy()] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 2)]
    med = direct.head_tvd("median")
    np.testing.assert_allclose(heads.median_max_tvd, [med[lay, h] for lay, h in direct.heads])
    assert list(heads.qualifies_x5) == [(lay, h) in direct.qualifying(0.01, factor=5.0) for lay, h in direct.heads]
    best = se.most_sensitive_heads(heads)
    assert list(best.layer) == [0, 1] and best.iloc[0].median_max_tvd == heads[heads.layer == 0].median_max_tvd.max()
    layers = tables["layers"]
    assert len(layers) == 2 * 2 and layers.tvd_max.max() == pytest.approx(np.nanmax(direct.tvd))
    with pytest.raises(ValueError, match="no sensitivity rows"):
        se.sensitivity_table(pd.DataFrame())


def test_adversarial_rows_equal_search_and_resume(tiny_bert, tmp_path):
    model = tiny_bert
    units = se.adversarial_units(TEXTS[:1], [[1, 2]], dataset="demo", k=2, steps=5, eps=0.05)
    assert [u["id"] for u in units] == ["demo-L1H2-00000"]
    df = run("sensitivity_adversarial", units, model=model, workers=1, out=tmp_path / "a", progress=False)
    assert df.error.isna().all() and df.skipped.isna().all()
    assert list(zip(df.constraint, df.eps_mode)) == list(se.CONSTRAINTS)
    for row, (constraint, mode) in zip(df.itertuples(), se.CONSTRAINTS):
        res = search(model, TEXTS[0], layer=1, head=2, k=2, eps=0.05 if mode == "abs" else "relative",
                     constraint=constraint, steps=5, seed=0, progress=False)
        f = res.feasible
        assert (row.layer, row.head, row.text, row.n_tokens, row.k) == (1, 2, 0, len(res.tokens), 2)
        assert row.eps == res.eps and row.eps_rule == res.eps_rule and row.feasible == int(f.sum())
        if f.any():
            assert row.jsd_all == float(res.jsd[f].mean()) and row.share_output == float(
                res.output_efficient_share[f].mean()) and row.tvd_max == float(res.tvd[f].max())
        else:
            assert np.isnan(row.jsd_all)
    again = run("sensitivity_adversarial", units, model=model, workers=1, out=tmp_path / "a", progress=False)
    assert again.attrs["computed"] == 0
    pd.testing.assert_frame_equal(again, load_results(tmp_path / "a"))
    summary = se.adversarial_summarize(df.drop(columns=["unit_id", "error"]))["summary"]
    assert len(summary) == 3 and (summary.requested == 2).all()


def test_adversarial_skipped_search_is_recorded(tiny_bert, monkeypatch):
    import analysis.adversarial as adv

    def refuse(*args, **kwargs):
        raise ValueError("the head does not reach the output here")

    monkeypatch.setattr(adv, "search", refuse)
    unit = se.adversarial_units(TEXTS[:1], [[0, 0]], k=3, constraints=[["tvd", "relative"]])[0]
    (row,) = se.adversarial_run_unit(tiny_bert, unit)
    assert row["skipped"] == "the head does not reach the output here" and row["feasible"] == 0
    assert np.isnan(row["jsd_all"]) and row["k"] == 3 and row["constraint"] == "tvd"
    with pytest.raises(ValueError, match="every search was skipped"):
        se.adversarial_table(pd.DataFrame([row]))


def test_command_with_a_model_folder_makes_the_units_with_that_model(tmp_path, capsys):
    """``run sensitivity --model FOLDER``: the units count tokens with FOLDER's model (the one they run
    on), not with the default model, so none fails on a mismatch."""
    from analysis.experiments.__main__ import main
    from tests.helpers import tiny_hf_model, tokenizer

    folder = tmp_path / "tiny"
    tiny_hf_model("bert").save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    out = tmp_path / "sens"
    assert main(["run", "sensitivity", "--dataset", "rotten_tomatoes", "--n", "2", "--out", str(out),
                 "--workers", "1", "--model", str(folder), "--no-progress"]) == 0
    assert "2 computed" in capsys.readouterr().out
    df = load_results(out)
    assert df["error"].isna().all() and len(df) > 0
