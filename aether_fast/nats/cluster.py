"""Cluster coordination over NATS: membership by heartbeats, a leader lease in KV, shards.

``ClusterNode(nc, node_id)`` joins a cluster over a connected nats-py client ``nc``
(JetStream enabled on the server)::

    async with ClusterNode(nc, "node-1", config=ClusterConfig(), bus=bus) as node:
        node.is_leader, node.term, node.owned_shards, node.owner_of("order-123")

Membership (Aether's discovery, in seconds rather than minutes): every node publishes a
heartbeat on ``aether.discovery`` every ``heartbeat_interval`` seconds; a node silent for
``failure_timeout`` seconds is declared failed; ``stop()`` announces a graceful leave. A new
node asks for an immediate answer, so it knows its peers within a round trip.

Leader election: a lease in the KV bucket ``aether-leader-election``, key ``leader``, whose
value is ``{"node_id": ..., "term": T}``. A claim is one atomic conditional publish that
succeeds only if the key holds no live lease and nothing was written to the bucket since the
claimant read it; the term is the revision the claim gets, so terms only grow and two claims
can never share one. The leader renews with update-with-revision every ``renew_interval``;
the bucket's TTL (``lease_ttl``) expires an unrenewed lease, and the server's expiry marker
wakes the other nodes at once. A leader that has not renewed within ``0.8 * lease_ttl`` of
its last successful renewal (measured from before that request was sent) steps down on its
own, before the server can expire its lease: no two leaders in one term, and no two leaders
at once while the leader's event loop runs. A graceful stop deletes the lease. Leadership
notices come as callbacks (``on_became_leader(term)``, ``on_lost_leadership(term)``,
``on_new_leader(leader_id, term)``) and as the async stream ``node.leadership_changes()``.

Shards: only the leader assigns; the assignment of all ``shards`` (1024) is one value in the
KV bucket ``aether-shard-assignments`` (key ``assignments``), written with
update-with-revision and carrying the writer's term. Every node watches it and knows its
own shards (and reads it again every ``renew_interval``, in case a watch stalled on a lost
server). The leader writes a new assignment only when the set of live nodes changes; the
placement strategy (the consistent hash ring by default) moves only the shards that must
move: those of a departed node, or those the ring gives to a new one. A write whose stored
term is newer than the writer's makes the writer step down (fencing a deposed leader).

Cluster events, published on the local ``bus`` (an :class:`~aether_fast.bus.EventBus`) in
namespace ``aether.cluster`` when a bus is given, as :class:`~aether_fast.model.Event`
objects whose ``actor_id`` is the node the event is about and whose ``version`` counts the
events this node has emitted (1, 2, ...). Each node reports what it observes; every ``data``
has ``observer`` (the reporting node id):

=================== =====================================================================
``NodeJoined``      ``node_id``, ``incarnation``, ``rejoined`` (it had been declared
                    failed), ``restarted`` (a new process under a known id)
``NodeLeft``        ``node_id``, ``incarnation`` (a graceful stop)
``NodeFailed``      ``node_id``, ``incarnation``, ``silent_for`` (seconds without heartbeat)
``LeaderElected``   ``leader_id``, ``term``
``ShardsRebalanced`` ``leader_id``, ``term``, ``revision``, ``nodes`` (the owners' ids),
                    ``moved`` (``[shard, old owner or None, new owner]`` for every shard
                    whose owner changed; the first assignment a node sees lists every
                    shard, from None)
=================== =====================================================================

``node.metrics()`` is a snapshot (ClusterMetrics): ``is_leader``, ``term``, ``owned_shards``,
``live_nodes`` and counters of heartbeats, elections, rebalances.

Limits: a node cut off from NATS keeps believing in its last assignment until it
reconnects (the assignment fences writers, not readers); a leader whose event loop is
blocked past its local deadline cannot step down in time, and only the term fence protects
the assignment then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

try:
    import nats.errors
    from nats.js.errors import APIError, KeyWrongLastSequenceError, NotFoundError
except ImportError as err:  # pragma: no cover - depends on the installed extras
    raise ImportError("aether_fast.nats.cluster needs nats-py: pip install 'aether_fast[nats]'") from err

from .._native import Event, check_id
from ..errors import AetherError, ClusterConfigError, ClusterError, InvalidInputError, InvalidTypeError
from ..namespace import validate_namespace
from ..ring import DEFAULT_SHARDS, PlacementStrategy, RingPlacement, ShardMap, shard_for

if TYPE_CHECKING:
    from typing_extensions import Self

    from ..bus import EventBus

log = logging.getLogger(__name__)

DISCOVERY_SUBJECT = "aether.discovery"
ELECTION_BUCKET = "aether-leader-election"
LEADER_KEY = "leader"
SHARD_BUCKET = "aether-shard-assignments"
ASSIGNMENT_KEY = "assignments"
CLUSTER_NAMESPACE = "aether.cluster"
LOCAL_LEASE_FRACTION = 0.8

NODE_JOINED = "NodeJoined"
NODE_LEFT = "NodeLeft"
NODE_FAILED = "NodeFailed"
LEADER_ELECTED = "LeaderElected"
SHARDS_REBALANCED = "ShardsRebalanced"

BECAME_LEADER = "became_leader"
LOST_LEADERSHIP = "lost_leadership"
NEW_LEADER = "new_leader"

_BUCKET_NAME = re.compile(r"[A-Za-z0-9_-]+")
_SUBJECT = re.compile(r"[^.\s*>]+(\.[^.\s*>]+)*")
_HDR_EXPECTED_LAST_SEQ = "Nats-Expected-Last-Sequence"
_HDR_EXPECTED_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
_HDR_KV_OP = "KV-Operation"
_HDR_MARKER = "Nats-Marker-Reason"
_WRONG_LAST_SEQUENCE = (10071, 10164)
_STREAM_CONFIG_MISMATCH = 10058
_NATS_ERRORS = (asyncio.TimeoutError, nats.errors.Error)   # timeouts, disconnections, refusals


@dataclass(frozen=True)
class ClusterConfig:
    """Timing and names of a cluster; every node of one cluster uses the same values.

    Seconds throughout. ``heartbeat_interval`` / ``failure_timeout``: membership;
    ``lease_ttl`` / ``renew_interval``: the leader lease (the leader steps down after
    ``0.8 * lease_ttl`` without a successful renewal); ``shards``: shard count;
    ``replicas``: replicas of the two KV buckets (3 on a 3-server cluster);
    ``request_timeout``: bound of every other NATS request; ``start_timeout``: how long
    ``start()`` retries its setup (a replicated bucket may still be electing its leader);
    ``settle``: how long a freshly
    started node that becomes leader listens to heartbeats before its first assignment
    (default one heartbeat interval). Names default to Aether's.
    """

    heartbeat_interval: float = 1.0
    failure_timeout: float = 3.0
    lease_ttl: float = 3.0
    renew_interval: float = 1.0
    shards: int = DEFAULT_SHARDS
    replicas: int = 1
    request_timeout: float = 2.0
    start_timeout: float = 15.0
    settle: float | None = None
    discovery_subject: str = DISCOVERY_SUBJECT
    election_bucket: str = ELECTION_BUCKET
    shard_bucket: str = SHARD_BUCKET
    namespace: str = CLUSTER_NAMESPACE

    def __post_init__(self) -> None:
        for name in ("heartbeat_interval", "failure_timeout", "lease_ttl", "renew_interval", "request_timeout",
                     "start_timeout"):
            _check_seconds(name, getattr(self, name))
        if self.settle is not None:
            _check_seconds("settle", self.settle, allow_zero=True)
        if self.failure_timeout <= self.heartbeat_interval:
            raise InvalidInputError(
                f"failure_timeout ({self.failure_timeout}) must be longer than heartbeat_interval "
                f"({self.heartbeat_interval})"
            )
        if self.renew_interval * 2 > self.lease_ttl:
            raise InvalidInputError(
                f"renew_interval ({self.renew_interval}) must be at most half of lease_ttl ({self.lease_ttl}), "
                "so that a leader renews at least once before it has to step down"
            )
        for name in ("shards", "replicas"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidTypeError(f"{name} must be an int, got {type(value).__name__}")
        if not 1 <= self.shards <= 1 << 16:
            raise InvalidInputError(f"shards must be between 1 and {1 << 16}, got {self.shards}")
        if not 1 <= self.replicas <= 5:
            raise InvalidInputError(f"replicas must be between 1 and 5, got {self.replicas}")
        for name in ("election_bucket", "shard_bucket"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _BUCKET_NAME.fullmatch(value):
                raise InvalidInputError(f"{name} must be letters, digits, '-' or '_', got {value!r}")
        if self.election_bucket == self.shard_bucket:
            raise InvalidInputError(f"election_bucket and shard_bucket must differ, both are {self.shard_bucket!r}")
        if not isinstance(self.discovery_subject, str) or not _SUBJECT.fullmatch(self.discovery_subject):
            raise InvalidInputError(
                f"discovery_subject must be a NATS subject without wildcards, got {self.discovery_subject!r}"
            )
        validate_namespace(self.namespace)

    @property
    def settle_time(self) -> float:
        return self.heartbeat_interval if self.settle is None else self.settle


def _check_seconds(name: str, value: object, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidTypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not (value >= 0 if allow_zero else value > 0) or value > 86400:
        raise InvalidInputError(f"{name} must be {'>= 0' if allow_zero else '> 0'} seconds (at most a day), got {value}")


@dataclass(frozen=True)
class LeadershipChange:
    """One leadership notice: ``kind`` is ``"became_leader"`` (this node won ``term``),
    ``"lost_leadership"`` (this node stopped leading ``term``) or ``"new_leader"``
    (``leader_id`` leads ``term``; also sent to the winner itself)."""

    kind: str
    leader_id: str | None
    term: int


@dataclass(frozen=True)
class ShardAssignment:
    """One stored assignment: ``owners[shard]`` is the owning node id."""

    revision: int
    term: int
    leader_id: str
    nodes: tuple[str, ...]
    owners: tuple[str, ...]

    def shards_of(self, node_id: str) -> frozenset[int]:
        return frozenset(s for s, owner in enumerate(self.owners) if owner == node_id)

    def to_shard_map(self) -> ShardMap:
        """The assignment as the ring module's ShardMap (what placement strategies take)."""
        index = {node: i for i, node in enumerate(self.nodes)}
        return ShardMap(self.nodes, [index[owner] for owner in self.owners])


@dataclass(frozen=True)
class ClusterMetrics:
    """A snapshot of one node's view: gauges ``is_leader``, ``term``, ``owned_shards``,
    ``live_nodes`` (this one included), ``assignment_revision``; counters
    ``heartbeats_sent``, ``heartbeats_received``, ``elections_won``, ``leadership_lost``,
    ``rebalances`` (assignments this node wrote as leader), ``event_publish_errors``."""

    node_id: str
    leader_id: str | None
    is_leader: bool
    term: int
    owned_shards: int
    live_nodes: int
    assignment_revision: int
    heartbeats_sent: int
    heartbeats_received: int
    elections_won: int
    leadership_lost: int
    rebalances: int
    event_publish_errors: int


@dataclass
class _Member:
    incarnation: str
    last_seen: float


@dataclass
class _Counters:
    heartbeats_sent: int = 0
    heartbeats_received: int = 0
    elections_won: int = 0
    leadership_lost: int = 0
    rebalances: int = 0
    event_publish_errors: int = 0


@dataclass
class _Lease:
    term: int
    revision: int
    deadline: float
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


Callback = Callable[..., Any]


class ClusterNode:
    """One member of a cluster over NATS (see the module docstring).

    ``nc``: a connected nats-py client; ``placement``: a PlacementStrategy (the hash ring by
    default); ``bus``: an EventBus for the cluster events. Callbacks (plain or async
    functions; an exception in one is logged): ``on_became_leader(term)``,
    ``on_lost_leadership(term)``, ``on_new_leader(leader_id, term)``,
    ``on_shards_changed(gained, lost)`` with frozensets of shard numbers.
    """

    def __init__(
        self,
        nc: Any,
        node_id: str,
        *,
        config: ClusterConfig | None = None,
        placement: PlacementStrategy | None = None,
        bus: EventBus | None = None,
        on_became_leader: Callback | None = None,
        on_lost_leadership: Callback | None = None,
        on_new_leader: Callback | None = None,
        on_shards_changed: Callback | None = None,
    ) -> None:
        self.node_id = check_id(node_id, "node_id")
        if config is not None and not isinstance(config, ClusterConfig):
            raise InvalidTypeError(f"config must be a ClusterConfig, got {type(config).__name__}")
        for name, cb in (("on_became_leader", on_became_leader), ("on_lost_leadership", on_lost_leadership),
                         ("on_new_leader", on_new_leader), ("on_shards_changed", on_shards_changed)):
            if cb is not None and not callable(cb):
                raise InvalidTypeError(f"{name} must be callable, got {type(cb).__name__}")
        self.config = config or ClusterConfig()
        if placement is not None and not isinstance(placement, PlacementStrategy):
            raise InvalidTypeError(f"placement must be a PlacementStrategy, got {type(placement).__name__}")
        self.placement = placement if placement is not None else RingPlacement()
        self.incarnation = uuid.uuid4().hex
        self._nc = nc
        self._bus = bus
        self._callbacks = {BECAME_LEADER: on_became_leader, LOST_LEADERSHIP: on_lost_leadership,
                           NEW_LEADER: on_new_leader}
        self._on_shards_changed = on_shards_changed
        self._members: dict[str, _Member] = {}
        self._failed: set[str] = set()
        self._departed: set[str] = set()      # incarnations that left gracefully
        self._lease: _Lease | None = None
        self._term = 0
        self._leader_id: str | None = None
        self._assignment: ShardAssignment | None = None
        self._owned: frozenset[int] = frozenset()
        self._counters = _Counters()
        self._event_version = 0
        self._listeners: list[asyncio.Queue[LeadershipChange | None]] = []
        self._tasks: list[asyncio.Task] = []
        self._background: set[asyncio.Task] = set()
        self._watchers: list[Any] = []
        self._sub: Any = None
        self._started = False
        self._stopped = False
        self._started_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_election = asyncio.Event()
        self._rebalance_needed = asyncio.Event()
        self._js: Any = None
        self._election_kv: Any = None
        self._shard_kv: Any = None

    # ------------------------------------------------------------------ public view

    @property
    def is_leader(self) -> bool:
        return self._lease is not None

    @property
    def term(self) -> int:
        """The newest term this node knows of (0 before any leader)."""
        return self._term

    @property
    def leader_id(self) -> str | None:
        """The leader of ``term`` as far as this node knows, or None."""
        return self._leader_id

    @property
    def live_nodes(self) -> frozenset[str]:
        """This node and every peer heard from within ``failure_timeout``."""
        return frozenset(self._members) | {self.node_id}

    @property
    def assignment(self) -> ShardAssignment | None:
        """The newest shard assignment this node has seen."""
        return self._assignment

    @property
    def owned_shards(self) -> frozenset[int]:
        return self._owned

    def owner_of_shard(self, shard: int) -> str | None:
        """The node owning ``shard`` in the newest known assignment (None before one)."""
        if isinstance(shard, bool) or not isinstance(shard, int):
            raise InvalidTypeError(f"shard must be an int, got {type(shard).__name__}")
        if not 0 <= shard < self.config.shards:
            raise InvalidInputError(f"shard must be between 0 and {self.config.shards - 1}, got {shard}")
        return None if self._assignment is None else self._assignment.owners[shard]

    def shard_of(self, actor_id: str) -> int:
        """``actor id -> shard`` (the ring module's ``shard_for``)."""
        return shard_for(actor_id, self.config.shards)

    def owner_of(self, actor_id: str) -> str | None:
        """The node owning ``actor_id``'s shard (None before any assignment)."""
        return self.owner_of_shard(self.shard_of(actor_id))

    def metrics(self) -> ClusterMetrics:
        c = self._counters
        return ClusterMetrics(
            node_id=self.node_id, leader_id=self._leader_id, is_leader=self.is_leader, term=self._term,
            owned_shards=len(self._owned), live_nodes=len(self.live_nodes),
            assignment_revision=0 if self._assignment is None else self._assignment.revision,
            heartbeats_sent=c.heartbeats_sent, heartbeats_received=c.heartbeats_received,
            elections_won=c.elections_won, leadership_lost=c.leadership_lost, rebalances=c.rebalances,
            event_publish_errors=c.event_publish_errors,
        )

    async def leadership_changes(self) -> AsyncIterator[LeadershipChange]:
        """Every LeadershipChange from now until the node stops."""
        queue: asyncio.Queue[LeadershipChange | None] = asyncio.Queue()
        self._listeners.append(queue)
        try:
            while not self._stopped:
                change = await queue.get()
                if change is None:
                    return
                yield change
        finally:
            self._listeners.remove(queue)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> Self:
        """Create or open the buckets, subscribe, announce this node and start its loops."""
        if self._started:
            raise ClusterError(f"cluster node {self.node_id!r} was already started")
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._started_at = self._loop.time()
        cfg = self.config
        self._js = self._nc.jetstream(timeout=cfg.request_timeout)
        deadline = self._started_at + cfg.start_timeout
        delay = 0.05
        while True:
            try:
                current = await self._setup()
                break
            except _NATS_ERRORS as err:   # e.g. a replicated bucket still electing its leader
                await self._close_subscriptions()
                if self._loop.time() + cfg.request_timeout > deadline:
                    self._stopped = True
                    raise ClusterError(
                        f"cluster node {self.node_id!r} could not set up within start_timeout "
                        f"({cfg.start_timeout} s): {err!r}"
                    ) from err
                log.info("cluster node %s: setup failed, retrying: %r", self.node_id, err)
                await asyncio.sleep(min(delay, max(0.0, deadline - self._loop.time())))
                delay = min(2 * delay, 1.0)
            except BaseException:
                await self._close_subscriptions()
                self._stopped = True
                raise
        if current is not None:
            self._apply_assignment(current)
        await self._send_heartbeat(hello=True)
        self._tasks = [asyncio.create_task(coro, name=f"cluster-{self.node_id}-{coro.__name__}") for coro in (
            self._heartbeat_loop(), self._monitor_loop(), self._election_loop(), self._rebalance_loop(),
            self._watch_leader(self._watchers[0]), self._watch_assignment(self._watchers[1]), self._resync_loop(),
        )]
        for task in self._tasks:
            task.add_done_callback(self._loop_ended)
        return self

    def _loop_ended(self, task: asyncio.Task) -> None:
        """A loop that ends before stop() is a bug: say so loudly rather than go quiet."""
        if not task.cancelled() and task.exception() is not None:
            log.error("cluster node %s: loop %s failed", self.node_id, task.get_name(), exc_info=task.exception())
        elif not self._stopped:
            log.error("cluster node %s: loop %s ended before stop()", self.node_id, task.get_name())

    async def _setup(self) -> ShardAssignment | None:
        """Buckets, the stored assignment, the discovery subscription and the two watches."""
        cfg = self.config
        self._election_kv = await self._open_bucket(cfg.election_bucket, ttl=cfg.lease_ttl, history=1)
        self._shard_kv = await self._open_bucket(cfg.shard_bucket, ttl=None, history=8)
        _, current = await self._read_assignment()
        if current is not None and len(current.owners) != cfg.shards:
            raise ClusterConfigError(
                f"the stored assignment in {cfg.shard_bucket!r} has {len(current.owners)} shards, "
                f"this node is configured for {cfg.shards}"
            )
        self._sub = await self._nc.subscribe(cfg.discovery_subject, cb=self._on_heartbeat)
        self._watchers.append(await self._election_kv.watch(LEADER_KEY))
        self._watchers.append(await self._shard_kv.watch(ASSIGNMENT_KEY))
        return current

    async def stop(self) -> None:
        """Leave gracefully: release the lease if leading, announce the leave, stop the loops.
        Idempotent."""
        if not self._started or self._stopped:
            self._stopped = True
            return
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._lease is not None:
            lease = self._lease
            self._step_down("node stopping")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._election_kv.delete(LEADER_KEY, last=lease.revision),
                                       self.config.request_timeout)
        with contextlib.suppress(Exception):
            await self._publish_heartbeat("leaving")
            await asyncio.wait_for(self._nc.flush(), self.config.request_timeout)
        await self._close_subscriptions()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for queue in self._listeners:
            queue.put_nowait(None)

    async def _close_subscriptions(self) -> None:
        for watcher in self._watchers:
            with contextlib.suppress(Exception):
                await watcher.stop()
        self._watchers.clear()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __repr__(self) -> str:
        role = "leader" if self.is_leader else "follower"
        return f"ClusterNode({self.node_id!r}, {role}, term={self._term}, shards={len(self._owned)})"

    async def _open_bucket(self, bucket: str, *, ttl: float | None, history: int) -> Any:
        """Create the KV bucket, or open it when it exists with the same configuration."""
        options: dict[str, Any] = {"bucket": bucket, "history": history, "replicas": self.config.replicas}
        if ttl is not None:
            options.update(ttl=ttl, limit_marker_ttl=max(1.0, ttl))
        try:
            return await self._js.create_key_value(**options)
        except APIError as err:
            if err.err_code != _STREAM_CONFIG_MISMATCH:
                raise
            info = await self._js.stream_info(f"KV_{bucket}")
            raise ClusterConfigError(
                f"KV bucket {bucket!r} exists with another configuration (TTL {info.config.max_age} s, "
                f"{info.config.num_replicas} replicas, history {info.config.max_msgs_per_subject}); this node wants "
                f"TTL {ttl} s, {self.config.replicas} replicas, history {history}: use the same ClusterConfig on "
                "every node, or delete the bucket"
            ) from err

    # ------------------------------------------------------------------ membership

    async def _publish_heartbeat(self, state: str, *, hello: bool = False) -> None:
        message = {"node_id": self.node_id, "incarnation": self.incarnation, "state": state, "hello": hello}
        await self._nc.publish(self.config.discovery_subject, orjson.dumps(message))
        self._counters.heartbeats_sent += 1

    async def _send_heartbeat(self, *, hello: bool = False) -> None:
        try:
            await self._publish_heartbeat("alive", hello=hello)
        except _NATS_ERRORS as err:  # a disconnected client: the next beat retries
            log.debug("cluster node %s: heartbeat not sent: %r", self.node_id, err)

    async def _heartbeat_loop(self) -> None:
        while not self._stopped:
            await asyncio.sleep(self.config.heartbeat_interval)   # the heartbeat period itself
            await self._send_heartbeat()

    async def _on_heartbeat(self, msg: Any) -> None:
        try:
            beat = orjson.loads(msg.data)
            node_id, incarnation, state = beat["node_id"], beat["incarnation"], beat["state"]
            check_id(node_id, "node_id")
            if not (isinstance(incarnation, str) and state in ("alive", "leaving")):
                raise ValueError("bad incarnation or state")
        except (ValueError, KeyError, TypeError) as err:
            log.warning("cluster node %s: ignored a malformed heartbeat %r: %s", self.node_id, msg.data[:200], err)
            return
        if node_id == self.node_id:
            if incarnation != self.incarnation:
                log.error("cluster node %s: another process uses the same node id (incarnation %s)",
                          self.node_id, incarnation)
            return
        if self._stopped or incarnation in self._departed:
            return
        self._counters.heartbeats_received += 1
        member = self._members.get(node_id)
        if state == "leaving":
            self._departed.add(incarnation)
            if member is not None and member.incarnation == incarnation:
                del self._members[node_id]
                self._emit(NODE_LEFT, node_id, {"node_id": node_id, "incarnation": incarnation})
                self._rebalance_needed.set()
            return
        now = self._loop.time()
        if member is None:
            rejoined = node_id in self._failed
            self._failed.discard(node_id)
            self._members[node_id] = _Member(incarnation, now)
            self._emit(NODE_JOINED, node_id, {"node_id": node_id, "incarnation": incarnation,
                                              "rejoined": rejoined, "restarted": False})
            self._rebalance_needed.set()
        else:
            if member.incarnation != incarnation:
                member.incarnation = incarnation
                self._emit(NODE_JOINED, node_id, {"node_id": node_id, "incarnation": incarnation,
                                                  "rejoined": False, "restarted": True})
            member.last_seen = now
        if beat.get("hello"):
            self._spawn(self._send_heartbeat())

    async def _monitor_loop(self) -> None:
        cfg = self.config
        period = min(cfg.heartbeat_interval, cfg.failure_timeout / 4)
        while not self._stopped:
            await asyncio.sleep(period)   # the failure detector's check period
            now = self._loop.time()
            for node_id, member in list(self._members.items()):
                silent = now - member.last_seen
                if silent > cfg.failure_timeout:
                    del self._members[node_id]
                    self._failed.add(node_id)
                    self._emit(NODE_FAILED, node_id, {"node_id": node_id, "incarnation": member.incarnation,
                                                      "silent_for": round(silent, 3)})
                    self._rebalance_needed.set()

    # ------------------------------------------------------------------ election

    @property
    def _leader_subject(self) -> str:
        return f"$KV.{self.config.election_bucket}.{LEADER_KEY}"

    async def _read_leader(self) -> tuple[int, dict | None]:
        """``(revision of the key's last message or 0, the live lease or None)``."""
        try:
            msg = await self._js.get_last_msg(f"KV_{self.config.election_bucket}", self._leader_subject)
        except NotFoundError:
            return 0, None
        return msg.seq, _live_lease(msg.headers, msg.data)

    async def _try_claim(self) -> None:
        """Claim the lease if nobody holds it: one publish conditional on both the key's and
        the bucket's last revision, so the term (= the claim's revision) is unique."""
        info = await self._js.stream_info(f"KV_{self.config.election_bucket}")
        stream_last = info.state.last_seq
        key_revision, lease = await self._read_leader()
        if lease is not None:
            self._observe_leader(key_revision, lease)
            return
        term = stream_last + 1
        sent = self._loop.time()
        try:
            ack = await self._js.publish(
                self._leader_subject, self._lease_value(term),
                timeout=self.config.renew_interval,
                headers={_HDR_EXPECTED_SUBJECT_SEQ: str(key_revision), _HDR_EXPECTED_LAST_SEQ: str(stream_last)},
            )
        except APIError as err:
            if err.err_code in _WRONG_LAST_SEQUENCE:
                return   # someone else wrote first; the watch tells who
            raise
        if ack.seq != term:   # cannot happen with the expected-last-sequence check; never lead blind
            raise ClusterError(f"lease claim got revision {ack.seq}, expected {term}")
        if self._stopped:
            return
        self._counters.elections_won += 1
        self._lease = _Lease(term=term, revision=ack.seq, deadline=0.0)
        self._extend_lease(sent)
        self._set_leader(self.node_id, term)
        self._notify(LeadershipChange(BECAME_LEADER, self.node_id, term))
        self._notify(LeadershipChange(NEW_LEADER, self.node_id, term))
        self._emit(LEADER_ELECTED, self.node_id, {"leader_id": self.node_id, "term": term})
        self._rebalance_needed.set()

    def _lease_value(self, term: int) -> bytes:
        return orjson.dumps({"node_id": self.node_id, "term": term, "incarnation": self.incarnation})

    def _extend_lease(self, sent: float) -> None:
        """The local deadline: ``0.8 * lease_ttl`` after the successful request was sent."""
        lease = self._lease
        assert lease is not None
        if lease.timer is not None:
            lease.timer.cancel()
        lease.deadline = sent + self.config.lease_ttl * LOCAL_LEASE_FRACTION
        lease.timer = self._loop.call_at(lease.deadline, self._lease_expired, lease)

    def _lease_expired(self, lease: _Lease) -> None:
        if self._lease is lease:
            log.warning("cluster node %s: could not renew the lease of term %d in time; stepping down",
                        self.node_id, lease.term)
            self._step_down("lease not renewed in time")
            self._spawn(self._release(lease))

    async def _release(self, lease: _Lease) -> None:
        """Best effort: delete our expired-to-us lease so another node takes over at once."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._election_kv.delete(LEADER_KEY, last=lease.revision),
                                   self.config.request_timeout)

    def _step_down(self, reason: str) -> None:
        lease, self._lease = self._lease, None
        if lease is None:
            return
        if lease.timer is not None:
            lease.timer.cancel()
        if self._leader_id == self.node_id:
            self._leader_id = None
        self._counters.leadership_lost += 1
        log.info("cluster node %s: lost leadership of term %d (%s)", self.node_id, lease.term, reason)
        self._notify(LeadershipChange(LOST_LEADERSHIP, self.node_id, lease.term))

    async def _renew(self) -> None:
        lease = self._lease
        assert lease is not None
        sent = self._loop.time()
        timeout = max(0.01, min(self.config.renew_interval, lease.deadline - sent))
        value = self._lease_value(lease.term)
        try:
            revision = await asyncio.wait_for(self._election_kv.update(LEADER_KEY, value, last=lease.revision), timeout)
        except KeyWrongLastSequenceError:
            if self._lease is lease:
                self._step_down("lease taken or expired")
            return
        except _NATS_ERRORS as err:   # the deadline timer decides
            log.debug("cluster node %s: renewal failed: %r", self.node_id, err)
            return
        if self._lease is lease:
            lease.revision = revision
            self._extend_lease(sent)

    async def _election_loop(self) -> None:
        """Leading: renew every ``renew_interval``. Following: claim when the lease is gone
        (woken by the watch), and look again every ``renew_interval`` in case a notice was
        missed."""
        interval = self.config.renew_interval
        while not self._stopped:
            if self._lease is not None:
                started = self._loop.time()
                await self._renew()
                await asyncio.sleep(max(0.0, started + interval - self._loop.time()))   # the renew period
                continue
            try:
                await self._try_claim()
            except (*_NATS_ERRORS, ClusterError) as err:
                log.debug("cluster node %s: claim attempt failed: %r", self.node_id, err)
            if self._lease is None:
                self._wake_election.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake_election.wait(), interval)

    async def _watch_leader(self, watcher: Any) -> None:
        async for entry in watcher:
            if entry is None:
                continue
            lease = None if entry.operation is not None else _parse_lease(entry.value)
            if lease is None:
                self._wake_election.set()
            else:
                self._observe_leader(entry.revision, lease)

    def _observe_leader(self, revision: int, lease: dict) -> None:
        """A live lease seen in the bucket; this process's own claims are told by _try_claim."""
        term, leader = lease["term"], lease["node_id"]
        if term <= self._term or lease.get("incarnation") == self.incarnation:
            return
        if self._lease is not None:   # a newer term exists: ours is over
            self._step_down(f"{leader!r} leads term {term}")
        self._set_leader(leader, term)
        self._notify(LeadershipChange(NEW_LEADER, leader, term))
        self._emit(LEADER_ELECTED, leader, {"leader_id": leader, "term": term})

    def _set_leader(self, leader: str, term: int) -> None:
        self._term = term
        self._leader_id = leader

    def _notify(self, change: LeadershipChange) -> None:
        for queue in self._listeners:
            queue.put_nowait(change)
        callback = self._callbacks[change.kind]
        if callback is None:
            return
        args = (change.leader_id, change.term) if change.kind == NEW_LEADER else (change.term,)
        self._call(callback, *args)

    # ------------------------------------------------------------------ shards

    @property
    def _assignment_subject(self) -> str:
        return f"$KV.{self.config.shard_bucket}.{ASSIGNMENT_KEY}"

    async def _read_assignment(self) -> tuple[int, ShardAssignment | None]:
        """``(revision of the key's last message or 0, the stored assignment or None)``."""
        try:
            msg = await self._js.get_last_msg(f"KV_{self.config.shard_bucket}", self._assignment_subject)
        except NotFoundError:
            return 0, None
        if _is_tombstone(msg.headers):
            return msg.seq, None
        return msg.seq, _parse_assignment(msg.seq, msg.data)

    async def _watch_assignment(self, watcher: Any) -> None:
        async for entry in watcher:
            if entry is None or entry.operation is not None:
                continue
            assignment = _parse_assignment(entry.revision, entry.value)
            if assignment is not None:
                self._apply_assignment(assignment)

    async def _resync_loop(self) -> None:
        """Read the assignment every ``renew_interval``: a watch whose consumer lived on a
        lost server stalls until the client notices, and this bounds the staleness."""
        while not self._stopped:
            await asyncio.sleep(self.config.renew_interval)   # the resync period
            try:
                _, current = await self._read_assignment()
            except _NATS_ERRORS as err:
                log.debug("cluster node %s: assignment resync failed: %r", self.node_id, err)
                continue
            if current is not None:
                self._apply_assignment(current)

    def _apply_assignment(self, new: ShardAssignment) -> None:
        old = self._assignment
        if old is not None and new.revision <= old.revision:
            return
        if len(new.owners) != self.config.shards:
            log.error("cluster node %s: ignored an assignment of %d shards (configured: %d)",
                      self.node_id, len(new.owners), self.config.shards)
            return
        self._assignment = new
        previous = old.owners if old is not None else (None,) * len(new.owners)
        moved = [[shard, before, after] for shard, (before, after) in enumerate(zip(previous, new.owners))
                 if before != after]
        owned = new.shards_of(self.node_id)
        gained, lost = owned - self._owned, self._owned - owned
        self._owned = owned
        self._emit(SHARDS_REBALANCED, new.leader_id, {
            "leader_id": new.leader_id, "term": new.term, "revision": new.revision,
            "nodes": list(new.nodes), "moved": moved,
        })
        if (gained or lost) and self._on_shards_changed is not None:
            self._call(self._on_shards_changed, frozenset(gained), frozenset(lost))

    async def _rebalance_loop(self) -> None:
        """As leader, write a new assignment after each change of the live nodes (and on
        election), once this node has listened for ``settle`` seconds since it started."""
        while not self._stopped:
            await self._rebalance_needed.wait()
            if self._lease is None:
                self._rebalance_needed.clear()
                continue
            settled_at = self._started_at + self.config.settle_time
            await asyncio.sleep(max(0.0, settled_at - self._loop.time()))   # listening to the first heartbeats
            self._rebalance_needed.clear()
            try:
                await self._rebalance()
            except (*_NATS_ERRORS, AetherError) as err:
                log.warning("cluster node %s: rebalance failed, retrying: %r", self.node_id, err)
                await asyncio.sleep(self.config.renew_interval)   # retry period
                self._rebalance_needed.set()
            except Exception:   # e.g. a failing placement strategy: never end the loop silently
                log.exception("cluster node %s: rebalance failed, retrying", self.node_id)
                await asyncio.sleep(self.config.renew_interval)
                self._rebalance_needed.set()

    async def _rebalance(self) -> None:
        lease = self._lease
        if lease is None:
            return
        nodes = tuple(sorted(self.live_nodes))
        revision, current = await self._read_assignment()
        if current is None:
            shard_map = self.placement.assign_shards(nodes, self.config.shards)
        else:
            if current.term > lease.term:
                if self._lease is lease:
                    self._step_down(f"an assignment of the newer term {current.term} exists")
                return
            if set(current.nodes) == set(nodes):
                self._apply_assignment(current)
                return
            shard_map = self.placement.rebalance_shards(current.to_shard_map(), nodes)
        owners = tuple(shard_map.nodes[i] for i in shard_map.owners.tolist())
        _check_owners(owners, nodes, self.config.shards)
        if self._lease is not lease or self._loop.time() >= lease.deadline:
            return
        index = {node: i for i, node in enumerate(nodes)}
        value = orjson.dumps({"term": lease.term, "leader_id": self.node_id, "nodes": nodes,
                              "owners": [index[o] for o in owners]})
        try:
            revision = await self._shard_kv.update(ASSIGNMENT_KEY, value, last=revision)
        except KeyWrongLastSequenceError:
            self._rebalance_needed.set()   # another write came first: read it and decide again
            return
        self._counters.rebalances += 1
        self._apply_assignment(ShardAssignment(revision, lease.term, self.node_id, nodes, owners))

    # ------------------------------------------------------------------ helpers

    def _emit(self, event_type: str, actor_id: str, data: dict) -> None:
        if self._bus is None:
            return
        self._event_version += 1
        event = Event(event_type=event_type, actor_id=actor_id, version=self._event_version,
                      data={**data, "observer": self.node_id})
        try:
            self._bus.publish(self.config.namespace, event)
        except AetherError as err:
            self._counters.event_publish_errors += 1
            log.warning("cluster node %s: %s not delivered to every subscriber: %s", self.node_id, event_type, err)

    def _call(self, callback: Callback, *args: object) -> None:
        try:
            result = callback(*args)
        except Exception:
            log.exception("cluster node %s: callback %r failed", self.node_id, callback)
            return
        if isinstance(result, Awaitable):
            self._spawn(_logged(result, self.node_id))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def _logged(awaitable: Awaitable[Any], node_id: str) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("cluster node %s: async callback failed", node_id)


def _is_tombstone(headers: dict | None) -> bool:
    """True for a KV delete or purge, and for the server's expiry marker."""
    return bool(headers) and (_HDR_KV_OP in headers or _HDR_MARKER in headers)


def _live_lease(headers: dict | None, data: bytes) -> dict | None:
    """The lease in a stored message, or None for a delete, purge or expiry marker."""
    return None if _is_tombstone(headers) else _parse_lease(data)


def _parse_lease(data: bytes) -> dict | None:
    try:
        lease = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if isinstance(lease, dict) and isinstance(lease.get("node_id"), str) and isinstance(lease.get("term"), int):
        return lease
    return None


def _parse_assignment(revision: int, data: bytes) -> ShardAssignment | None:
    try:
        raw = orjson.loads(data)
        nodes = tuple(raw["nodes"])
        owners = tuple(nodes[i] for i in raw["owners"])
        return ShardAssignment(revision, int(raw["term"]), str(raw["leader_id"]), nodes, owners)
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError):
        log.error("ignored a malformed shard assignment at revision %d", revision)
        return None


def _check_owners(owners: Sequence[str], nodes: Sequence[str], shards: int) -> None:
    if len(owners) != shards:
        raise ClusterError(f"the placement strategy returned {len(owners)} owners for {shards} shards")
    strangers = set(owners) - set(nodes)
    if strangers:
        raise ClusterError(f"the placement strategy assigned shards to nodes that are not live: {sorted(strangers)}")


__all__ = [
    "ASSIGNMENT_KEY",
    "BECAME_LEADER",
    "CLUSTER_NAMESPACE",
    "DISCOVERY_SUBJECT",
    "ELECTION_BUCKET",
    "LEADER_ELECTED",
    "LEADER_KEY",
    "LOST_LEADERSHIP",
    "NEW_LEADER",
    "NODE_FAILED",
    "NODE_JOINED",
    "NODE_LEFT",
    "SHARDS_REBALANCED",
    "SHARD_BUCKET",
    "ClusterConfig",
    "ClusterConfigError",
    "ClusterError",
    "ClusterMetrics",
    "ClusterNode",
    "LeadershipChange",
    "ShardAssignment",
]
