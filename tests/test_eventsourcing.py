"""aether_fast.eventsourcing: the eventsourcing library's own shipped test cases, run
unchanged against our recorders and factory, then the points that are ours (version
mapping, namespaces, atomicity across aggregates, configuration, cross-process
subscriptions). Real LMDB stores in temporary directories."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
from decimal import Decimal
from typing import ClassVar
from unittest import TestCase
from uuid import UUID, uuid4

import pytest

if sys.version_info < (3, 11):     # the library's 9.5 line (the [eventsourcing] extra) needs 3.11
    pytest.skip("eventsourcing 9.5+ needs Python 3.11+", allow_module_level=True)

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import (
    DataError,
    InfrastructureFactory,
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
    Tracking,
)
from eventsourcing.tests import application as es_application
from eventsourcing.tests import persistence as es_persistence
from eventsourcing.utils import Environment

from aether_fast.bench.eventsourcing import EsConfig, main_bench_eventsourcing
from aether_fast.eventsourcing import (
    LmdbAggregateRecorder,
    LmdbApplicationRecorder,
    LmdbDatastore,
    LmdbFactory,
    LmdbProcessRecorder,
    LmdbTrackingRecorder,
)

MODULE = "aether_fast.eventsourcing"
ENV_KEYS = ("PERSISTENCE_MODULE", "AETHER_FAST_PATH", "AETHER_FAST_DURABILITY", "CREATE_TABLE",
            "ORIGINATOR_ID_TYPE", "IS_SNAPSHOTTING_ENABLED")


# -- fixtures for the library's unittest cases ----------------------------------------------------


class WithDatastores(TestCase):
    """Each ``new_datastore()`` is a fresh store in a temporary directory, closed and
    removed after the test."""

    originator_id_type: ClassVar[str] = "uuid"

    def setUp(self) -> None:
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="aether-es-")
        self.datastores: list[LmdbDatastore] = []

    def tearDown(self) -> None:
        for datastore in self.datastores:
            datastore.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        super().tearDown()

    def new_datastore(self) -> LmdbDatastore:
        datastore = LmdbDatastore(tempfile.mkdtemp(dir=self.tmp), originator_id_type=self.originator_id_type)
        self.datastores.append(datastore)
        return datastore


class WithTextOriginatorIDs:
    originator_id_type: ClassVar[str] = "text"

    def new_originator_id(self) -> UUID | str:
        return "test-" + str(uuid4())


class WithAetherEnvironment(TestCase):
    """The process environment selects this module, with a fresh store path per test
    (restored afterwards), as the library's own SQLite application tests do."""

    expected_factory_topic = f"{MODULE}:LmdbFactory"

    def setUp(self) -> None:
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="aether-es-app-")
        self.saved_environ = {key: os.environ.get(key) for key in ENV_KEYS}
        for key in ENV_KEYS:
            os.environ.pop(key, None)
        os.environ["PERSISTENCE_MODULE"] = MODULE
        os.environ["AETHER_FAST_PATH"] = self.tmp

    def tearDown(self) -> None:
        for key, value in self.saved_environ.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        gc.collect()            # applications the tests leave open release their stores
        shutil.rmtree(self.tmp, ignore_errors=True)
        super().tearDown()


# -- the library's test cases ------------------------------------------------------------------------


class TestLmdbAggregateRecorder(WithDatastores, es_persistence.AggregateRecorderTestCase):
    def create_recorder(self) -> LmdbAggregateRecorder:
        return LmdbAggregateRecorder(self.new_datastore())


class TestLmdbAggregateRecorderWithTextOriginatorIDs(WithTextOriginatorIDs, TestLmdbAggregateRecorder):
    pass


class TestLmdbApplicationRecorder(WithDatastores, es_persistence.ApplicationRecorderTestCase[LmdbApplicationRecorder]):
    def create_recorder(self) -> LmdbApplicationRecorder:
        return LmdbApplicationRecorder(self.new_datastore())

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


class TestLmdbApplicationRecorderWithTextOriginatorIDs(WithTextOriginatorIDs, TestLmdbApplicationRecorder):
    pass


class TestLmdbTrackingRecorder(WithDatastores, es_persistence.TrackingRecorderTestCase):
    def create_recorder(self) -> LmdbTrackingRecorder:
        return LmdbTrackingRecorder(self.new_datastore())


class TestLmdbProcessRecorder(WithDatastores, es_persistence.ProcessRecorderTestCase):
    def create_recorder(self) -> LmdbProcessRecorder:
        return LmdbProcessRecorder(self.new_datastore())


class TestLmdbProcessRecorderWithTextOriginatorIDs(WithTextOriginatorIDs, TestLmdbProcessRecorder):
    pass


class TestLmdbNonInterleavingNotificationIDs(WithDatastores, es_persistence.NonInterleavingNotificationIDsBaseCase):
    insert_num = 10000      # as the library runs it for its POPO and SQLite recorders

    def create_recorder(self) -> LmdbApplicationRecorder:
        return LmdbApplicationRecorder(self.new_datastore())


class TestLmdbInfrastructureFactory(es_persistence.InfrastructureFactoryTestCase[LmdbFactory]):
    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="aether-es-factory-")
        self.env = Environment("TestCase")
        self.env[InfrastructureFactory.PERSISTENCE_MODULE] = MODULE
        self.env[LmdbFactory.AETHER_FAST_PATH] = self.tmp
        super().setUp()

    def tearDown(self) -> None:
        super().tearDown()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def expected_factory_class(self) -> type[LmdbFactory]:
        return LmdbFactory

    def expected_aggregate_recorder_class(self) -> type[LmdbAggregateRecorder]:
        return LmdbAggregateRecorder

    def expected_application_recorder_class(self) -> type[LmdbApplicationRecorder]:
        return LmdbApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[LmdbTrackingRecorder]:
        return LmdbTrackingRecorder

    class LmdbTrackingRecorderSubclass(LmdbTrackingRecorder):
        pass

    def tracking_recorder_subclass(self) -> type[LmdbTrackingRecorder]:
        return self.LmdbTrackingRecorderSubclass

    def expected_process_recorder_class(self) -> type[LmdbProcessRecorder]:
        return LmdbProcessRecorder


class TestExampleApplicationWithLmdb(WithAetherEnvironment, es_application.ExampleApplicationTestCase):
    pass


class TestApplicationWithLmdb(WithAetherEnvironment, es_application.ApplicationTestCase):
    pass


# -- ours ----------------------------------------------------------------------------------------------


@pytest.fixture
def datastore(tmp_path):
    datastore = LmdbDatastore(tmp_path / "store")
    yield datastore
    datastore.close()


@pytest.fixture
def environ(tmp_path, monkeypatch):
    """The process environment of an application using this module on a fresh path."""
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PERSISTENCE_MODULE", MODULE)
    monkeypatch.setenv("AETHER_FAST_PATH", str(tmp_path / "app"))
    return tmp_path / "app"


def stored(originator_id, version, topic="topic", state=b"state") -> StoredEvent:
    return StoredEvent(originator_id=originator_id, originator_version=version, topic=topic, state=state)


def test_stored_event_maps_to_event_with_version_plus_one(datastore):
    recorder = LmdbApplicationRecorder(datastore, "app_events")
    oid = uuid4()
    state = bytes(range(256))
    assert recorder.insert_events([stored(oid, 0, "mod:Created", state), stored(oid, 1)]) == [1, 2]
    events = datastore.store("app_events").get_events(str(oid))
    assert [(e.actor_id, e.version, e.event_type, e.payload, e.is_bytes) for e in events] == [
        (str(oid), 1, "mod:Created", state, True), (str(oid), 2, "topic", b"state", True)]
    assert len({e.id for e in events}) == 2
    assert recorder.select_events(oid) == [stored(oid, 0, "mod:Created", state), stored(oid, 1)]
    assert recorder.select_events(oid, gt=0) == [stored(oid, 1)]
    assert recorder.select_events(oid, lte=0) == [stored(oid, 0, "mod:Created", state)]


def test_batch_over_several_aggregates_keeps_order_and_contiguous_ids(datastore):
    recorder = LmdbApplicationRecorder(datastore)
    a, b = uuid4(), uuid4()
    recorder.insert_events([stored(uuid4(), 1)])
    ids = recorder.insert_events([stored(a, 1), stored(b, 1), stored(a, 2), stored(b, 2)])
    assert ids == [2, 3, 4, 5]
    notes = recorder.select_notifications(2, 10)
    assert [(n.id, n.originator_id, n.originator_version) for n in notes] == [
        (2, a, 1), (3, b, 1), (4, a, 2), (5, b, 2)]


def test_batch_over_several_aggregates_is_all_or_nothing(datastore):
    recorder = LmdbApplicationRecorder(datastore)
    a, b = uuid4(), uuid4()
    recorder.insert_events([stored(b, 1)])
    for batch in ([stored(a, 1), stored(b, 1)],             # conflict in the second append
                  [stored(a, 1), stored(a, 2), stored(a, 2)],   # duplicate within a run
                  [stored(a, 1), stored(b, 2), stored(a, 1)]):  # duplicate across runs
        with pytest.raises(IntegrityError):
            recorder.insert_events(batch)
        assert recorder.max_notification_id() == 1
        assert recorder.select_events(a) == []
    assert recorder.select_events(b) == [stored(b, 1)]


def test_process_recorder_conflict_keeps_tracking_and_events_apart(datastore):
    recorder = LmdbProcessRecorder(datastore, events_namespace="p_events", tracking_namespace="p_tracking")
    a, b = uuid4(), uuid4()
    recorder.insert_events([stored(a, 1)], tracking=Tracking("up", 5))
    with pytest.raises(IntegrityError):     # b's event is new, a's conflicts: no tracking, no b
        recorder.insert_events([stored(b, 1), stored(a, 1)], tracking=Tracking("up", 6))
    assert recorder.max_tracking_id("up") == 5
    assert recorder.select_events(b) == []
    assert recorder.insert_events([stored(b, 1), stored(a, 2)], tracking=Tracking("up", 6)) == [2, 3]
    assert recorder.max_tracking_id("up") == 6


@pytest.mark.parametrize("bad, error", [
    (stored(uuid4(), -1), DataError),
    (stored("not-a-uuid", 1), DataError),
    (stored(uuid4(), 1, state="text"), DataError),
    (stored(uuid4(), 1, topic=""), DataError),
    (stored(uuid4(), "1"), DataError),
])
def test_bad_stored_events_are_refused_and_write_nothing(datastore, bad, error):
    recorder = LmdbApplicationRecorder(datastore)
    with pytest.raises(error):
        recorder.insert_events([stored(uuid4(), 1), bad])
    assert recorder.max_notification_id() is None


def test_versions_of_one_originator_must_grow(datastore):
    recorder = LmdbAggregateRecorder(datastore)
    oid = uuid4()
    recorder.insert_events([stored(oid, 5)])
    with pytest.raises(IntegrityError):
        recorder.insert_events([stored(oid, 3)])      # an SQL table would take it; the log does not
    with pytest.raises(IntegrityError):
        recorder.insert_events([stored(oid, 7), stored(oid, 6)])
    assert [e.originator_version for e in recorder.select_events(oid)] == [5]


def test_select_events_with_gaps_desc_and_limits(datastore):
    recorder = LmdbAggregateRecorder(datastore, "x_snapshots")
    oid = uuid4()
    for version in (2, 5, 9, 14):
        recorder.insert_events([stored(oid, version)])

    def versions(**kwargs):
        return [e.originator_version for e in recorder.select_events(oid, **kwargs)]

    assert versions(desc=True, limit=1) == [14]
    assert versions(desc=True, limit=1, lte=10) == [9]
    assert versions(desc=True, limit=2, lte=13) == [9, 5]
    assert versions(desc=True, limit=9, lte=13) == [9, 5, 2]
    assert versions(desc=True, limit=1, lte=1) == []
    assert versions(gt=2, lte=9) == [5, 9]
    assert versions(gt=2, lte=9, desc=True) == [9, 5]
    assert versions(limit=2) == [2, 5]
    assert versions(limit=0) == []
    assert versions(gt=14) == []
    assert versions(gt=-5, lte=-1) == []
    assert recorder.select_events(uuid4(), desc=True, limit=1) == []


def test_select_notifications_topics_stop_and_bounds(datastore):
    recorder = LmdbApplicationRecorder(datastore)
    oid = uuid4()
    recorder.insert_events([stored(oid, v, topic=f"t{v % 3}") for v in range(1, 3001)])
    notes = recorder.select_notifications(None, 5, topics=["t0"])
    assert [n.id for n in notes] == [3, 6, 9, 12, 15]
    notes = recorder.select_notifications(2000, 10_000, stop=2100, topics=["t1", "t2"], inclusive_of_start=False)
    assert [n.id for n in notes] == [i for i in range(2001, 2101) if i % 3]
    assert [n.id for n in recorder.select_notifications(-10, 2)] == [1, 2]
    assert recorder.select_notifications(2990, 100, stop=10) == []
    assert recorder.select_notifications(3000, 10, inclusive_of_start=False) == []
    assert recorder.select_notifications(1, 0) == []
    assert recorder.max_notification_id() == 3000


def test_subscription_topics_gt_and_stop_from_another_thread(datastore):
    recorder = LmdbApplicationRecorder(datastore)
    oid = uuid4()
    recorder.insert_events([stored(oid, v, topic=f"t{v % 2}") for v in range(1, 11)])
    received = []
    with recorder.subscribe(gt=4, topics=["t1"]) as subscription:
        watchdog = threading.Timer(30, subscription.stop)     # a failure, not a hang
        watchdog.start()

        def stop_when_done():
            recorder.insert_events([stored(oid, 11, topic="t1"), stored(oid, 12, topic="t0")])
        for n in subscription:
            received.append(n.id)
            if n.id == 9:
                threading.Thread(target=stop_when_done).start()
            if n.id == 11:
                threading.Timer(0.05, subscription.stop).start()
        watchdog.cancel()
    assert received == [5, 7, 9, 11]


def test_subscription_sees_commits_of_another_process(datastore):
    recorder = LmdbApplicationRecorder(datastore, "shared_events")
    path = datastore.path
    child = textwrap.dedent(f"""
        import sys, uuid
        from eventsourcing.persistence import StoredEvent
        from aether_fast.eventsourcing import LmdbApplicationRecorder, LmdbDatastore
        datastore = LmdbDatastore({path!r})
        recorder = LmdbApplicationRecorder(datastore, "shared_events")
        sys.stdin.readline()
        oid = uuid.uuid4()
        print(recorder.insert_events([StoredEvent(oid, v, "from-child", b"x") for v in range(3)]), flush=True)
        datastore.close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        with recorder.subscribe(gt=None) as subscription:
            watchdog = threading.Timer(60, subscription.stop)     # a failure, not a hang
            watchdog.start()
            proc.stdin.write("go\n")
            proc.stdin.flush()
            got = []
            for n in subscription:
                got.append((n.id, n.topic, n.originator_version))
                if len(got) == 3:
                    break
            watchdog.cancel()
        assert got == [(1, "from-child", 0), (2, "from-child", 1), (3, "from-child", 2)]
        assert proc.stdout.readline().strip() == "[1, 2, 3]"
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0


class Counter(Aggregate):
    def __init__(self) -> None:
        self.count = 0

    @event("Incremented")
    def increment(self) -> None:
        self.count += 1


def test_application_data_survives_reopening_and_names_its_namespaces(environ):
    with Application[UUID](env={"IS_SNAPSHOTTING_ENABLED": "y"}) as app:
        counter = Counter()
        for _ in range(3):
            counter.increment()
        app.save(counter)
        app.take_snapshot(counter.id)
        assert app.factory.datastore.durability == "sync"
        store = app.factory.datastore.store("application_events")
        assert sorted(store.info()["namespaces"]) == ["application_events", "application_snapshots"]
        assert store.durability == "sync"
    with Application[UUID]() as app:
        again = app.repository.get(counter.id)
        assert again.count == 3 and again.version == 4
        assert [n.originator_id for n in app.notification_log.select(1, 10)] == [counter.id] * 4


def test_applications_of_different_names_share_a_path_but_not_their_events(environ):
    class Orders(Application[UUID]):
        pass

    class Invoices(Application[UUID]):
        pass

    with Orders() as orders, Invoices() as invoices, Orders() as orders_again:
        orders.save(Counter())
        assert orders_again.recorder.max_notification_id() == 1     # one namespace, one store
        assert invoices.recorder.max_notification_id() is None
        invoices.save(Counter(), Counter())
        assert invoices.recorder.max_notification_id() == 2
        assert orders.recorder.max_notification_id() == 1


def test_concurrent_saves_of_many_threads(environ, monkeypatch):
    monkeypatch.setenv("AETHER_FAST_DURABILITY", "metasync")
    with Application[UUID]() as app:
        counters = [Counter() for _ in range(4)]
        app.save(*counters)
        errors = []

        def work(counter):
            try:
                for _ in range(50):
                    counter.increment()
                    app.save(counter)
            except Exception as e:      # noqa: BLE001 -- reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(c,)) for c in counters]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert app.recorder.max_notification_id() == 4 + 4 * 50
        notes = app.recorder.select_notifications(1, 1000)
        assert [n.id for n in notes] == list(range(1, 205))
        for counter in counters:
            assert app.repository.get(counter.id).count == 50


def test_factory_configuration_errors(environ, monkeypatch, tmp_path):
    monkeypatch.delenv("AETHER_FAST_PATH")
    with pytest.raises(OSError, match="AETHER_FAST_PATH"):
        Application[UUID]()
    monkeypatch.setenv("MYAPP_AETHER_FAST_PATH", str(tmp_path / "prefixed"))

    class MyApp(Application[UUID]):
        pass

    with MyApp() as app:
        assert app.factory.datastore.path == str(tmp_path / "prefixed")
    monkeypatch.setenv("AETHER_FAST_PATH", str(environ))
    monkeypatch.setenv("AETHER_FAST_DURABILITY", "sometimes")
    with pytest.raises(OSError, match="AETHER_FAST_DURABILITY"):
        Application[UUID]()
    monkeypatch.setenv("AETHER_FAST_DURABILITY", "nosync")
    monkeypatch.setenv("ORIGINATOR_ID_TYPE", "int")
    with pytest.raises(OSError, match="ORIGINATOR_ID_TYPE"):
        Application[UUID]()
    monkeypatch.setenv("ORIGINATOR_ID_TYPE", "text")
    with Application[UUID]() as app:
        assert app.factory.datastore.durability == "nosync"
        assert app.factory.datastore.originator_id_type == "text"
        with pytest.raises(OperationalError, match="durability"):
            LmdbDatastore(environ, durability="sync")


def test_create_table_off_needs_an_existing_store(environ, monkeypatch):
    monkeypatch.setenv("CREATE_TABLE", "no")
    with pytest.raises(OperationalError, match="CREATE_TABLE"):
        Application[UUID]()
    assert not environ.exists()
    monkeypatch.setenv("CREATE_TABLE", "yes")
    with Application[UUID]() as app:
        counter = Counter()
        app.save(counter)
    monkeypatch.setenv("CREATE_TABLE", "no")
    with Application[UUID]() as app:
        assert app.repository.get(counter.id).id == counter.id


def test_module_has_exactly_one_factory_and_a_closed_datastore_refuses_work(tmp_path):
    factory = InfrastructureFactory.construct(
        Environment("x", {"PERSISTENCE_MODULE": MODULE, "AETHER_FAST_PATH": str(tmp_path)}))
    assert type(factory) is LmdbFactory
    recorder = factory.application_recorder()
    factory.close()
    factory.close()
    assert factory.datastore.closed
    with pytest.raises(Exception) as info:
        recorder.insert_events([stored(uuid4(), 1)])
    assert type(info.value).__module__ == "eventsourcing.persistence"


def test_bank_account_balance_survives_snapshots_in_one_store(environ):
    app = es_application.BankAccounts(env={"IS_SNAPSHOTTING_ENABLED": "y"})
    try:
        account = app.open_account("Bob", "bob@example.com")
        for cents in range(1, 21):
            app.credit_account(account, Decimal(cents) / 100)
            if cents % 7 == 0:
                app.take_snapshot(account)
        assert app.get_balance(account) == Decimal("2.10")
        assert [s.originator_version for s in app.snapshots.get(account)] == [8, 15]
        assert app.recorder.max_notification_id() == 21          # snapshots are not notifications
    finally:
        app.close()


def test_a_forked_child_must_open_the_store_anew(tmp_path):
    recorder = LmdbApplicationRecorder(LmdbDatastore(tmp_path / "s"))
    recorder.insert_events([stored(uuid4(), 1)])
    pid = os.fork()
    if pid == 0:       # the child: the inherited recorder refuses, a new datastore works
        code = 1
        try:
            try:
                recorder.max_notification_id()
                code = 2
            except InterfaceError:
                again = LmdbApplicationRecorder(LmdbDatastore(tmp_path / "s"))
                code = 0 if again.insert_events([stored(uuid4(), 1)]) == [2] else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert recorder.max_notification_id() == 2
    recorder.datastore.close()


def test_bench_reports_every_workload(tmp_path):
    out = tmp_path / "out.txt"
    with out.open("w") as f:
        result = main_bench_eventsourcing(
            EsConfig(aggregates=20, per_call=5, big_aggregate=300, page=7, saves=8, threads=2, repeats=1),
            tmp=str(tmp_path), out=f)
    keys = {row["key"] for row in result["workloads"]}
    assert keys == {"es/insert_events/sqlite", "es/insert_events/popo", "es/select_events/sqlite",
                    "es/select_notifications/sqlite", "es/app_1/sqlite", "es/app_n/sqlite"}
    for row in result["workloads"]:
        assert row["aether_fast"] > 0 and row["baseline_rate"] > 0 and isinstance(row["met"], bool), row
        assert row["workload"] in out.read_text()
    assert all(len(rates) >= 2 for rates in result["rates"].values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]     # every store removed
