"""Build the embedded models ahead of time: ``python -m analysis.zoo prepare [NAME] [--rebuild]``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from analysis import zoo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.zoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="build (or verify) a zoo model in the cache")
    p.add_argument("name", nargs="?", default=None, help=f"one of {', '.join(zoo.ZOO)} (default: the default model)")
    p.add_argument("--rebuild", action="store_true", help="rebuild even if a valid cached copy exists")
    sub.add_parser("list", help="list zoo models and where they are cached")
    b = sub.add_parser("build-into", help=argparse.SUPPRESS)      # the build process that prepare starts
    b.add_argument("name")
    b.add_argument("out")
    b.add_argument("info")
    b.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in zoo.ZOO:
            print(name, zoo.model_dir(name))
        return 0
    if args.command == "build-into":
        info = zoo.build_into(args.name, args.out, progress=not args.no_progress)
        Path(args.info).write_text(json.dumps(info))
        return 0
    meta = zoo.prepare(args.name, rebuild=args.rebuild)
    shown = {k: v for k, v in meta.items() if k != "files"}
    print(json.dumps(shown, indent=2))
    print("cached at", zoo.model_dir(args.name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
