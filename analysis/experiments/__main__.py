"""Run dataset-scale experiments from a terminal, resumably.

    python -m analysis.experiments run explanations --dataset rotten_tomatoes --n 300 --out results/rt --workers 4
    python -m analysis.experiments run efficient --dataset imdb --n 200 --out results/eff \\
        --scheduler tcp://head-node:8786 --set max_tokens=256
    python -m analysis.experiments status results/rt          # done / missing / failed units
    python -m analysis.experiments summarize results/rt       # summary tables -> results/rt/summary/*.csv
    python -m analysis.experiments summarize results/rt results/rt-heads --into results/both   # two runs together
    python -m analysis.experiments faithfulness --dataset rotten_tomatoes --n 300 --out results/faith   # run, then summarize

Running ``run`` again on the same folder resumes: only missing and failed units are computed;
different settings, model or task are refused. ``--set key=value`` passes a task setting
(values are read as JSON when they parse: ``--set layers=[0,5] --set alpha=0.05``).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _settings(pairs: list[str], parser: argparse.ArgumentParser) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            parser.error(f"--set takes key=value, got {pair!r}")
        out[key.strip()] = _value(value)
    return out


def _epilog() -> str:
    from analysis.experiments.tasks import TASKS, get_task

    lines = ["tasks:"]
    for name in TASKS:
        try:
            desc = get_task(name).description
        except (KeyError, TypeError) as e:
            desc = f"(not available: {e})"
        lines.append(f"  {name:<14} {desc}")
    return "\n".join(lines) + "\n\n" + __doc__.split("\n\n", 1)[1]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis.experiments", description=__doc__.split("\n")[0],
                                     epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run (or resume) a task into a results folder")
    r.add_argument("task", help="task name (see python -m analysis.experiments --help)")
    r.add_argument("--dataset", default=None,
                   help="rotten_tomatoes, imdb, synthetic-rec, ... (default: the task's own, if it has one)")
    r.add_argument("--n", type=int, required=True, help="number of examples (units)")
    r.add_argument("--out", required=True, help="results folder (created; resumed if it holds this run)")
    r.add_argument("--seed", type=int, default=0, help="sample seed (default 0)")
    where = r.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, help="joblib processes (default: all cores; 1: in-process)")
    where.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://host:8786")
    r.add_argument("--model", default=None, help="zoo name or model folder (default: the task's model)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a task setting (repeatable)")
    r.add_argument("--chunk-size", type=int, default=None, help="units per saved chunk (default: automatic)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    s = sub.add_parser("status", help="done / missing / failed units of a results folder")
    s.add_argument("out")
    s.add_argument("--ids", action="store_true", help="also list the failed and missing unit ids")
    s.add_argument("--check-model", action="store_true",
                   help="also load the run's model here (building a zoo model if needed) and say whether its "
                        "fingerprint is the run's, i.e. whether the run can be resumed on this machine")
    m = sub.add_parser("summarize", help="write the task's summary tables (CSV) and print them")
    m.add_argument("out")
    m.add_argument("more", nargs="*", help="more folders of the same task and model, summarised together with OUT")
    m.add_argument("--into", default=None, help="folder for the CSV tables (default OUT/summary; with several "
                                                "folders: not written unless given)")
    return parser


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import inspect

    from analysis.experiments.runner import run
    from analysis.experiments.tasks import get_task

    try:
        task = get_task(args.task)
    except KeyError as e:
        parser.error(str(e).strip('"'))
    settings = {"n": args.n, "seed": args.seed, **_settings(args.set, parser)}
    if args.dataset is not None:
        settings["dataset"] = args.dataset
    else:
        param = inspect.signature(task.make_units).parameters.get("dataset")
        if param is not None and param.default is inspect.Parameter.empty:
            parser.error(f"task {task.name!r} needs --dataset (it has no default dataset)")
    made_with = dict(settings)
    if args.model is not None and "model" in inspect.signature(task.make_units).parameters:
        made_with["model"] = args.model  # e.g. sensitivity counts tokens with the model its units run on
    try:
        units = task.make_units(**made_with)
    except TypeError as e:
        parser.error(f"bad setting for task {task.name!r}: {e}")
    if args.model is not None:
        settings["model"] = args.model
    df = run(task, units, workers=args.workers, scheduler=args.scheduler, out=args.out, settings=settings,
             model=args.model, progress=not args.no_progress, chunk_size=args.chunk_size)
    a = df.attrs
    print(f"{task.name}: {len(units)} units, {a['computed']} computed, {a['reused']} already done, "
          f"{a['failed']} failed -> {args.out}")
    return 1 if a["failed"] else 0


def _print_summary(out: str, more: list[str], into: str | None) -> None:
    import pandas as pd

    from analysis.experiments import runner

    tables = runner.summarize(out, *more, into=into)
    where = into or (f"{out}/summary" if not more else None)
    with pd.option_context("display.width", 160, "display.max_columns", 30):
        for name, table in tables.items():
            place = f" ({where}/{name}.csv)" if where else ""
            print(f"== {name}{place}\n{table.to_string(index=False)}\n")


def main(argv: list[str] | None = None) -> int:
    """``run`` / ``status`` / ``summarize``; ``TASK ...`` (a task name first) is ``run TASK ...`` followed by
    ``summarize`` of its folder."""
    from analysis.experiments.tasks import TASKS

    argv = list(sys.argv[1:] if argv is None else argv)
    shorthand = bool(argv) and argv[0] in TASKS
    parser = _parser()
    args = parser.parse_args(["run", *argv] if shorthand else argv)
    from analysis.experiments import runner

    try:
        if args.command == "run":
            code = _run(args, parser)
            if shorthand:
                _print_summary(args.out, [], None)
            return code
        if args.command == "status":
            st = runner.status(args.out)
            print(f"task {st['task']}: {len(st['done'])} done, {len(st['missing'])} missing, "
                  f"{len(st['failed'])} failed (of {len(st['manifest']['units'])})")
            if args.ids:
                for key in ("failed", "missing"):
                    if st[key]:
                        print(f"{key}: {' '.join(st[key])}")
            if args.check_model:
                c = runner.check_model(args.out)
                verdict = ("the same: this run can be resumed here" if c["same"] else
                           "different: this run cannot be resumed here (another build of the model)")
                print(f"model {c['name'] or '(default)'}: run's fingerprint {c['run'][:12]}, this machine's "
                      f"{c['here'][:12]}: {verdict}")
                return 0 if c["same"] else 3
            return 0
        _print_summary(args.out, args.more, args.into)
        return 0
    except (FileNotFoundError, FileExistsError, ValueError, ConnectionError, RuntimeError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
