"""Shared removal checks in the faithfulness evaluation: time and forward passes, with and without.

Run: ``python benchmarks/remembered_checks.py [--n 3] [--heads 0 1 2 all] [--max-calls 1000]``.

On a seeded sample of Rotten Tomatoes test sentences (the faithfulness task's units, every
method), runs :func:`analysis.evaluation.evaluate_input` twice per sentence in this process:
``remember=False`` (every method runs its own checks) and ``remember=True`` (one memory of
removal checks per input, :class:`analysis.evaluation.memo.RememberingModel`), alternating which
goes first. Prints per sentence the seconds and perturbed inputs run of each, whether the rows
are equal (timing columns aside; float metrics to 1e-5, since a perturbed input run in another
batch may differ in its last bits), and the ratio of the totals.
"""
from __future__ import annotations

import argparse
import time

import pandas as pd
from _tables import table

from analysis import load_model
from analysis.abcd import Budget
from analysis.evaluation import evaluate_input, seed_of
from analysis.evaluation.memo import RememberingModel
from analysis.experiments import faithfulness


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Equal rows: every column exactly, except float metrics (ERASER's probability drops), which
    may differ in the last bits when the same input is run in another batch (1e-5)."""
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-5, atol=1e-6)
        return True
    except AssertionError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--heads", nargs="*", default=["0", "1", "2", "all"])
    ap.add_argument("--max-calls", type=int, default=faithfulness.DEFAULT_SETTINGS["max_calls"])
    args = ap.parse_args()
    model = load_model(faithfulness.DEFAULT_MODEL)
    units = faithfulness.make_units(dataset="rotten_tomatoes", n=args.n, seed=args.seed, heads=args.heads,
                                    max_calls=args.max_calls)
    s = units[0]["settings"]
    print(f"model: {model.name}; {len(units)} sentences; heads {s['heads']}; every method; "
          f"budget <= {s['max_calls']} calls", flush=True)
    rows, totals = [], {"own": 0.0, "shared": 0.0, "requested": 0, "run": 0}
    for i, unit in enumerate(units):
        got, memo = {}, RememberingModel(model)
        for remember in ((False, True) if i % 2 == 0 else (True, False)):
            start = time.perf_counter()
            out = evaluate_input(memo if remember else model, unit["text"], methods=s["methods"],
                                 budget=Budget(s["max_calls"], None), heads=s["heads"], seed=seed_of(unit["id"]),
                                 remember=remember)
            got[remember] = (pd.DataFrame(out), time.perf_counter() - start)
        (a, own), (b, shared) = got[False], got[True]
        drop = [c for c in b if c.endswith("seconds") or c == "input_forward_passes"]
        equal = _same(a.drop(columns=[c for c in drop if c in a]), b.drop(columns=drop))
        # without memory every requested input is run: as many as the memory was asked for
        requested, run = memo.hits + memo.misses, memo.misses
        for k, v in (("own", own), ("shared", shared), ("requested", requested), ("run", run)):
            totals[k] += v
        rows.append([unit["id"], int(a["n_tokens"].iloc[0]), int((a["calls"] + a["ranking_calls"]).sum()),
                     requested, run, own, shared, own / shared, equal])
        print(*rows[-1], flush=True)
    table("Remembered removal checks (one process, same inputs)",
          ["sentence", "tokens", "method calls", "inputs run (own)", "inputs run (shared)", "s (own)",
           "s (shared)", "speed-up", "rows equal"], rows,
          f"total: {totals['own']:.1f} s -> {totals['shared']:.1f} s ({totals['own'] / totals['shared']:.2f}x); "
          f"inputs run {totals['requested']} -> {totals['run']} ({totals['requested'] / max(totals['run'], 1):.2f}x)")


if __name__ == "__main__":
    main()
