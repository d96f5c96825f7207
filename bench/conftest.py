"""pytest-benchmark versions of the workloads of ``python -m aether_fast bench``.

Run with ``.venv/bin/python -m pytest bench/ --benchmark-only`` (the normal test run only
collects ``tests/``). Sizes come from the environment: AETHER_BENCH_EVENTS (default
100000), AETHER_BENCH_ACTORS (default 1000), AETHER_BENCH_ROUNDS (default 5) and
AETHER_BENCH_DURABILITY (nosync or sync; default nosync). Each benchmark records the
number of events it handles in ``extra_info["events"]``.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator

import pytest

from aether_fast.bench.common import Config, fresh_dir
from aether_fast.bench.core import Bench

CONFIG = Config(
    events=int(os.environ.get("AETHER_BENCH_EVENTS", "100000")),
    actors=int(os.environ.get("AETHER_BENCH_ACTORS", "1000")),
    repeats=int(os.environ.get("AETHER_BENCH_ROUNDS", "5")),
    durability=os.environ.get("AETHER_BENCH_DURABILITY", "nosync"),
)


@pytest.fixture(scope="session")
def bench() -> Iterator[Bench]:
    """The workloads on their pre-built events, frozen out of the garbage collector's way."""
    b = Bench(CONFIG)
    gc.collect()
    gc.freeze()
    yield b
    gc.unfreeze()


@pytest.fixture(scope="session")
def read_stores(bench: Bench) -> Iterator[dict[str, object]]:
    """One filled store per system, kept open for the read benchmarks."""
    with fresh_dir(None) as ours, fresh_dir(None) as theirs:
        stores = {"aether_fast": bench.open_aether(ours), "py-lmdb": bench.open_pylmdb(theirs)}
        try:
            for store in stores.values():
                bench.fill(store)
            yield stores
        finally:
            for store in stores.values():
                store.close()


@pytest.fixture
def bench_write(benchmark, bench: Bench) -> Callable[[str, str], None]:
    """Benchmark one write workload of one system, on a fresh store every round."""

    def run(workload: str, system: str) -> None:
        open_store, write = bench.writers()[f"{workload}/{system}"]
        benchmark.group = workload
        benchmark.extra_info["events"] = bench.cfg.bulk_events
        benchmark.pedantic(lambda state: write(state[1]), setup=lambda: ((bench.new_store(open_store),), {}),
                           teardown=bench.drop_store, rounds=bench.cfg.repeats)

    return run


@pytest.fixture
def bench_read(benchmark, bench: Bench, read_stores: dict[str, object]) -> Callable[[str, str], None]:
    """Benchmark one read workload of one system, after one warm-up round."""

    def run(workload: str, system: str) -> None:
        benchmark.group = workload
        benchmark.extra_info["events"] = bench.read_sizes()[workload]
        benchmark.pedantic(bench.readers(read_stores[system])[workload], rounds=bench.cfg.repeats,
                           warmup_rounds=1)

    return run
