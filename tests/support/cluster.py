"""Helpers of the cluster tests: bounded waits, the shard invariants, a fault-injecting proxy.

``wait_until(predicate, what)`` polls a condition until it holds or a deadline passes (then
fails naming ``what``): a bounded wait, never a blind sleep. ``BlackholeProxy`` forwards
TCP between a client and a nats-server and can stop forwarding without closing anything,
so requests through it hang as over a dead network.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from aether_fast.nats.cluster import ClusterConfig, ClusterNode

T = TypeVar("T")

WAIT = 30.0   # upper bound of a wait; never reached when things work, generous for a loaded machine

STEADY = {"heartbeat_interval": 0.2, "failure_timeout": 3.0, "lease_ttl": 3.0, "renew_interval": 0.5}
"""The tests' timings: nodes meet and settle at once (0.2 s heartbeats), but a heartbeat or a
renewal delayed by a loaded machine does not look like a failure. A test that waits for a
failure shortens only the timeout it waits for."""

FAST = {"heartbeat_interval": 0.2, "failure_timeout": 1.0, "lease_ttl": 1.0, "renew_interval": 0.25}
"""Failover timings (1 s failure timeout and lease), for the fault tests that measure failover."""


def steady_config(**overrides: object) -> ClusterConfig:
    """The STEADY timings with ``overrides``."""
    return ClusterConfig(**{**STEADY, **overrides})


async def wait_until(predicate: Callable[[], object], what: str, timeout: float = WAIT, step: float = 0.02) -> None:
    """Poll ``predicate`` until it is true; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)   # a poll interval bounded by the deadline


def leaders(nodes: Iterable[ClusterNode]) -> list[ClusterNode]:
    return [n for n in nodes if n.is_leader]


def converged(nodes: Iterable[ClusterNode]) -> bool:
    """Every node sees the same assignment, whose owners are exactly the given nodes."""
    nodes = list(nodes)
    ids = {n.node_id for n in nodes}
    assignments = {n.assignment.revision if n.assignment else None for n in nodes}
    if len(assignments) != 1 or None in assignments:
        return False
    return set(nodes[0].assignment.nodes) == ids and all(n.live_nodes == ids for n in nodes)


def check_invariants(nodes: Iterable[ClusterNode]) -> None:
    """Every shard has exactly one owner, every owner is one of the (live) nodes, and each
    node's own shard set is exactly what the shared assignment gives it."""
    nodes = list(nodes)
    assignment = nodes[0].assignment
    shards = nodes[0].config.shards
    assert len(assignment.owners) == shards
    assert set(assignment.owners) <= {n.node_id for n in nodes}
    seen: set[int] = set()
    for node in nodes:
        assert node.assignment.revision == assignment.revision
        owned = node.owned_shards
        assert owned == assignment.shards_of(node.node_id)
        assert not owned & seen, "a shard owned by two nodes"
        seen |= owned
    assert seen == set(range(shards)), "a shard without owner"


class BlackholeProxy:
    """A TCP proxy on 127.0.0.1 to ``target_port``; ``blackhole()`` stops forwarding bytes in
    both directions (connections stay open, so requests time out rather than fail)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._forwarding = asyncio.Event()
        self._forwarding.set()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> BlackholeProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def blackhole(self) -> None:
        self._forwarding.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await src.read(65536):
                await self._forwarding.wait()
                dst.write(data)
                await dst.drain()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = WAIT,
                     step: float = 0.05) -> T:
    """Await ``probe()`` until it returns a truthy value, and return it; AssertionError
    naming ``what`` after ``timeout`` s (errors of the probe count as "not yet")."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = await probe()
            if value:
                return value
        except Exception as err:  # noqa: BLE001 - a probe over a failing server: try again
            last = err
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last!r})")
        await asyncio.sleep(step)   # a poll interval bounded by the deadline
