"""Concurrent writers and live readers (issue 3), in durable mode, side by side:

- 8 threads each calling ``save_event`` one event at a time (group commit) against one
  thread doing the same, and against the faster of two sqlite3 set-ups (WAL,
  synchronous=FULL, one event per transaction, 8 threads): a connection per thread
  (SQLite's busy handler serialises the writers, sleeping between retries) and one shared
  connection behind a lock;
- one thread, per-event durable ``save_event`` against a raw per-event py-lmdb transaction;
- a subscription: commit-to-delivery latency across processes (p50, p99) and the
  catch-up read rate over a long history (information: no baseline).

The writer set-ups take turns repeat by repeat (``common.alternate``).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..model import Event
from ..store.lmdb import LmdbEventStore
from .common import (
    MAP_SIZE,
    PyLmdbStore,
    Row,
    alternate,
    faster,
    fresh_dir,
    measure,
    open_sqlite,
    py_rows,
    same_size_row,
)


@dataclass(frozen=True)
class ConcurrencyConfig:
    threads: int = 8
    per_thread: int = 250          # durable saves per thread
    single: int = 1000             # durable saves of the one-thread runs
    latency_events: int = 300      # cross-process commits timed one by one
    history: int = 1_000_000       # events the catch-up read goes through
    repeats: int = 3
    payload_bytes: int = 100


QUICK_CONCURRENCY = ConcurrencyConfig(per_thread=50, single=200, latency_events=100, history=50_000)


def _events(actor: str, n: int, payload: bytes) -> list[Event]:
    return [Event(event_type="Deposited", actor_id=actor, version=v, data=payload) for v in range(1, n + 1)]


def _threads(work: Callable[[int], None], n: int) -> None:
    """Run ``work(i)`` in ``n`` threads; re-raise the first error of any of them."""
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            work(i)
        except BaseException as e:  # noqa: BLE001 -- handed to the caller below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


class ConcurrencyBench:
    def __init__(self, cfg: ConcurrencyConfig, tmp: str | None = None, log=lambda msg: None) -> None:
        self.cfg = cfg
        self.tmp = tmp
        self.log = log
        payload = os.urandom(cfg.payload_bytes)
        self.per_thread = [_events(f"writer-{i}", cfg.per_thread, payload) for i in range(cfg.threads)]
        self.single = _events("solo", cfg.single, payload)

    def _timed_on_fresh(self, open_store, work):
        """One timed repeat of ``work(store)`` on a store in a fresh directory (for ``alternate``)."""

        def setup():
            path = tempfile.mkdtemp(prefix="aether-bench-", dir=self.tmp)
            return path, open_store(path)

        def teardown(state):
            state[1].close()
            shutil.rmtree(state[0], ignore_errors=True)

        return lambda: measure(lambda state: work(state[1]), 1, setup, teardown)

    def writer_rows(self) -> list[Row]:
        cfg = self.cfg
        total = cfg.threads * cfg.per_thread

        def aether(path):
            return LmdbEventStore(path, durability="sync", map_size=MAP_SIZE)

        def threaded(store):
            def work(i):
                for e in self.per_thread[i]:
                    store.save_event(e)

            _threads(work, cfg.threads)

        def single(store):
            for e in self.single:
                store.save_event(e)

        def sqlite_save(c: sqlite3.Connection, e: Event) -> None:
            c.execute("BEGIN IMMEDIATE")
            latest = c.execute("SELECT max(version) FROM events WHERE actor = ?", (e.actor_id,)).fetchone()[0]
            if e.version <= (latest or 0):
                c.execute("ROLLBACK")
                raise ValueError("version conflict")
            c.execute(
                "INSERT INTO events SELECT ?, ?, coalesce(max(position), 0) + 1, ?, ? FROM events",
                (e.actor_id, e.version, e.event_type, e.payload),
            )
            c.execute("COMMIT")

        def sqlite_own_connections(handle):
            def work(i):
                c = handle.connect()
                for e in self.per_thread[i]:
                    sqlite_save(c, e)
                c.close()

            _threads(work, cfg.threads)

        def sqlite_shared_connection(handle):
            c = handle.connect()
            lock = threading.Lock()

            def work(i):
                for e in self.per_thread[i]:
                    with lock:
                        sqlite_save(c, e)

            _threads(work, cfg.threads)
            c.close()

        rows_single = py_rows(self.single)

        def pylmdb_single(store):
            for row in rows_single:
                store.append([row])

        self.log(f"  durable writers ({cfg.threads} threads, 1 thread, sqlite3 x2, py-lmdb), interleaved ...")
        ours_threads, ours_single, sqlite_own, sqlite_shared, pylmdb_times = alternate([
            self._timed_on_fresh(aether, threaded),
            self._timed_on_fresh(aether, single),
            self._timed_on_fresh(_SqliteStore, sqlite_own_connections),
            self._timed_on_fresh(_SqliteStore, sqlite_shared_connection),
            self._timed_on_fresh(lambda p: PyLmdbStore(p, "sync"), pylmdb_single),
        ], cfg.repeats, warmup=0)
        label, sqlite_times, _, note = faster([
            (f"sqlite3 FULL, {cfg.threads} threads, a connection each", sqlite_own, total),
            (f"sqlite3 FULL, {cfg.threads} threads, one connection + lock", sqlite_shared, total),
        ])
        return [
            same_size_row(f"{cfg.threads} threads x durable save_event (group commit)", "threads_vs_single", total,
                          ours_threads, "aether_fast, 1 thread", _scale(ours_single, cfg.single, total), 5),
            same_size_row(f"{cfg.threads} threads x durable save_event (group commit)", "threads_vs_sqlite", total,
                          ours_threads, label, sqlite_times, 5, note),
            same_size_row("1 thread x durable save_event", "single_vs_pylmdb", cfg.single, ours_single,
                          "py-lmdb, txn per event", pylmdb_times, 0.9),
        ]

    def subscription(self) -> tuple[list[Row], dict[str, float]]:
        cfg = self.cfg
        with fresh_dir(self.tmp) as path:
            store = LmdbEventStore(path, durability="nosync", map_size=MAP_SIZE)
            try:
                self.log("  subscription latency across processes ...")
                latency = self._latency(store, path)
                self.log(f"  filling a {cfg.history}-event history ...")
                payload = os.urandom(cfg.payload_bytes)
                base = store.last_position()
                for start in range(0, cfg.history, 1000):
                    store.append(f"h{start}", _events(f"h{start}", min(1000, cfg.history - start), payload))

                def catch_up(_):
                    sub = store.subscribe(base + 1)
                    for n, _event in enumerate(sub, 1):
                        if n == cfg.history:
                            break

                self.log("  catch-up read ...")
                times = measure(catch_up, cfg.repeats)
                row = same_size_row(f"catch-up subscription over {cfg.history} events", "catch_up", cfg.history,
                                    times, "(information: no baseline)", [], None)
                return [row], latency
            finally:
                store.close()

    def _latency(self, store: LmdbEventStore, path: str) -> dict[str, float]:
        n = self.cfg.latency_events
        writer = textwrap.dedent(
            """
            import sys, time
            from aether_fast.model import Event
            from aether_fast.store.lmdb import LmdbEventStore
            path, n = sys.argv[1], int(sys.argv[2])
            store = LmdbEventStore(path, durability="nosync")
            sys.stdin.readline()
            for v in range(1, n + 1):
                store.save_event(Event(event_type="Ping", actor_id="pinger", version=v))
                print(time.monotonic_ns(), flush=True)
                time.sleep(0.002)
            """
        )
        sub = store.subscribe(store.last_position() + 1)
        proc = subprocess.Popen([sys.executable, "-c", writer, path, str(n)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        try:
            proc.stdin.write("go\n")
            proc.stdin.flush()
            received = []
            for _ in range(n):
                event = sub.next(timeout=30)
                if event is None:
                    raise RuntimeError("the latency writer stopped delivering")
                received.append(time.monotonic_ns())
            committed = [int(line) for line in proc.stdout]
            proc.wait(30)
        finally:
            proc.kill()
        lat_ms = sorted(max(0, r - c) / 1e6 for r, c in zip(received, committed))
        return {
            "events": n,
            "p50_ms": statistics.median(lat_ms),
            "p99_ms": lat_ms[min(len(lat_ms) - 1, int(len(lat_ms) * 0.99))],
            "max_ms": lat_ms[-1],
        }

    def run(self) -> tuple[list[Row], dict[str, float]]:
        rows = self.writer_rows()
        sub_rows, latency = self.subscription()
        return rows + sub_rows, latency


class _SqliteStore:
    """A fresh sqlite3 database (schema created); the writers connect with ``connect``."""

    def __init__(self, path: str) -> None:
        self.path = path
        open_sqlite(path, "sync").close()

    def connect(self) -> sqlite3.Connection:
        c = sqlite3.connect(os.path.join(self.path, "events.db"), isolation_level=None, timeout=60,
                            check_same_thread=False)
        c.execute("PRAGMA synchronous=FULL")
        return c

    def close(self) -> None:
        pass


def _scale(times: list[float], events: int, total: int) -> list[float]:
    """Times of ``events`` events scaled to ``total`` (same rate), for a ratio of rates."""
    return [t * total / events for t in times]
