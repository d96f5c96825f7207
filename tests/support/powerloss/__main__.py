"""``cd tests && python -m support.powerloss [--points N] [--subsets N] [--seed N]``: the power-loss
table for every engine, durability mode and workload (the README's figures)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from .harness import WORKLOADS, build_recorder, run

MODES = [("lmdb", "sync"), ("lmdb", "metasync"), ("lmdb", "nosync"),
         ("journal", "sync"), ("journal", "metasync"), ("journal", "nosync")]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m support.powerloss", description=__doc__)
    parser.add_argument("--points", type=int, default=40, help="crash points per workload (default 40)")
    parser.add_argument("--subsets", type=int, default=4, help="random sector subsets per point (default 4)")
    parser.add_argument("--seed", type=int, default=20261205)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lib = build_recorder(Path(tmp))
        print("| engine | durability | states | acknowledged event lost | partial batch | did not open | "
              "invented or gap | verify damage |")
        print("|---|---|---|---|---|---|---|---|")
        for engine, durability in MODES:
            total: dict[str, int] = {}
            errors: dict[str, int] = {}
            for workload in WORKLOADS:
                tally = run(engine, durability, workload, seed=args.seed, points=args.points,
                            subsets=args.subsets, recorder=lib)
                for key, value in tally.row().items():
                    if isinstance(value, int):
                        total[key] = total.get(key, 0) + value
                for key, value in tally.errors.items():
                    errors[key] = errors.get(key, 0) + value
            why = f" ({', '.join(f'{k} {v}' for k, v in sorted(errors.items()))})" if errors else ""
            print(f"| {engine} | {durability} | {total['states']} | {total['lost']} | {total['partial']} | "
                  f"{total['unopened']}{why} | {total['invented']} | {total['unverified']} |", flush=True)


if __name__ == "__main__":
    main()
