"""JetStreamEventStore against real nats-server processes: one server and a 3-server cluster.

The shared conformance class runs through SyncJetStreamEventStore (the async store on a
background event loop), each test on a fresh namespace whose streams are deleted after it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.conformance import StoreConformance, ev
from support.nats_cluster import NatsCluster
from support.nats_server import NatsServer, require_nats

from aether_fast import (
    ActorSnapshot,
    CorruptRecordError,
    EventBus,
    InvalidInputError,
    StorageError,
    StoreClosedError,
    VersionConflictError,
)
from aether_fast._native import encode_record
from aether_fast.nats.jetstream import (
    AtomicBatchUnsupportedError,
    JetStreamConfig,
    JetStreamEventStore,
    SyncJetStreamEventStore,
    TransactionConflictError,
    actor_from_token,
    actor_token,
    stream_name,
)

_names = itertools.count(1)
BATCH_LIMIT = 3000     # the servers' atomic batch limit here (default 1000): the contract appends 1949 at once


def fresh_namespace() -> str:
    return f"t{next(_names)}-ns"


async def _raw(urls, coro_fn):
    import nats

    nc = await nats.connect(urls)
    try:
        return await coro_fn(nc)
    finally:
        await nc.close()


def raw(urls, coro_fn):
    """Run ``coro_fn(nc)`` on a fresh plain nats-py connection."""
    return asyncio.run(_raw(urls, coro_fn))


def delete_streams(urls, namespace: str) -> None:
    name = stream_name(namespace)

    async def drop(nc):
        for stream in (name, f"{name}_snapshots"):
            await nc.request(f"$JS.API.STREAM.DELETE.{stream}", b"", timeout=10)

    raw(urls, drop)


@pytest.fixture(scope="module")
def batch_conf(tmp_path_factory):
    """A server config file raising the atomic batch limit to BATCH_LIMIT."""
    path = tmp_path_factory.mktemp("conf") / "batch.conf"
    path.write_text(f"jetstream {{ limits {{ batch {{ max_msgs: {BATCH_LIMIT} }} }} }}\n")
    return str(path)


@pytest.fixture(scope="module")
def server(tmp_path_factory, batch_conf):
    require_nats()
    with NatsServer(jetstream=True, store_dir=str(tmp_path_factory.mktemp("js")),
                    extra_args=("-c", batch_conf)) as s:
        yield s


@pytest.fixture(scope="module")
def cluster(batch_conf):
    require_nats()
    with NatsCluster(extra_args=("-c", batch_conf)) as c:
        yield c


def open_store(urls, **config):
    namespace = fresh_namespace()
    config.setdefault("max_batch", BATCH_LIMIT)
    return SyncJetStreamEventStore(urls, namespace=namespace, config=JetStreamConfig(**config)), namespace


class TestJetStreamConformance(StoreConformance):
    @pytest.fixture
    def store(self, server):
        store, namespace = open_store(server.url)
        yield store
        store.close()
        delete_streams(server.url, namespace)


class TestJetStreamClusterConformance(StoreConformance):
    @pytest.fixture
    def store(self, cluster):
        store, namespace = open_store(cluster.urls, replicas=3)
        yield store
        store.close()
        delete_streams(cluster.urls, namespace)

# -- naming ------------------------------------------------------------------------------------

_actor_ids = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=100).filter(
    lambda s: len(s.encode("utf-8")) <= 255)


@settings(max_examples=300, deadline=None)
@given(_actor_ids)
def test_actor_token_round_trips_and_is_one_subject_token(actor_id):
    token = actor_token(actor_id)
    assert actor_from_token(token) == actor_id
    assert token and token.isascii() and token.isprintable()
    assert not any(c in token for c in ".*> \t\r\n")


@given(_actor_ids, _actor_ids)
def test_actor_tokens_are_distinct(a, b):
    assert (actor_token(a) == actor_token(b)) == (a == b)


def test_plain_actor_ids_are_their_own_token():
    assert actor_token("order-123") == "order-123"
    assert actor_token("order.123") == "~b3JkZXIuMTIz"
    assert actor_token("~x") != "~x"


def test_stream_names_follow_aether():
    assert stream_name("tenant-a") == "tenant_a_events"
    assert stream_name("tenant.a", "log") == "tenant_a_log"
    with pytest.raises(InvalidInputError):
        stream_name("tenant a")


def test_namespaces_sharing_a_stream_name_are_refused(server):
    with SyncJetStreamEventStore(server.url, namespace="clash-a") as a:
        a.save_event(ev("x", 1))
        with pytest.raises(InvalidInputError, match="clash_a"):
            SyncJetStreamEventStore(server.url, namespace="clash_a")
        assert a.get_latest_version("x") == 1


def test_namespaces_are_isolated(server):
    with SyncJetStreamEventStore(server.url, namespace="iso.a") as a, \
            SyncJetStreamEventStore(server.url, namespace="iso.b") as b:
        a.append("order", [ev("order", 1), ev("order", 2)])
        b.save_event(ev("order", 7))
        a.save_snapshot(ActorSnapshot("order", 2, {"in": "a"}))
        assert [e.version for e in a.get_events("order")] == [1, 2]
        assert [(e.version, e.position) for e in b.get_events("order")] == [(7, 1)]
        assert b.get_latest_snapshot("order") is None
        assert a.last_position() == 2 and b.last_position() == 1


def test_defaults_are_aethers(server):
    with SyncJetStreamEventStore(server.url, namespace=fresh_namespace()) as s:
        info = raw(server.url, lambda nc: nc.request(f"$JS.API.STREAM.INFO.{s.store.stream}", b"", timeout=5))
        config = orjson.loads(info.data)["config"]
        assert config["storage"] == "file"
        assert config["num_replicas"] == 1
        assert config["max_age"] == 365 * 24 * 3600 * 10**9
        assert config["allow_atomic"] is True
        assert s.store.atomic_batches


def test_bad_config_is_refused():
    for bad in ({"replicas": 0}, {"storage": "disk"}, {"max_age": -1}, {"stream": "a.b"},
                {"subject_prefix": "a..b"}, {"max_bytes": 0}, {"timeout": 0}, {"max_batch": 0}):
        with pytest.raises(InvalidInputError, match=str(next(iter(bad.values())))):
            JetStreamConfig(**bad)


# -- server-side concurrency, idempotency, atomicity -----------------------------------------

_RACER = 40


def _race(url: str, namespace: str, name: str, barrier, out) -> None:
    won = []
    with SyncJetStreamEventStore(url, namespace=namespace) as store:
        barrier.wait(timeout=60)
        for v in range(1, _RACER + 1):
            try:
                store.append("hot", [ev("hot", v, id=f"{name}-{v}")], expected_version=v - 1)
                won.append(v)
            except VersionConflictError:
                pass
    out.put((name, won))


def test_two_processes_racing_on_one_actor_cannot_both_win(server):
    namespace = fresh_namespace()
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(server.url, namespace, name, barrier, out)) for name in "pq"]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    with SyncJetStreamEventStore(server.url, namespace=namespace) as store:
        stored = store.get_events("hot")
    assert [e.version for e in stored] == list(range(1, _RACER + 1))
    assert not set(results["p"]) & set(results["q"])
    assert sorted(results["p"] + results["q"]) == list(range(1, _RACER + 1))
    for e in stored:   # each version holds the winner's event
        assert e.id.split("-")[0] in results and e.version in results[e.id.split("-")[0]]


def test_a_resent_publish_is_not_stored_twice(server):
    with SyncJetStreamEventStore(server.url, namespace=fresh_namespace()) as store:
        event = ev("a", 1)
        subject = store.store._subject_base + "a"

        async def lost_ack(nc):   # the store's message went out, its ack was lost
            return orjson.loads((await nc.request(subject, encode_record(event), timeout=5, headers={
                "Nats-Msg-Id": event.id, "Nats-Expected-Last-Subject-Sequence": "0"})).data)

        assert raw(server.url, lost_ack)["seq"] == 1
        assert store.save_event(event) == 1           # the retry: recognised, not stored again

        async def resend_without_check(nc):           # the server deduplicates by Nats-Msg-Id
            return orjson.loads((await nc.request(subject, encode_record(event), timeout=5, headers={
                "Nats-Msg-Id": event.id})).data)

        ack = raw(server.url, resend_without_check)
        assert ack["seq"] == 1 and ack["duplicate"] is True
        assert store.last_position() == 1
        assert store.get_events("a") == [event]


def test_a_resent_batch_from_another_store_returns_its_positions(server):
    namespace = fresh_namespace()
    batch = [ev("a", 1), ev("a", 2), ev("a", 3)]
    with SyncJetStreamEventStore(server.url, namespace=namespace) as first, \
            SyncJetStreamEventStore(server.url, namespace=namespace) as second:
        assert first.append("a", batch) == [1, 2, 3]
        assert second.append("a", batch, expected_version=0) == [1, 2, 3]
        assert second.last_position() == 3


def test_a_conflicting_batch_writes_nothing(server):
    """The second store's hint says the actor is new; the server refuses the whole batch."""
    namespace = fresh_namespace()
    with SyncJetStreamEventStore(server.url, namespace=namespace) as a, \
            SyncJetStreamEventStore(server.url, namespace=namespace) as b:
        a.append("x", [ev("x", 1)])
        sent = []
        publish = b.store._publish

        async def spy(messages, headers):
            sent.append((headers["Nats-Expected-Last-Subject-Sequence"], len(messages)))
            return await publish(messages, headers)

        b.store._publish = spy
        with pytest.raises(VersionConflictError) as info:
            b.append("x", [ev("x", 1, id="other"), ev("x", 2), ev("x", 3)])
        assert sent == [("0", 3)]                     # the batch reached the server
        assert info.value.current_version == 1
        assert a.last_position() == 1
        assert [e.version for e in a.get_events("x")] == [1]


def test_an_uncommitted_batch_is_never_visible(server):
    with SyncJetStreamEventStore(server.url, namespace=fresh_namespace()) as store:
        subject = store.store._subject_base + "a"

        async def half_batch(nc):
            for i in (1, 2):
                await nc.publish(subject, encode_record(ev("a", i)), headers={
                    "Nats-Batch-Id": "half", "Nats-Batch-Sequence": str(i)})
            await nc.flush()

        raw(server.url, half_batch)
        assert store.last_position() == 0
        assert store.get_events("a") == []
        assert store.append("a", [ev("a", 1), ev("a", 2)]) == [1, 2]


def test_a_stream_without_atomic_batches_refuses_multi_event_appends(server):
    namespace = fresh_namespace()
    name = stream_name(namespace)
    config = {"name": name, "subjects": [f"aether.store.{name}.*"], "allow_direct": True,
              "metadata": {"aether_namespace": namespace}}
    raw(server.url, lambda nc: nc.request(f"$JS.API.STREAM.CREATE.{name}", json.dumps(config).encode(), timeout=5))
    with SyncJetStreamEventStore(server.url, namespace=namespace) as store:
        assert not store.store.atomic_batches
        with pytest.raises(AtomicBatchUnsupportedError, match="nothing was sent"):
            store.append("a", [ev("a", 1), ev("a", 2)])
        assert store.last_position() == 0
        assert store.append("a", [ev("a", 1)]) == [1]
        assert store.save_event(ev("a", 2)) == 2


def test_batch_over_the_limit_is_refused(server):
    with SyncJetStreamEventStore(server.url, namespace=fresh_namespace()) as store:   # max_batch=1000
        with pytest.raises(InvalidInputError, match="1001"):
            store.append("a", [ev("a", v) for v in range(1, 1002)])
        assert store.last_position() == 0
    config = JetStreamConfig(max_batch=BATCH_LIMIT + 1)        # more than the server allows
    with SyncJetStreamEventStore(server.url, namespace=fresh_namespace(), config=config) as store:
        with pytest.raises(StorageError, match="refused"):
            store.append("a", [ev("a", v) for v in range(1, BATCH_LIMIT + 2)])
        assert store.last_position() == 0
        assert store.append("a", [ev("a", v) for v in range(1, BATCH_LIMIT + 1)])[-1] == BATCH_LIMIT


def test_oversized_event_is_refused_before_sending(server):
    with SyncJetStreamEventStore(server.url, namespace=fresh_namespace()) as store:
        limit = store.store.max_event_bytes
        with pytest.raises(InvalidInputError, match="max_payload"):
            store.append("a", [ev("a", 1), ev("a", 2, data=b"x" * limit)])
        assert store.last_position() == 0


# -- reads ---------------------------------------------------------------------------------------


def test_undecodable_messages_are_reported(server):
    with SyncJetStreamEventStore(server.url, namespace=fresh_namespace()) as store:
        store.save_event(ev("a", 1))
        subject = store.store._subject_base + "a"
        raw(server.url, lambda nc: nc.request(subject, b"not a record", timeout=5))
        result = store.get_events_with_errors("a")
        assert [e.version for e in result.events] == [1]
        assert [(r.position, r.raw) for r in result.errors] == [(2, b"not a record")]
        assert isinstance(result.errors[0].error, CorruptRecordError)
        with pytest.raises(CorruptRecordError):
            store.get_events("a")


def test_read_all_across_chunks_of_batches(server):
    with SyncJetStreamEventStore(server.url, namespace=fresh_namespace()) as store:
        for start in range(1, 2601, 1000):
            store.append("a", [ev("a", v, data={"v": v}) for v in range(start, min(start + 1000, 2601))])
        events = list(store.read_all())
        assert [e.position for e in events] == list(range(1, 2601))
        assert events[1024].data == {"v": 1025}
        assert [e.position for e in store.read_all(1000, limit=1100)] == list(range(1000, 2100))
        assert len(store.get_events("a", 1000)) == 1601
        cols = store.read_columns("a", from_position=1023, to_position=1030)
        assert cols.versions.tolist() == list(range(1023, 1031))


def test_async_store_api(server):
    async def main():
        store = await JetStreamEventStore.open(server.url, namespace=fresh_namespace())
        async with store:
            assert await store.append("a", [ev("a", 1), ev("a", 2)]) == [1, 2]
            assert await store.get_latest_version("a") == 2
            assert [e.position async for e in store.read_all()] == [1, 2]
            positions = await asyncio.gather(*(store.save_event(ev(f"p{i}", 1)) for i in range(50)))
            assert sorted(positions) == list(range(3, 53))
            for start in range(1, 2601, 1000):   # long reads stream through a consumer
                await store.append("b", [ev("b", v) for v in range(start, min(start + 1000, 2601))])
            streamed = [e async for e in store.read_all()]
            assert [e.position for e in streamed] == list(range(1, 2653))
            assert streamed == [e for p in range(1, 2653, 1024) for e in await store.read_range(p, 1024)]
            part = [e.position async for e in store.read_all(7, limit=2000)]
            assert part == list(range(7, 2007))
            assert [e.position async for e in store.read_all(2600)] == list(range(2600, 2653))
        assert store.closed

    asyncio.run(main())


def test_event_stored_notices_on_a_bus(server):
    bus = EventBus()
    seen = bus.subscribe("notices", event_types=["EventStored"])
    with SyncJetStreamEventStore(server.url, namespace="notices", bus=bus) as store:
        store.append("a", [ev("a", 1), ev("a", 2)])
        with pytest.raises(VersionConflictError):
            store.save_event(ev("a", 2, id="late"))
        got = seen.drain()      # the bus delivers before the store call returns; none for the conflict
        assert [(n.actor_id, n.data["version"], n.data["position"]) for n in got] == [("a", 1, 1), ("a", 2, 2)]
    delete_streams(server.url, "notices")


# -- the cluster -----------------------------------------------------------------------------------


def test_store_keeps_working_when_a_cluster_server_is_killed(cluster):
    store, namespace = open_store(cluster.urls, replicas=3)
    with store:
        positions = [store.save_event(ev("a", v)) for v in range(1, 21)]
        info = raw(cluster.urls, lambda nc: nc.request(f"$JS.API.STREAM.INFO.{store.store.stream}", b"", timeout=5))
        leader = orjson.loads(info.data)["cluster"]["leader"]
        victim = int(leader[1:])
        cluster.kill(victim)                               # the stream's leader dies
        positions += [store.save_event(ev("a", v)) for v in range(21, 41)]
        positions += store.append("a", [ev("a", v) for v in range(41, 46)])
        assert positions == list(range(1, 46))
        assert [e.version for e in store.get_events("a")] == list(range(1, 46))
        cluster.restart(victim)
        assert store.append("a", [ev("a", 46)], expected_version=45) == [46]
        assert store.get_latest_version("a") == 46
    delete_streams(cluster.urls, namespace)


def test_reads_older_than_what_the_store_has_seen_are_retried(server):
    """In a cluster a direct get may be answered by a replica that lags behind; an answer
    older than the store's own writes (or the stream's last sequence it has seen) is
    asked again, so the store reads its own writes."""
    namespace = fresh_namespace()
    with SyncJetStreamEventStore(server.url, namespace=namespace, config=JetStreamConfig(retry_for=0.3)) as a, \
            SyncJetStreamEventStore(server.url, namespace=namespace) as b:
        a.save_event(ev("x", 1))
        a.store._tips["x"] = (2, 2)                  # as if it had written sequence 2 itself
        a.store._seen = 3                            # and seen the stream at sequence 3
        for read in (lambda: a.get_latest_version("x"), lambda: a.get_events("x"), lambda: list(a.read_all())):
            with pytest.raises(StorageError, match="did not answer"):
                read()
        b.append("x", [ev("x", 2), ev("x", 3)])     # the stream reaches sequence 3
        assert a.get_latest_version("x") == 3
        assert [e.version for e in a.get_events("x")] == [1, 2, 3]
        assert [e.position for e in a.read_all()] == [1, 2, 3]
        a.save_snapshot(ActorSnapshot("x", 1, {}))
        a.store._snap_seqs["x"] = 2                  # as if it had written the snapshot stream's seq 2
        with pytest.raises(StorageError, match="did not answer"):
            a.get_latest_snapshot("x")
        b.save_snapshot(ActorSnapshot("x", 3, {"n": 3}))
        assert a.get_latest_snapshot("x").state == {"n": 3}


# -- transactions ------------------------------------------------------------------------------


def test_a_transaction_fails_whole_when_the_stream_changed_meanwhile(server):
    namespace = fresh_namespace()
    with SyncJetStreamEventStore(server.url, namespace=namespace) as a, \
            SyncJetStreamEventStore(server.url, namespace=namespace) as b:
        a.save_event(ev("x", 1))
        with pytest.raises(TransactionConflictError, match="nothing"), a.transaction():
            assert a.save_event(ev("x", 2)) == 2
            assert a.append("y", [ev("y", 1), ev("y", 2)]) == [3, 4]
            a.save_snapshot(ActorSnapshot("y", 2, {"n": 2}))
            b.save_event(ev("z", 1))                 # another writer takes position 2
        assert [(e.actor_id, e.version) for e in a.read_all()] == [("x", 1), ("z", 1)]
        assert a.get_latest_snapshot("y") is None
        with a.transaction():                        # run again: it commits
            assert a.save_event(ev("x", 2)) == 3
            assert a.append("y", [ev("y", 1), ev("y", 2)]) == [4, 5]
        assert [e.position for e in b.get_events("y")] == [4, 5]


def test_async_transaction_is_per_task(server):
    async def main():
        store = await JetStreamEventStore.open(server.url, namespace=fresh_namespace())
        async with store:
            go = asyncio.Event()

            async def outsider() -> int:
                await go.wait()
                return await store.get_latest_version("a")

            other = asyncio.create_task(outsider())      # started outside the transaction
            async with store.transaction():
                assert await store.append("a", [ev("a", 1), ev("a", 2)]) == [1, 2]
                assert await store.get_latest_version("a") == 2
                go.set()
                assert await other == 0                  # it does not see the open transaction
                with pytest.raises(InvalidInputError, match="1000"):
                    await store.append("b", [ev("b", v) for v in range(1, 1000)])
            assert await store.get_latest_version("a") == 2
            assert [e.position async for e in store.read_all()] == [1, 2]

    asyncio.run(main())


# -- async catch-up subscription and long reads ---------------------------------------------------


def test_async_subscribe_delivers_history_then_live(server):
    namespace = fresh_namespace()

    async def main():
        store = await JetStreamEventStore.open(server.url, namespace=namespace)
        other = await JetStreamEventStore.open(server.url, namespace=namespace)
        async with store, other:
            await store.append("a", [ev("a", 1), ev("a", 2), ev("a", 3, event_type="Skipped")])
            sub = store.subscribe(2, event_types=["OrderPlaced"])
            assert [(await asyncio.wait_for(anext(sub), 10)).position] == [2]
            await other.append("b", [ev("b", 1, event_type="Skipped"), ev("b", 2)])   # another writer
            await other.save_event(ev("c", 1))
            live = [await asyncio.wait_for(anext(sub), 10) for _ in range(2)]
            assert [(e.actor_id, e.position) for e in live] == [("b", 5), ("c", 6)]
            await sub.aclose()
            with pytest.raises(InvalidInputError):
                store.subscribe(0)

    asyncio.run(main())


def test_long_reads_report_undecodable_messages(server):
    async def main():
        store = await JetStreamEventStore.open(server.url, namespace=fresh_namespace())
        async with store:
            await store.append("a", [ev("a", v) for v in range(1, 1001)])
            await store._nc.request(store._subject_base + "junk", b"garbage", timeout=5)
            await store.append("a", [ev("a", v) for v in range(1001, 1101)])
            seen = []
            with pytest.raises(CorruptRecordError):
                async for e in store.read_all():            # 1101 messages: streamed by a consumer
                    seen.append(e.position)
            assert seen == list(range(1, 1001))             # never skipped silently

    asyncio.run(main())


@pytest.mark.parametrize("own_connection", [True, False])
def test_a_subscription_ends_with_store_closed_when_the_store_closes(server, own_connection):
    import nats

    async def main():
        errors: list = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))
        nc = None if own_connection else await nats.connect(server.url)
        store = await JetStreamEventStore.open(server.url if own_connection else nc, namespace=fresh_namespace())
        await store.append("a", [ev("a", 1)])
        sub = store.subscribe(1)
        assert (await asyncio.wait_for(anext(sub), 10)).position == 1
        waiting = asyncio.ensure_future(anext(sub))           # waits for live events
        await asyncio.sleep(0)
        await store.close()
        with pytest.raises(StoreClosedError):
            await asyncio.wait_for(waiting, 30)
        await sub.aclose()
        with pytest.raises(StoreClosedError):
            store.subscribe(1)
        if nc is not None:
            await nc.close()
        assert errors == []

    asyncio.run(main())
