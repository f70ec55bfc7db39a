"""How the experiment runner scales: the same explanation table (``--n`` Rotten Tomatoes test
sentences, deepest layer, ``--heads``) in-process (1 worker), on 2 joblib processes and on a
2-worker Dask ``LocalCluster``; then a run killed with ``kill -9`` midway and resumed.

Run: ``OMP_NUM_THREADS=1 python benchmarks/experiment_scaling.py [--n 40] [--heads 0] [--max-set-size 2]``
(needs the embedded default model: ``python -m analysis.zoo`` builds it once).

Prints wall time, speed-up over in-process and overhead (time beyond a perfect split of the
in-process time), the Dask cluster's start-up time, and whether the resumed table equals an
uninterrupted one (every column but the per-explanation ``seconds``). The machine's load
(``os.getloadavg``) is printed before and after: on a shared machine the speed-up is noisy.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup(args: argparse.Namespace) -> tuple:
    from analysis import load_model
    from analysis.experiments import sample_texts

    model = load_model(progress=False)
    texts = sample_texts(model, "rotten_tomatoes", args.n, seed=args.seed)
    heads = [h if h == "all" else int(h) for h in args.heads]
    kw = dict(layers=[-1], heads=heads, max_set_size=args.max_set_size, dataset="rotten_tomatoes")
    return model, texts, kw


def child(args: argparse.Namespace) -> None:
    """The run that gets killed: 2 joblib workers into ``args.child``."""
    from analysis.experiments import abcd_sentiment as ab

    model, texts, kw = setup(args)
    ab.explanation_table(model, texts, workers=2, out=args.child, **kw)


def timed(label: str, fn, results: list) -> pd.DataFrame:
    start = time.perf_counter()
    df = fn()
    results.append((label, time.perf_counter() - start))
    print(f"  {label}: {results[-1][1]:.1f} s", flush=True)
    return df


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--heads", nargs="+", default=["0"])
    parser.add_argument("--max-set-size", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from dask.distributed import Client, LocalCluster

    from analysis.experiments import abcd_sentiment as ab
    from analysis.experiments.runner import release_models, status

    print(f"load average before: {os.getloadavg()}, cores: {os.cpu_count()}")
    model, texts, kw = setup(args)
    units = len(texts) * len(kw["heads"])
    print(f"explanation table: {len(texts)} sentences x {len(kw['heads'])} head(s), max_set_size "
          f"{args.max_set_size} ({units} explanations)")
    times: list = []
    base = timed("in-process", lambda: ab.explanation_table(model, texts, **kw), times)
    # the first call also starts the 2 worker processes (torch import, model shipped and loaded);
    # the second reuses them (each worker keeps its model)
    jl = timed("joblib, cold", lambda: ab.explanation_table(model, texts, workers=2, **kw), times)
    timed("joblib, warm", lambda: ab.explanation_table(model, texts, workers=2, **kw), times)
    start = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = Client(cluster)
    startup = time.perf_counter() - start
    print(f"  Dask LocalCluster start-up: {startup:.1f} s (dashboard {client.dashboard_link})")
    dk = timed("Dask LocalCluster, cold", lambda: ab.explanation_table(model, texts, scheduler=client, **kw), times)
    timed("Dask LocalCluster, warm", lambda: ab.explanation_table(model, texts, scheduler=client, **kw), times)
    release_models(client)          # unpublish the model before the cluster goes (no lost-data error)
    client.close()
    cluster.close()
    same = [c for c in base.columns if c != "seconds"]
    pd.testing.assert_frame_equal(jl[same], base[same])
    pd.testing.assert_frame_equal(dk[same], base[same])

    t1 = times[0][1]
    print("\n| backend | workers | wall time (s) | speed-up | overhead (s) |")
    print("|---|---|---|---|---|")
    for (label, t), w in zip(times, (1, 2, 2, 2, 2)):
        print(f"| {label} | {w} | {t:.1f} | {t1 / t:.2f}x | {t - t1 / w:+.1f} |")
    print(f"(overhead: wall time minus in-process time / workers; Dask cluster start-up, {startup:.1f} s, not "
          "included; tables identical across backends: yes)")

    # kill -9 midway, then resume
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "killed"
        proc = subprocess.Popen([sys.executable, __file__, "--child", str(out), "--n", str(args.n),
                                 "--max-set-size", str(args.max_set_size), "--seed", str(args.seed),
                                 "--heads", *args.heads], cwd=ROOT)
        while proc.poll() is None and len(list((out / "chunks").glob("chunk-*.parquet"))) < 3:
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        st = status(out)
        print(f"\nkill -9 after {len(st['done'])} of {len(texts)} sentences were saved")
        start = time.perf_counter()
        resumed = ab.explanation_table(model, texts, workers=2, out=out, **kw)
        print(f"resumed with 2 workers: {time.perf_counter() - start:.1f} s; "
              f"{len(status(out)['done'])} done, {len(status(out)['missing'])} missing")
        leftovers = [p.name for p in (out / "chunks").iterdir() if p.name.startswith(".")]
        pd.testing.assert_frame_equal(resumed[same], base[same])
        print(f"resumed table equals the uninterrupted one: yes; temporary files left: {len(leftovers)}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
