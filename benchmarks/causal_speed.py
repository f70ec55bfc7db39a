"""Speed of attnlab's causal learners (PC, FCI, ICD) against causal-learn's FCI.

Run from the repository root (needs causal-learn, a test dependency):

    python benchmarks/causal_speed.py                 # n = 16, 32, 64, 128
    python benchmarks/causal_speed.py --full          # adds n = 512
    python benchmarks/causal_speed.py --n 40 --seeds 5 --n-samples 768 --temperature 0.5

Two kinds of input per size n:
  * "attn": an attention-like matrix A = row-softmax(logits / temperature), logits
    ~ N(0, 1), and C = A A^T (the ABCD covariance of one head);
  * "sem":  a planted linear SEM (random DAG, about 2 parents per node, weights
    +-[0.5, 1.5]) with C = A A^T, A = (I - B^T)^-1.
Each learner gets corr(C) and the same n_samples / alpha. causal-learn's FCI (Fisher z)
runs on the data matrix X = [A^T; -A^T] repeated k times, whose correlation matrix is
exactly corr(C) and whose number of rows is the effective sample size n_eff = 2 n k
(k = round(n_samples / 2n), at least 1); our learners use the same n_eff.

Prints a table (no pass/fail): milliseconds per graph (median over seeds), the speed-up
of our FCI and ICD over causal-learn's FCI ("x fci", "x icd"), and for how many seeds
the skeletons agree: "adj-srch" compares our PC skeleton (the stable adjacency search)
with causal-learn's FAS, "fci skel" the final FCI skeletons. The final ones may differ on
data (not with an oracle): causal-learn keeps the union of all separating sets found at
a depth and restricts Possible-D-Sep with a "possible parents" heuristic; we keep the
first separating set and restrict Possible-D-Sep to possible ancestors of the edge's ends. Runs longer than --timeout seconds are cut off
and shown as ">T" (later seeds of that learner are then skipped).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from analysis.causal import learn_graph, random_dag, random_weights, sem_mixing_matrix  # noqa: E402


class _Timeout(Exception):
    pass


def _alarm(_signum, _frame):
    raise _Timeout()


def attention_matrix(n: int, temperature: float, seed: int) -> np.ndarray:
    """Row-stochastic (n, n): softmax of N(0, 1) logits / temperature."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, n)) / temperature
    a = np.exp(logits - logits.max(axis=1, keepdims=True))
    return a / a.sum(axis=1, keepdims=True)


def sem_matrix(n: int, seed: int) -> np.ndarray:
    """Mixing matrix (n, n) of a planted linear SEM with about 2 parents per node."""
    dag = random_dag(n, min(1.0, 4.0 / max(n - 1, 1)), seed=seed)
    return sem_mixing_matrix(random_weights(dag, seed=seed + 1))


def timed(fn, timeout: float):
    """(seconds, result) or (None, None) past ``timeout`` seconds."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out
    except _Timeout:
        return None, None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _data(A: np.ndarray, k: int) -> np.ndarray:
    """(2 n k, n) data whose correlation matrix is exactly corr(A A^T)."""
    return np.tile(np.vstack([A.T, -A.T]), (k, 1))


def causallearn_fci(A: np.ndarray, k: int, alpha: float) -> np.ndarray:
    """causal-learn FCI with Fisher z on data whose correlation matrix is corr(A A^T)."""
    from causallearn.search.ConstraintBased.FCI import fci
    from causallearn.utils.cit import fisherz

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        g, _ = fci(_data(A, k), fisherz, alpha, show_progress=False, verbose=False)
    return g.graph


def causallearn_fas(A: np.ndarray, k: int, alpha: float) -> np.ndarray:
    """causal-learn's adjacency search (FCI's first phase): (n, n) bool skeleton."""
    from causallearn.graph.GraphNode import GraphNode
    from causallearn.utils.cit import CIT
    from causallearn.utils.FAS import fas

    data = _data(A, k)
    nodes = [GraphNode(f"X{i + 1}") for i in range(A.shape[0])]
    for i, node in enumerate(nodes):
        node.add_attribute("id", i)
    g, _, _ = fas(data, nodes, CIT(data, "fisherz"), alpha, show_progress=False)
    return g.graph != 0


def _fmt(sec) -> str:
    return "-" if sec is None else f"{1000 * sec:.1f}"


def run(args) -> None:
    sizes = [16, 32, 64, 128] + ([512] if args.full else [])
    if args.n:
        sizes = args.n
    head = (f"{'input':5} {'n':>4} {'n_eff':>6} {'edges':>6} {'pc ms':>8} {'fci ms':>8} "
            f"{'icd ms':>8} {'cl-fci ms':>10} {'x fci':>7} {'x icd':>7} {'adj-srch':>8} {'fci skel':>8}")
    print(f"alpha={args.alpha} n_samples~{args.n_samples} temperature={args.temperature} "
          f"seeds={args.seeds} timeout={args.timeout}s")
    print(head)
    print("-" * len(head))
    if not args.no_causallearn:  # warm up causal-learn's imports outside the timings
        causallearn_fci(attention_matrix(5, 1.0, 0), 2, args.alpha)
    for kind in ("attn", "sem"):
        for n in sizes:
            _row(kind, n, args)


def _row(kind: str, n: int, args) -> None:
    k = max(1, round(args.n_samples / (2 * n)))
    n_eff = 2 * n * k
    times = {a: [] for a in ("pc", "fci", "icd", "cl")}
    edges, match, fas_match = [], [], []
    for seed in range(args.seeds):
        A = attention_matrix(n, args.temperature, seed) if kind == "attn" else sem_matrix(n, seed)
        C = A @ A.T
        for algo in ("pc", "fci", "icd"):
            if times[algo] and times[algo][-1] is None:
                continue  # timed out before: skip the rest for this learner
            sec, g = timed(lambda: learn_graph(C, n_eff, alpha=args.alpha, algorithm=algo),
                           args.timeout)
            times[algo].append(sec)
            if algo == "fci" and g is not None:
                edges.append(len(g))
                ours = g.to_matrix() != 0
            if algo == "pc" and g is not None and not args.no_causallearn:
                ref_fas = timed(lambda: causallearn_fas(A, k, args.alpha), args.timeout)[1]
                if ref_fas is not None:
                    fas_match.append(bool(np.array_equal(g.to_matrix() != 0, ref_fas)))
        if args.no_causallearn or (seed > 0 and (not times["cl"] or times["cl"][-1] is None)):
            continue
        sec, ref = timed(lambda: causallearn_fci(A, k, args.alpha), args.timeout)
        times["cl"].append(sec)
        if ref is not None and times["fci"][-1] is not None:
            match.append(bool(np.array_equal(ours, ref != 0)))

    def med(v):
        v = [x for x in v if x is not None]
        return float(np.median(v)) if v else None

    m = {a: med(v) for a, v in times.items()}
    cut = {a: bool(v) and v[-1] is None for a, v in times.items()}
    cells = [(">%g" % args.timeout) if cut[a] and m[a] is None else _fmt(m[a])
             for a in ("pc", "fci", "icd", "cl")]
    ratio = lambda a: ("-" if m["cl"] is None or m[a] in (None, 0)  # noqa: E731
                       else f"{m['cl'] / m[a]:.0f}x")
    if cut["cl"] and m["cl"] is None:
        ratio = lambda a: (f">{args.timeout / m[a]:.0f}x" if m[a] else "-")  # noqa: E731
    agree = lambda v: "-" if not v else ("yes" if all(v) else f"{sum(v)}/{len(v)}")  # noqa: E731
    skel, fas_skel = agree(match), agree(fas_match)
    e = "-" if not edges else f"{np.mean(edges):.0f}"
    print(f"{kind:5} {n:>4} {n_eff:>6} {e:>6} {cells[0]:>8} {cells[1]:>8} {cells[2]:>8} "
          f"{cells[3]:>10} {ratio('fci'):>7} {ratio('icd'):>7} {fas_skel:>8} {skel:>8}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="also n = 512")
    ap.add_argument("--n", type=int, nargs="*", help="sizes to run instead of the defaults")
    ap.add_argument("--seeds", type=int, default=3, help="graphs per size (median time)")
    ap.add_argument("--n-samples", type=float, default=64, help="effective sample size")
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--temperature", type=float, default=0.3, help="softmax temperature")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per run")
    ap.add_argument("--no-causallearn", action="store_true", help="skip causal-learn")
    run(ap.parse_args())


if __name__ == "__main__":
    main()
