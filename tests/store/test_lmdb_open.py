"""Opening stores and namespaces: an existing one opens in a read transaction (so it does not
wait for another process's long write transaction), ``create=False`` refuses to create
anything, ``LmdbEventStore.list_namespaces`` only reads.

Real LMDB stores; the long transaction is held by a real second process. The test process
opens a store only while no other test code of this process has it open, or reuses the
open one (one environment per path per process)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from aether_fast import (
    AetherError,
    Event,
    IncompatibleFormatError,
    InvalidInputError,
    LmdbEventStore,
    StoreNotFoundError,
)
from aether_fast.store.admin import store_info, verify_store

TIMEOUT = 120      # generous bounds for a loaded machine: a wait, not a speed claim


def events(actor: str, *versions: int) -> list[Event]:
    return [Event(event_type="T", actor_id=actor, version=v, data={"v": v}) for v in versions]


def files_under(path: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*"))


@pytest.fixture
def two_namespaces(tmp_path: Path) -> Path:
    """A closed store with actor "a" (versions 1-3) in "default" and "b" (1-2) in "other"."""
    path = tmp_path / "store"
    with LmdbEventStore(path) as store, LmdbEventStore(path, namespace="other") as other:
        store.append("a", events("a", 1, 2, 3))
        other.append("b", events("b", 1, 2))
    return path


# -- another process holds a long write transaction ---------------------------------------------

HOLDER = """
import sys
from aether_fast import Event, LmdbEventStore
store = LmdbEventStore(sys.argv[1])
with store.transaction():
    store.append("held", [Event(event_type="T", actor_id="held", version=1)])
    store.append("a", [Event(event_type="T", actor_id="a", version=4)])
    print("holding", flush=True)
    sys.stdin.readline()
store.close()
"""

READER = """
import json, sys
from aether_fast import LmdbEventStore
path = sys.argv[1]
names = LmdbEventStore.list_namespaces(path)
with LmdbEventStore(path, create=False) as store, LmdbEventStore(path, namespace="other") as other:
    print(json.dumps({"names": names, "a": [e.version for e in store.get_events("a")],
                      "held": store.get_latest_version("held"), "b": other.get_latest_version("b")}))
"""


def run(*argv: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, argv)], capture_output=True, timeout=TIMEOUT, check=False)


def test_existing_store_opens_and_reads_while_another_process_holds_a_write_transaction(two_namespaces, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(two_namespaces)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"holding\n", holder.stderr.read()
        # each of these would wait for the holder's commit if opening took the writer lock
        reader = run("-c", READER, two_namespaces)
        assert reader.returncode == 0, reader.stderr
        assert json.loads(reader.stdout) == {"names": ["default", "other"], "a": [1, 2, 3], "held": 0, "b": 2}
        info = run("-m", "aether_fast", "info", two_namespaces, "--json")
        assert info.returncode == 0, info.stderr
        counts = {ns["name"]: ns["events"] for ns in json.loads(info.stdout)["namespaces"]}
        assert counts == {"default": 3, "other": 2}          # the uncommitted events are not seen
        tail = run("-m", "aether_fast", "tail", two_namespaces, "-n", "2", "--json")
        assert tail.returncode == 0, tail.stderr
        assert [json.loads(line)["version"] for line in tail.stdout.splitlines()] == [2, 3]
        verify = run("-m", "aether_fast", "verify", two_namespaces, "--json")
        assert verify.returncode == 0 and json.loads(verify.stdout)["ok"], verify.stdout + verify.stderr
        # --compact: LMDB's plain copy itself takes the writer lock for a moment (see the README)
        backup = run("-m", "aether_fast", "backup", two_namespaces, tmp_path / "copy", "--compact")
        assert backup.returncode == 0, backup.stderr
        assert holder.poll() is None          # the transaction was open throughout
    finally:
        holder.communicate(b"commit\n", timeout=TIMEOUT)
    assert holder.returncode == 0
    with LmdbEventStore(two_namespaces, create=False) as store:
        assert store.get_latest_version("held") == 1 and store.get_latest_version("a") == 4
    assert LmdbEventStore.list_namespaces(tmp_path / "copy") == ["default", "other"]
    with LmdbEventStore(tmp_path / "copy", create=False) as copy:
        assert copy.get_latest_version("a") == 3 and copy.get_latest_version("held") == 0


def test_existing_namespace_opens_while_another_thread_holds_a_transaction(two_namespaces):
    """In one process: the open does not wait for the transaction, and the transaction,
    which began before that namespace was opened, is refused the namespace clearly (LMDB
    hides handles opened after a transaction began from it) and is not rolled back."""
    store = LmdbEventStore(two_namespaces)
    began, opened, done = threading.Event(), threading.Event(), threading.Event()
    outcome: dict[str, object] = {}
    other: list[LmdbEventStore] = []

    def hold() -> None:
        try:
            with store.transaction():
                store.append("a", events("a", 4))
                began.set()
                if not opened.wait(TIMEOUT):
                    raise AssertionError("the other namespace did not open during the transaction")
                for name, call in (("write", lambda: other[0].append("b", events("b", 3))),
                                   ("read", lambda: other[0].get_latest_version("b"))):
                    try:
                        call()
                    except AetherError as e:
                        outcome[name] = e
                store.append("a", events("a", 5))     # the transaction itself goes on
        except Exception as e:  # noqa: BLE001 - reported by the asserts below
            outcome["holder"] = e
        finally:
            done.set()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert began.wait(TIMEOUT)
        other.append(LmdbEventStore(two_namespaces, namespace="other", create=False))
        assert other[0].get_latest_version("b") == 2
        opened.set()
        assert done.wait(TIMEOUT)
    finally:
        opened.set()
        thread.join(TIMEOUT)
    assert "holder" not in outcome, outcome
    for name in ("write", "read"):
        assert "opened after this thread's transaction began" in str(outcome[name])
    assert store.get_latest_version("a") == 5 and other[0].get_latest_version("b") == 2
    with store.transaction():                       # a later transaction may use it
        other[0].append("b", events("b", 3))
    assert other[0].get_latest_version("b") == 3
    other[0].close()
    store.close()


def test_threads_opening_existing_and_new_namespaces_at_once(tmp_path):
    path = tmp_path / "store"
    with LmdbEventStore(path, namespace="seed") as seed:
        existing = [f"old{i}" for i in range(6)]
        for name in existing:
            with LmdbEventStore(path, namespace=name) as store:
                store.append(name, events(name, 1, 2))
        assert seed.last_position() == 0
    fresh = [f"new{i}" for i in range(6)]
    barrier = threading.Barrier(len(existing) + len(fresh))
    results: dict[str, object] = {}

    def open_and_use(name: str) -> None:
        barrier.wait(TIMEOUT)
        try:
            with LmdbEventStore(path, namespace=name) as store:
                if name.startswith("new"):
                    store.append(name, events(name, 1))
                results[name] = store.get_latest_version(name)
        except Exception as e:  # noqa: BLE001 - reported by the asserts below
            results[name] = e

    threads = [threading.Thread(target=open_and_use, args=(n,)) for n in existing + fresh]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert results == {**{n: 2 for n in existing}, **{n: 1 for n in fresh}}
    assert LmdbEventStore.list_namespaces(path) == sorted(existing + fresh + ["seed"])


# -- create=False -----------------------------------------------------------------------------------


def test_create_false_on_a_missing_or_empty_path_creates_nothing(tmp_path):
    missing = tmp_path / "missing" / "deeper"
    with pytest.raises(StoreNotFoundError, match="does not exist") as info:
        LmdbEventStore(missing, create=False)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, InvalidInputError)
    assert str(missing) in str(info.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StoreNotFoundError, match="has no data.mdb"):
        LmdbEventStore(empty, create=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="not a directory"):
        LmdbEventStore(tmp_path / "file", create=False)
    for bad in (missing, empty):
        with pytest.raises(StoreNotFoundError):
            LmdbEventStore.list_namespaces(bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file"]
    assert list(empty.iterdir()) == []


def test_create_false_on_a_missing_namespace_creates_nothing(two_namespaces):
    before = files_under(two_namespaces)
    with pytest.raises(StoreNotFoundError, match=r"no namespace 'nope' \(it has: 'default', 'other'\)"):
        LmdbEventStore(two_namespaces, namespace="nope", create=False)
    assert files_under(two_namespaces) == before
    assert LmdbEventStore.list_namespaces(two_namespaces) == ["default", "other"]
    # also while the store is open in this process: the open environment stays usable
    with LmdbEventStore(two_namespaces, create=False) as store:
        with pytest.raises(StoreNotFoundError, match="nope"):
            LmdbEventStore(two_namespaces, namespace="nope", create=False)
        assert store.get_latest_version("a") == 3
        assert LmdbEventStore.list_namespaces(two_namespaces) == ["default", "other"]
    with LmdbEventStore(two_namespaces, namespace="nope") as created:    # create=True (default) creates it
        assert created.last_position() == 0
    assert LmdbEventStore.list_namespaces(two_namespaces) == ["default", "nope", "other"]


def test_create_false_refuses_an_empty_lmdb_environment_and_a_foreign_one(tmp_path):
    import lmdb

    for name, records in (("empty-env", {}), ("foreign", {b"key": b"value"})):
        env = lmdb.open(str(tmp_path / name))
        with env.begin(write=True) as txn:
            for k, v in records.items():
                txn.put(k, v)
        env.close()
    before = files_under(tmp_path)
    with pytest.raises(StoreNotFoundError, match="empty LMDB environment"):
        LmdbEventStore(tmp_path / "empty-env", create=False)
    with pytest.raises(IncompatibleFormatError):
        LmdbEventStore(tmp_path / "foreign", create=False)
    assert files_under(tmp_path) == before      # no meta record, no namespace written


def test_list_namespaces_never_creates_the_default_namespace(tmp_path):
    path = tmp_path / "store"
    with LmdbEventStore(path, namespace="orders") as orders:
        orders.append("o", events("o", 1))
        assert LmdbEventStore.list_namespaces(path) == ["orders"]      # the open environment is reused
        assert LmdbEventStore.durability_in_process(path) == "sync"
        assert [ns.name for ns in store_info(orders).namespaces] == ["orders"]
        assert verify_store(orders).ok
    assert LmdbEventStore.durability_in_process(path) is None
    assert LmdbEventStore.list_namespaces(path) == ["orders"]
    assert [ns.name for ns in store_info(path).namespaces] == ["orders"]
    assert LmdbEventStore.list_namespaces(path) == ["orders"]


# -- the eventsourcing module's CREATE_TABLE=no ---------------------------------------------------


def test_eventsourcing_create_table_off_refuses_a_missing_namespace(tmp_path, monkeypatch):
    if sys.version_info < (3, 11):
        pytest.skip("eventsourcing 9.5+ needs Python 3.11+")
    pytest.importorskip("eventsourcing")
    from eventsourcing.application import Application
    from eventsourcing.persistence import OperationalError

    path = tmp_path / "app"
    monkeypatch.setenv("PERSISTENCE_MODULE", "aether_fast.eventsourcing")
    monkeypatch.setenv("AETHER_FAST_PATH", str(path))
    monkeypatch.setenv("CREATE_TABLE", "yes")
    Application().close()
    names = LmdbEventStore.list_namespaces(path)
    monkeypatch.setenv("CREATE_TABLE", "no")
    monkeypatch.setenv("IS_SNAPSHOTTING_ENABLED", "yes")      # needs a snapshots namespace
    with pytest.raises(OperationalError, match="snapshots.*CREATE_TABLE is off"):
        Application()
    assert LmdbEventStore.list_namespaces(path) == names
