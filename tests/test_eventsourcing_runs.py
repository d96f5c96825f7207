"""LmdbDatastore.event_runs, the native loop that turns the eventsourcing library's
StoredEvents into aether_fast Events: field by field, its runs, its ids, its errors (the
library's exception classes, messages naming the bad value), and that a refused insert
stores nothing. Real LMDB stores in temporary directories."""

from __future__ import annotations

import sys
import time
from uuid import UUID, uuid4

import pytest

if sys.version_info < (3, 11):     # the library's 9.5 line (the [eventsourcing] extra) needs 3.11
    pytest.skip("eventsourcing 9.5+ needs Python 3.11+", allow_module_level=True)

from eventsourcing.persistence import DataError, IntegrityError, StoredEvent

from aether_fast import _native
from aether_fast.errors import InvalidInputError
from aether_fast.eventsourcing import LmdbApplicationRecorder, LmdbDatastore

MAX_VERSION = 2**63 - 1


@pytest.fixture
def datastore(tmp_path):
    datastore = LmdbDatastore(tmp_path / "store")
    yield datastore
    datastore.close()


@pytest.fixture
def text_datastore(tmp_path):
    datastore = LmdbDatastore(tmp_path / "text-store", originator_id_type="text")
    yield datastore
    datastore.close()


def stored(originator_id, version, topic="topic", state=b"state") -> StoredEvent:
    return StoredEvent(originator_id=originator_id, originator_version=version, topic=topic, state=state)


def fields(runs):
    """Each run as (actor, [(type, actor, version, payload, is_bytes), ...])."""
    return [(actor, [(e.event_type, e.actor_id, e.version, e.payload, e.is_bytes) for e in events])
            for actor, events in runs]


def call_ids(runs) -> list[str]:
    return [e.id for _, events in runs for e in events]


def token_of(runs) -> str:
    """The call's id prefix: the first id is the token and "0"."""
    first = call_ids(runs)[0]
    assert first.endswith(".0"), first
    return first[:-1]


def test_interleaved_originators_make_a_run_per_change_with_every_field(datastore):
    a, b = uuid4(), uuid4()
    before = time.time_ns()
    runs = datastore.event_runs([stored(a, 0, "m:Created", b"a0"), stored(a, 1, "m:Done", b"a1"),
                                 stored(b, 0, "m:Created", b"b0"), stored(a, 2, "m:Done", b"a2")])
    after = time.time_ns()
    sa, sb = str(a), str(b)
    assert fields(runs) == [
        (sa, [("m:Created", sa, 1, b"a0", True), ("m:Done", sa, 2, b"a1", True)]),
        (sb, [("m:Created", sb, 1, b"b0", True)]),
        (sa, [("m:Done", sa, 3, b"a2", True)]),
    ]
    token = token_of(runs)
    assert call_ids(runs) == [token + str(i) for i in range(4)]
    for _, events in runs:
        for e in events:
            assert type(e.event_type) is str and type(e.actor_id) is str and type(e.payload) is bytes
            assert e.command_id is None and dict(e.metadata) == {} and e.position is None
            assert before <= e.timestamp_ns <= after
    assert token_of(datastore.event_runs([stored(a, 3)])) != token     # each call its own ids


def test_uuid_ids_in_any_form_are_one_actor_and_text_ids_stay_as_given(datastore, text_datastore):
    oid = uuid4()
    runs = datastore.event_runs([stored(oid, 0), stored(UUID(str(oid)), 1), stored(str(oid).upper(), 2)])
    assert fields(runs) == [(str(oid), [("topic", str(oid), v, b"state", True) for v in (1, 2, 3)])]
    with pytest.raises(DataError, match="'order-1' is not a UUID"):
        datastore.event_runs([stored("order-1", 0)])
    runs = text_datastore.event_runs([stored("order-1", 0), stored("order-1", 1), stored("Order-1", 0),
                                      stored(oid, 4)])
    assert fields(runs) == [
        ("order-1", [("topic", "order-1", 1, b"state", True), ("topic", "order-1", 2, b"state", True)]),
        ("Order-1", [("topic", "Order-1", 1, b"state", True)]),
        (str(oid), [("topic", str(oid), 5, b"state", True)]),
    ]


class CountingDatastore(LmdbDatastore):
    """Records each originator id it maps."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.mapped: list[object] = []

    def actor_id(self, originator_id):
        self.mapped.append(originator_id)
        return super().actor_id(originator_id)


def test_actor_id_is_called_only_when_the_originator_object_changes(tmp_path):
    datastore = CountingDatastore(tmp_path / "counting")
    try:
        a, b = uuid4(), uuid4()
        a_again = UUID(str(a))          # equal to a, another object: same actor, same run
        runs = datastore.event_runs([stored(a, 0), stored(a, 1), stored(a_again, 2), stored(b, 0),
                                     stored(b, 1), stored(a, 3)])
        assert [type(o) for o in datastore.mapped] == [UUID] * 4
        assert [o is x for o, x in zip(datastore.mapped, (a, a_again, b, a))] == [True] * 4
        assert [(actor, [e.version for e in events]) for actor, events in runs] == [
            (str(a), [1, 2, 3]), (str(b), [1, 2]), (str(a), [4])]
    finally:
        datastore.close()


class Blob(bytes):
    """A bytes subclass: stored as plain bytes."""


def test_bytearray_memoryview_and_bytes_subclass_states_become_bytes(datastore):
    oid = uuid4()
    runs = datastore.event_runs([stored(oid, 0, state=bytearray(b"ba")), stored(oid, 1, state=memoryview(b"mv")),
                                 stored(oid, 2, state=Blob(b"bl")), stored(oid, 3, state=b"")])
    assert [(e.payload, type(e.payload), e.is_bytes) for e in runs[0][1]] == [
        (b"ba", bytes, True), (b"mv", bytes, True), (b"bl", bytes, True), (b"", bytes, True)]


def test_ids_past_4096_events_in_one_call(datastore):
    a, b = uuid4(), uuid4()
    batch = [stored(a, v) for v in range(3000)] + [stored(b, v) for v in range(2500)]
    runs = datastore.event_runs(batch)
    assert [(actor, len(events)) for actor, events in runs] == [(str(a), 3000), (str(b), 2500)]
    token = token_of(runs)
    assert call_ids(runs) == [token + str(i) for i in range(5500)]
    assert [e.version for e in runs[1][1]][-2:] == [2499, 2500]


def test_highest_versions_are_accepted(datastore):
    oid = uuid4()
    runs = datastore.event_runs([stored(oid, MAX_VERSION - 2), stored(oid, MAX_VERSION - 1)])
    assert [e.version for e in runs[0][1]] == [MAX_VERSION - 1, MAX_VERSION]


A = UUID("12345678-1234-5678-1234-567812345678")

# (stored events, the library's exception class, a fragment of the message naming the value)
BAD_BATCHES = [
    ([stored(A, 0), stored(A, 1), stored(A, 1)], IntegrityError,
     f"originator '{A}': version 1 follows version 1 in one insert"),
    ([stored(A, 5), stored(A, 3)], IntegrityError, f"originator '{A}': version 3 follows version 5"),
    ([stored(A, 1), stored(UUID(str(A)), 2), stored(A, 2)], IntegrityError, "version 2 follows version 2"),
    ([stored(A, -1)], DataError, "originator_version must be >= 0, got -1"),
    ([stored(A, 3), stored(A, -2)], DataError, "originator_version must be >= 0, got -2"),
    ([stored(A, 0, state="text")], DataError, "stored event state must be bytes, got str"),
    ([stored(A, 0), stored(A, 1, state=None)], DataError, "stored event state must be bytes, got NoneType"),
    ([stored(A, "1")], DataError, "bad stored event: '<=' not supported between instances of 'str' and 'int'"),
    ([stored(A, None)], DataError, "bad stored event: '<=' not supported between instances of 'NoneType'"),
    ([stored(A, 1.5)], DataError, "version must be an int, got float: 2.5"),
    ([stored(A, MAX_VERSION)], DataError, f"version must be between 1 and {MAX_VERSION}, got {MAX_VERSION + 1}"),
    ([stored(A, 2**70)], DataError, f"got {2**70 + 1}"),
    ([stored(A, 0, topic="")], DataError, "event_type must not be empty"),
    ([stored(A, 0), stored(A, 1, topic="t" * 1025)], DataError, "event_type is 1025 bytes in UTF-8, over the limit of 1024"),
    ([stored(A, 0, topic=42)], DataError, "event_type must be a str, got int: 42"),
    ([stored(A, 0, topic="bad\ud800")], DataError, "event_type is not valid Unicode text"),
    ([stored("not-a-uuid", 0)], DataError, "originator id 'not-a-uuid' is not a UUID"),
    ([stored(A, 0), stored(7, 0)], DataError, "originator id must be a UUID or a str, got int"),
]

TEXT_BAD_BATCHES = [
    ([stored("", 0)], DataError, "actor_id must not be empty"),
    ([stored("ok", 0), stored("x" * 256, 0)], DataError, "actor_id is 256 bytes in UTF-8, over the limit of 255"),
    ([stored("ok\udfff", 0)], DataError, "actor_id is not valid Unicode text"),
]


@pytest.mark.parametrize("batch, error, message", BAD_BATCHES)
def test_bad_stored_events_raise_the_library_error_naming_the_value(datastore, batch, error, message):
    with pytest.raises(error) as caught:
        datastore.event_runs(batch)
    assert type(caught.value) is error and message in str(caught.value)


@pytest.mark.parametrize("batch, error, message", TEXT_BAD_BATCHES)
def test_bad_text_originator_ids_raise_as_event_does(text_datastore, batch, error, message):
    with pytest.raises(error) as caught:
        text_datastore.event_runs(batch)
    assert type(caught.value) is error and message in str(caught.value)


def test_errors_follow_the_order_of_event_checks(text_datastore):
    """The topic is checked before the actor, the actor before the version, and a version
    that does not grow is refused before any of them, as ``Event()`` after the run check did."""
    both = [stored("", 2**70, topic="")]
    with pytest.raises(DataError, match="event_type must not be empty"):
        text_datastore.event_runs(both)
    with pytest.raises(DataError, match="actor_id must not be empty"):
        text_datastore.event_runs([stored("", 2**70)])
    with pytest.raises(IntegrityError, match="version 1 follows version 1"):
        text_datastore.event_runs([stored("a", 1), stored("a", 1, topic="")])


def test_bool_and_int_subclass_versions_keep_their_python_meaning(datastore):
    """A version is whatever ``originator_version + 1`` gives an int for (so True is 1),
    compared with the run's last version as Python compares them."""
    oid = uuid4()
    runs = datastore.event_runs([stored(oid, True), stored(oid, 2)])
    assert [e.version for e in runs[0][1]] == [2, 3]
    with pytest.raises(IntegrityError, match="version 1 follows version True"):
        datastore.event_runs([stored(oid, True), stored(oid, 1)])


@pytest.mark.parametrize("batch, error, message", BAD_BATCHES)
def test_a_refused_insert_stores_nothing(datastore, batch, error, message):
    recorder = LmdbApplicationRecorder(datastore, "runs_events")
    good = uuid4()
    recorder.insert_events([stored(good, 0)])
    with pytest.raises(error, match="."):
        recorder.insert_events([stored(good, 1), *batch])
    assert recorder.max_notification_id() == 1
    assert recorder.select_events(good) == [stored(good, 0)]
    assert recorder.select_events(A) == []


def test_the_native_loop_refuses_a_token_that_would_make_ids_too_long():
    with pytest.raises(InvalidInputError, match="token must be ASCII of at most 236 characters"):
        _native.event_runs([], str, bytes, "t" * 237)
    with pytest.raises(InvalidInputError, match="token must be ASCII"):
        _native.event_runs([], str, bytes, "é.")
    assert _native.event_runs([], str, bytes, "t" * 236) == []


def test_any_iterable_of_stored_events_is_taken(datastore):
    oid = uuid4()
    runs = datastore.event_runs(stored(oid, v) for v in range(3))
    assert fields(runs) == [(str(oid), [("topic", str(oid), v, b"state", True) for v in (1, 2, 3)])]
    assert datastore.event_runs(()) == []
