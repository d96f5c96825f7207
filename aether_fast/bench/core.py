"""Side-by-side benchmark of aether_fast against raw py-lmdb and sqlite3.

Every workload runs on the same generated events, in the same process, with the same
durability setting, and reports events per second (the median of several repeats)
beside the rate of a baseline doing the same logical work:

- ``py-lmdb``: the same LMDB layout written and read from Python (py-lmdb), records
  encoded and decoded with ``struct`` in aether_fast's binary layout (checksum: zlib
  CRC32 instead of CRC32C, since the standard library has no CRC32C);
- ``sqlite3``: ``events(actor, version, position, type, data)`` in WAL mode.

All inputs are pre-built outside the timed regions: Event objects for aether_fast, UTF-8
field tuples for py-lmdb, rows with their positions already assigned for sqlite3. A bulk
append is one transaction per actor batch in all three systems (aether_fast ``append``,
py-lmdb ``putmulti``, sqlite3 ``executemany``), the version check inside it.

Each timed write starts from a fresh store in a fresh temporary directory. The read
workloads run, after one untimed warm-up, against one store per system filled (untimed)
with the same events plus one big actor. No LMDB environment is opened twice in this
process: each system has its own directory.

Used by ``python -m aether_fast bench`` (see ``runner.py``) and by the top-level ``bench/``.
"""

from __future__ import annotations

import gc
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator

from ..store.lmdb import LmdbEventStore
from .common import (
    MAP_SIZE,
    Config,
    PyLmdbStore,
    Row,
    Store,
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

    # -- stores --

    def open_aether(self, path: str) -> LmdbEventStore:
        return LmdbEventStore(path, durability=self.cfg.durability, map_size=MAP_SIZE)

    def open_pylmdb(self, path: str) -> PyLmdbStore:
        return PyLmdbStore(path, self.cfg.durability)

    def open_sqlite(self, path: str) -> sqlite3.Connection:
        return open_sqlite(path, self.cfg.durability)

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

    def aether_save_each(self, store: LmdbEventStore) -> None:
        save = store.save_event
        with store.transaction():
            for event in self.data.interleaved:
                save(event)

    def pylmdb_save_each(self, store: PyLmdbStore) -> None:
        store.save_each(self.py_interleaved)

    def writers(self) -> dict[str, tuple[Callable[[str], Store], Callable[[Store], None]]]:
        """Each write workload: ``(open a store in a directory, the timed writes into it)``."""
        return {
            "bulk_append/aether_fast": (self.open_aether, self.aether_bulk),
            "bulk_append/py-lmdb": (self.open_pylmdb, self.pylmdb_bulk),
            "bulk_append/sqlite3": (self.open_sqlite, self.sqlite_bulk),
            "save_event/aether_fast": (self.open_aether, self.aether_save_each),
            "save_event/py-lmdb": (self.open_pylmdb, self.pylmdb_save_each),
        }

    def time_write(self, open_store: Callable[[str], Store], write: Callable[[Store], None]) -> list[float]:
        """Seconds of each repeat of ``write``, each on a fresh store."""
        return measure(lambda state: write(state[1]), self.cfg.repeats, lambda: self.new_store(open_store),
                       self.drop_store)

    def write_rows(self) -> list[Row]:
        cfg = self.cfg
        times = {}
        for key, (open_store, write) in self.writers().items():
            self.log(f"  {key} ...")
            times[key] = self.time_write(open_store, write)
        n = cfg.bulk_events
        label = f"bulk append ({cfg.per_actor}/actor/call, version check)"
        return [
            same_size_row(label, "bulk_append/py-lmdb", n, times["bulk_append/aether_fast"], "py-lmdb",
                 times["bulk_append/py-lmdb"], "ratio", 2),
            same_size_row(label, "bulk_append/sqlite3", n, times["bulk_append/aether_fast"], "sqlite3",
                 times["bulk_append/sqlite3"], "ratio", 2),
            same_size_row("save_event x N in one transaction", "save_event", n, times["save_event/aether_fast"],
                 "py-lmdb", times["save_event/py-lmdb"], "rate", 400_000),
        ]

    # -- read workloads (on one store per system, filled untimed and kept open) --

    def fill(self, store: LmdbEventStore | PyLmdbStore) -> None:
        """The bulk events, then the big actor."""
        if isinstance(store, LmdbEventStore):
            self.aether_bulk(store)
            for batch in self.data.big_batches:
                store.append(self.data.big_actor, batch)
        else:
            self.pylmdb_bulk(store)
            for batch in self.data.big_batches:
                store.append(py_rows(batch))

    @property
    def range_positions(self) -> tuple[int, int]:
        """The position range of the range reads: every bulk event."""
        return 1, self.cfg.bulk_events

    def readers(self, store: LmdbEventStore | PyLmdbStore) -> dict[str, Callable[[], object]]:
        """Each read workload on a filled store of either system."""
        actor = self.data.big_actor
        start, end = self.range_positions
        if isinstance(store, LmdbEventStore):
            return {
                "replay": lambda: store.get_events(actor),
                "columns_actor": lambda: store.read_columns(actor),
                "columns_range": lambda: store.read_columns(from_position=start, to_position=end),
                "read_all": lambda: _count(store.read_all()),
            }
        return {
            "replay": lambda: store.get_events(actor),
            "columns_actor": lambda: store.actor_columns(actor),
            "columns_range": lambda: store.range_columns(start, end),
            "read_all": store.scan,
        }

    def time_read(self, read: Callable[[], object]) -> list[float]:
        """Seconds of each repeat of ``read``, after one untimed warm-up run."""
        return measure(lambda _: read(), self.cfg.repeats, warmup=1)

    def _time_reads(self, name: str, open_store: Callable[[str], LmdbEventStore | PyLmdbStore]) -> dict:
        times = {}
        with fresh_dir(self.tmp) as path:
            self.log(f"  {name}: filling the read store ...")
            store = open_store(path)
            try:
                self.fill(store)
                assert len(store.get_events(self.data.big_actor)) == self.cfg.replay_events
                for key, read in self.readers(store).items():
                    self.log(f"  {key}/{name} ...")
                    times[key] = self.time_read(read)
            finally:
                store.close()
        return times

    def read_sizes(self) -> dict[str, int]:
        """The events each read workload reads."""
        start, end = self.range_positions
        n_big = self.cfg.replay_events
        return {"replay": n_big, "columns_actor": n_big, "columns_range": end - start + 1,
                "read_all": self.cfg.bulk_events + n_big}

    def read_rows(self) -> list[Row]:
        ours = self._time_reads("aether_fast", self.open_aether)
        theirs = self._time_reads("py-lmdb", self.open_pylmdb)
        n = self.read_sizes()
        start, end = self.range_positions
        return [
            same_size_row(f"replay one {n['replay']}-event actor as objects", "replay", n["replay"], ours["replay"],
                 "py-lmdb + struct decode", theirs["replay"], "ratio", 2),
            same_size_row(f"read_columns(actor), {n['columns_actor']} events", "columns_actor", n["columns_actor"],
                 ours["columns_actor"], "py-lmdb + struct -> numpy", theirs["columns_actor"], "rate", 4_000_000),
            same_size_row(f"read_columns(positions {start}..{end})", "columns_range", n["columns_range"],
                 ours["columns_range"], "py-lmdb + struct -> numpy", theirs["columns_range"], "rate", 10_000_000),
            same_size_row(f"full log scan ({n['read_all']} events) via read_all", "read_all", n["read_all"],
                 ours["read_all"], "py-lmdb raw cursor", theirs["read_all"], "ratio", 1),
        ]

    def run(self) -> list[Row]:
        """Every workload; the pre-built data is frozen out of the garbage collector's way."""
        gc.collect()
        gc.freeze()
        try:
            return self.write_rows() + self.read_rows()
        finally:
            gc.unfreeze()


def _count(it: Iterator[object]) -> int:
    n = 0
    for _ in it:
        n += 1
    return n


