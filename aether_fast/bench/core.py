"""Side-by-side benchmark of aether_fast against raw py-lmdb and sqlite3.

Every workload runs on the same generated events, in the same process, with the same
durability setting, and reports events per second (the median of several repeats)
beside the rate of a baseline doing the same logical work:

- ``py-lmdb``: the same LMDB layout written and read from Python (py-lmdb), records
  encoded and decoded with ``struct`` in aether_fast's binary layout (checksum: zlib
  CRC32 instead of CRC32C, since the standard library has no CRC32C);
- ``sqlite3``: ``events(actor, version, position, type, data)`` in WAL mode;
- ``C loop``: the same layout, checks and gapless positions written and read by plain C
  loops over liblmdb (``c_baseline.c``, compiled at run time: see ``c_baseline.py``), for
  the rows near the physical limit (bulk append, replay, columns, full scan). Without a C
  compiler or LMDB headers those rows say "baseline unavailable" and why.

All inputs are pre-built outside the timed regions: Event objects for aether_fast, UTF-8
field tuples for py-lmdb, rows with their positions already assigned for sqlite3, one
buffer of fields for the C loop. A bulk
append is one transaction per actor batch in all three systems (aether_fast ``append``,
py-lmdb ``putmulti``, sqlite3 ``executemany``), the version check inside it.

Each timed write starts from a fresh store in a fresh temporary directory. The read
workloads run, after one untimed warm-up, against one store per system filled (untimed)
with the same events plus one big actor. The systems take turns repeat by repeat (A B C A
B C ...: ``common.alternate``), so each ratio has one value per repeat. No LMDB
environment is opened twice in this process: each system has its own directory.

Used by ``python -m aether_fast bench`` (see ``runner.py``) and by the top-level ``bench/``.
"""

from __future__ import annotations

import gc
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack

from ..store.lmdb import LmdbEventStore
from . import c_baseline
from .c_baseline import CInput, CStore
from .common import (
    MAP_SIZE,
    UNAVAILABLE,
    Config,
    PyLmdbStore,
    Row,
    Store,
    alternate,
    fresh_dir,
    make_data,
    measure,
    open_sqlite,
    py_rows,
    same_size_row,
    sqlite_append,
    sqlite_batches,
)


class Bench:
    """The workloads of one configuration on its pre-built data; every store directory is
    created under ``tmp`` (default: the system temp dir)."""

    def __init__(self, cfg: Config, tmp: str | None = None, log: Callable[[str], None] = lambda msg: None) -> None:
        self.cfg = cfg
        self.tmp = tmp
        self.log = log
        self.data = make_data(cfg)
        self.py_batches = [py_rows(events) for _, events in self.data.batches]
        self.py_interleaved = py_rows(self.data.interleaved)
        self.sqlite_input = sqlite_batches(self.data)
        self.c_unavailable = c_baseline.available()
        if self.c_unavailable is None:
            self.c_input = CInput([events for _, events in self.data.batches])
            self.c_big = CInput(self.data.big_batches)
        else:
            log(f"  C baseline unavailable: {self.c_unavailable}")

    # -- stores --

    def open_aether(self, path: str) -> LmdbEventStore:
        return LmdbEventStore(path, durability=self.cfg.durability, map_size=MAP_SIZE)

    def open_pylmdb(self, path: str) -> PyLmdbStore:
        return PyLmdbStore(path, self.cfg.durability)

    def open_sqlite(self, path: str) -> sqlite3.Connection:
        return open_sqlite(path, self.cfg.durability)

    def open_c(self, path: str) -> CStore:
        return CStore(path, self.cfg.durability, MAP_SIZE)

    def new_store(self, open_store: Callable[[str], Store]) -> tuple[str, Store]:
        """A store in a fresh directory: ``(directory, store)``."""
        path = tempfile.mkdtemp(prefix="aether-bench-", dir=self.tmp)
        return path, open_store(path)

    @staticmethod
    def drop_store(state: tuple[str, Store]) -> None:
        path, store = state
        store.close()
        shutil.rmtree(path, ignore_errors=True)

    # -- write workloads (timed on a fresh store each) --

    def aether_bulk(self, store: LmdbEventStore) -> None:
        append = store.append
        for actor, events in self.data.batches:
            append(actor, events)

    def pylmdb_bulk(self, store: PyLmdbStore) -> None:
        for rows in self.py_batches:
            store.append(rows)

    def sqlite_bulk(self, conn: sqlite3.Connection) -> None:
        for actor, first, rows in self.sqlite_input:
            sqlite_append(conn, actor, first, rows)

    def c_bulk(self, store: CStore) -> None:
        store.append(self.c_input)

    def aether_save_each(self, store: LmdbEventStore) -> None:
        save = store.save_event
        with store.transaction():
            for event in self.data.interleaved:
                save(event)

    def pylmdb_save_each(self, store: PyLmdbStore) -> None:
        store.save_each(self.py_interleaved)

    def writers(self) -> dict[str, tuple[Callable[[str], Store], Callable[[Store], None]]]:
        """Each write workload: ``(open a store in a directory, the timed writes into it)``;
        the C loop's only when it builds here."""
        out = {
            "bulk_append/aether_fast": (self.open_aether, self.aether_bulk),
            "bulk_append/py-lmdb": (self.open_pylmdb, self.pylmdb_bulk),
            "bulk_append/sqlite3": (self.open_sqlite, self.sqlite_bulk),
            "bulk_append/c": (self.open_c, self.c_bulk),
            "save_event/aether_fast": (self.open_aether, self.aether_save_each),
            "save_event/py-lmdb": (self.open_pylmdb, self.pylmdb_save_each),
        }
        if self.c_unavailable is not None:
            del out["bulk_append/c"]
        return out

    def time_write(self, open_store: Callable[[str], Store], write: Callable[[Store], None]) -> Callable[[], list[float]]:
        """One timed repeat of ``write`` on a fresh store (for ``alternate``)."""
        return lambda: measure(lambda state: write(state[1]), 1, lambda: self.new_store(open_store), self.drop_store)

    def write_times(self, workload: str) -> dict[str, list[float]]:
        """``{system: seconds of each repeat}`` of one write workload, the systems interleaved."""
        sides = {k.split("/")[1]: v for k, v in self.writers().items() if k.startswith(workload + "/")}
        self.log(f"  {workload}: {', '.join(sides)}, interleaved ...")
        times = alternate([self.time_write(*side) for side in sides.values()], self.cfg.repeats, warmup=0)
        return dict(zip(sides, times))

    def write_rows(self) -> list[Row]:
        cfg = self.cfg
        bulk = self.write_times("bulk_append")
        save = self.write_times("save_event")
        n = cfg.bulk_events
        label = f"bulk append ({cfg.per_actor}/actor/call, version check)"
        return [
            same_size_row(label, "bulk_append/py-lmdb", n, bulk["aether_fast"], "py-lmdb", bulk["py-lmdb"], 2),
            same_size_row(label, "bulk_append/sqlite3", n, bulk["aether_fast"], "sqlite3", bulk["sqlite3"], 2),
            same_size_row(label, "bulk_append/c", n, bulk["aether_fast"], C_LOOP, bulk.get("c", []), 0.5,
                          self.c_note),
            # target: was ">= 0.4M ev/s", 1.1x py-lmdb's rate where it was set (0.36M ev/s)
            same_size_row("save_event x N in one transaction", "save_event", n, save["aether_fast"],
                          "py-lmdb", save["py-lmdb"], 1.1),
        ]

    @property
    def c_note(self) -> str:
        return "" if self.c_unavailable is None else f"{UNAVAILABLE}: {self.c_unavailable}"

    # -- read workloads (on one store per system, filled untimed and kept open) --

    def fill(self, store: LmdbEventStore | PyLmdbStore | CStore) -> None:
        """The bulk events, then the big actor."""
        if isinstance(store, LmdbEventStore):
            self.aether_bulk(store)
            for batch in self.data.big_batches:
                store.append(self.data.big_actor, batch)
        elif isinstance(store, CStore):
            store.append(self.c_input)
            store.append(self.c_big)
        else:
            self.pylmdb_bulk(store)
            for batch in self.data.big_batches:
                store.append(py_rows(batch))

    @property
    def range_positions(self) -> tuple[int, int]:
        """The position range of the range reads: every bulk event."""
        return 1, self.cfg.bulk_events

    def readers(self, store: LmdbEventStore | PyLmdbStore | CStore) -> dict[str, Callable[[], object]]:
        """Each read workload on a filled store of any system."""
        actor = self.data.big_actor
        start, end = self.range_positions
        if isinstance(store, LmdbEventStore):
            return {
                "replay": lambda: store.get_events(actor),
                "columns_actor": lambda: store.read_columns(actor),
                "columns_range": lambda: store.read_columns(from_position=start, to_position=end),
                "read_all": lambda: _count(store.read_all()),
            }
        if isinstance(store, CStore):
            return {
                "replay": lambda: store.read(c_baseline.CHECK, actor),
                "columns_actor": lambda: store.read(c_baseline.COLUMNS, actor),
                "columns_range": lambda: store.read(c_baseline.COLUMNS, None, start, end),
                "read_all": lambda: store.read(c_baseline.CHECK),
            }
        return {
            "replay": lambda: store.get_events(actor),
            "columns_actor": lambda: store.actor_columns(actor),
            "columns_range": lambda: store.range_columns(start, end),
            "read_all": store.scan,
        }

    def read_stores(self) -> dict[str, Callable[[str], LmdbEventStore | PyLmdbStore | CStore]]:
        """The systems of the read workloads, by name: how to open each one's store."""
        out = {"aether_fast": self.open_aether, "py-lmdb": self.open_pylmdb}
        if self.c_unavailable is None:
            out["c"] = self.open_c
        return out

    def read_times(self) -> dict[str, dict[str, list[float]]]:
        """``{workload: {system: seconds of each repeat}}``: one filled store per system, all
        open at once, the systems interleaved repeat by repeat after one warm-up round."""
        times: dict[str, dict[str, list[float]]] = {}
        with ExitStack() as stack:
            stores = {}
            for name, open_store in self.read_stores().items():
                self.log(f"  {name}: filling the read store ...")
                store = open_store(stack.enter_context(fresh_dir(self.tmp)))
                stack.callback(store.close)
                self.fill(store)
                stores[name] = store
            assert len(stores["aether_fast"].get_events(self.data.big_actor)) == self.cfg.replay_events
            readers = {name: self.readers(store) for name, store in stores.items()}
            for key in self.read_sizes():
                self.log(f"  {key}: {', '.join(stores)}, interleaved ...")
                sides = [lambda read=r[key]: measure(lambda _: read(), 1) for r in readers.values()]
                times[key] = dict(zip(stores, alternate(sides, self.cfg.repeats, warmup=1)))
        return times

    def read_sizes(self) -> dict[str, int]:
        """The events each read workload reads."""
        start, end = self.range_positions
        n_big = self.cfg.replay_events
        return {"replay": n_big, "columns_actor": n_big, "columns_range": end - start + 1,
                "read_all": self.cfg.bulk_events + n_big}

    def read_rows(self) -> list[Row]:
        t = self.read_times()
        n = self.read_sizes()
        start, end = self.range_positions
        note = self.c_note

        def row(label: str, key: str, baseline: str, system: str, target: float | None) -> Row:
            suffix = "" if system == "py-lmdb" else f"/{system}"
            return same_size_row(label, key + suffix, n[key], t[key]["aether_fast"], baseline,
                                 t[key].get(system, []), target, note if system == "c" else "")

        # Targets against the C loop (new with it) were set from its first runs on the project's
        # machine, below the measured ratios: they say how near the C floor each read stays.
        replay = f"replay one {n['replay']}-event actor as objects"
        actor_cols = f"read_columns(actor), {n['columns_actor']} events"
        range_cols = f"read_columns(positions {start}..{end})"
        scan = f"full log scan ({n['read_all']} events) via read_all"
        return [
            row(replay, "replay", "py-lmdb + struct decode", "py-lmdb", 2),
            row(replay, "replay", C_CHECK, "c", 0.2),
            row(actor_cols, "columns_actor", "py-lmdb + struct -> numpy", "py-lmdb", None),
            row(actor_cols, "columns_actor", C_COLUMNS, "c", 0.7),
            row(range_cols, "columns_range", "py-lmdb + struct -> numpy", "py-lmdb", None),
            row(range_cols, "columns_range", C_COLUMNS, "c", 0.7),
            # information: the raw cursor neither checks nor decodes (not the same work)
            row(scan, "read_all", "py-lmdb raw cursor (no check, no decode)", "py-lmdb", None),
            row(scan, "read_all", C_CHECK, "c", 0.3),
        ]

    def run(self) -> list[Row]:
        """Every workload; the pre-built data is frozen out of the garbage collector's way."""
        gc.collect()
        gc.freeze()
        try:
            return self.write_rows() + self.read_rows()
        finally:
            gc.unfreeze()


C_LOOP = "C loop over liblmdb"
C_CHECK = "C loop: check + decode in place"
C_COLUMNS = "C loop: check -> columns"


def _count(it: Iterator[object]) -> int:
    n = 0
    for _ in it:
        n += 1
    return n


