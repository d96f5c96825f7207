"""What every benchmark suite shares: the run configuration, the generated events, the
py-lmdb and sqlite3 baselines in aether_fast's layout, timing, result rows and the table.

Imports no suite: each suite module and the runner import from here.
"""

from __future__ import annotations

import gc
import os
import platform
import shutil
import sqlite3
import statistics
import struct
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np

from ..model import Event
from ..store.lmdb import LmdbEventStore

MAP_SIZE = 4 << 30
EVENT_TYPE = "AccountCredited"


# -- configuration and data -------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """The size and settings of one benchmark run."""

    events: int = 250_000          # the default run: about a minute on a slow 2-core machine
    actors: int = 2_500
    payload_bytes: int = 100
    repeats: int = 3
    durability: str = "nosync"

    @property
    def per_actor(self) -> int:
        """Events per actor, which is also the batch size of one ``append`` call."""
        return self.events // self.actors

    @property
    def bulk_events(self) -> int:
        """Events written by the bulk workloads (``events`` rounded down to whole actors)."""
        return self.per_actor * self.actors

    @property
    def replay_events(self) -> int:
        """Events of the one big actor that the replay workloads read."""
        return max(1, self.events // 10)


QUICK = Config(events=20_000, actors=200)
FULL = Config(events=1_000_000, actors=10_000)    # --full


@dataclass
class Data:
    """The events of a run, pre-built (outside every timed region)."""

    batches: list[tuple[str, list[Event]]]   # (actor id, its events), created actor by actor
    interleaved: list[Event]                 # as many events, created version by version
    big_actor: str
    big_batches: list[list[Event]]           # the big actor's events, in batches


def make_data(cfg: Config) -> Data:
    """``cfg.actors`` actors with ``cfg.per_actor`` events each (twice: in the order of the
    bulk appends and in the order of the single saves, each list created in the order it is
    written, as an application would), and one big actor."""
    payload = os.urandom(cfg.payload_bytes)
    t0 = time.time_ns()
    actors = [f"account-{a:06d}" for a in range(cfg.actors)]
    versions = range(1, cfg.per_actor + 1)

    def event(actor: str, version: int) -> Event:
        return Event(event_type=EVENT_TYPE, actor_id=actor, version=version, data=payload, timestamp=t0 + version)

    batches = [(actor, [event(actor, v) for v in versions]) for actor in actors]
    interleaved = [event(actor, v) for v in versions for actor in actors]
    big = [event("account-big", v) for v in range(1, cfg.replay_events + 1)]
    step = cfg.per_actor
    return Data(batches, interleaved, "account-big", [big[i:i + step] for i in range(0, len(big), step)])


# -- the py-lmdb baseline: aether_fast's layout from Python -------------------------------

_CRC = struct.Struct("<I")
_HEAD = struct.Struct("<BBHqqHHHHII")   # the record header after its checksum
_HDR = 4 + _HEAD.size
_FLAG_RAW = 1
_U64BE = struct.Struct(">Q")
_U64LE = struct.Struct("<Q")


def py_encode(ev_id: bytes, typ: bytes, actor: bytes, version: int, ts: int, payload: bytes) -> bytes:
    """One record in aether_fast's layout: header, id, type, actor, payload; checksum first."""
    body = b"".join((_HEAD.pack(1, _FLAG_RAW, len(typ), version, ts, len(ev_id), len(actor), 0, 0, 0,
                                len(payload)), ev_id, typ, actor, payload))
    return _CRC.pack(zlib.crc32(body)) + body


class PyEvent:
    """The fields of an Event, decoded in Python."""

    __slots__ = ("actor_id", "command_id", "event_type", "id", "is_bytes", "metadata", "payload", "position",
                 "timestamp_ns", "version")

    def __init__(self, id, event_type, actor_id, command_id, version, timestamp_ns, metadata, payload,
                 is_bytes, position):
        self.id = id
        self.event_type = event_type
        self.actor_id = actor_id
        self.command_id = command_id
        self.version = version
        self.timestamp_ns = timestamp_ns
        self.metadata = metadata
        self.payload = payload
        self.is_bytes = is_bytes
        self.position = position


def py_decode(rec: bytes, position: int) -> PyEvent:
    """Check and decode one record (the inverse of ``py_encode``, metadata included)."""
    if zlib.crc32(memoryview(rec)[4:]) != _CRC.unpack_from(rec)[0]:
        raise ValueError(f"checksum mismatch at position {position}")
    _, flags, typ_n, version, ts, id_n, actor_n, cmd_n, _, meta_n, data_n = _HEAD.unpack_from(rec, 4)
    q = _HDR
    ev_id = rec[q:q + id_n].decode()
    q += id_n
    typ = rec[q:q + typ_n].decode()
    q += typ_n
    actor = rec[q:q + actor_n].decode()
    q += actor_n
    cmd = rec[q:q + cmd_n].decode() if flags & 2 else None
    q += cmd_n
    metadata = {}
    end = q + meta_n
    while q < end:
        kn = int.from_bytes(rec[q:q + 4], "little")
        key = rec[q + 4:q + 4 + kn].decode()
        q += 4 + kn
        vn = int.from_bytes(rec[q:q + 4], "little")
        metadata[key] = rec[q + 4:q + 4 + vn].decode()
        q += 4 + vn
    return PyEvent(ev_id, typ, actor, cmd, version, ts, metadata, rec[q:q + data_n], bool(flags & _FLAG_RAW),
                   position)


def _actor_prefix(actor: bytes) -> bytes:
    return bytes((len(actor),)) + actor


def py_rows(events: list[Event]) -> list[tuple[bytes, bytes, bytes, int, int, bytes]]:
    """The py-lmdb baseline's input: each event's fields, strings already UTF-8."""
    return [(e.id.encode(), e.event_type.encode(), e.actor_id.encode(), e.version, e.timestamp_ns, e.payload)
            for e in events]


class PyLmdbStore:
    """A minimal event store in raw py-lmdb with aether_fast's keys and records."""

    def __init__(self, path: str, durability: str) -> None:
        import lmdb

        self.env = lmdb.open(path, map_size=MAP_SIZE, max_dbs=4, sync=durability == "sync")
        self.log = self.env.open_db(b"log")
        self.idx = self.env.open_db(b"idx")

    def close(self) -> None:
        self.env.close()

    @staticmethod
    def _latest(idx_cur, prefix: bytes) -> int:
        """The actor's latest version: the last index key under its prefix (0 if none)."""
        found = idx_cur.prev() if idx_cur.set_range(prefix + b"\xff" * 8) else idx_cur.last()
        key = idx_cur.key() if found else b""
        if len(key) == len(prefix) + 8 and key.startswith(prefix):
            return _U64BE.unpack_from(key, len(prefix))[0]
        return 0

    def _put(self, txn, log_cur, idx_cur, rows, pos: int) -> int:
        log_items = []
        idx_items = []
        for ev_id, typ, actor, version, ts, payload in rows:
            pos += 1
            key = _U64BE.pack(pos)
            log_items.append((key, py_encode(ev_id, typ, actor, version, ts, payload)))
            idx_items.append((_actor_prefix(actor) + _U64BE.pack(version), _U64LE.pack(pos)))
        log_cur.putmulti(log_items, append=True)
        idx_cur.putmulti(idx_items)
        return pos

    def append(self, rows) -> None:
        """One actor's events in one write transaction, after its version check."""
        with self.env.begin(write=True) as txn:
            idx_cur = txn.cursor(self.idx)
            log_cur = txn.cursor(self.log)
            latest = self._latest(idx_cur, _actor_prefix(rows[0][2]))
            if rows[0][3] <= latest:
                raise ValueError(f"version conflict: {latest} >= {rows[0][3]}")
            pos = _U64BE.unpack(log_cur.key())[0] if log_cur.last() else 0
            self._put(txn, log_cur, idx_cur, rows, pos)

    def save_each(self, rows) -> None:
        """Many single events in one write transaction, each after its own version check."""
        with self.env.begin(write=True) as txn:
            idx_cur = txn.cursor(self.idx)
            log_cur = txn.cursor(self.log)
            pos = _U64BE.unpack(log_cur.key())[0] if log_cur.last() else 0
            for row in rows:
                actor, version = row[2], row[3]
                prefix = _actor_prefix(actor)
                if version <= self._latest(idx_cur, prefix):
                    raise ValueError(f"version conflict for {actor!r} at {version}")
                pos += 1
                log_cur.put(_U64BE.pack(pos), py_encode(*row), append=True)
                idx_cur.put(prefix + _U64BE.pack(version), _U64LE.pack(pos))

    def get_events(self, actor: str) -> list[PyEvent]:
        prefix = _actor_prefix(actor.encode())
        out = []
        with self.env.begin() as txn:
            log_get = txn.cursor(self.log).get
            idx_cur = txn.cursor(self.idx)
            if idx_cur.set_range(prefix + _U64BE.pack(1)):
                for key, value in idx_cur:
                    if len(key) != len(prefix) + 8 or not key.startswith(prefix):
                        break
                    pos = _U64LE.unpack(value)[0]
                    out.append(py_decode(log_get(_U64BE.pack(pos)), pos))
        return out

    def _columns(self, records: Iterator[tuple[int, bytes]]) -> dict[str, object]:
        """Numpy columns (as ``read_columns`` returns) built in Python from records."""
        positions, versions, stamps, type_codes, offsets, payloads = [], [], [], [], [0], []
        types: dict[bytes, int] = {}
        end = 0
        unpack = _HEAD.unpack_from
        for pos, rec in records:
            _, _, typ_n, version, ts, id_n, _, _, _, _, data_n = unpack(rec, 4)
            positions.append(pos)
            versions.append(version)
            stamps.append(ts)
            typ = rec[_HDR + id_n:_HDR + id_n + typ_n]
            type_codes.append(types.setdefault(typ, len(types)))
            payloads.append(rec[len(rec) - data_n:])
            end += data_n
            offsets.append(end)
        return {
            "positions": np.array(positions, dtype="<i8"), "versions": np.array(versions, dtype="<i8"),
            "timestamps": np.array(stamps, dtype="<i8"), "type_codes": np.array(type_codes, dtype="<u4"),
            "event_types": [t.decode() for t in types], "payload_offsets": np.array(offsets, dtype="<i8"),
            "payload": np.frombuffer(b"".join(payloads), dtype=np.uint8),
        }

    def actor_columns(self, actor: str) -> dict[str, object]:
        prefix = _actor_prefix(actor.encode())
        with self.env.begin() as txn:
            log_get = txn.cursor(self.log).get
            idx_cur = txn.cursor(self.idx)

            def records():
                if idx_cur.set_range(prefix + _U64BE.pack(1)):
                    for key, value in idx_cur:
                        if len(key) != len(prefix) + 8 or not key.startswith(prefix):
                            return
                        pos = _U64LE.unpack(value)[0]
                        yield pos, log_get(_U64BE.pack(pos))

            return self._columns(records())

    def range_columns(self, start: int, end: int) -> dict[str, object]:
        with self.env.begin() as txn:
            cur = txn.cursor(self.log)

            def records():
                if cur.set_range(_U64BE.pack(start)):
                    for key, value in cur:
                        pos = _U64BE.unpack(key)[0]
                        if pos > end:
                            return
                        yield pos, value

            return self._columns(records())

    def scan(self) -> int:
        """Iterate the whole log, key and value; the count."""
        n = 0
        with self.env.begin() as txn:
            for _key, _value in txn.cursor(self.log):
                n += 1
        return n


# -- the sqlite3 baseline -------------------------------------------------------------------

SQLITE_SCHEMA = ("CREATE TABLE events(actor TEXT, version INTEGER, position INTEGER, type TEXT, data BLOB, "
                 "PRIMARY KEY(actor, version))")


def open_sqlite(path: str, durability: str) -> sqlite3.Connection:
    conn = sqlite3.connect(os.path.join(path, "events.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'sync' else 'NORMAL'}")
    conn.execute(SQLITE_SCHEMA)
    return conn


def sqlite_batches(data: Data) -> list[tuple[str, int, list[tuple]]]:
    """The sqlite3 baseline's input: per actor, its first version and its rows, positions
    already assigned."""
    out = []
    pos = 0
    for actor, events in data.batches:
        rows = [(actor, e.version, pos + i + 1, e.event_type, e.payload) for i, e in enumerate(events)]
        pos += len(events)
        out.append((actor, events[0].version, rows))
    return out


def sqlite_append(conn: sqlite3.Connection, actor: str, first_version: int, rows: list[tuple]) -> None:
    """One actor's rows in one transaction, after its version check."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        latest = conn.execute("SELECT max(version) FROM events WHERE actor = ?", (actor,)).fetchone()[0] or 0
        if first_version <= latest:
            raise ValueError(f"version conflict for {actor!r}: {latest} >= {first_version}")
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", rows)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# -- measuring -------------------------------------------------------------------------------


@contextmanager
def fresh_dir(parent: str | None) -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="aether-bench-", dir=parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def measure(run: Callable[[object], object], repeats: int, setup: Callable[[], object] = lambda: None,
            teardown: Callable[[object], None] = lambda state: None, warmup: int = 0) -> list[float]:
    """Seconds of ``run(setup())`` per repeat, after ``warmup`` untimed runs; setup and
    teardown are not timed."""
    times = []
    for i in range(warmup + repeats):
        state = setup()
        try:
            gc.collect()
            t0 = time.perf_counter()
            run(state)
            elapsed = time.perf_counter() - t0
        finally:
            teardown(state)
        if i >= warmup:
            times.append(elapsed)
    return times


def alternate(sides: Sequence[Callable[[], list[float]]], repeats: int, warmup: int = 1) -> list[list[float]]:
    """Interleaved repeats: ``warmup`` untimed rounds, then ``repeats`` rounds in which each
    side runs once, in turn (A B A B ...), so that the noise of a shared machine falls on
    every side alike and repeat ``i`` of one side pairs with repeat ``i`` of the others. Each
    side is a callable timing one run (e.g. ``lambda: measure(run, 1, setup, teardown)``)."""
    for _ in range(warmup):
        for side in sides:
            side()
    times: list[list[float]] = [[] for _ in sides]
    for _ in range(repeats):
        for side, out in zip(sides, times):
            out += side()
    return times


# -- verdicts ----------------------------------------------------------------------------------

YES, NO, NOISE, NO_TARGET, UNAVAILABLE = "yes", "NO", "within noise", "-", "baseline unavailable"


def verdict(ratios: Sequence[float], target: float | None) -> str:
    """A ratio target's verdict from the paired ratios of the repeats: "yes" when every one
    reaches the target, "NO" when none does, "within noise" when the range straddles it."""
    if target is None:
        return NO_TARGET
    if not ratios:
        return UNAVAILABLE
    if min(ratios) >= target:
        return YES
    if max(ratios) < target:
        return NO
    return NOISE


@dataclass
class Row:
    """One line of the table: a workload, aether_fast's rate, a baseline and its rate, from
    paired repeats (repeat ``i`` of each side ran next to the other's, interleaved).

    The ratio is the median of the paired ratios, its range their minimum and maximum; the
    verdict compares that range with the target (a ratio to the baseline; None: no target,
    the row is information). A baseline that could not run has no times and a ``note``
    saying why."""

    workload: str
    key: str
    events: int
    aether_fast: float          # events/s, from the median time
    baseline: str
    baseline_rate: float        # events/s, from the median time (0: unavailable)
    target_value: float | None  # aether_fast / baseline must reach it; None: information only
    aether_times: list[float]   # seconds of each repeat
    baseline_times: list[float]
    baseline_events: int        # events of one baseline repeat (may be fewer than ``events``)
    note: str = ""              # e.g. why the baseline is unavailable, or the slower baseline

    @property
    def ratios(self) -> list[float]:
        """aether_fast's rate over the baseline's, repeat by repeat."""
        return [(self.events / ours) / (self.baseline_events / theirs)
                for ours, theirs in zip(self.aether_times, self.baseline_times)]

    @property
    def ratio(self) -> float | None:
        return statistics.median(self.ratios) if self.baseline_times else None

    @property
    def ratio_range(self) -> tuple[float, float] | None:
        r = self.ratios
        return (min(r), max(r)) if r else None

    @property
    def target(self) -> str:
        return "" if self.target_value is None else f">= {self.target_value:g}x"

    @property
    def verdict(self) -> str:
        return verdict(self.ratios, self.target_value)

    @property
    def met(self) -> bool | None:
        """True for "yes", False for "NO", None otherwise (kept for older readers of --json)."""
        return {YES: True, NO: False}.get(self.verdict)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ratio": self.ratio, "ratio_range": self.ratio_range, "ratios": self.ratios,
                "target": self.target, "verdict": self.verdict, "met": self.met}


def rate_row(workload: str, key: str, events: int, ours: list[float], baseline: str, theirs: list[float],
             baseline_events: int, target: float | None, note: str = "") -> Row:
    """A result row from the paired repeat times of both sides (the baseline may run fewer
    events per repeat); ``theirs`` empty: the baseline is unavailable, ``note`` says why."""
    if theirs and len(ours) != len(theirs):
        raise ValueError(f"{key}: {len(ours)} repeats against {len(theirs)}: the repeats must be paired")
    rate = baseline_events / statistics.median(theirs) if theirs else 0.0
    return Row(workload, key, events, events / statistics.median(ours), baseline, rate, target, ours, theirs,
               baseline_events, note)


def same_size_row(workload: str, key: str, events: int, ours: list[float], baseline: str, theirs: list[float],
                  target: float | None, note: str = "") -> Row:
    """A result row where both sides ran the same ``events``."""
    return rate_row(workload, key, events, ours, baseline, theirs, events, target, note)


def faster(candidates: Sequence[tuple[str, list[float], int]]) -> tuple[str, list[float], int, str]:
    """Of several baselines for the same work, ``(label, times, events_per_repeat)``, the
    faster by median rate, and a note naming the others with their rates."""
    def rate(c: tuple[str, list[float], int]) -> float:
        return c[2] / statistics.median(c[1])

    best = max(candidates, key=rate)
    others = "; ".join(f"slower baseline: {c[0]}, {fmt_rate(rate(c))}" for c in candidates if c is not best)
    return best[0], best[1], best[2], others


Store = LmdbEventStore | PyLmdbStore | sqlite3.Connection



# -- reporting --------------------------------------------------------------------------------


def _first_line(path: str, prefix: str) -> str | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def file_system(path: str) -> str:
    """The file system type of the mount holding ``path`` (from /proc/mounts), or "unknown"."""
    real = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mount = parts[1].replace("\\040", " ")
                inside = real == mount or real.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best):
                    best, kind = mount, parts[2]
    except OSError:
        pass
    return kind


def machine(store_dir: str | None = None) -> dict[str, object]:
    """What the figures depend on: CPU, cores, memory, kernel, the file system of the store
    directory, and the versions of Python, LMDB, the library and every baseline."""
    from importlib.metadata import version

    import lmdb

    from . import c_baseline

    __version__ = version("aether_fast")

    why = c_baseline.available()
    store_dir = store_dir or tempfile.gettempdir()
    mem_kb = (_first_line("/proc/meminfo", "MemTotal") or "0 kB").split()[0]
    return {
        "cpu": _first_line("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cores": os.cpu_count(), "memory_gb": round(int(mem_kb) / 2**20, 1),
        "kernel": f"{platform.system()} {platform.release()}", "platform": platform.platform(),
        "store_dir": store_dir, "file_system": file_system(store_dir),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "aether_fast": __version__, "py-lmdb": lmdb.__version__,
        "lmdb": f"unknown (the C baseline did not build: {why})" if why else c_baseline.load().lmdb_version,
        "lmdb_in_py-lmdb": ".".join(map(str, lmdb.version())), "cc": c_baseline.compiler(),
        "sqlite": sqlite3.sqlite_version, "numpy": np.__version__, "load_average": os.getloadavg(),
    }


def fmt_rate(rate: float) -> str:
    """Events per second, short: 2.42M/s, 13.5k/s, 946/s."""
    if rate >= 1e6:
        return f"{rate / 1e6:.2f}M/s"
    if rate >= 1e4:
        return f"{rate / 1e3:.1f}k/s"
    return f"{rate:,.0f}/s"


def fmt_ratio(row: Row) -> tuple[str, str]:
    """The ratio and its range as table cells."""
    if row.ratio is None:
        return "-", "-"
    lo, hi = row.ratio_range
    return f"{row.ratio:.2f}x", f"{lo:.2f}-{hi:.2f}"


def format_table(rows: list[Row]) -> str:
    """The rows as a text table; notes (unavailable or slower baselines) below it."""
    head = ("workload", "aether_fast", "baseline", "baseline rate", "ratio", "range", "target", "verdict")
    lines = [head]
    notes = []
    for r in rows:
        ratio, spread = fmt_ratio(r)
        mark = ""
        if r.note:
            notes.append(r.note)
            mark = f" [{len(notes)}]"
        lines.append((r.workload, fmt_rate(r.aether_fast), r.baseline + mark,
                      fmt_rate(r.baseline_rate) if r.baseline_times else "-", ratio, spread, r.target or "-",
                      r.verdict))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = [" | ".join(cell.ljust(w) if i in (0, 2, 6, 7) else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(line, widths))).rstrip() for line in lines]
    out.insert(1, "-+-".join("-" * w for w in widths))
    out += [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
    return "\n".join(out)
