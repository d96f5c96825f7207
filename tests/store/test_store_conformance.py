"""The store contract (``support.conformance.StoreConformance``) over the in-memory and LMDB
stores, and the tests particular to each."""


from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from support.conformance import StoreConformance, ev

from aether_fast import (
    ActorSnapshot,
    AetherError,
    Event,
    InMemoryEventStore,
    InvalidInputError,
    InvalidNamespaceError,
    InvalidTypeError,
    LmdbEventStore,
    StoreAlreadyOpenError,
    StoreFullError,
)


class TestStoreConformance(StoreConformance):
    """The contract over the in-memory and LMDB stores (conftest's parametrized ``store``)."""


# -- store-specific ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "lmdb"])
def test_oversized_event_anywhere_in_batch_writes_nothing(tmp_path, kind):
    limit = 4096
    store = (InMemoryEventStore(max_event_bytes=limit) if kind == "memory"
             else LmdbEventStore(tmp_path / "s", max_event_bytes=limit))
    with store:
        store.save_event(ev("a", 1))
        for where in range(3):
            batch = [ev("a", 2), ev("a", 3), ev("a", 4)]
            batch[where] = ev("a", where + 2, data=b"x" * (limit + 1))
            with pytest.raises(InvalidInputError, match="max_event_bytes"):
                store.append("a", batch)
            assert store.last_position() == 1
            assert store.get_latest_version("a") == 1
        with pytest.raises(InvalidInputError, match="max_event_bytes"):
            store.save_event(ev("a", 2, data={"s": "y" * limit}))
        assert store.save_event(ev("a", 2, data=b"x" * 1000)) == 2


def test_lmdb_transaction_stays_atomic_after_store_full(tmp_path):
    """A StoreFullError inside transaction() rolls the transaction back; writes that the
    block makes after catching it must not be committed on their own."""
    with LmdbEventStore(tmp_path / "s", map_size=64 * 1024) as s:
        s.save_event(ev("before", 1))
        with pytest.raises(AetherError), s.transaction():
            caught = False
            for v in range(1, 10_000):
                try:
                    s.save_event(ev("a", v, data=b"x" * 2000))
                except StoreFullError:
                    caught = True
                    break
            assert caught
            s.save_event(ev("b", 1))   # must not be committed by itself
        assert s.get_latest_version("a") == 0
        assert s.get_latest_version("b") == 0
        assert [(e.actor_id, e.version) for e in s.read_all()] == [("before", 1)]
        # the map has grown: the same transaction now fits
        with s.transaction():
            for v in range(1, 40):
                s.save_event(ev("a", v, data=b"x" * 2000))
        assert s.get_latest_version("a") == 39


def test_large_payloads_round_trip(lmdb_store):
    big = bytes(range(256)) * 4096  # 1 MiB
    lmdb_store.save_event(ev("a", 1, data=big))
    lmdb_store.save_event(ev("a", 2, data={"s": "é" * 300_000}))
    [e1, e2] = lmdb_store.get_events("a")
    assert e1.data == big
    assert e2.data == {"s": "é" * 300_000}
    assert lmdb_store.read_columns().payload_at(0) == big


def run_child(code: str, *args: str) -> str:
    """Run ``code`` in a fresh Python process (so that a crash fails one test instead of
    killing the whole run); returns its stdout."""
    proc = subprocess.run([sys.executable, "-c", code, *args], check=False, capture_output=True,
                          text=True, timeout=120)
    if proc.returncode < 0:
        pytest.fail(f"child process died of {signal.Signals(-proc.returncode).name}:\n{proc.stderr[-3000:]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


_REOPEN_CHILD = r"""
import json, sys
from aether_fast import LmdbEventStore
path, namespace = sys.argv[1], sys.argv[2]
rounds = []
for _ in range(2):  # opened by a new process, then again by the same process after close()
    with LmdbEventStore(path, namespace=namespace) as s:
        snap = s.get_latest_snapshot("a")
        rounds.append({
            "events": [e.to_json() for e in s.get_events("a")],
            "positions": [e.position for e in s.read_all()],
            "snapshot": None if snap is None else [snap.version, snap.state],
        })
print(json.dumps(rounds))
"""


def test_lmdb_events_survive_reopen(tmp_path):
    saved = [ev("a", 1, data=b"raw", metadata={"k": "v"}, command_id="c", timestamp=-3), ev("a", 2)]
    with LmdbEventStore(tmp_path / "s") as s:
        s.append("a", saved)
        s.save_snapshot(ActorSnapshot("a", 2, {"n": 2}))
    rounds = json.loads(run_child(_REOPEN_CHILD, str(tmp_path / "s"), "default"))
    for r in rounds:
        assert [Event.from_json(t) for t in r["events"]] == saved
        assert r["positions"] == [1, 2]
        assert r["snapshot"] == [2, {"n": 2}]


def test_lmdb_store_can_be_reopened_in_the_same_process(tmp_path):
    code = r"""
import sys
from aether_fast import Event, LmdbEventStore
path = sys.argv[1]
for i in range(1, 4):
    s = LmdbEventStore(path)
    assert s.get_latest_version("a") == i - 1, s.get_latest_version("a")
    assert s.save_event(Event(event_type="T", actor_id="a", version=i)) == i
    s.close()
print("ok")
"""
    assert run_child(code, str(tmp_path / "s")).strip() == "ok"


def test_lmdb_format_marker_is_stored_under_its_name(tmp_path):
    """The store's __meta__ database names its entries 'format' and 'created_ns'."""
    lmdb = pytest.importorskip("lmdb", reason="py-lmdb is needed to look inside the environment")
    LmdbEventStore(tmp_path / "s").close()
    env = lmdb.open(str(tmp_path / "s"), max_dbs=4, readonly=True, lock=False)
    try:
        meta = env.open_db(b"__meta__", create=False)
        with env.begin(db=meta) as txn:
            entries = dict(txn.cursor())
    finally:
        env.close()
    assert sorted(entries) == [b"created_ns", b"format"]
    assert entries[b"format"] == b"1"
    assert entries[b"created_ns"].isdigit()


class TestLmdbNamespaces:
    def test_namespaces_are_isolated(self, tmp_path):
        path = tmp_path / "shared"
        with LmdbEventStore(path, namespace="tenant-a") as a, LmdbEventStore(path, namespace="tenant-b") as b:
            assert a.save_event(ev("order-1", 1)) == 1
            assert a.save_event(ev("order-1", 2)) == 2
            assert a.save_event(ev("x", 1)) == 3
            assert b.save_event(ev("order-1", 7)) == 1
            assert a.get_latest_version("order-1") == 2
            assert b.get_latest_version("order-1") == 7
            assert [e.version for e in b.get_events("order-1")] == [7]
            assert b.get_latest_version("x") == 0
            assert [e.position for e in b.read_all()] == [1]
            assert a.last_position() == 3 and b.last_position() == 1
            # version 1 is free in b although a has it
            assert b.append("order-1", [ev("order-1", 8)], expected_version=7) == [2]
            a.save_snapshot(ActorSnapshot("order-1", 2, {"in": "a"}))
            assert b.get_latest_snapshot("order-1") is None
            assert len(b.read_columns()) == 2 and len(a.read_columns()) == 3

    def test_namespaces_stay_isolated_after_reopen(self, tmp_path):
        path = tmp_path / "shared"
        with LmdbEventStore(path, namespace="tenant-a") as a, LmdbEventStore(path, namespace="tenant-b") as b:
            a.append("a", [ev("a", 1), ev("a", 2)])
            b.append("a", [ev("a", 5)])
            b.save_snapshot(ActorSnapshot("a", 5, {"in": "b"}))
        ra = json.loads(run_child(_REOPEN_CHILD, str(path), "tenant-a"))
        rb = json.loads(run_child(_REOPEN_CHILD, str(path), "tenant-b"))
        assert [Event.from_json(t).version for t in ra[0]["events"]] == [1, 2]
        assert ra[0]["positions"] == [1, 2] and ra[0]["snapshot"] is None
        assert [Event.from_json(t).version for t in rb[0]["events"]] == [5]
        assert rb[0]["positions"] == [1] and rb[0]["snapshot"] == [5, {"in": "b"}]

    def test_default_namespace_is_separate_from_named(self, tmp_path):
        with LmdbEventStore(tmp_path) as d, LmdbEventStore(tmp_path, namespace="other") as o:
            d.save_event(ev("a", 1))
            assert o.get_latest_version("a") == 0
            assert o.last_position() == 0

    def test_same_path_and_namespace_twice_raises(self, tmp_path):
        path = tmp_path / "s"
        with LmdbEventStore(path, namespace="ns"):
            with pytest.raises(StoreAlreadyOpenError, match="ns"):
                LmdbEventStore(path, namespace="ns")
            # another spelling of the same directory is the same store
            with pytest.raises(StoreAlreadyOpenError):
                LmdbEventStore(tmp_path / "s" / ".." / "s", namespace="ns")
            # another namespace of the same path is fine
            LmdbEventStore(path, namespace="ns2").close()

    def test_closed_namespace_may_be_opened_again(self, tmp_path):
        code = r"""
import sys
from aether_fast import LmdbEventStore, StoreAlreadyOpenError
path = sys.argv[1]
s = LmdbEventStore(path, namespace="ns")
other = LmdbEventStore(path, namespace="other")   # keeps the environment open
s.close()
again = LmdbEventStore(path, namespace="ns")       # the environment is still open
try:
    LmdbEventStore(path, namespace="ns")
except StoreAlreadyOpenError:
    pass
else:
    raise SystemExit("second open did not raise")
again.close(); other.close()
LmdbEventStore(path, namespace="ns").close()      # the environment was closed: a new one
print("ok")
"""
        assert run_child(code, str(tmp_path / "s")).strip() == "ok"

    def test_already_open_is_an_aether_error(self):
        assert issubclass(StoreAlreadyOpenError, AetherError)

    @pytest.mark.parametrize(
        "name", ["", "a..b", "a.*", "a.>", "*", "with space", "a/b", ".a", "a.", "ü", "a" * 201]
    )
    def test_bad_namespace_rejected(self, tmp_path, name):
        with pytest.raises(InvalidNamespaceError) as info:
            LmdbEventStore(tmp_path / "s", namespace=name)
        assert isinstance(info.value, InvalidInputError)
        with pytest.raises(InvalidNamespaceError):
            InMemoryEventStore(namespace=name)

    def test_non_str_namespace_rejected(self, tmp_path):
        with pytest.raises(InvalidTypeError):
            LmdbEventStore(tmp_path / "s", namespace=5)

    @pytest.mark.parametrize("name", ["a", "a" * 200, "tenant-1.orders_v2", "A.B.C", "x_-9"])
    def test_good_namespace_accepted(self, tmp_path, name):
        with LmdbEventStore(tmp_path / "s", namespace=name) as s:
            assert s.namespace == name
            assert s.save_event(ev("a", 1)) == 1


def test_lmdb_columns_of_empty_payloads(lmdb_store):
    """Empty payloads copy nothing into the (then unallocated) payload column; this was
    undefined behaviour found by the UBSan build (memcpy to NULL)."""
    lmdb_store.append("a", [ev("a", 1, data=b""), ev("a", 2, data=b"")])
    cols = lmdb_store.read_columns("a")
    assert list(cols.payload_offsets) == [0, 0, 0]
    assert cols.payload_at(0) == b"" and cols.payload_at(1) == b""
    assert list(cols.is_bytes) == [True, True]
