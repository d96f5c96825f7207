"""Resource exhaustion: a full file system, too many readers, too many namespaces, oversized
events and snapshots. Each ends in a clear error naming the limit, nothing stored earlier is
lost or damaged, and the store keeps working once the cause is gone.

The full file system is a real 8 MiB tmpfs mounted for the test (root only; skipped with
the reason otherwise).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from datetime import datetime, timezone

import pytest

from aether_fast import (
    ActorSnapshot,
    Event,
    InMemoryEventStore,
    InvalidInputError,
    InvalidTypeError,
    LmdbEventStore,
    StorageError,
    StoreFullError,
)
from aether_fast.model import MAX_SNAPSHOT_STATE_BYTES

# -- a file system that fills up --------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path):
    """An 8 MiB tmpfs mounted at a temporary directory, unmounted afterwards."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount an 8 MiB tmpfs (needs root and mount permission): "
                    f"{proc.stderr.strip() or proc.returncode}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False)


def _big(actor: str, version: int, size: int = 96 * 1024) -> Event:
    return Event(event_type="Big", actor_id=actor, version=version, data=os.urandom(size))


def test_full_file_system_refuses_the_write_and_keeps_everything_before(small_fs):
    filler = small_fs / "filler"
    filler.write_bytes(b"\0" * (2 << 20))       # freed later, to make room again
    path = small_fs / "store"
    acked: list[Event] = []
    with LmdbEventStore(path) as store:
        error = None
        for version in range(1, 200):           # 8 MiB holds far fewer than 200 * 96 KiB
            event = _big("a", version)
            try:
                store.save_event(event)
            except StoreFullError as e:
                error = e
                failed = event
                break
            acked.append(event)
        assert error is not None, "the file system never filled up"
        assert error.code in (errno.ENOSPC, errno.EDQUOT)
        assert "file system is full" in str(error)
        assert len(acked) >= 20

        # nothing of the failed write is there, nothing before it is lost
        assert store.get_latest_version("a") == len(acked)
        assert store.get_events("a") == acked
        assert failed.id not in {e.id for e in store.read_all()}

        # still full: every kind of write fails the same way and changes nothing
        with pytest.raises(StoreFullError):
            store.append("b", [_big("b", 1), _big("b", 2)])
        with pytest.raises(StoreFullError), store.transaction():
            store.save_event(_big("c", 1))
        with pytest.raises(StoreFullError):
            store.save_snapshot(ActorSnapshot("a", len(acked), os.urandom(256 * 1024)))
        assert store.get_latest_version("b") == store.get_latest_version("c") == 0
        assert store.get_latest_snapshot("a") is None
        assert store.last_position() == len(acked)

    with LmdbEventStore(path) as store:         # reopens while full, everything readable
        assert store.get_events("a") == acked
        assert store.get_events_with_errors("a").errors == []

    filler.unlink()                             # make room
    with LmdbEventStore(path) as store:
        more = [_big("a", len(acked) + i) for i in range(1, 6)]
        for event in more:
            store.save_event(event)
        store.save_snapshot(ActorSnapshot("a", len(acked) + 5, {"ok": True}))
        acked += more
    with LmdbEventStore(path) as store:
        assert store.get_events("a") == acked
        assert [e.position for e in store.read_all()] == list(range(1, len(acked) + 1))
        assert store.get_latest_snapshot("a").state == {"ok": True}


# -- too many readers -------------------------------------------------------------------------


def test_too_many_reader_threads_get_a_clear_error(tmp_path):
    """LMDB ties a reader slot to each reading thread until the thread ends: more reading
    threads than ``max_readers`` get a StorageError naming the limit; once they end, reads work."""
    path = tmp_path / "store"
    with LmdbEventStore(path, max_readers=4) as store:
        store.save_event(Event(event_type="T", actor_id="a", version=1))
        outcomes: list[object] = []
        lock = threading.Lock()
        release = threading.Event()

        def reader() -> None:
            try:
                result: object = store.get_latest_version("a")
            except StorageError as e:
                result = e
            with lock:
                outcomes.append(result)
            release.wait(60)            # hold the slot until every thread has tried

        threads = [threading.Thread(target=reader) for _ in range(7)]
        for t in threads:
            t.start()
        for _ in range(600):            # wait, bounded, until all seven have an outcome
            with lock:
                if len(outcomes) == len(threads):
                    break
            release.wait(0.1)
        release.set()
        for t in threads:
            t.join(60)
        assert len(outcomes) == 7
        errors = [o for o in outcomes if isinstance(o, StorageError)]
        assert outcomes.count(1) == 4 and len(errors) == 3
        for e in errors:
            assert "all 4 reader slots are taken" in str(e) and "max_readers" in str(e)

        done: list[int] = []            # the slots are free again once those threads ended
        fresh = [threading.Thread(target=lambda: done.append(store.get_latest_version("a"))) for _ in range(4)]
        for t in fresh:
            t.start()
        for t in fresh:
            t.join(60)
        assert done == [1, 1, 1, 1]
        store.save_event(Event(event_type="T", actor_id="a", version=2))
        assert [e.version for e in store.get_events("a")] == [1, 2]


HOLD_A_READER = """
import sys, time
from aether_fast import LmdbEventStore
store = LmdbEventStore(sys.argv[1], max_readers=4)
print(store.get_latest_version("a"), flush=True)
time.sleep(600)
"""


def _reading_child(path) -> subprocess.Popen:
    """A process that has read from the store (so holds a reader slot) and waits to be killed."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    return subprocess.Popen([sys.executable, "-c", HOLD_A_READER, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)


def test_reader_slots_of_killed_processes_are_reclaimed(tmp_path):
    """A process killed with SIGKILL leaves its reader slot marked as taken; the store frees
    such slots (``mdb_reader_check``) when it opens and when the slots run out, so killed
    readers never lock others out. Before, the fifth reading process here failed."""
    path = tmp_path / "store"
    with LmdbEventStore(path, max_readers=4) as store:
        store.save_event(Event(event_type="T", actor_id="a", version=1))
        for _ in range(8):                  # one after another: each open frees the dead slots
            child = _reading_child(path)
            line = child.stdout.readline()
            child.kill()
            _, err = child.communicate(timeout=60)
            assert line == b"1\n", err.decode()[-500:]
        children = [_reading_child(path) for _ in range(3)]   # three live + this thread: all 4 slots
        try:
            assert store.get_latest_version("a") == 1
            for child in children:
                assert child.stdout.readline() == b"1\n", child.stderr.read().decode()[-500:]
        finally:
            for child in children:
                child.kill()
                child.communicate(timeout=60)
        done: list[int] = []                # all 4 slots are taken, 3 by dead processes
        reader = threading.Thread(target=lambda: done.append(store.get_latest_version("a")))
        reader.start()
        reader.join(60)
        assert done == [1]


# -- too many namespaces ----------------------------------------------------------------------


def test_too_many_namespaces_is_refused_and_changes_nothing(tmp_path):
    path = tmp_path / "store"
    first = LmdbEventStore(path, max_namespaces=2, namespace="one")
    second = LmdbEventStore(path, namespace="two")
    try:
        first.save_event(Event(event_type="T", actor_id="a", version=1))
        second.save_event(Event(event_type="T", actor_id="a", version=1))
        with pytest.raises(StorageError, match="max_namespaces=2") as info:
            LmdbEventStore(path, namespace="three")
        assert "'three'" in str(info.value)
        assert sorted(first.info()["namespaces"]) == ["one", "two"]
        first.save_event(Event(event_type="T", actor_id="a", version=2))     # the others still work
        assert [e.version for e in first.get_events("a")] == [1, 2]
        assert second.get_latest_version("a") == 1
    finally:
        first.close()
        second.close()
    with LmdbEventStore(path, max_namespaces=3, namespace="three") as third:   # a larger limit
        assert third.last_position() == 0
        assert sorted(third.info()["namespaces"]) == ["one", "three", "two"]


# -- oversized events and snapshots -----------------------------------------------------------


@pytest.fixture(params=["lmdb", "memory"])
def small_store(request, tmp_path):
    if request.param == "lmdb":
        store = LmdbEventStore(tmp_path / "store", max_event_bytes=1000, max_snapshot_bytes=2000)
    else:
        store = InMemoryEventStore(max_event_bytes=1000, max_snapshot_bytes=2000)
    yield store
    store.close()


def test_oversized_event_is_refused_naming_the_limit(small_store):
    small_store.save_event(Event(event_type="T", actor_id="a", version=1, data=b"x" * 100))
    too_big = Event(event_type="T", actor_id="a", version=2, data=b"x" * 1000)
    with pytest.raises(InvalidInputError, match="max_event_bytes=1000") as info:
        small_store.save_event(too_big)
    assert repr(too_big.id) in str(info.value)
    with pytest.raises(InvalidInputError, match="max_event_bytes=1000"):   # one in a batch: none stored
        small_store.append("a", [Event(event_type="T", actor_id="a", version=v, data=b"x" * (10 if v != 3 else 5000))
                                 for v in range(2, 5)])
    assert [e.version for e in small_store.get_events("a")] == [1]
    assert small_store.last_position() == 1
    small_store.save_event(Event(event_type="T", actor_id="a", version=2, data=b"x" * 100))
    assert small_store.get_latest_version("a") == 2


def test_oversized_snapshot_is_refused_naming_the_limit(small_store):
    small_store.save_snapshot(ActorSnapshot("a", 1, b"s" * 2000))          # exactly at the limit
    with pytest.raises(InvalidInputError, match="max_snapshot_bytes=2000") as info:
        small_store.save_snapshot(ActorSnapshot("a", 2, b"s" * 2001))
    assert "2001 bytes" in str(info.value) and "'a'" in str(info.value)
    with pytest.raises(InvalidInputError, match="max_snapshot_bytes=2000"):  # JSON counts encoded
        small_store.save_snapshot(ActorSnapshot("a", 3, {"s": "é" * 1000}))
    snap = small_store.get_latest_snapshot("a")
    assert (snap.version, snap.state) == (1, b"s" * 2000)


@pytest.mark.parametrize("value", [0, -1, MAX_SNAPSHOT_STATE_BYTES + 1, 2**64])
def test_max_snapshot_bytes_cannot_pass_the_record_format(tmp_path, value):
    """The record's 32-bit length field caps a snapshot's state at 4 GiB - 1."""
    with pytest.raises(InvalidInputError, match="max_snapshot_bytes"):
        LmdbEventStore(tmp_path / "store", max_snapshot_bytes=value)
    with pytest.raises(InvalidInputError, match="max_snapshot_bytes"):
        InMemoryEventStore(max_snapshot_bytes=value)
    with pytest.raises(InvalidTypeError):
        LmdbEventStore(tmp_path / "store", max_snapshot_bytes=1.5)


def test_max_event_bytes_cannot_pass_the_record_format(tmp_path):
    """An event's payload and metadata lengths are 32-bit fields: a larger limit would let a
    4 GiB payload be written with a truncated length, so it is refused."""
    with pytest.raises(InvalidInputError, match="max_event_bytes must be at most 4294967295"):
        LmdbEventStore(tmp_path / "store", max_event_bytes=2**32)
    LmdbEventStore(tmp_path / "store", max_event_bytes=2**32 - 1).close()


@pytest.mark.parametrize("when", [datetime(1, 1, 1, tzinfo=timezone.utc), datetime(9999, 1, 1, tzinfo=timezone.utc)])
def test_snapshot_timestamp_out_of_range_is_a_clear_error(small_store, when):
    with pytest.raises(InvalidInputError, match="outside the storable range"):
        small_store.save_snapshot(ActorSnapshot("a", 1, b"s", timestamp=when))
    assert small_store.get_latest_snapshot("a") is None
