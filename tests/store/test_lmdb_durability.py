"""Durability, atomicity and robustness of the LMDB store, with real files and real processes.

Child processes run small scripts kept in this file (``sys.executable -c``), so that no
helper module is needed and nothing depends on how pytest imports this file. The parent
never opens an environment while a child of its own has it open through the same
``LmdbEventStore`` object, and py-lmdb only ever opens an environment in a subprocess.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aether_fast import (
    CorruptRecordError,
    Event,
    IncompatibleFormatError,
    InvalidInputError,
    InvalidTypeError,
    LmdbEventStore,
    ReplayError,
    StoreAlreadyOpenError,
    StoreForkedError,
    StoreFullError,
    VersionConflictError,
    _native,
)

ROOT = Path(__file__).resolve().parents[2]
MODES = ("sync", "metasync", "nosync")


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _run_py(code: str, *args: object, timeout: float = 60) -> str:
    """Run ``code`` in a fresh interpreter; return its stdout, failing on a non-zero exit."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        check=False, capture_output=True, text=True, timeout=timeout, env=_child_env(), cwd=str(ROOT),
    )
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stderr}"
    return proc.stdout


def _ev(actor: str, version: int, data: object = None, **kw: object) -> Event:
    return Event(event_type="Tested", actor_id=actor, version=version, data=data, **kw)


def _all_positions(store: LmdbEventStore) -> list[int]:
    return [e.position for e in store.read_all()]


# -- 1. threads racing on one version -------------------------------------------------------


def test_threads_racing_on_one_version_exactly_one_wins(tmp_path):
    n_threads, rounds = 50, 3
    with LmdbEventStore(tmp_path / "s") as store:
        for version in range(1, rounds + 1):
            barrier = threading.Barrier(n_threads)
            results: list[object] = [None] * n_threads
            events = [_ev("contended", version, {"thread": i}) for i in range(n_threads)]

            def worker(i: int, events=events, barrier=barrier, results=results) -> None:
                barrier.wait(timeout=30)
                try:
                    results[i] = store.save_event(events[i])
                except Exception as exc:  # noqa: BLE001 - every outcome is checked below
                    results[i] = exc

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            assert not any(t.is_alive() for t in threads), "a saver thread hung"

            winners = [i for i, r in enumerate(results) if isinstance(r, int)]
            losers = [r for r in results if isinstance(r, VersionConflictError)]
            others = [r for r in results if not isinstance(r, (int, VersionConflictError))]
            assert others == []
            assert len(winners) == 1, results
            assert len(losers) == n_threads - 1
            assert results[winners[0]] == version   # one event per round: position == version
            for err in losers:
                assert err.actor_id == "contended"
                assert err.current_version == version
                assert err.attempted_version == version

            stored = store.get_events("contended")
            assert [e.version for e in stored] == list(range(1, version + 1))
            assert stored[-1].id == events[winners[0]].id
            assert stored[-1].data == {"thread": winners[0]}
            assert store.get_latest_version("contended") == version
        assert store.stats()["events"] == rounds
        assert _all_positions(store) == list(range(1, rounds + 1))


# -- 2. processes racing on the same actors --------------------------------------------------

RACE_WORKER = r"""
import json, os, sys, time
from aether_fast import Event, LmdbEventStore, VersionConflictError

path, go, out = sys.argv[1:4]
worker, n_actors, target, payload_size, map_size = map(int, sys.argv[4:9])
store = LmdbEventStore(path, durability="metasync", map_size=map_size)
open(out + ".ready", "w").close()
deadline = time.monotonic() + 30
while not os.path.exists(go):
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.001)
acks, conflicts, anomalies = [], 0, []
for i in range(target):
    actor = f"actor-{i % n_actors}"
    while True:
        version = store.get_latest_version(actor) + 1
        data = bytes([worker]) * payload_size if payload_size else {"w": worker, "i": i}
        ev = Event(event_type="Raced", actor_id=actor, version=version, data=data)
        try:
            pos = store.save_event(ev)
        except VersionConflictError as e:
            conflicts += 1
            if e.attempted_version != version or e.current_version < version:
                anomalies.append([actor, version, e.current_version, e.attempted_version])
            continue
        acks.append([actor, version, ev.id, pos])
        break
store.close()
with open(out, "w") as f:
    json.dump({"acks": acks, "conflicts": conflicts, "anomalies": anomalies}, f)
"""


@pytest.mark.parametrize(
    ("target", "payload_size", "map_size"),
    [(250, 0, 256 << 20), (60, 20_000, 1 << 20)],
    ids=["small-events", "growing-tiny-map"],   # the second makes every process grow the map
)
def test_processes_racing_on_shared_actors_keep_the_log_gapless(tmp_path, target, payload_size, map_size):
    path = tmp_path / "s"
    n_workers, n_actors = 4, 20
    LmdbEventStore(path, map_size=map_size).close()     # create the store before the race
    go = tmp_path / "go"
    procs = []
    for w in range(n_workers):
        out = tmp_path / f"acks-{w}.json"
        procs.append((out, subprocess.Popen(
            [sys.executable, "-c", RACE_WORKER, str(path), str(go), str(out),
             *map(str, (w, n_actors, target, payload_size, map_size))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_env(), cwd=str(ROOT),
        )))
    deadline = time.monotonic() + 30     # all ready before the start signal: a real race
    while not all(Path(f"{out}.ready").exists() for out, _ in procs):
        assert time.monotonic() < deadline, "workers did not start"
        for _, proc in procs:
            if proc.poll() is not None:
                pytest.fail(f"a worker died before the start:\n{proc.stderr.read().decode()}")
        time.sleep(0.005)
    go.touch()
    acks = []
    for out, proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        report = json.loads(out.read_text())
        assert report["anomalies"] == []
        acks += report["acks"]

    assert len(acks) == n_workers * target
    assert len({eid for _, _, eid, _ in acks}) == len(acks), "an event id was acknowledged twice"
    assert len({(a, v) for a, v, _, _ in acks}) == len(acks), "a version was acknowledged twice"
    assert len({p for _, _, _, p in acks}) == len(acks), "a position was acknowledged twice"

    acked = {(a, v): (eid, pos) for a, v, eid, pos in acks}
    with LmdbEventStore(path) as store:
        found = {}
        for k in range(n_actors):
            actor = f"actor-{k}"
            events = store.get_events(actor)
            assert [e.version for e in events] == list(range(1, len(events) + 1)), actor
            for e in events:
                found[(actor, e.version)] = (e.id, e.position)
                if payload_size:
                    assert len(e.data) == payload_size
        assert found == acked     # every acknowledged event stored once, nothing else stored
        total = len(acks)
        assert _all_positions(store) == list(range(1, total + 1))
        assert store.last_position() == total
        assert store.stats()["events"] == total
        assert store.stats()["index_entries"] == total


# -- 3. SIGKILL in the middle of appends ----------------------------------------------------

KILL_WORKER = r"""
import json, os, sys, time
from aether_fast import Event, LmdbEventStore

path, mode, round_no = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = LmdbEventStore(path, durability=mode)
actors = [f"k-{i}" for i in range(7)]
deadline = time.monotonic() + 30
i = 0
while time.monotonic() < deadline:
    actor = actors[i % len(actors)]
    latest = store.get_latest_version(actor)
    events = [Event(event_type="Batch", actor_id=actor, version=latest + j + 1,
                    data=bytes([j]) * (100 + 37 * ((i + j) % 50)))
              for j in range(10)]
    positions = store.append(actor, events, expected_version=latest)
    line = json.dumps({"actor": actor, "first": latest + 1, "ids": [e.id for e in events],
                       "positions": positions, "round": round_no}) + "\n"
    os.write(1, line.encode())   # one write of < PIPE_BUF bytes: all of a line or nothing
    i += 1
sys.exit(3)   # never killed
"""


def _check_killed_store(path: Path, acks: list[dict], max_unacked_batches: int) -> None:
    with LmdbEventStore(path) as store:
        for ack in acks:
            got = store.get_events(ack["actor"], ack["first"])[:10]
            assert [e.id for e in got] == ack["ids"], f"acknowledged batch lost: {ack}"
            assert [e.position for e in got] == ack["positions"]
            assert [e.version for e in got] == list(range(ack["first"], ack["first"] + 10))
        total = 0
        for k in range(7):
            events = store.get_events(f"k-{k}")
            assert len(events) % 10 == 0, f"partial batch visible for k-{k}: {len(events)} events"
            assert [e.version for e in events] == list(range(1, len(events) + 1))
            for b in range(0, len(events), 10):     # one batch: ten consecutive positions
                pos = [e.position for e in events[b:b + 10]]
                assert pos == list(range(pos[0], pos[0] + 10))
            total += len(events)
        assert _all_positions(store) == list(range(1, total + 1))
        assert store.stats() == {"events": total, "index_entries": total, "snapshots": 0}
        # all acknowledged batches, plus at most the one committed as the kill struck
        assert 10 * len(acks) <= total <= 10 * (len(acks) + max_unacked_batches)


@pytest.mark.parametrize("mode", MODES)
def test_sigkill_never_loses_an_acknowledged_batch(tmp_path, mode):
    path = tmp_path / "s"
    rng = random.Random()
    acks: list[dict] = []
    rounds = 2
    for round_no in range(rounds):   # the second child writes to the store left by a killed one
        proc = subprocess.Popen(
            [sys.executable, "-c", KILL_WORKER, str(path), mode, str(round_no)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_env(), cwd=str(ROOT),
        )
        try:
            kill_after = rng.randint(10, 120)
            seen = 0
            while seen < kill_after:
                line = proc.stdout.readline()
                if not line:
                    proc.wait(timeout=10)
                    pytest.fail(f"child ended early ({proc.returncode}): {proc.stderr.read().decode()}")
                acks.append(json.loads(line))
                seen += 1
            # a random moment while the child keeps appending (it spends most time in append)
            spin_until = time.perf_counter() + rng.uniform(0, 0.01)
            while time.perf_counter() < spin_until:
                pass
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL
        for line in proc.stdout.read().splitlines(keepends=True):
            if line.endswith(b"\n"):       # written whole before the kill: acknowledged
                acks.append(json.loads(line))
        proc.stdout.close()
        proc.stderr.close()
        _check_killed_store(path, acks, round_no + 1)


HOLDING_WORKER = r"""
import os, sys, time
from aether_fast import Event, LmdbEventStore

store = LmdbEventStore(sys.argv[1], durability=sys.argv[2])
store.save_event(Event(event_type="T", actor_id="committed", version=1))
with store.transaction():
    store.append("pending", [Event(event_type="T", actor_id="pending", version=v) for v in range(1, 11)])
    store.save_event(Event(event_type="T", actor_id="committed", version=2))
    os.write(1, b"holding\n")
    time.sleep(60)
"""

AFTER_KILL_CHECK = r"""
import json, sys
from aether_fast import Event, LmdbEventStore

with LmdbEventStore(sys.argv[1], durability=sys.argv[2]) as store:
    out = {"pending": store.get_latest_version("pending"),
           "committed": store.get_latest_version("committed"),
           "last": store.last_position()}
    out["new"] = store.save_event(Event(event_type="T", actor_id="pending", version=1))
    with store.transaction():
        out["in_txn"] = store.save_event(Event(event_type="T", actor_id="committed", version=2))
print(json.dumps(out))
"""


@pytest.mark.parametrize("mode", MODES)
def test_sigkill_inside_a_transaction_keeps_nothing_of_it_and_frees_the_writer_lock(tmp_path, mode):
    path = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDING_WORKER, str(path), mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_env(), cwd=str(ROOT),
    )
    try:
        line = proc.stdout.readline()
        assert line == b"holding\n", proc.stderr.read().decode() if not line else line
        os.kill(proc.pid, signal.SIGKILL)   # dies holding LMDB's writer lock
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    # in a subprocess with a timeout: a writer lock left held would hang the writer forever
    got = json.loads(_run_py(AFTER_KILL_CHECK, path, mode, timeout=30))
    assert got == {"pending": 0, "committed": 1, "last": 1, "new": 2, "in_txn": 3}


# -- 4. py-lmdb reads what aether_fast wrote -------------------------------------------------

PYLMDB_DUMP = r"""
import json, sys
import lmdb
env = lmdb.open(sys.argv[1], max_dbs=16, readonly=True)
out = {}
with env.begin() as txn:
    out["main"] = [k.hex() for k, _ in txn.cursor()]
for name in (b"default/log", b"default/idx", b"__meta__"):
    db = env.open_db(name, create=False)
    with env.begin() as txn:
        out[name.decode()] = {
            "entries": txn.stat(db)["entries"],
            "items": [[k.hex(), v.hex()] for k, v in txn.cursor(db=db)],
        }
env.close()
print(json.dumps(out))
"""


def test_pylmdb_reads_a_store_written_by_aether_fast(tmp_path):
    path = tmp_path / "s"
    n = 300
    with LmdbEventStore(path) as store:
        written = []
        for i in range(n):
            actor = f"actor-{i % 7}"
            ev = _ev(actor, store.get_latest_version(actor) + 1, {"i": i})
            written.append((ev, store.save_event(ev)))
    assert [pos for _, pos in written] == list(range(1, n + 1))

    dump = json.loads(_run_py(PYLMDB_DUMP, path))
    main_keys = {bytes.fromhex(k) for k in dump["main"]}
    assert {b"__meta__", b"default/log", b"default/idx", b"default/snap"} <= main_keys

    log, idx = dump["default/log"], dump["default/idx"]
    assert log["entries"] == n
    assert idx["entries"] == n
    keys = [bytes.fromhex(k) for k, _ in log["items"]]
    assert all(len(k) == 8 for k in keys)
    assert [int.from_bytes(k, "big") for k in keys] == list(range(1, n + 1))
    for (ev, pos), (_, value_hex) in zip(written, log["items"]):
        raw = bytes.fromhex(value_hex)
        assert int.from_bytes(raw[:4], "little") == _native.crc32c(raw[4:])
        assert _native.decode_record(raw, pos) == ev

    by_key = {bytes.fromhex(k): int.from_bytes(bytes.fromhex(v), "little") for k, v in idx["items"]}
    expected = {}
    for ev, pos in written:
        actor = ev.actor_id.encode()
        expected[bytes([len(actor)]) + actor + ev.version.to_bytes(8, "big")] = pos
    assert by_key == expected

    meta = {bytes.fromhex(k): bytes.fromhex(v) for k, v in dump["__meta__"]["items"]}
    assert meta[b"format"] == b"1"


# -- 5. a damaged record is reported, never decoded -------------------------------------------


def test_corrupt_record_is_reported_with_its_position(tmp_path):
    path = tmp_path / "s"
    marker = b"MARKER-" + os.urandom(12).hex().encode() + b"-END"
    with LmdbEventStore(path) as store:
        with store.transaction():        # one commit: the record's page is written once
            for v in range(1, 6):
                store.save_event(_ev("A", v, marker if v == 3 else {"a": v}))
                store.save_event(_ev("B", v, {"b": v}))
        bad_pos = next(e.position for e in store.get_events("A") if e.version == 3)
        healthy_a = [e for e in store.get_events("A") if e.version != 3]
        all_b = store.get_events("B")
    assert bad_pos == 5

    data_file = path / "data.mdb"
    raw = bytearray(data_file.read_bytes())
    hits = []
    start = raw.find(marker)
    while start != -1:
        hits.append(start)
        start = raw.find(marker, start + 1)
    assert hits, "payload marker not found in data.mdb"
    for at in hits:
        raw[at + 10] ^= 0xFF        # a byte inside the payload; the record length is unchanged
    data_file.write_bytes(bytes(raw))
    damaged = bytearray(marker)
    damaged[10] ^= 0xFF

    with LmdbEventStore(path) as store:
        with pytest.raises(CorruptRecordError) as info:
            store.get_events("A")
        assert info.value.position == bad_pos
        assert f"position {bad_pos}" in str(info.value)

        result = store.get_events_with_errors("A")
        assert [e.version for e in result.events] == [1, 2, 4, 5]
        assert result.events == healthy_a
        assert len(result.errors) == 1
        err = result.errors[0]
        assert isinstance(err, ReplayError)
        assert err.position == bad_pos
        assert bytes(damaged) in err.raw
        assert int.from_bytes(err.raw[:4], "little") != _native.crc32c(err.raw[4:])
        assert isinstance(err.error, CorruptRecordError)
        assert err.error.position == bad_pos

        assert store.get_events("A", 4) == healthy_a[2:]     # the damage is skipped by a seek
        assert store.get_events("B") == all_b
        assert store.get_events_with_errors("B").errors == []

        assert [e.position for e in store.read_all(1, limit=bad_pos - 1)] == list(range(1, bad_pos))
        assert [e.position for e in store.read_all(bad_pos + 1)] == list(range(bad_pos + 1, 11))
        with pytest.raises(CorruptRecordError) as info:
            list(store.read_all())
        assert info.value.position == bad_pos

        with pytest.raises(CorruptRecordError) as info:
            store.read_columns()
        assert info.value.position == bad_pos
        with pytest.raises(CorruptRecordError):
            store.read_columns("A")
        cols = store.read_columns("B")
        assert list(cols.positions) == [e.position for e in all_b]


# -- 6. use after fork -------------------------------------------------------------------------


def _in_forked_child(work) -> object:
    """Run ``work()`` in a forked child; return what it returned (JSON) through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # pragma: no cover - runs in the child
        try:
            os.close(r)
            try:
                out = work()
            except BaseException as exc:  # noqa: BLE001
                out = {"crashed": f"{type(exc).__name__}: {exc}"}
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    with os.fdopen(r, "rb") as f:
        while True:
            chunk = f.read()
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(b"".join(chunks))


def _outcome(fn) -> str:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the outcome is the result
        return type(exc).__name__
    return "ok"


def test_store_used_after_fork_raises_and_parent_keeps_working(tmp_path):
    store = LmdbEventStore(tmp_path / "s")
    try:
        store.save_event(_ev("a", 1))

        def child() -> dict:
            return {
                "save": _outcome(lambda: store.save_event(_ev("a", 2))),
                "append": _outcome(lambda: store.append("a", [_ev("a", 2)])),
                "get_events": _outcome(lambda: store.get_events("a")),
                "latest": _outcome(lambda: store.get_latest_version("a")),
                "read_all": _outcome(lambda: list(store.read_all())),
                "close": _outcome(store.close),
            }

        forked = StoreForkedError.__name__
        assert _in_forked_child(child) == {
            "save": forked, "append": forked, "get_events": forked, "latest": forked,
            "read_all": forked, "close": "ok",
        }

        # the child's close() did not close the parent's environment
        assert store.save_event(_ev("a", 2)) == 2
        assert [e.version for e in store.get_events("a")] == [1, 2]
        assert _all_positions(store) == [1, 2]
    finally:
        store.close()
    with LmdbEventStore(tmp_path / "s") as again:
        assert [e.version for e in again.get_events("a")] == [1, 2]


def test_store_can_be_opened_anew_in_a_forked_child(tmp_path):
    """StoreForkedError says: open it anew in the child. That must work."""
    path = tmp_path / "s"
    store = LmdbEventStore(path)
    try:
        store.save_event(_ev("a", 1))

        def child() -> dict:
            with LmdbEventStore(path) as fresh:
                pos = fresh.save_event(_ev("a", 2))
                return {"pos": pos, "versions": [e.version for e in fresh.get_events("a")]}

        assert _in_forked_child(child) == {"pos": 2, "versions": [1, 2]}
        assert [e.version for e in store.get_events("a")] == [1, 2]   # the child's write is seen
        assert store.save_event(_ev("a", 3)) == 3
    finally:
        store.close()


# -- 7. refusals on open -------------------------------------------------------------------------

PYLMDB_FOREIGN = r"""
import sys
import lmdb
env = lmdb.open(sys.argv[1], max_dbs=4)
users = env.open_db(b"users")
with env.begin(write=True) as txn:
    txn.put(b"alice", b"1", db=users)
env.close()
"""

PYLMDB_FUTURE_FORMAT = r"""
import sys
import lmdb
env = lmdb.open(sys.argv[1], max_dbs=8)
meta = env.open_db(b"__meta__")
with env.begin(write=True) as txn:
    txn.put(b"format", b"999", db=meta)
env.close()
"""

PYLMDB_NAMES = r"""
import json, sys
import lmdb
env = lmdb.open(sys.argv[1], max_dbs=8, readonly=True)
with env.begin() as txn:
    print(json.dumps([k.decode() for k, _ in txn.cursor()]))
env.close()
"""


def test_same_path_and_namespace_cannot_be_opened_twice(tmp_path):
    path = tmp_path / "s"
    link = tmp_path / "link"
    store = LmdbEventStore(path)
    try:
        store.save_event(_ev("a", 1))
        link.symlink_to(path, target_is_directory=True)
        for spelling in (path, str(path), f"{path}/.", f"{path}/", f"{tmp_path}/./s", link):
            with pytest.raises(StoreAlreadyOpenError):
                LmdbEventStore(spelling)
        # another namespace of the same path is another store
        with LmdbEventStore(path, namespace="other") as other:
            assert other.get_latest_version("a") == 0
        assert store.get_latest_version("a") == 1     # the refusals left the open store alone
    finally:
        store.close()
    with LmdbEventStore(link) as again:             # after close() it opens again
        assert again.get_latest_version("a") == 1
    with LmdbEventStore(f"{path}/.") as again:
        assert again.get_latest_version("a") == 1


def test_regular_file_path_is_refused(tmp_path):
    path = tmp_path / "not-a-dir"
    path.write_bytes(b"hello")
    with pytest.raises(InvalidInputError) as info:
        LmdbEventStore(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == b"hello"


def test_foreign_lmdb_environment_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "foreign"
    _run_py(PYLMDB_FOREIGN, path)
    for _ in range(2):   # a failed open leaves nothing open behind
        with pytest.raises(IncompatibleFormatError) as info:
            LmdbEventStore(path)
        assert "aether_fast" in str(info.value)
    assert json.loads(_run_py(PYLMDB_NAMES, path)) == ["users"]   # nothing was added


def test_store_of_an_unknown_format_is_refused(tmp_path):
    path = tmp_path / "future"
    _run_py(PYLMDB_FUTURE_FORMAT, path)
    with pytest.raises(IncompatibleFormatError) as info:
        LmdbEventStore(path)
    assert "999" in str(info.value)
    with pytest.raises(IncompatibleFormatError):
        LmdbEventStore(path)
    assert json.loads(_run_py(PYLMDB_NAMES, path)) == ["__meta__"]


# -- 8. map growth ---------------------------------------------------------------------------------


def _payload(i: int, size: int) -> bytes:
    return (f"{i:09d}".encode() * (size // 9 + 1))[:size]


def test_tiny_map_grows_to_hold_20_mb(tmp_path):
    path = tmp_path / "s"
    n, size, batch = 2200, 10_000, 50
    with LmdbEventStore(path, map_size=1 << 20, durability="metasync") as store:
        for start in range(0, n, batch):
            actor = f"actor-{(start // batch) % 5}"
            latest = store.get_latest_version(actor)
            events = [_ev(actor, latest + 1 + j, _payload(start + j, size)) for j in range(batch)]
            positions = store.append(actor, events, expected_version=latest)
            assert positions == list(range(start + 1, start + batch + 1))
        assert store.info()["map_size"] > 20 << 20
    with LmdbEventStore(path, map_size=1 << 20) as store:
        got = list(store.read_all())
        assert [e.position for e in got] == list(range(1, n + 1))
        for i, e in enumerate(got):
            assert e.data == _payload(i, size)
        assert store.info()["used_bytes"] > n * size
        # and it keeps growing after the reopen with a small map_size
        assert store.append("late", [_ev("late", 1, _payload(0, 2 << 20))]) == [n + 1]


def test_transaction_overflowing_the_map_rolls_back_and_can_be_rerun(tmp_path):
    path = tmp_path / "s"
    with LmdbEventStore(path, map_size=1 << 20) as store:
        first = _ev("x", 1, {"small": True})
        big = [_ev("y", v, _payload(v, 3000)) for v in range(1, 301)]   # ~1.2 MB of pages

        def work() -> None:
            with store.transaction():
                store.save_event(first)
                store.append("y", big, expected_version="no_stream")

        size_before = store.info()["map_size"]
        with pytest.raises(StoreFullError):
            work()
        assert store.get_latest_version("x") == 0
        assert store.get_latest_version("y") == 0
        assert store.last_position() == 0
        assert store.stats()["events"] == 0
        assert list(store.read_all()) == []
        assert store.info()["map_size"] > size_before

        work()                                   # the same transaction, once more
        assert store.get_events("x") == [first]
        assert store.get_events("y") == big
        assert _all_positions(store) == list(range(1, 302))
    with LmdbEventStore(path) as store:
        assert store.stats()["events"] == 301


# -- 9. durability modes -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_durability_mode_stores_and_reopens(tmp_path, mode):
    path = tmp_path / "s"
    with LmdbEventStore(path, durability=mode) as store:
        assert store.durability == mode
        assert store.append("a", [_ev("a", v, {"v": v}) for v in (1, 2, 3)]) == [1, 2, 3]
        store.sync()
        assert store.save_event(_ev("b", 1, b"raw")) == 4
        store.sync()
    for reopen_mode in MODES:
        with LmdbEventStore(path, durability=reopen_mode) as store:
            assert [e.data for e in store.get_events("a")] == [{"v": 1}, {"v": 2}, {"v": 3}]
            assert store.get_events("b")[0].data == b"raw"
            assert _all_positions(store) == [1, 2, 3, 4]


def test_unknown_durability_mode_is_refused(tmp_path):
    path = tmp_path / "s"
    with pytest.raises(InvalidInputError) as info:
        LmdbEventStore(path, durability="fsync")
    assert "'fsync'" in str(info.value)
    assert not path.exists()        # bad input changes nothing on disk


# -- 10. an explicit transaction blocks writers of other threads -----------------------------------


def test_transaction_blocks_other_threads_writes_until_commit(tmp_path):
    with LmdbEventStore(tmp_path / "s") as store:
        a_holds, a_release, b_started = threading.Event(), threading.Event(), threading.Event()
        a_events = [_ev("x", v, {"by": "A"}) for v in (1, 2, 3)]
        results: dict[str, object] = {}

        def thread_a() -> None:
            try:
                with store.transaction():
                    store.save_event(a_events[0])
                    store.append("x", a_events[1:], expected_version=1)
                    results["a_sees_own"] = store.get_latest_version("x")
                    a_holds.set()
                    if not a_release.wait(timeout=30):
                        raise RuntimeError("never released")
            except BaseException as exc:  # noqa: BLE001
                results["a_error"] = exc
                a_holds.set()

        def thread_b() -> None:
            b_started.set()
            try:
                store.save_event(_ev("x", 1, {"by": "B"}))
                results["b_conflict"] = None
            except VersionConflictError as exc:
                results["b_conflict"] = exc
            results["b_pos"] = store.save_event(_ev("y", 1, {"by": "B"}))
            results["b_pos2"] = store.save_event(_ev("x", 4, {"by": "B"}))

        ta = threading.Thread(target=thread_a)
        ta.start()
        assert a_holds.wait(timeout=30)
        assert "a_error" not in results, results.get("a_error")
        assert results["a_sees_own"] == 3
        # other threads do not see the uncommitted writes
        assert store.get_latest_version("x") == 0
        assert store.last_position() == 0

        tb = threading.Thread(target=thread_b)
        tb.start()
        assert b_started.wait(timeout=30)
        # B must stay blocked while A holds the transaction: give it ample chance to finish
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline and "b_conflict" not in results:
            time.sleep(0.005)
        assert "b_conflict" not in results, "B's write went through while A held its transaction"
        assert tb.is_alive()

        a_release.set()
        ta.join(timeout=30)
        tb.join(timeout=30)
        assert not ta.is_alive() and not tb.is_alive()
        assert "a_error" not in results, results.get("a_error")

        conflict = results["b_conflict"]
        assert isinstance(conflict, VersionConflictError)   # B's write ran after A's commit
        assert conflict.current_version == 3
        assert conflict.attempted_version == 1
        assert results["b_pos"] == 4
        assert results["b_pos2"] == 5
        assert [e.data["by"] for e in store.get_events("x")] == ["A", "A", "A", "B"]
        assert _all_positions(store) == [1, 2, 3, 4, 5]


def test_get_events_with_a_projection_builds_objects_from_the_records(tmp_path):
    from dataclasses import dataclass

    from aether_fast._native import Projection

    @dataclass(frozen=True)
    class Row:
        actor: str
        version: int
        kind: str
        body: bytes
        position: int

    with LmdbEventStore(tmp_path / "s") as store:
        store.save_event(Event(event_type="Other", actor_id="b", version=1))
        store.append("a", [Event(event_type="T" if v % 2 else "U", actor_id="a", version=v, data=b"%d" % v,
                                 metadata={"k": "v"}) for v in range(1, 6)])
        projection = Projection(Row, ("actor", "version", "kind", "body", "position"), None, str.upper, 0)
        rows = store.get_events("a", 2, projection=projection)
        assert rows == [Row("A", e.version, e.event_type, e.payload, e.position) for e in store.get_events("a", 2)]
        assert store.get_events("nobody", projection=projection) == []
        with pytest.raises(InvalidTypeError, match="Projection"):
            store.get_events("a", projection=Row)
