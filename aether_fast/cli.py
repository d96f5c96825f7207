"""The ``aether-fast`` command line: ``aether-fast bench`` (also ``python -m aether_fast bench``)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import replace

from .bench import SUITES


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aether-fast", description="aether_fast command line tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    bench = commands.add_parser(
        "bench",
        help="compare aether_fast with raw py-lmdb and sqlite3 on the same data",
        description="Side-by-side benchmark of aether_fast against raw py-lmdb and sqlite3 on embedded "
        "stores in temporary directories: events/s of each (median of the repeats) and their ratio, "
        "checked against the project's targets.",
    )
    bench.add_argument("--quick", action="store_true",
                       help="a small workload of a few seconds (50,000 events, 500 actors, 3 repeats)")
    bench.add_argument("--full", action="store_true",
                       help="run the concurrency, eventsourcing and bus suites at full size too (about 2 minutes)")
    bench.add_argument("--events", type=_positive_int, metavar="N",
                       help="events written by the bulk workloads (default 1,000,000)")
    bench.add_argument("--actors", type=_positive_int, metavar="N", help="actors they are spread over (default 10,000)")
    bench.add_argument("--repeats", type=_positive_int, metavar="N", help="timed repeats per figure (default 3)")
    bench.add_argument("--durability", choices=("nosync", "sync"), default="nosync",
                       help="commit durability for every system (default nosync; sqlite3 synchronous=NORMAL, "
                       "or FULL with sync)")
    bench.add_argument("--dir", metavar="DIR", help="where to create the temporary stores (default: the system temp dir)")
    bench.add_argument("--json", metavar="FILE", help="also write every figure and ratio to FILE as JSON")
    bench.add_argument("--suite", action="append", choices=SUITES, metavar="NAME",
                       help=f"run only this suite (repeatable; default all: {', '.join(SUITES)})")
    bench.set_defaults(run=_bench, parser=bench)
    return parser


def _bench(args: argparse.Namespace) -> int:
    from .bench import QUICK, Config, main_bench

    cfg = QUICK if args.quick else Config()
    sizes = {name: getattr(args, name) for name in ("events", "actors", "repeats") if getattr(args, name)}
    cfg = replace(cfg, durability=args.durability, **sizes)
    if cfg.actors > cfg.events:
        args.parser.error(f"--actors ({cfg.actors}) must not exceed --events ({cfg.events})")
    if args.dir and not os.path.isdir(args.dir):
        args.parser.error(f"--dir {args.dir!r} is not a directory")
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        args.parser.error(f"--json {args.json!r}: its directory does not exist")
    result = main_bench(cfg, tmp=args.dir, suites=args.suite or SUITES, full=args.full)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.run(args)

