"""Paper figures (analysis.figures.paper), the experiments behind them (analysis.experiments)
and the registry / command line (python -m analysis.figures), on synthetic tables and tiny models."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from analysis import abcd
from analysis.efficient import decompose_matrix
from analysis.experiments import abcd_sentiment as ab
from analysis.experiments import efficient_claims as ec
from analysis.experiments import save_table
from analysis.experiments.paper import FIGURES, PaperRun, Sizes, figure_names, make_figure, make_figures
from analysis.figures import paper as pf
from tests.helpers import tiny_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def gids(fig: Figure) -> set[str]:
    return {a.get_gid() for a in fig.findobj() if a.get_gid()}


# --------------------------------------------------------------------------- synthetic tables
def explanations_df() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for layer in (4, 5):
        for head in ("0", "1", "all"):
            for i in range(5):
                c = rng.choice([1.0, 2.0, np.nan])
                b = rng.choice([1.0, 3.0, np.nan])
                rows.append(dict(dataset="rotten_tomatoes", text_id=i, layer=layer, head=head, cleann_size=c,
                                 cleann_found=bool(np.isfinite(c)), baseline_size=b,
                                 baseline_found=bool(np.isfinite(b)), max_set_size=3, cleann_calls=10, baseline_calls=3, seconds=0.1))
    return pd.DataFrame(rows)


def test_explanation_size_hist_counts_every_sentence():
    df = explanations_df()
    fig = pf.explanation_size_hist(df, head="all", layer=5)
    ax = fig.axes[0]
    cleann = [p for p in ax.patches if p.get_gid() == "bar:CLEANN"]
    assert len(cleann) == 4                                  # sizes 1, 2, 3 and "none"
    assert sum(p.get_height() for p in cleann) == pytest.approx(1.0)
    sub = df[(df["head"] == "all") & (df.layer == 5)]
    assert cleann[-1].get_height() == pytest.approx(sub.cleann_size.isna().mean())
    with pytest.raises(ValueError, match="no rows"):
        pf.explanation_size_hist(df, head="7")


def test_flip_rate_grid_cells_are_the_found_rates():
    df = explanations_df()
    fig = pf.flip_rate_grid(df)
    grid = fig.axes[0].images[0].get_array()
    assert grid.shape == (2, 3)                               # layers 4, 5 x heads 0, 1, all
    expect = df[(df.layer == 5) & (df["head"] == "all")].cleann_found.mean()
    assert grid[1, 2] == pytest.approx(expect)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0", "1", "all"]


def sweep_df(explain: bool) -> pd.DataFrame:
    rows = []
    for i in range(3):
        for a in (1e-3, 1e-1):
            for ns, label in ((32.0, "head"), (384.0, "hidden")):
                row = dict(text_id=i, alpha=a, n_samples=ns, n_samples_label=label, density=0.1 + a + ns / 1000)
                if explain:
                    row.update(cleann_found=ns > 100, cleann_size=2.0 if ns > 100 else np.nan)
                rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("explain", [False, True])
def test_sweep_figure_one_line_per_alpha(explain):
    fig = pf.sweep_figure(sweep_df(explain))
    assert len(fig.axes) == (3 if explain else 1)
    lines = [g for g in gids(fig) if g.startswith("line:density")]
    assert sorted(lines) == ["line:density:0.001", "line:density:0.1"]


def test_nullity_length_draws_the_rank_limit():
    df = pd.DataFrame([dict(model="m", dataset=d, n_tokens=n, rank=min(n, 32), nullity=max(0, n - 32), head=h)
                       for d in ("rt", "imdb") for n in (10, 40, 90) for h in range(3)])
    fig = pf.nullity_length(df)
    assert {"points:rt", "points:imdb"} <= gids(fig)     # only the columns that vary name a group
    limit = fig.axes[0].lines[0]
    x, y = limit.get_data()
    assert y[-1] == pytest.approx(x[-1] - 32)


def test_raw_vs_efficient_rows_and_parts():
    rng = np.random.default_rng(0)
    n = 6
    a = rng.dirichlet(np.ones(n), size=n)
    parts = [decompose_matrix(a, rng.standard_normal((n, 3)), layer=0, head=h) for h in range(2)]
    fig = pf.raw_vs_efficient(parts, [f"t{i}" for i in range(n)])
    heat = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert len(heat) == 6
    np.testing.assert_allclose(heat[1].images[0].get_array(), parts[0].effective)
    assert "nullity 3" in heat[1].get_title()


def adversarial_df() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for model in ("transformer", "classifier"):
        for t in range(2):
            for j in range(3):
                raw = 1 + rng.random()
                eff = raw * (0.9 if model == "transformer" else 0.05)
                rows.append(dict(model=model, dataset="rt", text_id=t, adversary=j, feasible=j < 2,
                                 jsd=rng.random(), tvd=0.005, raw_distance=raw, efficient_distance=eff,
                                 efficient_share=eff / raw, random_share=0.8, raw_row_tvd=0.5,
                                 efficient_row_tvd=0.4, n_tokens=20 + t))
    return pd.DataFrame(rows)


def test_adversarial_scatter_and_summary():
    df = adversarial_df()
    fig = pf.adversarial_scatter(df)
    assert {"points:transformer", "points:classifier"} <= gids(fig)
    assert fig.axes[0].get_title() == f"{int(df.feasible.sum())} feasible adversaries of {len(df)}"
    s = ec.adversarial_summary(df)
    assert list(s.feasible) == ["4/6", "4/6"]
    assert s.set_index("model").efficient_share["classifier"] == pytest.approx(0.05)
    per_text = ec.adversarial_summary(df, per_text=True)
    assert len(per_text) == 4 and np.allclose(per_text.random_share, 0.8)


def test_adversarial_ci_per_example_means_and_intervals():
    df = adversarial_df().assign(eps=0.01, uniform_tvd=lambda d: np.where(d.text_id == 0, 0.002, 0.3))
    ci = ec.adversarial_ci(df, n_boot=500).set_index(["model", "measure"])
    assert list(ci.loc["classifier"].index) == list(ec.CI_MEASURES)
    sub = df[df.model == "classifier"]
    feasible = sub[sub.feasible]
    per_text_jsd = feasible.groupby("text_id").jsd.mean()
    assert ci.loc[("classifier", "feasible"), "estimate"] == pytest.approx(2 / 3)       # 2 of 3 per text
    assert ci.loc[("classifier", "jsd"), "estimate"] == pytest.approx(per_text_jsd.mean())
    assert ci.loc[("classifier", "max_jsd"), "estimate"] == pytest.approx(feasible.groupby("text_id").jsd.max().mean())
    assert ci.loc[("classifier", "share_minus_random"), "estimate"] == pytest.approx(0.05 - 0.8)
    assert ci.loc[("classifier", "uniform_within_eps"), "estimate"] == pytest.approx(0.5)   # text 0 of 2
    lo, hi = ci.loc[("classifier", "jsd"), ["ci_low", "ci_high"]]
    assert per_text_jsd.min() - 1e-12 <= lo <= hi <= per_text_jsd.max() + 1e-12
    assert (ci.examples == 2).all()
    with pytest.raises(ValueError, match="needs the columns"):
        ec.adversarial_ci(df.drop(columns="random_share"))


def test_wasserstein_bars_and_table():
    rows = []
    for dataset in ("rt", "imdb"):
        for i in range(4):
            for edit, shift in (("efficient, layer 5", 0.0), ("efficient-shifted, layer 5", 0.1)):
                rows.append(dict(model="m", dataset=dataset, text_id=i, edit=edit, max_abs_dlogit=shift,
                                 tvd=shift / 2, flipped=False, score_original=i / 4, score_edited=i / 4 + shift))
    w = ec.wasserstein_table(pd.DataFrame(rows))
    assert len(w) == 4
    got = w.set_index(["dataset", "edit"]).w1
    assert got["rt", "efficient, layer 5"] == 0.0
    assert got["rt", "efficient-shifted, layer 5"] == pytest.approx(0.1)
    fig = pf.wasserstein_bars(w)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["efficient", "efficient-shifted"]       # the layer dropped from the names
    bars = [p for p in fig.axes[0].patches if p.get_gid() == "bar:rt"]
    assert bars[0].get_height() == pytest.approx(1e-10)       # zero drawn at the floor


@pytest.mark.parametrize("draw", [pf.explanation_size_hist, pf.flip_rate_grid, pf.sweep_figure, pf.nullity_length,
                                  pf.adversarial_scatter, pf.wasserstein_bars])
def test_missing_columns_are_a_clear_error(draw):
    with pytest.raises(ValueError, match="needs columns"):
        draw(pd.DataFrame({"x": [1]}))


def test_exported_from_analysis_figures():
    import analysis.figures as figures

    for name in pf.__all__:
        assert name in figures.__all__ and getattr(figures, name) is getattr(pf, name)


# --------------------------------------------------------------------------- experiments on tiny models
TEXTS = ["a gorgeous , witty , seductive movie that never loses its nerve .",
         "the plot is thin and the acting is dull , but the music is fine ."]


def test_explanation_table_and_graph_on_a_tiny_model():
    model = tiny_model("bert")
    df = ab.explanation_table(model, TEXTS, layers=[-1, 0], heads=[0, "all"], max_set_size=1, dataset="t")
    assert len(df) == 2 * 2 * 2
    assert set(df["head"]) == {"0", "all"} and set(df.layer) == {0, 1}
    assert (df.cleann_found == df.cleann_size.notna()).all()
    assert (df.baseline_size.dropna() <= 1).all()
    s = ab.summarize_explanations(df)
    assert len(s) == 4 and (s.sentences == 2).all()
    e = abcd.explain(model, TEXTS[0], max_set_size=1)
    fig = pf.explanation_graph(e, labels=model.labels)
    rings = {g for g in gids(fig) if g.startswith("set:baseline")}
    assert len(rings) == len([v for v in e.baseline.set if v in e.graph.nodes])


def test_graph_sweep_resolves_n_samples_and_counts_edges():
    model = tiny_model("bert")
    df = ab.graph_sweep(model, TEXTS[:1], alphas=[0.01, 0.2], n_samples=["head", 64], explain=True, max_set_size=1)
    assert len(df) == 4
    assert set(df.n_samples) == {8.0, 64.0}                   # tiny BERT: d_head 8
    assert ((df.density >= 0) & (df.density <= 1)).all()
    assert {"cleann_found", "cleann_size"} <= set(df.columns)


def test_efficient_measure_keeps_the_output_on_a_tiny_model():
    model = tiny_model("bert")
    runs = ec.measure_texts(model, TEXTS, layer=-1, seed=0)
    out = ec.output_table(runs, dataset="t").set_index(["text_id", "edit"])
    for i in range(2):
        assert out.loc[(i, "efficient, layer 1"), "max_abs_dlogit"] < 1e-4
        assert out.loc[(i, "null-shifted, layer 1"), "max_abs_dlogit"] < 1e-4
        assert out.loc[(i, "efficient-shifted, layer 1"), "max_abs_dlogit"] > 1e-3
    nul = ec.nullity_table(runs)
    assert ((nul["rank"] + nul.nullity) == nul.n_tokens).all()
    assert (nul.nullity == np.maximum(0, nul.n_tokens - 8)).all()   # generic values: full rank d_head = 8
    summary = ec.nullity_summary(nul)
    assert list(summary.layer) == [0, 1]


def test_save_table_is_atomic_and_round_trips(tmp_path):
    df = explanations_df()
    path = save_table(df, tmp_path / "sub" / "t.csv")
    back = pd.read_csv(path)
    assert len(back) == len(df) and list(back.columns) == list(df.columns)
    assert [p.name for p in path.parent.iterdir()] == ["t.csv"]    # no temporary file left


# --------------------------------------------------------------------------- registry and command line
TINY = Sizes(explain_n=2, imdb_n=1, imdb_max_tokens=24, max_set_size=1, grid_n=1, grid_layers=(0, 1, 5),
             grid_heads=(0, "all", 9), sweep_n=2, sweep_explain_n=1, alphas=(0.01, 0.2), n_samples=("head", 64),
             efficient_n=3, max_tokens=40, adv_n=1, adv_steps=4, adv_max_tokens=24, heads_max_tokens=20, k=2,
             faith_n=2, faith_max_calls=20, faith_methods=("cleann", "attention", "leave_one_out", "random"),
             stability_n=1, stability_pool=20, stability_heads=(0, 2, 9), stability_extremes=1, stability_mixtures=1)


def test_registry_writes_every_figure_with_tiny_models(tmp_path):
    from analysis.zoo.attention_classifier import tiny

    run = PaperRun(sizes=TINY, model=tiny_model("bert"), classifier=tiny("cnn"))
    written = {name: paths for name, _, paths in make_figures(tmp_path, run=run, formats=("pdf", "png"))}
    assert list(written) == figure_names() and len(written) == len(FIGURES) >= 8
    for name, paths in written.items():
        assert [p.name for p in paths] == [f"{name}.pdf", f"{name}.png"]
        assert all(p.stat().st_size > 1000 for p in paths), name
        assert paths[0].read_bytes()[:4] == b"%PDF" and paths[1].read_bytes()[:4] == b"\x89PNG"
    tables = {p.stem for p in (tmp_path / "tables").glob("*.csv")}
    assert {"explanations", "faithfulness", "flip_grid", "sweep", "nullity", "outputs", "wasserstein", "adversarial",
            "stability"} <= tables
    faith = run.faithfulness()
    assert set(faith.method) == {"cleann", "attention", "leave_one_out", "random"} and len(faith) == 2 * (2 * 3 + 1)
    grid = run.flip_grid()
    assert set(grid.layer) == {0, 1} and set(grid["head"]) == {"0", "all"}   # clipped to the tiny model
    adv = run.adversarial()
    assert set(adv.model) == {"transformer", "classifier"} and (adv.nullity > 0).all()
    # results are computed once: drawing again reuses them
    before = dict(run._cache)
    make_figure("efficient_wasserstein", run)
    assert run._cache.keys() == before.keys()
    with pytest.raises(KeyError, match="available"):
        make_figure("nope", run)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "analysis.figures", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_lists_the_registry_and_rejects_unknown_names(tmp_path):
    listed = _cli("--list")
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]
    assert names == figure_names()
    bad = _cli("--only", "no_such_figure", "--out", str(tmp_path))
    assert bad.returncode == 2 and "unknown figure" in bad.stderr
    assert not any(tmp_path.iterdir())


def test_registry_tables_resume_from_the_results_folder(tmp_path):
    """With ``results``, each dataset-scale table streams to its own folder; a new run on the
    same folder reuses every finished unit (even the timings are the saved ones)."""
    model = tiny_model("bert")
    first = PaperRun(sizes=TINY, model=model, results=tmp_path)
    grid, sweep = first.flip_grid(), first.sweep()
    assert {"flip_grid", "sweep", "sweep-explain"} <= {p.name for p in tmp_path.iterdir()}
    again = PaperRun(sizes=TINY, model=model, results=tmp_path)
    pd.testing.assert_frame_equal(again.flip_grid(), grid)            # 'seconds' too: nothing recomputed
    pd.testing.assert_frame_equal(again.sweep(), sweep)
    plain = PaperRun(sizes=TINY, model=model).flip_grid()
    pd.testing.assert_frame_equal(plain.drop(columns="seconds"), grid.drop(columns="seconds"))


def test_cli_rejects_bad_workers(tmp_path):
    bad = _cli("--all", "--workers", "0", "--out", str(tmp_path))
    assert bad.returncode == 2 and "--workers must be at least 1" in bad.stderr
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- the stability figure
def stability_df() -> pd.DataFrame:
    rows = []
    for i in range(6):
        rows.append(dict(text_id=i // 2, text=f"t{i // 2}", layer=1, head=i % 2, basis="value", tvd=0.1 * (i + 1),
                         logit_change=1e-7 * i, raw_edges=10, raw_skeleton_shd=i, raw_target_changed=int(i % 3 == 0),
                         efficient_edges=8, efficient_skeleton_shd=0, efficient_target_changed=0))
    return pd.DataFrame(rows)


def test_stability_figure_draws_the_shares_it_is_given():
    from analysis.figures.stability import stability_figure

    df = stability_df()
    fig = stability_figure(df)
    ax, bx = fig.axes
    raw, eff = ax.collections
    np.testing.assert_allclose(raw.get_offsets()[:, 1], np.arange(6) / 10)          # skeleton SHD / edges
    np.testing.assert_allclose(eff.get_offsets()[:, 1], 0.0)
    assert [round(p.get_height(), 6) for p in bx.patches] == [round(2 / 6, 6), 0.0]   # i = 0, 3 change [CLS]
    assert "6 output-preserving A', 3 texts, 2 heads, value basis" in fig.get_suptitle()
    with pytest.raises(ValueError, match="needs the columns"):
        stability_figure(df.drop(columns="raw_edges"))


def test_stability_paper_figure_on_a_tiny_model():
    """The registry's stability table: every A' keeps the logits (the model's own outputs, re-run),
    efficient ABCD never moves (A' P = A P), raw ABCD does on some head."""
    model = tiny_model("bert")
    run = PaperRun(sizes=TINY, model=model)
    df = run.stability()
    assert set(df["head"]) == {0, 2} and df.text.nunique() == 1 and len(df) == 2 * 2     # head 9 clipped
    assert (df.n > 9).all() and (df.nullity > 0).all()                                    # d_head 8: n > 9
    assert df.logit_change.max() < 1e-4 and df.residual.max() < 1e-9
    assert (df.efficient_skeleton_shd == 0).all() and (df.efficient_target_changed == 0).all()
    assert df.tvd.min() > 0.01                                                            # A' != A
    fig = make_figure("abcd_stability", run)
    bars = fig.axes[1].patches
    assert bars[0].get_height() == pytest.approx((df.raw_target_changed > 0).mean()) and bars[1].get_height() == 0
    assert "abcd_stability" in figure_names() and FIGURES["abcd_stability"].paper == "ABCD"
