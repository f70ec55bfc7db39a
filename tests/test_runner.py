"""The experiment runner (analysis.experiments.runner): backends agree, results stream to
Parquet and resume after kill -9, mismatched results are refused, failing units are retried
then recorded, bad input is a clear error. A pure-numpy toy task keeps it fast; one test ships
a tiny BERT to worker processes."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.experiments.runner import (
    SettingsMismatch,
    load_results,
    model_fingerprint,
    run,
    status,
    unit_seed,
)
from analysis.experiments.tasks import Task, get_task, task_names

ROOT = Path(__file__).resolve().parent.parent
W = np.array([0.5, -1.0, 2.0])


# --------------------------------------------------------------------------- the toy task
def toy_units(n: int, *, sleep: float = 0.0, fail: tuple = (), flaky: str = "") -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"id": f"u{i}", "x": rng.standard_normal(3).round(3).tolist(), "sleep": sleep, "fail": f"u{i}" in fail,
             "flaky": flaky if i == 1 else ""} for i in range(n)]


def toy_run_unit(model: np.ndarray, unit: dict) -> list[dict]:
    """Two rows per unit: y = w.x, and a draw from the global RNG (the runner seeds it per unit)."""
    time.sleep(unit["sleep"])
    if unit["fail"]:
        raise ValueError(f"unit {unit['id']} always fails")
    if unit["flaky"] and not os.path.exists(unit["flaky"]):
        Path(unit["flaky"]).write_text("failed once")
        raise RuntimeError("flaky failure")
    y = float(np.dot(model, unit["x"]))
    return [{"unit": unit["id"], "kind": "y", "value": y, "pid": os.getpid()},
            {"unit": unit["id"], "kind": "noise", "value": float(np.random.random()), "pid": os.getpid()}]


def toy_summarize(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {"means": df.groupby("kind", sort=True)["value"].mean().reset_index()}


TOY = Task("toy", lambda *, dataset, n, seed=0, **kw: toy_units(n), toy_run_unit, toy_summarize, None, "toy")
TOY2 = Task("toy2", TOY.make_units, toy_run_unit, toy_summarize)


def _table(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["pid"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return run(TOY, toy_units(10), workers=1, model=W, progress=False)


# --------------------------------------------------------------------------- backends
def test_in_process_table_is_sorted_and_seeded_by_unit_id(reference):
    assert list(reference.unit_id) == [f"u{i}" for i in range(10) for _ in range(2)]
    assert reference.error.isna().all() and reference.attrs["computed"] == 10
    y = reference[reference.kind == "y"].value.to_numpy()
    np.testing.assert_allclose(y, [W @ u["x"] for u in toy_units(10)])
    noise = reference[reference.kind == "noise"].set_index("unit").value
    assert noise["u3"] == np.random.RandomState(unit_seed("u3")).random_sample()
    # the seed depends on the id only: running u3 alone gives the same draw
    alone = run(TOY, [toy_units(10)[3]], workers=1, model=W, progress=False)
    assert alone[alone.kind == "noise"].value.iloc[0] == noise["u3"]


def test_joblib_two_workers_give_the_same_table(reference):
    df = run(TOY, toy_units(10), workers=2, model=W, progress=False, chunk_size=2)
    assert df.pid.nunique() >= 1 and os.getpid() not in set(df.pid)        # ran in worker processes
    pd.testing.assert_frame_equal(_table(df), _table(reference))


@pytest.fixture(scope="module")
def dask_client():
    from dask import distributed   # a dependency of attnlab: missing is a failure, not a skip

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_local_cluster_gives_the_same_table(reference, dask_client, tmp_path):
    df = run(TOY, toy_units(10), scheduler=dask_client, model=W, progress=False, chunk_size=3, out=tmp_path / "r")
    assert os.getpid() not in set(df.pid)
    pd.testing.assert_frame_equal(_table(df), _table(reference))
    pd.testing.assert_frame_equal(_table(load_results(tmp_path / "r")), _table(reference))


def test_a_tiny_bert_ships_to_joblib_and_dask_workers(dask_client):
    from analysis.experiments import abcd_sentiment as ab
    from tests.helpers import tiny_model

    model = tiny_model("bert")
    texts = ["a gorgeous , witty , seductive movie .", "the plot is thin and the acting is dull ."]
    kw = dict(layers=[-1], heads=[0, "all"], max_set_size=1, dataset="t")
    local = ab.explanation_table(model, texts, **kw).drop(columns="seconds")
    joblib_df = ab.explanation_table(model, texts, workers=2, **kw).drop(columns="seconds")
    dask_df = ab.explanation_table(model, texts, scheduler=dask_client, **kw).drop(columns="seconds")
    pd.testing.assert_frame_equal(joblib_df, local)
    pd.testing.assert_frame_equal(dask_df, local)


def test_dask_workers_holding_the_model_are_not_sent_it_again(dask_client, monkeypatch, reference):
    """The model's bytes go to the Dask workers once; a repeated run on the same workers reuses it."""
    from analysis.experiments import runner

    sent = []
    dumps = runner._dumps
    monkeypatch.setattr(runner, "_dumps", lambda m: sent.append(1) or dumps(m))
    model = W + 1.0                                    # a model these workers have not seen
    first = run(TOY, toy_units(6), scheduler=dask_client, model=model, progress=False, chunk_size=2)
    second = run(TOY, toy_units(6), scheduler=dask_client, model=model, progress=False, chunk_size=2)
    assert len(sent) == 1
    pd.testing.assert_frame_equal(_table(second), _table(first))


def test_a_dask_worker_joining_mid_run_fetches_the_model(reference):
    """A repeated run sends the model nowhere (the only worker holds it); a worker that joins
    during that run gets the published model from the cluster and runs units."""
    import threading

    from dask import distributed

    from analysis.experiments import runner

    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = distributed.Client(cluster)
    try:
        first_pid = set(client.run(os.getpid).values())
        run(TOY, toy_units(2), scheduler=client, model=W, progress=False)   # the one worker loads it
        joined = threading.Timer(1.0, lambda: cluster.scale(2))
        joined.start()
        df = run(TOY, toy_units(24, sleep=0.3), scheduler=client, model=W, progress=False, chunk_size=1)
        joined.join()
        pd.testing.assert_frame_equal(_table(df)[_table(df).unit_id.isin([f"u{i}" for i in range(10)])]
                                      .reset_index(drop=True), _table(reference))
        assert df.error.isna().all()
        late = set(df.pid) - first_pid
        assert late, "the worker that joined mid-run ran no unit"
        assert [n for n in client.list_datasets() if n.startswith("attnlab-model-")] == [
            runner.model_dataset(model_fingerprint(W))]
        assert runner.release_models(client) == [runner.model_dataset(model_fingerprint(W))]
        assert client.list_datasets() == ()
    finally:
        client.close()
        cluster.close()


# --------------------------------------------------------------------------- results on disk
def test_results_stream_to_parquet_and_a_second_run_reuses_them(tmp_path, reference):
    out = tmp_path / "res"
    first = run(TOY, toy_units(10), workers=1, model=W, progress=False, out=out, chunk_size=4,
                settings={"a": 1})
    assert len(list((out / "chunks").glob("chunk-*.parquet"))) == 3
    pd.testing.assert_frame_equal(_table(first), _table(reference))
    again = run(TOY, toy_units(10), workers=1, model=W, progress=False, out=out, settings={"a": 1})
    assert again.attrs["computed"] == 0 and again.attrs["reused"] == 10
    pd.testing.assert_frame_equal(_table(again), _table(reference))
    st = status(out)
    assert len(st["done"]) == 10 and not st["missing"] and not st["failed"]


_KILLED = """
import sys
sys.path.insert(0, {root!r})
import numpy as np
from analysis.experiments.runner import run
from tests.test_runner import TOY, toy_units
run(TOY, toy_units(12, sleep=0.25), workers=1, model=np.array({w}), out={out!r}, chunk_size=1, progress=False,
    settings={{"a": 1}})
"""


def test_resume_after_kill_9_recomputes_only_missing_units(tmp_path):
    out = tmp_path / "killed"
    code = _KILLED.format(root=str(ROOT), w=W.tolist(), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.time() + 60
    while time.time() < deadline and len(list((out / "chunks").glob("chunk-*.parquet"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    done = len(list((out / "chunks").glob("chunk-*.parquet")))
    assert 3 <= done < 12, "the run was not killed mid-way"
    # a half-written chunk as a kill during a write would leave it: a temporary dot-file
    (out / "chunks" / ".chunk-99999999999999999999-1-000001.parquet.abc").write_bytes(b"PAR1 half")
    assert len(status(out)["done"]) == done
    df = run(TOY, toy_units(12, sleep=0.25), workers=1, model=W, progress=False, out=out, settings={"a": 1})
    assert df.attrs["computed"] == 12 - done and df.attrs["reused"] == done
    assert not [p for p in (out / "chunks").iterdir() if p.name.startswith(".")]
    whole = run(TOY, toy_units(12, sleep=0.0), workers=1, model=W, progress=False)
    pd.testing.assert_frame_equal(_table(df), _table(whole))


_TERMINATED = """
import sys
sys.path.insert(0, {root!r})
import numpy as np
from analysis.experiments.runner import run
from tests.test_runner import TOY, toy_units
run(TOY, toy_units(4, sleep=60.0), workers=2, model=np.array({w}), out={out!r}, chunk_size=1, progress=False)
"""


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"LokyProcess" in cmdline:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker processes from /proc (Linux)")
def test_sigterm_stops_the_worker_processes_too(tmp_path):
    out = tmp_path / "term"
    code = _TERMINATED.format(root=str(ROOT), w=W.tolist(), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline, workers = time.time() + 120, []
    while time.time() < deadline and len(workers) < 2:      # both workers started (each sleeps 60 s in a unit)
        time.sleep(0.2)
        workers = _children(proc.pid)
    assert len(workers) == 2, "the run did not start its two workers"
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "worker processes outlived the terminated run"
    assert not list((out / "chunks").glob("chunk-*.parquet"))      # nothing finished, nothing half-written
    assert (out / "manifest.json").exists()


def test_mismatched_results_are_refused_naming_the_difference(tmp_path):
    out = tmp_path / "res"
    run(TOY, toy_units(4), workers=1, model=W, progress=False, out=out, settings={"alpha": 0.01, "n": 4})
    before = sorted(p.name for p in (out / "chunks").iterdir())
    with pytest.raises(SettingsMismatch, match=r"different settings \(differing: alpha\)"):
        run(TOY, toy_units(4), workers=1, model=W, progress=False, out=out, settings={"alpha": 0.05, "n": 4})
    with pytest.raises(SettingsMismatch, match="different model"):
        run(TOY, toy_units(4), workers=1, model=W * 2, progress=False, out=out, settings={"alpha": 0.01, "n": 4})
    with pytest.raises(SettingsMismatch, match="different task"):
        run(TOY2, toy_units(4), workers=1, model=W, progress=False, out=out, settings={"alpha": 0.01, "n": 4})
    changed = toy_units(4)
    changed[2]["x"] = [9.0, 9.0, 9.0]
    with pytest.raises(SettingsMismatch, match="'u2'"):
        run(TOY, changed, workers=1, model=W, progress=False, out=out, settings={"alpha": 0.01, "n": 4})
    with pytest.raises(FileExistsError, match="resume=True"):
        run(TOY, toy_units(4), workers=1, model=W, progress=False, out=out, settings={"alpha": 0.01, "n": 4},
            resume=False)
    assert sorted(p.name for p in (out / "chunks").iterdir()) == before          # nothing lost or added
    assert model_fingerprint(W) != model_fingerprint(W * 2)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_unit_is_retried_then_recorded(tmp_path, workers):
    units = toy_units(5, fail=("u3",), flaky=str(tmp_path / f"flaky{workers}"))
    with pytest.warns(RuntimeWarning, match="1 of 5 unit"):
        df = run(TOY, units, workers=workers, model=W, progress=False, out=tmp_path / "res")
    assert df.attrs["failed"] == 1
    bad = df[df.error.notna()]
    assert list(bad.unit_id) == ["u3"] and "always fails" in bad.error.iloc[0]
    assert (df.unit_id == "u1").sum() == 2 and df[df.unit_id == "u1"].error.isna().all()   # flaky: retry won
    st = status(tmp_path / "res")
    assert st["failed"] == ["u3"] and len(st["done"]) == 4
    # a resumed run retries the failed unit only (its content may change: it has no result to mix with)
    units[3]["fail"] = False
    again = run(TOY, units, workers=1, model=W, progress=False, out=tmp_path / "res")
    assert again.attrs["computed"] == 1 and again.attrs["failed"] == 0 and again.error.isna().all()
    assert status(tmp_path / "res")["done"] == [f"u{i}" for i in range(5)]


# --------------------------------------------------------------------------- bad input
def test_unknown_task_lists_the_known_ones():
    with pytest.raises(KeyError, match="known tasks: explanations"):
        run("no_such_task", toy_units(2), model=W)
    assert {"explanations", "graph_sweep", "efficient", "adversarial", "faithfulness"} <= set(task_names())
    assert get_task("explanations").name == "explanations"


def test_unreachable_scheduler_fails_fast_and_starts_nothing(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="no Dask scheduler answered"):
        run(TOY, toy_units(2), scheduler=f"tcp://127.0.0.1:{port}", model=W, out=tmp_path / "never",
            connect_timeout=3)
    assert time.perf_counter() - start < 10
    assert not (tmp_path / "never").exists()


def test_empty_units_and_bad_ids_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="units list is empty"):
        run(TOY, [], model=W, out=tmp_path / "e")
    with pytest.raises(ValueError, match="unique"):
        run(TOY, toy_units(2) + toy_units(1), model=W, out=tmp_path / "e")
    with pytest.raises(ValueError, match="workers must be at least 1"):
        run(TOY, toy_units(2), model=W, workers=0)
    assert not (tmp_path / "e").exists()


# --------------------------------------------------------------------------- the command
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis.experiments", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"), check=False)


def test_command_help_run_status_summarize(tmp_path, capsys):
    from analysis.experiments.__main__ import main
    from tests.helpers import tiny_hf_model, tokenizer

    helped = _cli("--help")
    assert helped.returncode == 0 and "explanations" in helped.stdout and "graph_sweep" in helped.stdout
    bad = _cli("run", "nope", "--dataset", "rotten_tomatoes", "--n", "2", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "known tasks" in bad.stderr and not (tmp_path / "x").exists()
    folder = tmp_path / "tiny"
    tiny_hf_model("bert").save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    out = tmp_path / "eff"
    args = ["run", "efficient", "--dataset", "rotten_tomatoes", "--n", "3", "--out", str(out), "--workers", "1",
            "--model", str(folder), "--no-progress"]
    assert main([*args, "--set", "max_tokens=20"]) == 0
    assert "3 computed" in capsys.readouterr().out
    assert main(["status", str(out)]) == 0
    assert "3 done, 0 missing, 0 failed" in capsys.readouterr().out
    assert main(["status", str(out), "--check-model"]) == 0             # the model loaded here is the run's
    assert "this run can be resumed here" in capsys.readouterr().out
    other = tmp_path / "other"
    shutil.copytree(out, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["model"]["fingerprint"] = "0" * 64                          # as if made with another build
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert main(["status", str(other), "--check-model"]) == 3
    assert "run's fingerprint 000000000000" in (printed := capsys.readouterr().out) and "cannot be resumed" in printed
    assert main(["summarize", str(out)]) == 0
    assert "== wasserstein" in capsys.readouterr().out
    assert {p.name for p in (out / "summary").iterdir()} == {"nullity_summary.csv", "wasserstein.csv"}
    w = pd.read_csv(out / "summary" / "wasserstein.csv")
    assert (w.examples == 3).all() and len(w) == 4
    assert main([*args, "--set", "max_tokens=30"]) == 2
    assert "differing: max_tokens" in capsys.readouterr().err
    assert main([*args[1:], "--set", "max_tokens=20"]) == 0            # "TASK ...": run, then summarize
    printed = capsys.readouterr().out
    assert "0 computed, 3 already done" in printed and f"== wasserstein ({out}/summary/wasserstein.csv)" in printed


def test_the_fingerprint_is_the_weights_and_config_not_the_folder(tmp_path):
    from analysis import load_model
    from tests.helpers import tiny_hf_model, tokenizer

    for where in ("a", "b/deeper"):
        tiny_hf_model("bert").save_pretrained(tmp_path / where)
        tokenizer().save_pretrained(tmp_path / where)
    a, b = load_model(str(tmp_path / "a")), load_model(str(tmp_path / "b/deeper"))
    assert a.module.config._name_or_path != b.module.config._name_or_path
    assert model_fingerprint(a) == model_fingerprint(b)                 # same weights, another folder
    b.module.config.layer_norm_eps = 1e-6
    assert model_fingerprint(a) != model_fingerprint(b)                 # another config
    b.module.config.layer_norm_eps = a.module.config.layer_norm_eps
    with torch.no_grad():
        next(b.module.parameters()).view(-1)[0] += 1e-3
    assert model_fingerprint(a) != model_fingerprint(b)                 # another weight


def test_command_without_dataset_is_refused_when_the_task_has_no_default(tmp_path, capsys):
    from analysis.experiments.__main__ import main

    with pytest.raises(SystemExit):
        main(["run", "explanations", "--n", "1", "--out", str(tmp_path / "x")])
    assert "needs --dataset" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_summarize_several_folders_together(tmp_path, monkeypatch, capsys):
    from analysis.experiments import tasks
    from analysis.experiments.__main__ import main
    from analysis.experiments.runner import summarize

    monkeypatch.setitem(tasks.TASKS, "toy", "tests.test_runner:TOY")
    monkeypatch.setitem(tasks.TASKS, "toy2", "tests.test_runner:TOY2")
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    run(TOY, toy_units(4), workers=1, model=W, out=a, progress=False)
    run(TOY, toy_units(6)[4:], workers=1, model=W, out=b, progress=False)     # more units, another folder
    both = summarize(a, b, into=tmp_path / "both")["means"]
    alone = run(TOY, toy_units(6), workers=1, model=W, progress=False)
    want = toy_summarize(alone.drop(columns=["unit_id", "error"]))["means"]
    pd.testing.assert_frame_equal(both, want)
    assert (tmp_path / "both" / "means.csv").exists()
    assert not (a / "summary").exists() and not (b / "summary").exists()    # several folders: only --into
    summarize(a, b, write=True)
    assert not (a / "summary").exists()
    run(TOY2, toy_units(2), workers=1, model=W, out=c, progress=False)
    with pytest.raises(ValueError, match="another task"):
        summarize(a, c)
    run(TOY, toy_units(2), workers=1, model=W * 2, out=tmp_path / "d", progress=False)
    with pytest.raises(ValueError, match="another model"):
        summarize(a, tmp_path / "d")
    assert main(["summarize", str(a), str(b)]) == 0
    printed = capsys.readouterr().out
    assert "== means\n" in printed and "summary/means.csv" not in printed


def test_faithfulness_summary_refuses_overlapping_runs():
    from analysis.experiments.faithfulness import summarize as fsum

    row = {"id": "t0", "method": "cleann", "head": "0", "found": True, "size": 1.0, "censored_at": np.nan}
    with pytest.raises(ValueError, match="repeat an input, method and head"):
        fsum(pd.DataFrame([row, row]))


# --------------------------------------------------------------------------- one GPU per worker
def _hold_gpu(slots: str, n: int, conn) -> None:
    from analysis.experiments.runner import _claim_gpu

    conn.send((_claim_gpu(n, slots), _claim_gpu(n, slots), os.getpid()))   # the same process keeps its GPU
    time.sleep(300)                                                         # holds it until killed


def test_each_worker_process_claims_its_own_gpu_and_a_dead_one_frees_it(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    started = []

    def start():
        here, there = ctx.Pipe()
        p = ctx.Process(target=_hold_gpu, args=(str(tmp_path), 2, there))
        p.start()
        started.append(p)
        assert here.poll(60), "the worker did not answer"
        first, again, pid = here.recv()
        assert first == again
        return p, first, pid

    try:
        a, ga, _ = start()
        b, gb, _ = start()
        assert {ga, gb} == {0, 1}                      # two workers, two GPUs: one each
        c, gc, pc = start()
        assert gc == pc % 2                            # a third shares, by process id
        os.kill(a.pid, signal.SIGKILL)                 # a killed worker frees its GPU
        a.join(10)
        d, gd, _ = start()
        assert gd == ga
    finally:
        for p in started:                              # no shared Event: a killed waiter would hang it
            p.kill()
            p.join(10)


def test_pick_device_spreads_cuda_only(monkeypatch, tmp_path):
    import tempfile

    import torch

    from analysis.experiments import runner

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(runner, "_GPU_SLOT", [])
    assert runner._pick_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert runner._pick_device("cuda:0") == "cuda:0"                 # one GPU: as given
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert runner._pick_device("cuda:0") == "cuda:0" == runner._pick_device("cuda")   # first free slot, kept
    assert (tmp_path / "attnlab-gpu-slots" / "gpu-0.lock").exists()
    runner._GPU_SLOT[0][1].close()
