"""aether_fast as the eventsourcing library's persistence module, side by side with the
library's own SQLite and in-memory (POPO) recorders, in one run on the same data:

- ``insert_events``: one call per aggregate, ``per_call`` events each (versions 1..N,
  ``payload_bytes`` states), over ``aggregates`` new aggregates, into a fresh store;
- ``select_events``: one aggregate of ``big_aggregate`` events, read whole;
- ``select_notifications``: the inserted events, read from the start in pages of ``page``;
- ``Application.save``: an application saving one aggregate change per call in durable
  mode (aether_fast ``sync``, the SQLite recorder as the library configures it: WAL with
  SQLite's default ``synchronous=FULL``), with one thread, then with ``threads`` threads
  (each with its own aggregate) sharing the application.

Each repeat of the first three starts from a fresh store per system: timed inserts, the
big aggregate added untimed, one untimed read of it, then the timed reads on that store (POPO, which reads by
handing back the objects it holds, only takes part in the inserts). The first three use
``durability`` (default ``nosync``) for aether_fast and ``synchronous=NORMAL`` for SQLite
(WAL: no fsync per commit; ``sync`` uses ``FULL``); POPO keeps nothing on disk. Every
timed region runs with the garbage collector paused after a collection, as ``timeit``
does: the cost of the collector depends on the objects the process holds (here, a
million pre-built stored events) more than on the recorder. Rates are events (or saves)
per second from the median time of the repeats.

Run by ``python -m aether_fast bench`` as its ``eventsourcing`` suite (``run_suite``), or
alone: ``python -m aether_fast.bench.eventsourcing [--quick]``. Needs the library: the
``[eventsourcing]`` extra.
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from importlib.metadata import version
from typing import Any
from uuid import UUID, uuid4

try:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event
    from eventsourcing.persistence import ApplicationRecorder, StoredEvent
    from eventsourcing.popo import POPOApplicationRecorder
    from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore
except ImportError as e:    # pragma: no cover
    raise ImportError(
        "the eventsourcing benchmark needs the eventsourcing library: pip install 'aether_fast[eventsourcing]'"
    ) from e

from ..eventsourcing import LmdbApplicationRecorder, LmdbDatastore
from .common import Row, format_table, machine, same_size_row

SYSTEMS = ("aether_fast", "sqlite", "popo")
READERS = ("aether_fast", "sqlite")
TOPIC = "bench:Deposited"


@dataclass(frozen=True)
class EsConfig:
    """The size and settings of one run."""

    aggregates: int = 10_000
    per_call: int = 100
    big_aggregate: int = 100_000
    page: int = 1_000
    saves: int = 1_000             # durable Application saves per timed run (all threads together)
    threads: int = 4
    payload_bytes: int = 100
    repeats: int = 2               # of each workload; a default run takes about 30 s
    durability: str = "nosync"

    @property
    def notifications(self) -> int:
        return self.aggregates * self.per_call


QUICK_ES = EsConfig(aggregates=200, big_aggregate=5_000, saves=60, repeats=3)


class Counter(Aggregate):
    """The aggregate of the Application workload: one event per change."""

    def __init__(self) -> None:
        self.count = 0

    @event("Incremented")
    def increment(self) -> None:
        self.count += 1


# -- the recorders ------------------------------------------------------------------------


def open_recorder(system: str, path: str, durability: str) -> tuple[ApplicationRecorder, Callable[[], None]]:
    """An empty application recorder of ``system`` in the directory ``path``, and its closer."""
    if system == "aether_fast":
        datastore = LmdbDatastore(path, durability=durability)  # type: ignore[arg-type]
        return LmdbApplicationRecorder(datastore, "bench_events"), datastore.close
    if system == "sqlite":
        sqlite = SQLiteDatastore(f"file:{os.path.join(path, 'bench.db')}")
        recorder = SQLiteApplicationRecorder(sqlite)
        recorder.create_table()
        # single-threaded use: the pool hands out this one connection every time
        conn = sqlite.pool.get_connection()
        conn.cursor().execute(f"PRAGMA synchronous={'FULL' if durability == 'sync' else 'NORMAL'}")
        sqlite.pool.put_connection(conn)
        return recorder, sqlite.close
    if system == "popo":
        return POPOApplicationRecorder(), lambda: None
    raise ValueError(f"unknown system {system!r}")


def app_env(system: str, path: str) -> dict[str, str]:
    """The environment of a durable application of ``system`` in ``path``."""
    common = {"CREATE_TABLE": "yes", "IS_SNAPSHOTTING_ENABLED": "no"}
    if system == "aether_fast":
        return {**common, "PERSISTENCE_MODULE": "aether_fast.eventsourcing", "AETHER_FAST_PATH": path,
                "AETHER_FAST_DURABILITY": "sync"}
    if system == "sqlite":
        return {**common, "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": f"file:{os.path.join(path, 'app.db')}"}
    if system == "popo":
        return {**common, "PERSISTENCE_MODULE": "eventsourcing.popo"}
    raise ValueError(f"unknown system {system!r}")


# -- the workloads --------------------------------------------------------------------------


class EsBench:
    """The workloads of one configuration; every store is created under ``tmp``."""

    def __init__(self, cfg: EsConfig, tmp: str | None = None, log: Callable[[str], None] = lambda msg: None) -> None:
        self.cfg = cfg
        self.tmp = tmp
        self.log = log
        payload = os.urandom(cfg.payload_bytes)
        versions = range(1, cfg.per_call + 1)
        self.batches = [[StoredEvent(oid, v, TOPIC, payload) for v in versions]
                        for oid in (uuid4() for _ in range(cfg.aggregates))]
        self.big_id = uuid4()
        big = [StoredEvent(self.big_id, v, TOPIC, payload) for v in range(1, cfg.big_aggregate + 1)]
        self.big_batches = [big[i:i + 1000] for i in range(0, len(big), 1000)]

    def insert(self, recorder: ApplicationRecorder) -> None:
        insert_events = recorder.insert_events
        for batch in self.batches:
            insert_events(batch)

    def select_events(self, recorder: ApplicationRecorder) -> int:
        return len(recorder.select_events(self.big_id))

    def select_notifications(self, recorder: ApplicationRecorder) -> int:
        """Every inserted event from the start, page by page: the count read."""
        select, page, total = recorder.select_notifications, self.cfg.page, self.cfg.notifications
        start, count = 1, 0
        while count < total:
            notifications = select(start, min(page, total - count))
            if not notifications:
                break
            count += len(notifications)
            start = notifications[-1].id + 1
        return count

    def recorder_repeat(self, system: str) -> dict[str, float]:
        """Seconds of one repeat of the recorder workloads of ``system``, on a fresh store."""
        cfg = self.cfg
        times: dict[str, float] = {}
        path = tempfile.mkdtemp(prefix="aether-bench-es-", dir=self.tmp)
        recorder, close = open_recorder(system, path, cfg.durability)
        try:
            times["insert_events"] = _timed(self.insert, recorder)[0]
            if system not in READERS:
                return times
            for batch in self.big_batches:
                recorder.insert_events(batch)
            self.select_events(recorder)    # warm-up: the allocator's fresh pages are not the recorder's
            for name, expected in (("select_events", cfg.big_aggregate),
                                   ("select_notifications", cfg.notifications)):
                seconds, got = _timed(getattr(self, name), recorder)
                if got != expected:
                    raise AssertionError(f"{system} {name} read {got} events, not {expected}")
                times[name] = seconds
            return times
        finally:
            close()
            shutil.rmtree(path, ignore_errors=True)

    def app_repeat(self, system: str, threads: int) -> float:
        """Seconds of one repeat of ``cfg.saves`` durable saves by ``threads`` threads."""
        per_thread = max(1, self.cfg.saves // threads)
        path = tempfile.mkdtemp(prefix="aether-bench-es-app-", dir=self.tmp)
        app = Application[UUID](env=app_env(system, path))
        try:
            counters = [Counter() for _ in range(threads)]
            app.save(*counters)
            seconds = _timed(_run_threads, [(app, c, per_thread) for c in counters])[0]
            if sum(c.count for c in counters) != per_thread * threads:
                raise AssertionError(f"{system}: not every save was made")
            return seconds
        finally:
            app.close()
            shutil.rmtree(path, ignore_errors=True)

    def run(self) -> tuple[list[Row], dict[str, dict[str, float]]]:
        """The rows with targets, and every rate: ``{workload: {system: rate}}``."""
        cfg = self.cfg
        rec: dict[str, dict[str, list[float]]] = {
            s: {"insert_events": [], "select_events": [], "select_notifications": []} for s in SYSTEMS}
        app1: dict[str, list[float]] = {s: [] for s in SYSTEMS}
        appn: dict[str, list[float]] = {s: [] for s in SYSTEMS}
        for i in range(cfg.repeats):        # the systems take turns, repeat by repeat
            self.log(f"  eventsourcing recorders, repeat {i + 1} of {cfg.repeats}: {', '.join(SYSTEMS)} ...")
            for system in SYSTEMS:
                for name, seconds in self.recorder_repeat(system).items():
                    rec[system][name].append(seconds)
        for i in range(cfg.repeats):
            self.log(f"  eventsourcing Application.save, repeat {i + 1} of {cfg.repeats} ...")
            for system in SYSTEMS:
                app1[system].append(self.app_repeat(system, 1))
                appn[system].append(self.app_repeat(system, cfg.threads))
        n = {"insert_events": cfg.notifications, "select_events": cfg.big_aggregate,
             "select_notifications": cfg.notifications}
        saves = max(1, cfg.saves // cfg.threads) * cfg.threads
        labels = {
            "insert_events": f"insert_events, {cfg.per_call}/call over {cfg.aggregates} aggregates",
            "select_events": f"select_events of a {cfg.big_aggregate}-event aggregate",
            "select_notifications": f"select_notifications over {cfg.notifications}, pages of {cfg.page}",
            "app_1": "Application.save, 1 change/call, durable, 1 thread",
            "app_n": f"Application.save, 1 change/call, durable, {cfg.threads} threads",
        }
        times = {**{k: {s: rec[s][k] for s in SYSTEMS if rec[s][k]} for k in n}, "app_1": app1, "app_n": appn}
        counts = {**n, "app_1": cfg.saves, "app_n": saves}
        rates = {k: {s: counts[k] / statistics.median(t) for s, t in v.items()} for k, v in times.items()}

        def row(key: str, baseline: str, value: float) -> Row:
            return same_size_row(labels[key], f"es/{key}/{baseline}", counts[key], times[key]["aether_fast"],
                                 baseline, times[key][baseline], value)

        rows = [
            row("insert_events", "sqlite", 5), row("insert_events", "popo", 1),
            row("select_events", "sqlite", 5), row("select_notifications", "sqlite", 5),
            row("app_1", "sqlite", 1), row("app_n", "sqlite", 3),
        ]
        return rows, {labels[k]: v for k, v in rates.items()}


def _timed(run: Callable[..., object], *args: object) -> tuple[float, object]:
    """Seconds of ``run(*args)`` (after a garbage collection), and its result."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        result = run(*args)
        return time.perf_counter() - t0, result
    finally:
        gc.enable()


def _save_changes(app: Application[UUID], counter: Counter, n: int) -> None:
    for _ in range(n):
        counter.increment()
        app.save(counter)


def _run_threads(jobs: list[tuple[Application[UUID], Counter, int]]) -> float:
    """Seconds from the common start of one thread per job ``(app, counter, saves)`` to the
    end of the last one; the first error of any of them is raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs) + 1)

    def run(app: Application[UUID], counter: Counter, saves: int) -> None:
        start.wait()
        try:
            _save_changes(app, counter, saves)
        except BaseException as e:  # noqa: BLE001 -- raised below, in the caller
            errors.append(e)

    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return elapsed


# -- reporting ------------------------------------------------------------------------------


def format_rates(rates: dict[str, dict[str, float]]) -> str:
    head = ("workload", *SYSTEMS)
    lines = [head] + [(k, *(f"{v[s]:,.0f}" if s in v else "-" for s in SYSTEMS)) for k, v in rates.items()]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = [" | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
           for line in lines]
    out.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(out)


def format_header(cfg: EsConfig, tmp: str | None) -> str:
    m = machine()
    sync = "FULL" if cfg.durability == "sync" else "NORMAL"
    return "\n".join([
        (f"machine: {m['cores']} cores, {m['cpu']}; Python {m['python']}; eventsourcing "
         f"{version('eventsourcing')}, SQLite {m['sqlite']}, LMDB {m['lmdb']}"),
        (f"recorders: aether_fast.eventsourcing (durability {cfg.durability!r}), the library's SQLiteApplicationRecorder "
         f"(file, WAL, synchronous={sync}) and POPOApplicationRecorder; {cfg.payload_bytes}-byte states; "
         f"median of {cfg.repeats} repeats, each on fresh stores in {tmp or tempfile.gettempdir()}; "
         "timed with the garbage collector paused (as timeit does)"),
        (f"applications: durable (aether_fast 'sync', SQLite as the library sets it up: WAL, "
         f"synchronous=FULL); {cfg.saves} saves per run"),
    ])


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_suite(durability: str, quick: bool, tmp: str | None,
              log: Callable[[str], None] = _log) -> tuple[list[Row], dict[str, object]]:
    """The ``eventsourcing`` suite of ``python -m aether_fast bench``: its rows (with
    targets), and its settings and every rate under the ``"eventsourcing"`` key, for the
    JSON report. Its header and its table of rates go to ``log``."""
    cfg = replace(QUICK_ES if quick else EsConfig(), durability=durability)
    log(format_header(cfg, tmp))
    log("  eventsourcing: generating stored events ...")
    rows, rates = EsBench(cfg, tmp, log).run()
    log(format_rates(rates))
    return rows, {"eventsourcing": {"settings": asdict(cfg), "rates": rates}}


def main_bench_eventsourcing(cfg: EsConfig, tmp: str | None = None, out: Any = sys.stdout) -> dict[str, object]:
    """Run every workload, print the header, the rates and the targets to ``out``; the
    JSON form of the run."""
    t0 = time.perf_counter()
    print(format_header(cfg, tmp), file=out, flush=True)
    _log("  eventsourcing: generating stored events ...")
    rows, rates = EsBench(cfg, tmp, _log).run()
    seconds = time.perf_counter() - t0
    print(format_rates(rates), file=out)
    print(format_table(rows), file=out)
    print(f"({seconds:.1f} s)", file=out, flush=True)
    return {"machine": machine(), "settings": asdict(cfg), "seconds": seconds, "rates": rates,
            "workloads": [r.as_dict() for r in rows]}


if __name__ == "__main__":
    main_bench_eventsourcing(QUICK_ES if "--quick" in sys.argv[1:] else EsConfig())


__all__ = ["QUICK_ES", "EsBench", "EsConfig", "main_bench_eventsourcing", "run_suite"]
