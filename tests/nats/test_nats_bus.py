"""NatsEventBus against a real nats-server (the ``nats_server`` fixture, one per test).

Every wait is for a condition with a deadline: ``aget(timeout=...)``, or an end marker
published after the events under test (NATS delivers to one subscription in publish order,
so once the marker is read every earlier event has been delivered or never will be).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

import pytest

from aether_fast import Event, InvalidInputError, InvalidNamespaceError
from aether_fast.bus import BusClosedError, SubscriberOverflowError
from aether_fast.nats.bus import NatsBusError, NatsEventBus, NatsSubscription, flush_nats

nats = pytest.importorskip("nats", reason="nats-py not installed: pip install 'aether_fast[nats]'")

TEST_TIMEOUT = 20.0
WAIT = 10.0
EVENT_FIELDS = {"id", "eventType", "actorId", "commandId", "version", "data", "dataBase64", "metadata", "timestamp"}


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, TEST_TIMEOUT))


def make_bus_at(url: str, **options: Any) -> NatsEventBus:
    return NatsEventBus(servers=url, connect_timeout=5, reconnect_time_wait=0.05, **options)


def make_bus(server, **options: Any) -> NatsEventBus:
    return make_bus_at(server.url, **options)


def ev(actor: str = "order.1", event_type: str = "OrderPlaced", version: int = 1, **data: Any) -> Event:
    return Event(event_type=event_type, actor_id=actor, version=version, data=data)


async def receive(sub: NatsSubscription, count: int) -> list[Event]:
    return [await sub.aget(timeout=WAIT) for _ in range(count)]


async def wait_until(condition, what: str, timeout: float = WAIT) -> None:
    """Poll ``condition()`` (yielding to the loop) until true, at most ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def test_two_buses_on_two_connections_see_each_others_events_with_filters(nats_server):
    async def main() -> None:
        async with make_bus(nats_server) as a, make_bus(nats_server) as b:
            assert a.node_id != b.node_id
            b_all = await b.subscribe("tenant-a")
            b_placed = await b.subscribe("tenant-a", event_types=["OrderPlaced"])
            b_orders = await b.subscribe("tenant-a", actor_pattern="order.*")
            b_both = await b.subscribe("tenant-a", event_types=["OrderPlaced"], actor_pattern="order.*")
            b_other = await b.subscribe("tenant-b")
            a_all = await a.subscribe("tenant-a")
            await b.flush()
            sent = [ev("order.1", "OrderPlaced", 1, total=42), ev("order.1", "OrderPaid", 2),
                    ev("invoice.7", "OrderPlaced", 1), ev("order.2.x", "OrderPlaced", 1), ev("order.2", "OrderPlaced", 1)]
            for e in sent:
                await a.publish("tenant-a", e)
            assert await receive(b_all, len(sent)) == sent
            assert a_all.drain() == sent                 # the local subscriber, once each
            # same pattern, same NATS subscription: the filtered ones got theirs by now
            assert b_placed.drain() == [sent[0], sent[2], sent[3], sent[4]]
            assert b_orders.drain() == [sent[0], sent[1], sent[4]]
            assert b_both.drain() == [sent[0], sent[4]]
            assert b_other.pending == 0
            assert b_all.drain() == []                   # and nothing twice
            # and the other way round
            await b.publish("tenant-b", ev("x", "Y", 3, n=1))
            got = await b_other.aget(timeout=WAIT)
            assert got.data == {"n": 1}
            assert a_all.drain() == []
            assert a.metrics().events_published == {"tenant-a": len(sent)}
            assert b.metrics().events_received["tenant-a"] == len(sent) + 4 + 3 + 2

    run(main())


def test_wildcard_patterns_map_to_nats_wildcards(nats_server):
    patterns = ["tenant.*", "tenant.>", ">", "tenant.a", "*.a.*"]
    namespaces = ["tenant.a", "tenant.a.x", "tenant.b", "other", "x.a.y"]
    expected = {
        "tenant.*": ["tenant.a", "tenant.b"],
        "tenant.>": ["tenant.a", "tenant.a.x", "tenant.b"],
        ">": namespaces,
        "tenant.a": ["tenant.a"],
        "*.a.*": ["tenant.a.x", "x.a.y"],
    }

    async def main() -> None:
        async with make_bus(nats_server) as a, make_bus(nats_server) as b:
            remote = {p: await b.subscribe(p, with_namespace=True) for p in patterns}
            local = {p: await a.subscribe(p, with_namespace=True) for p in patterns}
            await b.flush()
            for i, ns in enumerate(namespaces):
                await a.publish(ns, ev(version=i + 1))
            marker = ev("end", "End")
            await a.publish("tenant.a.x", marker)      # matched by tenant.>, > and *.a.*
            for subs in (remote, local):
                for p, sub in subs.items():
                    got = await receive(sub, len(expected[p]))
                    assert [ns for ns, _ in got] == expected[p], p
                    if p in ("tenant.>", ">", "*.a.*"):
                        assert await sub.aget(timeout=WAIT) == ("tenant.a.x", marker)
                    assert sub.drain() == [], p
            assert b.nats_patterns() == {p: 1 for p in patterns}

    run(main())


def _connection_subjects(server, name: str) -> list[str]:
    conns = [c for c in server.monitor("/connz?subs=1")["connections"] if c.get("name") == name]
    assert len(conns) == 1, conns
    return sorted(conns[0].get("subscriptions_list", []))


def test_one_nats_subscription_per_pattern_reference_counted(nats_server):
    async def main() -> None:
        async with make_bus(nats_server, name="refcount-bus") as bus, make_bus(nats_server) as other:
            s1 = await bus.subscribe("a.*")
            s2 = await bus.subscribe("a.*", event_types=["T"])
            s3 = await bus.subscribe("a.>")
            await bus.flush()
            subjects = await asyncio.to_thread(_connection_subjects, nats_server, "refcount-bus")
            assert subjects == ["aether.events.a.*", "aether.events.a.>"]
            assert bus.nats_patterns() == {"a.*": 2, "a.>": 1}

            await bus.unsubscribe(s1)
            await bus.flush()
            assert await asyncio.to_thread(_connection_subjects, nats_server, "refcount-bus") == subjects
            assert bus.metrics().active_subscriptions == {"a.*": 1, "a.>": 1}

            await bus.unsubscribe(s2)
            await bus.flush()
            assert await asyncio.to_thread(_connection_subjects, nats_server, "refcount-bus") == ["aether.events.a.>"]
            assert bus.nats_patterns() == {"a.>": 1}
            assert bus.metrics().active_subscriptions == {"a.>": 1}

            # events still reach a.> but not the closed subscriptions
            await other.publish("a.b", ev())
            assert (await s3.aget(timeout=WAIT)).event_type == "OrderPlaced"
            assert s1.drain() == [] and s2.drain() == []

            # a new subscriber of the pattern subscribes on NATS again
            s4 = await bus.subscribe("a.*")
            await bus.flush()
            assert await asyncio.to_thread(_connection_subjects, nats_server, "refcount-bus") == subjects
            await other.publish("a.c", ev(version=2))
            assert (await s4.aget(timeout=WAIT)).version == 2

            # close() from another thread releases the pattern through the loop
            await asyncio.to_thread(s4.close)
            await wait_until(lambda: "a.*" not in bus.nats_patterns(), "the release of a.*")
            await bus.flush()
            assert await asyncio.to_thread(_connection_subjects, nats_server, "refcount-bus") == ["aether.events.a.>"]

    run(main())


def test_own_echoes_are_delivered_once(nats_server):
    async def main() -> None:
        async with make_bus(nats_server) as a, make_bus(nats_server) as b:
            mine = await a.subscribe("t")
            wild = await a.subscribe(">")
            await a.flush()
            sent = [ev(version=v) for v in (1, 2, 3)]
            for e in sent:
                await a.publish("t", e)
            await a.flush()                      # the server has them, and has sent the echoes
            marker = ev("end", "End")
            await b.publish("t", marker)
            assert await receive(mine, 4) == [*sent, marker]
            assert await receive(wild, 4) == [*sent, marker]
            assert mine.drain() == [] and wild.drain() == []
            assert a.metrics().events_received == {"t": 8}

    run(main())


def test_two_buses_sharing_one_connection(nats_server):
    async def main() -> None:
        nc = await nats.connect(nats_server.url, connect_timeout=5)
        try:
            x = NatsEventBus(nc)
            y = NatsEventBus(nc)
            xs = await x.subscribe("shared")
            ys = await y.subscribe("shared")
            await flush_nats(nc)
            e1 = ev(version=1)
            await x.publish("shared", e1)
            await flush_nats(nc)
            e2 = ev(version=2)
            await y.publish("shared", e2)
            assert await receive(xs, 2) == [e1, e2]       # own once (local), other's via NATS
            assert await receive(ys, 2) == [e1, e2]
            await flush_nats(nc)
            assert xs.drain() == [] and ys.drain() == []
            await x.close()
            await y.close()
            assert nc.is_connected                         # a given connection stays open
        finally:
            await nc.close()

    run(main())


GO_MESSAGE = (
    b'{"node_id":"go-node-1","namespace_id":"tenant-a","event":{"id":"0b6a4d1e-go",'
    b'"eventType":"OrderPlaced","actorId":"order-123","commandId":"","version":9007199254740993,'
    b'"data":{"total":42,"big":9007199254740993,"ratio":1.5,"items":[1,2,{"n":-3}],"note":null},'
    b'"metadata":{"correlationId":"c-1"},"timestamp":"2026-11-26T15:04:05.123456789Z"}}'
)


def test_wire_format_is_aethers_json(nats_server):
    async def main() -> None:
        async with make_bus(nats_server) as bus:
            sub = await bus.subscribe("tenant-a")
            raw = await nats.connect(nats_server.url, connect_timeout=5)
            try:
                raw_sub = await raw.subscribe("aether.events.tenant-a")
                await flush_nats(raw)
                await bus.flush()
                # a Go node's message (Go's field order; commandId empty, ints past 2**53)
                await raw.publish("aether.events.tenant-a", GO_MESSAGE)
                got = await sub.aget(timeout=WAIT)
                assert got.id == "0b6a4d1e-go" and got.event_type == "OrderPlaced" and got.actor_id == "order-123"
                assert got.version == 9007199254740993 and got.command_id is None
                assert got.data == {"total": 42, "big": 9007199254740993, "ratio": 1.5,
                                    "items": [1, 2, {"n": -3}], "note": None}
                assert type(got.data["total"]) is int and got.correlation_id == "c-1"
                assert got.timestamp_ns % 1_000_000_000 == 123456789
                assert (await raw_sub.next_msg(timeout=WAIT)).data == GO_MESSAGE

                # ours has the same shape
                mine = Event(event_type="OrderPaid", actor_id="order-123", version=10, command_id="cmd-1",
                             data={"total": 42, "big": 2**62, "nested": {"k": [1, 2]}}, metadata={"userId": "u"})
                await bus.publish("tenant-a", mine)
                import orjson

                msg = orjson.loads((await raw_sub.next_msg(timeout=WAIT)).data)
                assert list(msg) == ["node_id", "namespace_id", "event"]
                assert msg["node_id"] == bus.node_id and msg["namespace_id"] == "tenant-a"
                assert set(msg["event"]) <= EVENT_FIELDS
                assert msg["event"]["version"] == 10 and msg["event"]["data"]["big"] == 2**62
                assert msg["event"]["eventType"] == "OrderPaid" and msg["event"]["commandId"] == "cmd-1"
                assert Event.from_dict(msg["event"]) == mine
                assert sub.drain() == [mine]                     # locally once, its echo skipped
            finally:
                await raw.close()

    run(main())


def test_malformed_messages_are_counted_and_skipped(nats_server):
    bad = [
        b"not json",
        b"[1, 2]",
        b'{"node_id": "n"}',                                            # no event
        b'{"node_id": "n", "namespace_id": "tenant-a", "event": {"id": "x"}}',     # event lacks fields
        b'{"node_id": "n", "namespace_id": "other", "event": ' + GO_MESSAGE.split(b'"event":', 1)[1][:-1] + b"}",
        (b'{"node_id": "n", "event": {"id": "1", "eventType": "T", "actorId": "a", "version": "7", '
        b'"timestamp": "2026-11-26T15:04:05Z"}}'),                          # version is a string
        b"\xff\xfe",
    ]

    async def main() -> None:
        async with make_bus(nats_server) as bus:
            sub = await bus.subscribe("tenant-a")
            wild = await bus.subscribe("*")
            raw = await nats.connect(nats_server.url, connect_timeout=5)
            try:
                await bus.flush()
                for payload in bad:
                    await raw.publish("aether.events.tenant-a", payload)
                # a subject that is valid for NATS but not a namespace here
                await raw.publish("aether.events.bad@ns", GO_MESSAGE.replace(b'"tenant-a"', b'"bad@ns"'))
                await raw.publish("aether.events.tenant-a", GO_MESSAGE)
                assert (await sub.aget(timeout=WAIT)).id == "0b6a4d1e-go"
                assert (await wild.aget(timeout=WAIT)).id == "0b6a4d1e-go"
                m = bus.metrics()
                assert m.subscribe_errors == {"tenant-a": len(bad), "*": len(bad) + 1}
                assert m.events_received == {"tenant-a": 2}
                # the bus goes on working
                await raw.publish("aether.events.tenant-a", GO_MESSAGE.replace(b"0b6a4d1e-go", b"second"))
                assert (await sub.aget(timeout=WAIT)).id == "second"
            finally:
                await raw.close()

    run(main())


def test_server_restart_publishing_resumes(nats_server):
    async def main() -> None:
        async with make_bus(nats_server) as a, make_bus(nats_server) as b:
            sub = await b.subscribe("orders")
            await b.flush()
            await a.publish("orders", ev(version=1))
            assert (await sub.aget(timeout=WAIT)).version == 1

            port = nats_server.port
            await asyncio.to_thread(nats_server.kill)
            await wait_until(lambda: not a.nc.is_connected and not b.nc.is_connected, "both to see the loss")
            await asyncio.to_thread(nats_server.restart)
            assert nats_server.port == port
            await wait_until(lambda: a.nc.is_connected and b.nc.is_connected, "both to reconnect")
            await b.flush()                      # b's subscription is back on the server
            for v in (2, 3, 4):
                await a.publish("orders", ev(version=v))
            assert [e.version for e in await receive(sub, 3)] == [2, 3, 4]

    run(main())


def test_block_subscription_read_in_the_loop_loses_nothing(nats_server):
    async def main() -> None:
        async with make_bus(nats_server) as a, make_bus(nats_server, buffer=4) as b:
            sub = await b.subscribe("flow")
            await b.flush()
            n = 300
            received = []

            async def reader() -> None:
                async for e in sub:
                    received.append(e.version)
                    await asyncio.sleep(0)
                    if len(received) == n:
                        return

            task = asyncio.create_task(reader())
            await a.publish_many("flow", [ev(version=v) for v in range(1, n + 1)])
            await asyncio.wait_for(task, WAIT)
            assert received == list(range(1, n + 1))
            assert sub.dropped == 0 and b.metrics().total("events_dropped") == 0

    run(main())


def test_bad_arguments_and_states(nats_server):
    async def main() -> None:
        with pytest.raises(InvalidInputError, match="not both"):
            NatsEventBus(object(), servers=nats_server.url)
        with pytest.raises(InvalidNamespaceError, match="subject_prefix"):
            NatsEventBus(servers=nats_server.url, subject_prefix="aether.*")
        with pytest.raises(InvalidInputError, match="node_id"):
            NatsEventBus(node_id="")
        with pytest.raises(InvalidInputError, match="overflow"):
            NatsEventBus(overflow="lose")
        bus = make_bus(nats_server)
        with pytest.raises(NatsBusError, match="not connected"):
            await bus.publish("x", ev())
        await bus.connect()
        with pytest.raises(InvalidNamespaceError, match="tenant-"):
            await bus.subscribe("tenant-*")
        with pytest.raises(InvalidNamespaceError):
            await bus.publish("a.*", ev())
        with pytest.raises(InvalidInputError, match="buffer"):
            await bus.subscribe("ok", callback=print, buffer=3)
        assert bus.metrics().subscribe_errors == {"tenant-*": 1, "ok": 1}
        assert bus.nats_patterns() == {}            # a refused subscribe leaves no NATS interest
        await bus.close()
        with pytest.raises(BusClosedError):
            await bus.publish("x", ev())
        assert bus.nc.is_closed                     # its own connection is closed with it
        with pytest.raises(NatsBusError, match="could not connect"):
            await NatsEventBus(servers="nats://127.0.0.1:1", connect_timeout=1, max_reconnect_attempts=1,
                               reconnect_time_wait=0.05).connect()

    run(main())


def test_custom_subject_prefix_and_callbacks(nats_server):
    async def main() -> None:
        async with make_bus(nats_server, subject_prefix="acme.ev") as a, \
                make_bus(nats_server, subject_prefix="acme.ev") as b:
            seen: list[tuple[str, Event]] = []
            done = threading.Event()

            def callback(ns: str, e: Event) -> None:
                seen.append((ns, e))
                done.set()

            await b.subscribe("x.>", callback=callback, with_namespace=True)
            raw = await nats.connect(nats_server.url, connect_timeout=5)
            try:
                raw_sub = await raw.subscribe("acme.ev.>")
                await flush_nats(raw)
                await b.flush()
                e = ev()
                await a.publish("x.y", e)
                assert (await raw_sub.next_msg(timeout=WAIT)).subject == "acme.ev.x.y"
                await wait_until(done.is_set, "the callback")
                assert seen == [("x.y", e)]
            finally:
                await raw.close()

    run(main())


def test_flush_nats_waits_for_queued_commands(nats_server):
    """nats-py's ``nc.flush()`` PING overtakes a SUB still queued behind a busy flusher (here
    2 MB of earlier publishes), so a publish from another connection right after it can
    miss the new subscription (5 trials in 20 missed it when measured); ``flush_nats``
    does not return before the SUB is written and processed."""

    async def trial(i: int) -> bool:
        q = await nats.connect(nats_server.url, connect_timeout=5)
        p = await nats.connect(nats_server.url, connect_timeout=5)
        try:
            for _ in range(100):
                await q.publish("noise", b"x" * 20_000)
            sub = await q.subscribe(f"race.{i}")
            await flush_nats(q)
            await p.publish(f"race.{i}", b"hello")
            await flush_nats(p)
            try:
                await sub.next_msg(timeout=2)
            except nats.errors.TimeoutError:
                return False
            return True
        finally:
            await q.close()
            await p.close()

    async def main() -> list[bool]:
        return [await trial(i) for i in range(20)]

    assert run(main()) == [True] * 20


def test_messages_nats_py_drops_are_counted(nats_server):
    """A subscription nobody reads, with a tiny NATS-side queue: nats-py drops the overflow
    (slow consumer) and the bus counts every such drop, so received + dropped = published."""
    n = 50

    async def main() -> None:
        async with make_bus(nats_server) as a, make_bus(nats_server, pending_msgs_limit=5) as b:
            sub = await b.subscribe("slow", buffer=1, block_timeout=None)
            await b.flush()
            await a.publish_many("slow", [ev(version=v) for v in range(1, n + 1)])
            await a.flush()
            await wait_until(lambda: b.nc.stats["in_msgs"] == n, "every message to reach b")
            got: list[int] = []
            while len(got) + b.metrics().events_dropped.get("slow", 0) < n:
                got.append((await sub.aget(timeout=WAIT)).version)
            dropped = b.metrics().events_dropped["slow"]
            assert dropped > 0 and len(got) + dropped == n
            assert got == sorted(got) and got[0] == 1
            assert sub.dropped == 0                    # the local buffer itself dropped nothing

    run(main())


@pytest.mark.parametrize("server_args, good, bad", [
    (("--user", "alice", "--pass", "s3cret"), {"user": "alice", "password": "s3cret"},
     {"user": "alice", "password": "wrong"}),
    (("--auth", "t0ken"), {"token": "t0ken"}, {"token": "nope"}),
])
def test_connection_options_pass_through(server_args, good, bad):
    from support.nats_server import NatsServer, require_nats

    async def main(url: str) -> None:
        async with make_bus_at(url, **good) as a, make_bus_at(url, **good) as b:
            sub = await b.subscribe("auth")
            await b.flush()
            await a.publish("auth", ev())
            assert (await sub.aget(timeout=WAIT)).actor_id == "order.1"
        with pytest.raises(NatsBusError, match="could not connect"):
            await make_bus_at(url, max_reconnect_attempts=1, **bad).connect()

    with NatsServer(extra_args=server_args, binary=require_nats()) as server:
        run(main(server.url))


def test_block_subscription_read_by_a_thread_loses_nothing(nats_server):
    """Wire deliveries into a small "block" buffer read by another thread wait for room
    without blocking the loop; every event arrives, in order."""
    n = 200

    async def main() -> None:
        async with make_bus(nats_server) as a, make_bus(nats_server, buffer=2) as b:
            sub = await b.subscribe("threaded")
            await b.flush()
            got: list[int] = []
            reader = asyncio.create_task(asyncio.to_thread(
                lambda: got.extend(sub.get(timeout=WAIT).version for _ in range(n))))
            await a.publish_many("threaded", [ev(version=v) for v in range(1, n + 1)])
            await asyncio.wait_for(reader, TEST_TIMEOUT)
            assert got == list(range(1, n + 1))
            assert b.metrics().total("events_dropped") == 0 and b.metrics().total("publish_errors") == 0

    run(main())


def test_local_overflow_is_raised_after_the_event_went_out_on_nats(nats_server):
    async def main() -> None:
        async with make_bus(nats_server) as a, make_bus(nats_server) as b:
            remote = await b.subscribe("of")
            full = await a.subscribe("of", buffer=1, overflow="error")
            await b.flush()
            await a.publish("of", ev(version=1))
            with pytest.raises(SubscriberOverflowError):
                await a.publish("of", ev(version=2))
            assert [e.version for e in await receive(remote, 2)] == [1, 2]
            assert full.dropped == 1 and [e.version for e in full.drain()] == [1]
            m = a.metrics()
            assert m.events_dropped == {"of": 1} and m.publish_errors == {"of": 1}

    run(main())


def test_nats_refusals_are_errors_and_counted(nats_server):
    async def main() -> None:
        nc = await nats.connect(nats_server.url, connect_timeout=5)
        bus = NatsEventBus(nc)
        local = await bus.subscribe("gone")
        await nc.close()
        with pytest.raises(NatsBusError, match="aether.events.gone"):
            await bus.publish("gone", ev())
        assert [e.version for e in local.drain()] == [1]       # the local subscriber has it
        assert bus.metrics().publish_errors == {"gone": 1}
        with pytest.raises(NatsBusError, match="subscribe"):
            await bus.subscribe("other")
        assert bus.nats_patterns() == {"gone": 1}
        await bus.close()                                       # closing over a closed connection is fine

    run(main())


def test_tls_context_passes_through(tmp_path):
    """A server that requires TLS (a self-signed certificate made with the openssl CLI)."""
    import shutil
    import ssl
    import subprocess

    from support.nats_server import NatsServer, require_nats

    binary = require_nats()
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    context = ssl.create_default_context(cafile=str(cert))

    async def main(server: NatsServer) -> None:
        url = server.url
        async with make_bus_at(url, tls=context) as a, make_bus_at(url, tls=context) as b:
            conns = (await asyncio.to_thread(server.monitor, "/connz"))["connections"]
            assert len(conns) == 2 and all(c.get("tls_version") for c in conns), conns
            sub = await b.subscribe("secure")
            await b.flush()
            await a.publish("secure", ev())
            assert (await sub.aget(timeout=WAIT)).event_type == "OrderPlaced"

    args = ("--tls", "--tlscert", str(cert), "--tlskey", str(key))
    with NatsServer(extra_args=args, monitor=True, binary=binary) as server:
        run(main(server))
