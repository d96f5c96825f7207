"""Cluster coordination on one real nats-server: membership, leader lease, shards, events.

Every node has its own NATS connection and its own local EventBus; waits are bounded polls
of a condition (``wait_until``), never blind sleeps, and nothing asserts on elapsed time
except through the order of events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
from support.cluster import (
    WAIT,
    BlackholeProxy,
    check_invariants,
    converged,
    leaders,
    steady_config,
    wait_until,
)
from support.nats_server import NatsServer, require_nats

from aether_fast import EventBus, RingPlacement
from aether_fast.errors import InvalidInputError, InvalidTypeError
from aether_fast.nats.cluster import (
    CLUSTER_NAMESPACE,
    LEADER_ELECTED,
    NODE_FAILED,
    NODE_JOINED,
    NODE_LEFT,
    SHARDS_REBALANCED,
    ClusterConfig,
    ClusterConfigError,
    ClusterError,
    ClusterNode,
    LeadershipChange,
)

nats = pytest.importorskip("nats", reason="nats-py not installed: pip install nats-py")

TEST_TIMEOUT = 60.0
# A test that waits for a failure shortens only the timeout it waits for (3 s in STEADY) to 2 s: still
# ten heartbeats, or six renewals before a leader steps down (at 0.8 * 2 s), of margin for a loaded machine.
FAILURE_TIMEOUT = 2.0
LEASE = {"lease_ttl": 2.0, "renew_interval": 0.25}


@pytest.fixture
def server(tmp_path):
    require_nats()
    with NatsServer(jetstream=True, store_dir=str(tmp_path / "js")) as s:
        yield s


def run(coro) -> object:
    return asyncio.run(asyncio.wait_for(coro, TEST_TIMEOUT))


class Members:
    """Cluster nodes started in this process, each with its own connection and bus; the
    events each bus received are in ``events[node_id]``. Timings: STEADY, with ``config``."""

    def __init__(self, url: str, **config: object) -> None:
        self.url = url
        self.config = steady_config(**config)
        self.nodes: dict[str, ClusterNode] = {}
        self.events: dict[str, list] = {}
        self.changes: dict[str, list[LeadershipChange]] = {}
        self.timeline: list[LeadershipChange] = []   # every node's own gains and losses, in order
        self._connections: dict[str, object] = {}

    async def add(self, node_id: str, url: str | None = None, **kwargs: object) -> ClusterNode:
        nc = await nats.connect(url or self.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
        bus = EventBus()
        events = self.events.setdefault(node_id, [])
        bus.subscribe(f"{CLUSTER_NAMESPACE}", callback=events.append)
        changes = self.changes.setdefault(node_id, [])

        def record(kind: str, term: int) -> None:
            change = LeadershipChange(kind, node_id, term)
            changes.append(change)
            self.timeline.append(change)

        node = ClusterNode(nc, node_id, config=self.config, bus=bus,
                           on_became_leader=lambda term: record("became_leader", term),
                           on_lost_leadership=lambda term: record("lost_leadership", term), **kwargs)
        self._connections[node_id] = nc
        await node.start()
        self.nodes[node_id] = node
        return node

    async def stop(self, node_id: str) -> None:
        node = self.nodes.pop(node_id)
        await node.stop()
        nc = self._connections.pop(node_id)
        with contextlib.suppress(OSError, nats.errors.Error):   # a connection cut by a test
            await nc.close()

    def live(self) -> list[ClusterNode]:
        return list(self.nodes.values())

    def of_type(self, node_id: str, event_type: str) -> list:
        return [e for e in self.events[node_id] if e.event_type == event_type]

    async def close(self) -> None:
        for node_id in list(self.nodes):
            with contextlib.suppress(Exception):
                await self.stop(node_id)
        for nc in self._connections.values():
            with contextlib.suppress(OSError, nats.errors.Error):
                await nc.close()


@contextlib.asynccontextmanager
async def members(url: str, ids=(), **config: object):
    group = Members(url, **config)
    try:
        await asyncio.gather(*(group.add(i) for i in ids))
        yield group
    finally:
        await group.close()


async def settled(group: Members) -> ClusterNode:
    """Wait for one leader and a converged assignment over every node; the leader."""
    await wait_until(lambda: len(leaders(group.live())) == 1 and converged(group.live()),
                     "one leader and one assignment over every node")
    return leaders(group.live())[0]


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "error", "text"), [
    ({"heartbeat_interval": 0}, InvalidInputError, "heartbeat_interval"),
    ({"heartbeat_interval": "1"}, InvalidTypeError, "heartbeat_interval"),
    ({"heartbeat_interval": 2.0, "failure_timeout": 2.0}, InvalidInputError, "failure_timeout (2.0)"),
    ({"lease_ttl": 1.0, "renew_interval": 0.6}, InvalidInputError, "renew_interval (0.6)"),
    ({"shards": 0}, InvalidInputError, "shards"),
    ({"shards": 10.0}, InvalidTypeError, "shards"),
    ({"replicas": 7}, InvalidInputError, "replicas"),
    ({"election_bucket": "a.b"}, InvalidInputError, "'a.b'"),
    ({"shard_bucket": "aether-leader-election"}, InvalidInputError, "must differ"),
    ({"discovery_subject": "aether.*"}, InvalidInputError, "'aether.*'"),
    ({"namespace": "bad ns"}, InvalidInputError, "bad ns"),
    ({"settle": -1}, InvalidInputError, "settle"),
])
def test_bad_configuration_is_refused_naming_the_value(options, error, text):
    with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        ClusterConfig(**options)


def test_bad_node_arguments_are_refused():
    with pytest.raises(InvalidInputError, match="node_id"):
        ClusterNode(object(), "")
    with pytest.raises(InvalidTypeError, match="config"):
        ClusterNode(object(), "n1", config={"shards": 4})
    with pytest.raises(InvalidTypeError, match="on_new_leader"):
        ClusterNode(object(), "n1", on_new_leader=3)
    with pytest.raises(InvalidTypeError, match="placement"):
        ClusterNode(object(), "n1", placement=object())


# -- membership ----------------------------------------------------------------------------------


def test_nodes_discover_each_other_and_a_graceful_leave_is_announced(server):
    async def main():
        async with members(server.url, ["a", "b", "c"]) as group:
            await wait_until(lambda: all(n.live_nodes == {"a", "b", "c"} for n in group.live()),
                             "every node seeing all three")
            for node_id in "abc":
                joined = {e.actor_id for e in group.of_type(node_id, NODE_JOINED)}
                assert joined == {"a", "b", "c"} - {node_id}
            await group.stop("c")
            await wait_until(lambda: all(n.live_nodes == {"a", "b"} for n in group.live()), "c gone from a and b")
            for node_id in "ab":
                (left,) = group.of_type(node_id, NODE_LEFT)
                assert left.actor_id == "c"
                assert left.data["node_id"] == "c" and left.data["observer"] == node_id
                assert not group.of_type(node_id, NODE_FAILED)
    run(main())


def test_a_silent_node_is_declared_failed_and_rejoins_cleanly(server):
    async def main():
        async with members(server.url, ["a", "b"], failure_timeout=FAILURE_TIMEOUT) as group:
            proxy = await BlackholeProxy(server.port).start()
            try:
                await group.add("c", url=proxy.url)
                await settled(group)
                proxy.blackhole()    # c's heartbeats stop reaching the server
                await wait_until(lambda: group.nodes["a"].live_nodes == {"a", "b"}, "c declared failed")
                (failed,) = group.of_type("a", NODE_FAILED)
                # silent_for is rounded to the millisecond, so a silence just past the timeout can show it
                assert failed.actor_id == "c" and failed.data["silent_for"] >= group.config.failure_timeout
                await wait_until(lambda: set(group.nodes["a"].assignment.nodes) == {"a", "b"},
                                 "c's shards reassigned")
            finally:
                await proxy.close()
            await group.stop("c")   # the silent process ends; a new one starts under the same id
            await group.add("c")
            await settled(group)
            rejoined = [e for e in group.of_type("a", NODE_JOINED) if e.actor_id == "c" and e.data["rejoined"]]
            assert len(rejoined) == 1
            check_invariants(group.live())
    run(main())


# -- leader election ------------------------------------------------------------------------------


def test_exactly_one_leader_is_elected_and_everyone_knows_it(server):
    async def main():
        async with members(server.url, ["a", "b", "c", "d"]) as group:
            leader = await settled(group)
            won = [c for changes in group.changes.values() for c in changes if c.kind == "became_leader"]
            assert won == [LeadershipChange("became_leader", leader.node_id, leader.term)]
            for node in group.live():
                assert node.leader_id == leader.node_id and node.term == leader.term
                elected = group.of_type(node.node_id, LEADER_ELECTED)
                assert [(e.actor_id, e.data["term"]) for e in elected] == [(leader.node_id, leader.term)]
            metrics = leader.metrics()
            assert metrics.is_leader and metrics.term == leader.term and metrics.elections_won == 1
            assert metrics.live_nodes == 4 and metrics.owned_shards == len(leader.owned_shards)
            assert sum(n.metrics().owned_shards for n in group.live()) == 1024
            assert not any(n.metrics().is_leader for n in group.live() if n is not leader)
            exposed = prometheus_samples(group.live())
            assert exposed[("aether_cluster_is_leader", leader.node_id)] == 1
            assert sum(v for (name, _), v in exposed.items() if name == "aether_cluster_is_leader") == 1
            assert sum(v for (name, _), v in exposed.items() if name == "aether_cluster_owned_shards") == 1024
            assert exposed[("aether_cluster_term", leader.node_id)] == leader.term
    run(main())


def prometheus_samples(nodes: list[ClusterNode]) -> dict[tuple[str, str], float]:
    """The cluster gauges of these nodes as a Prometheus scrape shows them."""
    prometheus_client = pytest.importorskip("prometheus_client", reason="the [metrics] extra is not installed")
    from prometheus_client.parser import text_string_to_metric_families

    from aether_fast.metrics import register_metrics

    registry = prometheus_client.CollectorRegistry()
    register_metrics(clusters=nodes, registry=registry)
    text = prometheus_client.generate_latest(registry).decode()
    return {(s.name, s.labels["node"]): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_stopping_leader_hands_over_to_a_higher_term(server):
    async def main():
        async with members(server.url, ["a", "b", "c"]) as group:
            leader = await settled(group)
            old_id, old_term = leader.node_id, leader.term
            await group.stop(old_id)
            assert group.changes[old_id][-1] == LeadershipChange("lost_leadership", old_id, old_term)
            new = await settled(group)
            assert new.node_id != old_id and new.term > old_term
            check_invariants(group.live())
    run(main())


def test_a_leader_that_cannot_renew_steps_down_before_another_takes_over(server):
    """The leader's connection goes silent (a blackhole, not a close): it must give up its
    term before any other node wins the next one."""
    async def main():
        proxy = await BlackholeProxy(server.port).start()
        group = Members(server.url, **LEASE)
        try:
            c = await group.add("c", url=proxy.url)
            await wait_until(lambda: c.is_leader, "c, alone, leading")
            await group.add("a")
            await group.add("b")
            await settled(group)
            term = c.term
            proxy.blackhole()
            survivors = [group.nodes["a"], group.nodes["b"]]
            await wait_until(lambda: any(n.is_leader and n.term > term for n in survivors),
                             "a survivor leading a newer term")
            assert not c.is_leader
            lost = LeadershipChange("lost_leadership", "c", term)
            won = next(x for x in group.timeline if x.kind == "became_leader" and x.term > term)
            assert group.timeline.index(lost) < group.timeline.index(won)
            assert [x for x in group.timeline if x.kind == "became_leader"] == [
                LeadershipChange("became_leader", "c", term), won]
        finally:
            await proxy.close()
            await group.close()
    run(main())


def test_leadership_changes_stream_and_async_callbacks(server):
    async def main():
        told: list[tuple[str, int]] = []

        async def on_new_leader(leader: str, term: int) -> None:
            await asyncio.sleep(0)
            told.append((leader, term))

        async with members(server.url) as group:
            node = await group.add("a", on_new_leader=on_new_leader)
            seen: list[LeadershipChange] = []

            async def consume():
                async for change in node.leadership_changes():
                    seen.append(change)

            consumer = asyncio.create_task(consume())
            await wait_until(lambda: node.is_leader, "a leading")
            await group.stop("a")
            await asyncio.wait_for(consumer, WAIT)
            term = seen[0].term
            assert seen == [LeadershipChange("became_leader", "a", term), LeadershipChange("new_leader", "a", term),
                            LeadershipChange("lost_leadership", "a", term)]
            assert told == [("a", term)]
    run(main())


# -- shards -------------------------------------------------------------------------------------


def test_shards_are_assigned_with_every_invariant_and_stay_put_while_nothing_changes(server):
    async def main():
        async with members(server.url, ["a", "b", "c"]) as group:
            leader = await settled(group)
            check_invariants(group.live())
            revision = leader.assignment.revision
            assert leader.assignment.term == leader.term
            counts = [len(n.owned_shards) for n in group.live()]
            assert min(counts) > 0
            # many heartbeats later (a counted condition, not a sleep), nothing was rewritten
            beats = leader.metrics().heartbeats_received
            await wait_until(lambda: leader.metrics().heartbeats_received >= beats + 20, "20 more heartbeats")
            assert all(n.assignment.revision == revision for n in group.live())
            assert leader.metrics().rebalances == 1
            for node in group.live():
                (rebalanced,) = group.of_type(node.node_id, SHARDS_REBALANCED)
                assert len(rebalanced.data["moved"]) == 1024
                assert rebalanced.data["revision"] == revision and rebalanced.data["leader_id"] == leader.node_id
            some_actor = "order-123"
            owner = leader.owner_of(some_actor)
            assert owner in {"a", "b", "c"}
            assert leader.shard_of(some_actor) in group.nodes[owner].owned_shards
    run(main())


def test_a_graceful_stop_moves_only_the_shards_of_the_leaving_node(server):
    async def main():
        async with members(server.url, ["a", "b", "c"]) as group:
            leader = await settled(group)
            leaving = next(n for n in group.live() if n is not leader)
            before = leader.assignment
            their_shards = before.shards_of(leaving.node_id)
            await group.stop(leaving.node_id)
            await settled(group)
            check_invariants(group.live())
            after = leader.assignment
            moved = {s for s in range(1024) if before.owners[s] != after.owners[s]}
            assert moved == their_shards
            last = group.of_type(leader.node_id, SHARDS_REBALANCED)[-1]
            assert {m[0] for m in last.data["moved"]} == their_shards
            assert all(m[1] == leaving.node_id for m in last.data["moved"])
    run(main())


def test_a_joining_node_takes_shards_only_from_others_onto_itself(server):
    async def main():
        changes: list[tuple[frozenset, frozenset]] = []
        async with members(server.url, ["a", "b"]) as group:
            leader = await settled(group)
            before = leader.assignment
            await group.add("c", on_shards_changed=lambda gained, lost: changes.append((gained, lost)))
            await settled(group)
            check_invariants(group.live())
            after = leader.assignment
            moved = {s for s in range(1024) if before.owners[s] != after.owners[s]}
            assert moved and all(after.owners[s] == "c" for s in moved)
            assert changes[-1] == (group.nodes["c"].owned_shards, frozenset())
    run(main())


def test_a_bucket_with_another_lease_ttl_is_refused(server):
    async def main():
        async with members(server.url, ["a"]) as group:
            nc = await nats.connect(server.url)
            try:
                other = ClusterNode(nc, "b", config=steady_config(lease_ttl=2.0))
                with pytest.raises(ClusterConfigError, match="aether-leader-election"):
                    await other.start()
                with pytest.raises(ClusterError, match="already started"):
                    await other.start()
                assert group.nodes["a"].live_nodes == {"a"}
            finally:
                await nc.close()
    run(main())


def test_malformed_heartbeats_and_a_duplicate_node_id_are_reported_not_trusted(server, caplog):
    async def main():
        async with members(server.url, ["a"]) as group:
            node = group.nodes["a"]
            nc = await nats.connect(server.url)
            try:
                subject = group.config.discovery_subject
                for garbage in (b"not json", b"[1, 2]", b'{"node_id": 5, "incarnation": "x", "state": "alive"}',
                                b'{"node_id": "z", "incarnation": "x", "state": "dancing"}',
                                b'{"node_id": "", "incarnation": "x", "state": "alive"}'):
                    await nc.publish(subject, garbage)
                await nc.publish(subject, b'{"node_id": "a", "incarnation": "other", "state": "alive"}')
                await nc.flush()
                await wait_until(lambda: sum("malformed heartbeat" in r.message for r in caplog.records) == 5
                                 and any("same node id" in r.message for r in caplog.records),
                                 "five malformed heartbeats and the duplicate id logged")
                assert node.live_nodes == {"a"}
                assert not group.of_type("a", NODE_JOINED)
            finally:
                await nc.close()
    run(main())


class FailingOnce(RingPlacement):
    """A placement strategy whose first assignment raises (a bug in user code)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def assign_shards(self, nodes, shards=None):
        self.calls += 1
        if self.calls == 1:
            raise KeyError("placement bug")
        return super().assign_shards(nodes, shards)


def test_a_failing_placement_is_logged_and_retried_not_silently_fatal(server, caplog):
    async def main():
        placement = FailingOnce()
        async with members(server.url) as group:
            node = await group.add("solo", placement=placement)
            await wait_until(lambda: node.assignment is not None, "an assignment after the failure")
            assert placement.calls >= 2 and len(node.owned_shards) == node.config.shards
        assert "placement bug" in caplog.text and "rebalance failed" in caplog.text
        assert "ended before stop()" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="aether_fast.nats.cluster"):
        run(main())
