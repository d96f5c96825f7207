"""Fault tests: cluster nodes in their own processes on a real 3-server NATS cluster, killed
with SIGKILL; one nats-server killed under them.

Each node process (``cluster_node_proc.py``) records its leadership claims and the shards it
knows it owns to a file; the test reads those records and the KV buckets themselves (a
separate client), so every claim is checked from outside the nodes. Measured times (kill ->
new leader, kill -> assignment without the dead node, as seen by the survivors) are printed
in the terminal summary as medians, with the timeout they depend on; nothing asserts on them.

Every test runs with a 1 s failure timeout (FAST). Only the leader-kill test, which measures
failover, has a 1 s lease too; the other two are not about how fast a new leader comes and
hold the STEADY 3 s lease, so that a loaded machine (or a reconnection to another server)
does not make the leader miss its renewals: the follower test checks that the leader was not
disturbed. A node wrongly declared failed only costs them a rebalance: each check waits for
an assignment over every live node.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from support.cluster import FAST, STEADY, eventually
from support.nats_server import require_nats

nats = pytest.importorskip("nats", reason="nats-py not installed: pip install nats-py")

TEST_TIMEOUT = 120.0
SHARDS = 1024
NODE_SCRIPT = Path(__file__).resolve().parents[1] / "support" / "cluster_node_proc.py"
FAILOVER = {**FAST, "replicas": 3}
STEADY_LEASE = {"lease_ttl": STEADY["lease_ttl"], "renew_interval": STEADY["renew_interval"]}
SURVIVAL = {**FAST, **STEADY_LEASE, "replicas": 3}
# the printed timings name the timeouts they depend on
LEADER_KILLED = f"kill -9 leader (lease_ttl {FAILOVER['lease_ttl']} s, failure_timeout {FAILOVER['failure_timeout']} s)"
FOLLOWER_KILLED = f"kill -9 follower (failure_timeout {SURVIVAL['failure_timeout']} s)"
TIMINGS: dict[str, list[float]] = {}


@pytest.fixture(scope="module")
def nats_cluster():
    require_nats()
    from support.nats_cluster import NatsCluster

    with NatsCluster() as cluster:
        yield cluster


@pytest.fixture(scope="module", autouse=True)
def report_timings(request):
    yield
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for name, values in TIMINGS.items():
            reporter.write_line(
                f"cluster fault timing: {name}: median {statistics.median(values):.3f} s over {len(values)} runs "
                f"(min {min(values):.3f}, max {max(values):.3f})")


def run(coro) -> object:
    return asyncio.run(asyncio.wait_for(coro, TEST_TIMEOUT))


class NodeProcesses:
    """Cluster node processes of one test: its own buckets and discovery subject, the
    timings of ``config``."""

    def __init__(self, root: Path, urls: list[str], config: dict) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.config = {**config, "election_bucket": f"le-{suffix}", "shard_bucket": f"sh-{suffix}",
                       "discovery_subject": f"aether.discovery.{suffix}"}
        self.root = root
        self.urls = urls
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, node_id: str) -> None:
        self.procs[node_id] = subprocess.Popen(
            [sys.executable, str(NODE_SCRIPT), node_id, str(self.root / f"{node_id}.jsonl"), ",".join(self.urls),
             json.dumps(self.config)], stdin=subprocess.DEVNULL)

    def kill(self, node_id: str) -> float:
        """SIGKILL the node's process (by its pid); the time of the kill."""
        proc = self.procs.pop(node_id)
        os.kill(proc.pid, signal.SIGKILL)
        killed_at = time.time()
        proc.wait(timeout=10)
        return killed_at

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()

    def records(self, node_id: str | None = None) -> list[dict]:
        files = [self.root / f"{node_id}.jsonl"] if node_id else sorted(self.root.glob("*.jsonl"))
        lines = []
        for path in files:
            if path.exists():
                lines += [json.loads(line) for line in path.read_text().splitlines()]
        return lines

    def known_shards(self, node_id: str) -> tuple[int, frozenset[int]] | None:
        """(revision, owned shards) of the newest assignment the running process applied."""
        pid = self.procs[node_id].pid
        seen = [r for r in self.records(node_id) if r["kind"] == "assignment" and r["pid"] == pid]
        return (seen[-1]["revision"], frozenset(seen[-1]["owned"])) if seen else None


class Observer:
    """A plain NATS client reading the cluster's two KV keys."""

    def __init__(self, nc, config: dict) -> None:
        self.js = nc.jetstream(timeout=2)
        self.config = config

    async def _last(self, bucket: str, key: str):
        try:
            return await self.js.get_last_msg(f"KV_{bucket}", f"$KV.{bucket}.{key}")
        except nats.js.errors.NotFoundError:
            return None

    async def leader(self) -> dict | None:
        msg = await self._last(self.config["election_bucket"], "leader")
        if msg is None or (msg.headers and ("KV-Operation" in msg.headers or "Nats-Marker-Reason" in msg.headers)):
            return None
        return json.loads(msg.data)

    async def assignment(self) -> tuple[int, tuple[str, ...]] | None:
        """(revision, owner of each shard)."""
        msg = await self._last(self.config["shard_bucket"], "assignments")
        if msg is None:
            return None
        raw = json.loads(msg.data)
        return msg.seq, tuple(raw["nodes"][i] for i in raw["owners"])


async def settled(procs: NodeProcesses, observer: Observer, node_ids: set[str]) -> tuple[dict, int, tuple]:
    """Wait until a live node leads, the stored assignment covers exactly ``node_ids`` and
    every one of those processes has applied it; (leader, revision, owners)."""
    async def probe():
        leader, stored = await observer.leader(), await observer.assignment()
        if leader is None or leader["node_id"] not in node_ids or stored is None:
            return None
        revision, owners = stored
        if set(owners) != node_ids:
            return None
        if any((procs.known_shards(n) or (0,))[0] != revision for n in node_ids):
            return None
        return leader, revision, owners
    return await eventually(probe, f"a leader and an assignment over {sorted(node_ids)} known to each node")


def check_partition(procs: NodeProcesses, owners: tuple[str, ...], node_ids: set[str]) -> None:
    """Every shard has exactly one owner, a live one, and each node knows exactly its own."""
    assert len(owners) == SHARDS and set(owners) <= node_ids
    union: set[int] = set()
    for node_id in node_ids:
        _, owned = procs.known_shards(node_id)
        assert owned == {s for s, o in enumerate(owners) if o == node_id}
        assert not owned & union
        union |= owned
    assert union == set(range(SHARDS))


def check_one_leader_per_term(procs: NodeProcesses) -> None:
    """From every process's own records (the killed ones' too): a term is claimed by one
    node only, and each process's claims have growing terms."""
    claims: dict[int, set[str]] = {}
    per_pid: dict[int, list[int]] = {}
    for r in procs.records():
        if r["kind"] == "became_leader":
            claims.setdefault(r["term"], set()).add(r["node"])
            per_pid.setdefault(r["pid"], []).append(r["term"])
    assert claims, "no leader was ever recorded"
    assert all(len(nodes) == 1 for nodes in claims.values()), claims
    assert all(terms == sorted(set(terms)) for terms in per_pid.values()), per_pid


def first_record_time(procs: NodeProcesses, node_ids: set[str], kind: str, after: float, test) -> float:
    times = [r["t"] for n in node_ids for r in procs.records(n) if r["kind"] == kind and r["t"] >= after and test(r)]
    return min(times)


async def cluster_run(tmp_path, nats_cluster, body, config: dict) -> None:
    procs = NodeProcesses(tmp_path, nats_cluster.urls, config)
    nc = await nats.connect(nats_cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    try:
        await body(procs, Observer(nc, procs.config))
    finally:
        procs.stop_all()
        await nc.close()


def test_killing_the_leader_process_elects_a_new_leader_and_reassigns_its_shards(tmp_path, nats_cluster):
    async def body(procs: NodeProcesses, observer: Observer):
        live = {"n1", "n2", "n3", "n4"}
        for node_id in sorted(live):
            procs.start(node_id)
        for round_ in range(3):
            leader, _, owners = await settled(procs, observer, live)
            check_partition(procs, owners, live)
            dead, term = leader["node_id"], leader["term"]
            killed_at = procs.kill(dead)
            live.discard(dead)
            new_leader = await eventually(
                lambda term=term: _newer_leader(observer, term), f"a leader of a term after {term}")
            assert new_leader["node_id"] in live
            _, revision2, owners2 = await settled(procs, observer, live)
            check_partition(procs, owners2, live)
            moved = {s for s in range(SHARDS) if owners[s] != owners2[s]}
            assert moved == {s for s in range(SHARDS) if owners[s] == dead}   # only the dead node's shards
            elected = first_record_time(procs, live, "became_leader", killed_at, lambda r, t=term: r["term"] > t)
            reassigned = first_record_time(procs, live, "assignment", killed_at,
                                           lambda r, rev=revision2: r["revision"] >= rev)
            TIMINGS.setdefault(f"{LEADER_KILLED} -> new leader", []).append(elected - killed_at)
            TIMINGS.setdefault(f"{LEADER_KILLED} -> shards reassigned", []).append(reassigned - killed_at)
            replacement = f"r{round_}"   # keep four nodes for the next round
            procs.start(replacement)
            live.add(replacement)
        check_one_leader_per_term(procs)
    run(cluster_run(tmp_path, nats_cluster, body, FAILOVER))


async def _newer_leader(observer: Observer, term: int) -> dict | None:
    leader = await observer.leader()
    return leader if leader is not None and leader["term"] > term else None


def test_killing_a_follower_process_moves_only_its_shards(tmp_path, nats_cluster):
    async def body(procs: NodeProcesses, observer: Observer):
        live = {"a", "b", "c", "d"}
        for node_id in sorted(live):
            procs.start(node_id)
        for round_ in range(3):
            leader, _, owners = await settled(procs, observer, live)
            dead = min(live - {leader["node_id"]})
            killed_at = procs.kill(dead)
            live.discard(dead)
            leader2, revision2, owners2 = await settled(procs, observer, live)
            assert leader2 == leader   # the leader was not disturbed
            check_partition(procs, owners2, live)
            assert {s for s in range(SHARDS) if owners[s] != owners2[s]} == {
                s for s in range(SHARDS) if owners[s] == dead}
            reassigned = first_record_time(procs, live, "assignment", killed_at,
                                           lambda r, rev=revision2: r["revision"] >= rev)
            TIMINGS.setdefault(f"{FOLLOWER_KILLED} -> shards reassigned", []).append(reassigned - killed_at)
            # the same id comes back as a new process: it rejoins and gets the same shards back
            procs.start(dead)
            live.add(dead)
            _, _, owners3 = await settled(procs, observer, live)
            check_partition(procs, owners3, live)
            assert owners3 == owners, f"round {round_}: the returning node did not get its shards back"
            joined = [r for r in procs.records(dead) if r["kind"] == "started"]
            assert len(joined) == round_ + 2
        check_one_leader_per_term(procs)
    run(cluster_run(tmp_path, nats_cluster, body, SURVIVAL))


def test_the_cluster_keeps_working_when_a_nats_server_dies(tmp_path, nats_cluster):
    async def body(procs: NodeProcesses, observer: Observer):
        live = {"x", "y", "z"}
        for node_id in sorted(live):
            procs.start(node_id)
        _, revision, _ = await settled(procs, observer, live)
        nats_cluster.kill(0)   # every node is connected to server 0 (its first URL): all must reconnect
        try:
            # the KV (R3) still serves; a topology change still goes through and every node,
            # whichever server it was on, reconnects and learns the new assignment
            procs.start("w")
            live.add("w")
            leader2, revision2, owners2 = await settled(procs, observer, live)
            assert revision2 > revision
            check_partition(procs, owners2, live)
            dead = min(live - {leader2["node_id"]})
            procs.kill(dead)
            live.discard(dead)
            _, _, owners3 = await settled(procs, observer, live)
            check_partition(procs, owners3, live)
            check_one_leader_per_term(procs)
        finally:
            nats_cluster.restart(0)
    run(cluster_run(tmp_path, nats_cluster, body, SURVIVAL))
