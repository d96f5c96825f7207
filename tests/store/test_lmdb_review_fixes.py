"""Regression tests for bugs found in review of the native store (each failed before its fix)."""

from __future__ import annotations

import os
import threading

import pytest

from aether_fast import AetherError, Event, LmdbEventStore, StoreFullError
from aether_fast.store import lmdb as lmdb_store_module


def ev(actor: str, version: int, **kw) -> Event:
    return Event(event_type="T", actor_id=actor, version=version, **kw)


class Boom(Exception):
    pass


def test_a_forked_child_cannot_commit_the_parents_transaction(tmp_path):
    store = LmdbEventStore(tmp_path / "s", durability="nosync")
    pid = -1
    with pytest.raises(Boom), store.transaction():
        store.save_event(ev("a", 1))
        pid = os.fork()
        if pid == 0:          # the child leaves the block normally: that must not commit
            code = 1
            try:
                store._env.end_transaction(True)
            except AetherError as e:
                code = 0 if type(e).__name__ == "StoreForkedError" else 2
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        raise Boom                                   # the parent rolls back
    assert store.get_latest_version("a") == 0
    assert store.last_position() == 0
    store.close()


def test_rollback_guard_survives_another_threads_transaction(tmp_path):
    store = LmdbEventStore(tmp_path / "s", map_size=1 << 20, durability="nosync")
    other = LmdbEventStore(tmp_path / "s", namespace="other", durability="nosync")
    with pytest.raises(AetherError, match="rolled back"), store.transaction():
        store.save_event(ev("a", 1))
        with pytest.raises(StoreFullError):
            store.save_event(ev("a", 2, data=b"x" * (4 << 20)))

        def elsewhere():
            with other.transaction():
                other.save_event(ev("b", 1))

        t = threading.Thread(target=elsewhere)
        t.start()
        t.join(10)
        with pytest.raises(AetherError, match="rolled back"):
            store.save_event(ev("a", 3))             # must not commit on its own
    assert store.get_events("a") == []
    assert other.get_latest_version("b") == 1
    other.close()
    store.close()


def test_map_full_at_commit_is_a_store_full_error_and_the_map_grows(tmp_path):
    """LMDB can run out of map space while committing (its free-page list); the
    transaction must then fail with StoreFullError and succeed when run again."""
    import random

    rng = random.Random(2)
    for trial in range(40):
        store = LmdbEventStore(tmp_path / f"s{trial}", durability="nosync", map_size=1 << 18)
        try:
            for _ in range(200):
                batch = [(f"s{rng.randint(0, 200)}", b"y" * rng.randint(10, 1500)) for _ in range(rng.randint(1, 30))]

                def run(batch=batch, store=store):
                    with store.transaction():
                        for actor, state in batch:
                            store._log.save_snapshot(actor, 1, 0, state, True)

                try:
                    run()
                except StoreFullError:
                    run()                             # the map has grown: it fits now
                    break
        finally:
            store.close()


def test_one_big_first_event_does_not_size_every_columnar_row(tmp_path):
    with LmdbEventStore(tmp_path / "s", durability="nosync") as store:
        store.save_event(ev("big", 1, data=b"x" * (15 << 20)))
        store.append("small", [ev("small", v, data=b"y") for v in range(1, 20_001)])
        cols = store.read_columns()
        assert len(cols) == 20_001
        assert cols.payload_at(0) == b"x" * (15 << 20) and cols.payload_at(20_000) == b"y"


def test_a_refused_close_leaves_the_store_open_and_registered(tmp_path):
    store = LmdbEventStore(tmp_path / "s", durability="nosync")
    held, release = threading.Event(), threading.Event()

    def holder():
        with store.transaction():
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    with pytest.raises(AetherError, match="another thread holds a transaction"):
        store.close()
    assert not store.closed and store.path in lmdb_store_module._open_envs
    release.set()
    t.join(10)
    assert store.save_event(ev("a", 1)) == 1          # still usable
    store.close()
    assert store.closed and store.path not in lmdb_store_module._open_envs


def test_a_damaged_index_entry_is_reported_not_read_past(tmp_path):
    import subprocess
    import sys

    from aether_fast import CorruptRecordError

    path = tmp_path / "s"
    with LmdbEventStore(path) as store:
        store.append("a", [ev("a", 1), ev("a", 2)])
    damage = (
        "import lmdb, sys\n"
        "env = lmdb.open(sys.argv[1], max_dbs=8)\n"
        "idx = env.open_db(b'default/idx')\n"
        "with env.begin(write=True) as txn:\n"
        "    key = next(iter(txn.cursor(db=idx)))[0]\n"
        "    txn.put(key, b'\\x01\\x02\\x03', db=idx)\n"      # 3 bytes instead of 8
    )
    subprocess.run([sys.executable, "-c", damage, str(path)], check=True)
    with LmdbEventStore(path) as store:
        with pytest.raises(CorruptRecordError, match="damaged"):
            store.get_events("a")
        with pytest.raises(CorruptRecordError, match="damaged"):
            store.read_columns("a")
        with pytest.raises(CorruptRecordError, match="damaged"):
            store.append("a", [ev("a", 1)])                # the idempotency check reads it too
        assert store.get_latest_version("a") == 2          # the key itself is intact
