"""The local event bus: matching and filters, delivery modes, overflow policies, metrics,
and store notifications. No test sleeps or asserts on time: waits are bounded and
threads hand over through the bus itself."""

from __future__ import annotations

import asyncio
import collections
import logging
import pickle
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aether_fast import Event, VersionConflictError
from aether_fast.bus import (
    BusClosedError,
    BusMetrics,
    BusSubscription,
    EventBus,
    PublishTimeoutError,
    ReceiveTimeoutError,
    SubscriberOverflowError,
)
from aether_fast.errors import InvalidInputError, InvalidNamespaceError, InvalidTypeError
from aether_fast.notifications import (
    EVENT_STORED,
    VERSION_CONFLICT,
    EventStored,
    NotifyingStore,
    VersionConflict,
)

WAIT = 10.0   # upper bound of any wait for another thread; never reached when things work


def ev(event_type="OrderPlaced", actor="order-1", version=1, **kw) -> Event:
    return Event(event_type=event_type, actor_id=actor, version=version, **kw)


def run_thread(target, *args) -> threading.Thread:
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t


@pytest.fixture
def bus():
    b = EventBus()
    yield b
    b.close()


# -- namespaces and filters -------------------------------------------------------------------------


def test_exact_subscribers_only_get_their_namespace(bus):
    a = bus.subscribe("tenant-a")
    b = bus.subscribe("tenant-b")
    bus.publish("tenant-a", ev(version=1))
    bus.publish("tenant-b", ev(version=2))
    bus.publish("tenant-a.sub", ev(version=3))
    assert [e.version for e in a.drain()] == [1]
    assert [e.version for e in b.drain()] == [2]


def test_wildcard_subscriptions_follow_nats_tokens(bus):
    star = bus.subscribe("tenant.*", with_namespace=True)
    rest = bus.subscribe("tenant.>", with_namespace=True)
    everything = bus.subscribe(">", with_namespace=True)
    for ns in ("tenant", "tenant.a", "tenant.a.b", "tenant-a", "other.a"):
        bus.publish(ns, ev())
    assert [ns for ns, _ in star.drain()] == ["tenant.a"]
    assert [ns for ns, _ in rest.drain()] == ["tenant.a", "tenant.a.b"]
    assert [ns for ns, _ in everything.drain()] == ["tenant", "tenant.a", "tenant.a.b", "tenant-a", "other.a"]


def test_aether_style_prefix_wildcard_is_refused_with_a_clear_error(bus):
    with pytest.raises(InvalidNamespaceError, match="whole tokens"):
        bus.subscribe("tenant-*")
    assert bus.metrics().subscribe_errors == {"tenant-*": 1}


@pytest.mark.parametrize("namespace", ["a.*", ">", "a..b", "", "a b", "x" * 201])
def test_publish_needs_a_concrete_valid_namespace(bus, namespace):
    with pytest.raises(InvalidNamespaceError):
        bus.publish(namespace, ev())
    assert bus.metrics().events_published == {}


def test_publish_type_errors(bus):
    with pytest.raises(InvalidTypeError, match="publish takes an Event"):
        bus.publish("a", {"not": "an event"})
    with pytest.raises(InvalidTypeError):
        bus.publish(3, ev())
    with pytest.raises(InvalidTypeError, match=r"events\[1\]"):
        bus.publish_many("a", [ev(), "nope"])


def test_event_types_are_or_ed_and_and_ed_with_actor_pattern(bus):
    types = bus.subscribe("shop", event_types=["OrderPlaced", "OrderPaid"])
    actors = bus.subscribe("shop", actor_pattern="order.*")
    both = bus.subscribe("shop", event_types={"OrderPaid"}, actor_pattern="order.>")
    samples = [
        ev("OrderPlaced", "order.1"), ev("OrderPaid", "order.2"), ev("OrderShipped", "order.3"),
        ev("OrderPaid", "customer.1"), ev("OrderPaid", "order.4.line"), ev("OrderPlaced", "order"),
    ]
    bus.publish_many("shop", samples)
    assert [(e.event_type, e.actor_id) for e in types.drain()] == [
        ("OrderPlaced", "order.1"), ("OrderPaid", "order.2"), ("OrderPaid", "customer.1"),
        ("OrderPaid", "order.4.line"), ("OrderPlaced", "order")]
    assert [e.actor_id for e in actors.drain()] == ["order.1", "order.2", "order.3"]
    assert [e.actor_id for e in both.drain()] == ["order.2", "order.4.line"]


@pytest.mark.parametrize("kwargs, error", [
    ({"event_types": []}, InvalidInputError),
    ({"event_types": "OrderPlaced"}, InvalidTypeError),
    ({"event_types": [""]}, InvalidInputError),
    ({"event_types": [3]}, InvalidInputError),
    ({"actor_pattern": "order-*"}, InvalidNamespaceError),
    ({"actor_pattern": ""}, InvalidNamespaceError),
    ({"buffer": 0}, InvalidInputError),
    ({"buffer": True}, InvalidTypeError),
    ({"overflow": "drop"}, InvalidInputError),
    ({"block_timeout": -1}, InvalidInputError),
    ({"callback": 3}, InvalidTypeError),
    ({"callback": print, "overflow": "error"}, InvalidInputError),
])
def test_bad_subscribe_arguments(bus, kwargs, error):
    with pytest.raises(error):
        bus.subscribe("a", **kwargs)
    assert bus.metrics().subscribe_errors == {"a": 1}
    assert bus.metrics().active_subscriptions == {}


# -- callbacks --------------------------------------------------------------------------------------


def test_callbacks_run_in_the_publisher_thread_in_order(bus):
    seen = []
    bus.subscribe("a", callback=lambda e: seen.append((threading.get_ident(), e.version)))
    bus.subscribe("a", callback=lambda ns, e: seen.append((ns, e.version)), with_namespace=True)

    def publish():
        bus.publish_many("a", [ev(version=v) for v in (1, 2)])

    t = run_thread(publish)
    t.join(WAIT)
    assert seen == [(t.ident, 1), ("a", 1), (t.ident, 2), ("a", 2)]


def test_a_failing_callback_is_logged_and_counted_and_others_still_receive(bus, caplog):
    def boom(e):
        raise RuntimeError("boom")

    got = []
    bad = bus.subscribe("a", callback=boom)
    bus.subscribe("a", callback=got.append)
    with caplog.at_level(logging.ERROR, logger="aether_fast.bus"):
        bus.publish("a", ev())
    assert len(got) == 1
    assert bad.callback_errors == 1 and bad.received == 1
    assert bus.metrics().callback_errors == {"a": 1}
    assert "boom" in caplog.text


def test_callback_subscription_has_no_buffer(bus):
    sub = bus.subscribe("a", callback=lambda e: None)
    assert sub.buffer == 0 and sub.pending == 0
    with pytest.raises(InvalidInputError):
        sub.get(timeout=0)


def test_callback_may_unsubscribe_and_publish_reentrantly(bus):
    got = []

    def once(e):
        got.append(e.version)
        sub.close()
        bus.publish("b", e)

    sub = bus.subscribe("a", callback=once)
    other = bus.subscribe("b")
    bus.publish("a", ev(version=1))
    bus.publish("a", ev(version=2))
    assert got == [1]
    assert [e.version for e in other.drain()] == [1]


# -- blocking iteration -------------------------------------------------------------------------------


def test_get_times_out_and_iter_ends_on_timeout(bus):
    sub = bus.subscribe("a")
    with pytest.raises(ReceiveTimeoutError) as exc:
        sub.get(timeout=0)
    assert isinstance(exc.value, TimeoutError)
    bus.publish("a", ev())
    assert len(list(sub.iter(timeout=0))) == 1


def test_blocking_iterator_gets_everything_from_another_thread_then_ends_on_close(bus):
    sub = bus.subscribe("a", buffer=4)   # small: the publisher waits for room (backpressure)

    def produce():
        for v in range(1, 501):
            bus.publish("a", ev(version=v))
        sub.close()

    t = run_thread(produce)
    versions = [e.version for e in sub]
    t.join(WAIT)
    assert versions == list(range(1, 501))
    assert sub.dropped == 0 and sub.closed
    with pytest.raises(BusClosedError):
        sub.get(timeout=0)


def test_close_wakes_a_blocked_reader(bus):
    sub = bus.subscribe("a")
    result = []
    started = threading.Event()

    def read():
        started.set()
        try:
            sub.get(timeout=WAIT)
        except BusClosedError as e:
            result.append(e)

    t = run_thread(read)
    started.wait(WAIT)
    sub.close()
    t.join(WAIT)
    assert not t.is_alive() and len(result) == 1


def test_events_buffered_before_close_stay_readable(bus):
    sub = bus.subscribe("a")
    bus.publish_many("a", [ev(version=1), ev(version=2)])
    bus.unsubscribe(sub)
    bus.publish("a", ev(version=3))
    assert [e.version for e in sub] == [1, 2]
    assert bus.metrics().active_subscriptions == {}


# -- overflow policies ------------------------------------------------------------------------------


def test_drop_newest_and_drop_oldest_count_every_drop_per_namespace(bus):
    newest = bus.subscribe("t.*", buffer=2, overflow="drop_newest", with_namespace=True)
    oldest = bus.subscribe("t.*", buffer=2, overflow="drop_oldest", with_namespace=True)
    bus.publish("t.a", ev(version=1))
    bus.publish("t.b", ev(version=2))
    bus.publish("t.a", ev(version=3))
    bus.publish("t.b", ev(version=4))
    assert [(ns, e.version) for ns, e in newest.drain()] == [("t.a", 1), ("t.b", 2)]
    assert [(ns, e.version) for ns, e in oldest.drain()] == [("t.a", 3), ("t.b", 4)]
    assert newest.dropped == oldest.dropped == 2
    assert newest.dropped_by_namespace == {"t.a": 1, "t.b": 1}
    assert oldest.dropped_by_namespace == {"t.a": 1, "t.b": 1}
    m = bus.metrics()
    assert m.events_dropped == {"t.a": 2, "t.b": 2}
    assert m.events_received == {"t.a": 1 + 2, "t.b": 1 + 2}   # drop_oldest took every new event
    assert m.publish_errors == {"t.a": 0, "t.b": 0}


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["drop_oldest", "drop_newest", "error"]), st.integers(1, 40),
       st.lists(st.integers(0, 30), max_size=30))
def test_ring_buffer_agrees_with_a_deque_model(overflow, size, steps):
    """Bursts of publishes then reads, so the ring wraps and grows; every policy."""
    with EventBus() as b:
        sub = b.subscribe("a", buffer=size, overflow=overflow)
        model: collections.deque = collections.deque()
        dropped = 0
        version = 0
        for i, n in enumerate(steps):
            if i % 2 == 0:
                for _ in range(n):
                    version += 1
                    if len(model) < size:
                        model.append(version)
                    elif overflow == "drop_oldest":
                        model.popleft()
                        model.append(version)
                        dropped += 1
                    else:
                        dropped += 1
                    try:
                        b.publish("a", ev(version=version))
                    except SubscriberOverflowError:
                        assert overflow == "error"
            else:
                for _ in range(min(n, len(model))):
                    assert sub.get(timeout=0).version == model.popleft()
            assert sub.pending == len(model) and sub.dropped == dropped
        assert [e.version for e in sub.drain()] == list(model)


def test_error_policy_raises_after_delivering_to_the_others(bus):
    strict = bus.subscribe("a", buffer=1, overflow="error")
    other = bus.subscribe("a")
    bus.publish("a", ev(version=1))
    with pytest.raises(SubscriberOverflowError) as exc:
        bus.publish("a", ev(version=2))
    assert not isinstance(exc.value, TimeoutError)
    assert exc.value.missed == {strict: 1} and exc.value.namespace == "a"
    assert [e.version for e in other.drain()] == [1, 2]
    assert [e.version for e in strict.drain()] == [1]
    assert strict.dropped == 1
    m = bus.metrics()
    assert m.events_dropped == {"a": 1} and m.publish_errors == {"a": 1}


def test_block_times_out_with_a_counted_drop(bus):
    sub = bus.subscribe("a", buffer=1, block_timeout=0)
    bus.publish("a", ev(version=1))
    with pytest.raises(PublishTimeoutError) as exc:
        bus.publish("a", ev(version=2))
    assert isinstance(exc.value, TimeoutError) and isinstance(exc.value, SubscriberOverflowError)
    assert exc.value.missed == {sub: 1}
    with pytest.raises(PublishTimeoutError) as exc:
        bus.publish_many("a", [ev(version=v) for v in (3, 4, 5)])
    assert exc.value.missed == {sub: 3}
    assert sub.dropped == 4 and [e.version for e in sub.drain()] == [1]
    assert bus.metrics().events_dropped == {"a": 4}
    assert bus.metrics().publish_errors == {"a": 2}


def test_block_waits_for_room_then_delivers(bus):
    sub = bus.subscribe("a", buffer=1, block_timeout=None)
    bus.publish("a", ev(version=1))
    done = threading.Event()

    def publish_second():
        bus.publish("a", ev(version=2))   # waits: the buffer is full
        done.set()

    t = run_thread(publish_second)
    assert sub.get(timeout=WAIT).version == 1
    assert sub.get(timeout=WAIT).version == 2
    t.join(WAIT)
    assert done.is_set() and sub.dropped == 0


def test_close_releases_a_blocked_publisher_without_counting_a_drop(bus):
    sub = bus.subscribe("a", buffer=1, block_timeout=None)
    bus.publish("a", ev(version=1))
    waiting = threading.Event()
    out = []

    def publish_second():
        waiting.set()
        bus.publish("a", ev(version=2))
        out.append("returned")

    t = run_thread(publish_second)
    waiting.wait(WAIT)
    # the publisher may or may not be inside its wait yet; either way close must free it
    sub.close()
    t.join(WAIT)
    assert out == ["returned"] and sub.dropped == 0


def test_default_is_block_with_a_timeout():
    with EventBus() as b:
        sub = b.subscribe("a")
        assert sub.overflow == "block" and sub.block_timeout == 5.0 and sub.buffer == 1024
        b.publish_many("a", [ev(version=v) for v in range(1, 1025)])   # the ring grows to the limit
        assert sub.pending == 1024 and [e.version for e in sub.drain()] == list(range(1, 1025))
    with EventBus(buffer=3, overflow="drop_oldest", block_timeout=None) as b:
        sub = b.subscribe("a")
        assert (sub.buffer, sub.overflow, sub.block_timeout) == (3, "drop_oldest", None)


# -- asyncio --------------------------------------------------------------------------------------------


def test_async_iteration_with_a_publisher_thread(bus):
    sub = bus.subscribe("a", buffer=8)

    async def consume():
        t = run_thread(produce)
        got = [e.version async for e in sub]
        t.join(WAIT)
        return got

    def produce():
        for v in range(1, 1001):
            bus.publish("a", ev(version=v))
        sub.close()

    assert asyncio.run(asyncio.wait_for(consume(), WAIT)) == list(range(1, 1001))
    assert sub.dropped == 0


def test_async_iteration_with_a_publisher_on_the_same_loop(bus):
    subs = [bus.subscribe("a", buffer=100) for _ in range(3)]

    async def consume(sub):
        return [e.version async for e in sub]

    async def produce():
        for v in range(1, 1001):
            bus.publish("a", ev(version=v))
            if v % 50 == 0:
                await asyncio.sleep(0)
        for s in subs:
            s.close()

    async def main():
        return await asyncio.gather(produce(), *(consume(s) for s in subs))

    results = asyncio.run(asyncio.wait_for(main(), WAIT))
    assert results[1:] == [list(range(1, 1001))] * 3


def test_block_refuses_at_once_when_the_reader_loop_is_the_publisher_thread(bus):
    sub = bus.subscribe("a", buffer=1, block_timeout=None)

    async def main():
        reader = asyncio.ensure_future(sub.aget())
        await asyncio.sleep(0)            # the reader now waits on this loop
        bus.publish("a", ev(version=1))   # fills the buffer (and wakes the reader)
        with pytest.raises(SubscriberOverflowError) as exc:
            bus.publish("a", ev(version=2))   # waiting here would deadlock the loop
        assert not isinstance(exc.value, TimeoutError)
        return (await reader).version

    assert asyncio.run(asyncio.wait_for(main(), WAIT)) == 1
    assert sub.dropped == 1


def test_aget_timeout_close_and_cancellation(bus):
    sub = bus.subscribe("a")

    async def main():
        with pytest.raises(ReceiveTimeoutError):
            await sub.aget(timeout=0)
        task = asyncio.ensure_future(sub.aget())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        bus.publish("a", ev(version=7))   # not lost by the cancelled reader
        assert (await sub.aget(timeout=WAIT)).version == 7
        waiter = asyncio.ensure_future(sub.aget())
        await asyncio.sleep(0)
        sub.close()
        with pytest.raises(BusClosedError):
            await waiter
        assert [e async for e in sub] == []

    asyncio.run(asyncio.wait_for(main(), WAIT))


def test_async_reader_woken_from_another_thread(bus):
    sub = bus.subscribe("a")

    async def main():
        loop = asyncio.get_running_loop()
        pending = asyncio.ensure_future(sub.aget(timeout=WAIT))
        await asyncio.sleep(0)
        await loop.run_in_executor(None, bus.publish, "a", ev(version=3))
        return (await pending).version

    assert asyncio.run(main()) == 3


# -- many threads ------------------------------------------------------------------------------------


def test_concurrent_publishers_and_subscribers_lose_nothing(bus):
    keep = bus.subscribe("load.>", buffer=64)
    counted = []
    bus.subscribe("load.*", callback=counted.append)
    per_thread, threads = 500, 4

    def publish(i):
        for v in range(1, per_thread + 1):
            bus.publish(f"load.{i}", ev(actor=f"a{i}", version=v))

    def churn():
        for _ in range(200):
            bus.subscribe("load.0", overflow="drop_newest", buffer=1).close()

    workers = [run_thread(publish, i) for i in range(threads)] + [run_thread(churn)]
    got = []
    for _ in range(per_thread * threads):
        got.append(keep.get(timeout=WAIT))
    for t in workers:
        t.join(WAIT)
    assert len(counted) == per_thread * threads
    for i in range(threads):
        assert [e.version for e in got if e.actor_id == f"a{i}"] == list(range(1, per_thread + 1))
    assert keep.dropped == 0
    m = bus.metrics()
    assert m.total("events_published") == per_thread * threads
    assert m.active_subscriptions == {"load.>": 1, "load.*": 1}


# -- metrics and lifecycle ----------------------------------------------------------------------------


def test_metrics_names_and_prometheus_text(bus):
    a = bus.subscribe("x.*")
    bus.subscribe("x.*", callback=lambda e: None)
    bus.subscribe("y")
    bus.publish("x.1", ev())
    bus.publish_many("x.2", [ev(), ev()])
    bus.publish("z", ev())
    m = bus.metrics()
    assert isinstance(m, BusMetrics)
    assert m.events_published == {"x.1": 1, "x.2": 2, "z": 1}
    assert m.events_received == {"x.1": 2, "x.2": 4, "z": 0}
    assert m.active_subscriptions == {"x.*": 2, "y": 1}
    assert m.total("events_received") == 6
    text = m.to_prometheus()
    assert 'aether_events_published_total{namespace="x.2"} 2' in text
    assert 'aether_active_subscriptions{pattern="x.*"} 2' in text
    assert "# TYPE aether_events_dropped_total counter" in text
    a.close()
    a.close()
    assert bus.metrics().active_subscriptions == {"x.*": 1, "y": 1}
    assert len(bus.subscriptions()) == 2


def test_closed_bus_refuses_publish_and_subscribe():
    b = EventBus()
    sub = b.subscribe("a")
    b.publish("a", ev())
    b.close()
    b.close()
    assert sub.closed and b.closed
    with pytest.raises(BusClosedError):
        b.publish("a", ev())
    with pytest.raises(BusClosedError):
        b.publish("new", ev())
    with pytest.raises(BusClosedError):
        b.subscribe("a")
    assert len(sub.drain()) == 1
    assert repr(b) == "EventBus(closed)"


def test_subscription_repr_and_attributes(bus):
    sub = bus.subscribe("a.*", event_types=["T"], actor_pattern="x.>", buffer=5)
    assert isinstance(sub, BusSubscription)
    assert sub.namespace_pattern == "a.*" and sub.event_types == frozenset({"T"})
    assert sub.actor_pattern == "x.>" and sub.callback is None and not sub.with_namespace
    assert "a.*" in repr(sub) and "0/5 buffered" in repr(sub)
    with sub:
        pass
    assert sub.closed


def test_overflow_errors_pickle():
    err = PublishTimeoutError("m", "ns", {})
    again = pickle.loads(pickle.dumps(err))
    assert isinstance(again, PublishTimeoutError) and again.namespace == "ns"


# -- store notifications -------------------------------------------------------------------------------


@pytest.fixture
def notified(store):
    bus = EventBus()
    sub = bus.subscribe(store.namespace)
    yield NotifyingStore(store, bus), sub
    bus.close()


def test_event_stored_after_each_successful_save(notified):
    ns_store, sub = notified
    e = ev(actor="order-9", version=3, metadata={"correlationId": "c-1"})
    position = ns_store.save_event(e)
    (notice,) = sub.drain()
    assert notice.event_type == EVENT_STORED and notice.actor_id == "order-9" and notice.version == 3
    stored = EventStored.from_event(notice)
    assert stored == EventStored(e.id, "order-9", 3, position, e.timestamp)
    assert notice.timestamp_ns == e.timestamp_ns
    assert notice.data["timestamp"] == e.to_dict()["timestamp"]
    assert notice.causation_id == e.id and notice.correlation_id == "c-1"


def test_version_conflict_notice_and_no_event_stored(notified):
    ns_store, sub = notified
    ns_store.save_event(ev(version=1))
    sub.drain()
    with pytest.raises(VersionConflictError):
        ns_store.save_event(ev(version=1))
    with pytest.raises(VersionConflictError):
        ns_store.append("order-1", [ev(version=5)], expected_version=3)
    notices = sub.drain()
    assert [n.event_type for n in notices] == [VERSION_CONFLICT, VERSION_CONFLICT]
    assert VersionConflict.from_event(notices[0]) == VersionConflict("order-1", 1, 1)
    assert VersionConflict.from_event(notices[1]).current_version == 1
    assert ns_store.get_latest_version("order-1") == 1


def test_append_announces_every_event_in_order(notified):
    ns_store, sub = notified
    events = [ev(actor="a", version=v) for v in (1, 2, 3)]
    positions = ns_store.append("a", events)
    got = [EventStored.from_event(n) for n in sub.drain()]
    assert [(s.event_id, s.version, s.position) for s in got] == [
        (e.id, e.version, p) for e, p in zip(events, positions)]


def test_transaction_announces_after_commit_and_nothing_on_rollback(notified):
    ns_store, sub = notified
    with ns_store.transaction():
        ns_store.save_event(ev(actor="a", version=1))
        ns_store.save_event(ev(actor="b", version=1))
        assert sub.pending == 0            # not committed yet
    assert [n.actor_id for n in sub.drain()] == ["a", "b"]
    with pytest.raises(RuntimeError), ns_store.transaction():
        ns_store.save_event(ev(actor="c", version=1))
        raise RuntimeError("roll back")
    assert sub.drain() == []
    assert ns_store.get_latest_version("c") == 0


def test_notifying_store_delegates_and_uses_the_store_namespace(store):
    bus = EventBus()
    wrapped = NotifyingStore(store, bus)
    assert wrapped.namespace == store.namespace
    wrapped.save_event(ev())
    assert [e.version for e in wrapped.get_events("order-1")] == [1]
    assert wrapped.last_position() == 1
    other = NotifyingStore(store, bus, namespace="audit.stores")
    sub = bus.subscribe("audit.>")
    other.save_event(ev(version=2))
    assert len(sub.drain()) == 1
    with pytest.raises(InvalidNamespaceError):
        NotifyingStore(store, bus, namespace="a.*")
    with pytest.raises(InvalidTypeError):
        NotifyingStore(store, object())
    bus.close()


def test_undeliverable_notice_is_counted_logged_and_does_not_fail_the_save(store, caplog):
    bus = EventBus()
    full = bus.subscribe(store.namespace, buffer=1, overflow="error")
    wrapped = NotifyingStore(store, bus)
    wrapped.save_event(ev(version=1))
    with caplog.at_level(logging.WARNING, logger="aether_fast.notifications"):
        assert wrapped.save_event(ev(version=2)) == 2
    assert "not delivered" in caplog.text
    assert full.dropped == 1
    bus.close()
    assert wrapped.save_event(ev(version=3)) == 3   # a closed bus does not fail the store
