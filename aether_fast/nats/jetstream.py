"""The JetStream event store: events kept and replicated by a NATS JetStream cluster.

Layout (Aether's): one stream per namespace, named ``<namespace>_<stream>`` after
sanitising (``tenant-a`` + ``events`` -> ``tenant_a_events``), with one subject per actor,
``<subject_prefix>.<stream name>.<actor token>``. Actor ids made only of ASCII letters,
digits, ``_`` and ``-`` are their own token; any other id is the token ``~`` + its UTF-8
bytes in unpadded base64url (:func:`actor_token` / :func:`actor_from_token`). A message is
the event's native record (the LMDB store's checksummed format); its stream sequence is
the event's global position, gapless from 1. Snapshots live in a second stream,
``<stream name>_snapshots``, one subject per actor holding its latest snapshot.

Concurrency is enforced by the server: every write carries
``Nats-Expected-Last-Subject-Sequence`` (the sequence of the actor's last message), so two
writers racing on one actor cannot both win, in any number of processes. The last
sequence and version of each actor this store wrote or read are kept as a hint; a stale
hint costs one more round trip (the server refuses, the store reads the actor's last
message and checks again), never a wrong answer; the hint holds two ints per actor. ``Nats-Msg-Id`` is the event id, so a
resent publish is not stored twice; a resent ``append`` whose events are already stored
at those versions returns their positions (an idempotent retry).

A multi-event ``append`` is one atomic batch (ADR-50, nats-server 2.12+: headers
``Nats-Batch-Id``, ``Nats-Batch-Sequence``, ``Nats-Batch-Commit``, stream option
``allow_atomic``): all its events are stored or none. Where the server or the stream does
not allow atomic batches, a multi-event append raises :class:`AtomicBatchUnsupportedError`
before sending anything. A batch (or transaction) holds at most ``max_batch`` events: the
server's ``jetstream { limits { batch { max_msgs } } }``, 1000 by default.

``transaction()`` keeps the writes of a block back and commits them at its end as one
atomic batch over several actors, guarded by ``Nats-Expected-Last-Sequence``: it commits
only if nothing else was written to the stream meanwhile (else TransactionConflictError,
nothing stored), so the positions handed out inside the block are exact.

Reads use direct gets (``allow_direct``) and, for long ``read_all`` scans, an ephemeral
push consumer. In a cluster a direct get may be answered by a replica that lags behind;
an answer older than what this store has itself written or seen is asked again, so a
store always reads its own writes (reads by other stores may lag by a few milliseconds).

Durability: JetStream acknowledges a write once a quorum of replicas has it, but by
default it fsyncs only every ``sync_interval`` (2 minutes; server option ``jetstream {
sync_interval: ... }``), not per message. So with ``replicas=1`` an OS crash or power loss
(not a process crash) can lose acknowledged events, and with ``replicas=3`` a correlated
loss of power on a quorum can too. To make every acknowledged event durable, run the
servers with ``jetstream { sync_interval: always }`` (an fsync per write, slower),
ideally with ``replicas=3`` as well.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import inspect
import logging
import re
import struct
import threading
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import orjson

from .._native import decode_record, encode_record, with_position
from ..errors import (
    AetherError,
    AtomicBatchUnsupportedError,
    CorruptRecordError,
    InvalidInputError,
    InvalidTypeError,
    NatsAccessError,
    NatsBusError,
    StorageError,
    StoreClosedError,
    TransactionConflictError,
    VersionConflictError,
)
from ..model import (
    EXPECT_NAMES,
    ActorSnapshot,
    ColumnarEvents,
    Event,
    EventStored,
    ExpectedVersion,
    ReplayError,
    ReplayResult,
    check_actor_id,
    check_batch,
    check_from_version,
    check_position,
    decode_snapshot,
    encode_snapshot,
    parse_expected_version,
)
from ..namespace import DEFAULT_NAMESPACE, validate_namespace
from ..store.subscription import CommitNotifier, Subscription

if TYPE_CHECKING:
    from nats.aio.client import Client
    from typing_extensions import Self

YEAR_SECONDS = 365 * 24 * 3600.0
_log = logging.getLogger("aether_fast.nats.jetstream")
_CHUNK = 1024                     # messages per batched direct get
_HEARTBEAT = 2.0                  # seconds between a stream consumer's idle heartbeats
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_STREAM_CHARS = re.compile(r"[^A-Za-z0-9_]")
_WRONG_LAST = re.compile(r"wrong last sequence: (\d+)")
_ERR_WRONG_LAST_SEQUENCE = 10071
_ERR_BATCH_DISABLED = 10174
_SNAP_HEADER = struct.Struct("<qqB")
_TRANSIENT_STATUS = {503}


@dataclass(frozen=True)
class JetStreamConfig:
    """Stream settings, with Aether's defaults: file storage, one replica, one year.

    ``max_age`` (seconds, 0 = forever), ``max_bytes`` and ``max_msgs`` (-1 = unlimited)
    are the stream's retention limits; ``duplicate_window`` (seconds, 0: the server's
    2 minutes) how long the server remembers message ids; ``max_batch`` the most events of
    one append or transaction (the servers' ``jetstream.limits.batch.max_msgs``, default
    1000); ``timeout`` bounds one request and ``retry_for`` how long a write or read is
    retried through timeouts and leader elections."""

    stream: str = "events"
    subject_prefix: str = "aether.store"
    storage: Literal["file", "memory"] = "file"
    replicas: int = 1
    max_age: float = YEAR_SECONDS
    max_bytes: int = -1
    max_msgs: int = -1
    duplicate_window: float = 120.0
    max_batch: int = 1000
    timeout: float = 5.0
    retry_for: float = 30.0

    def __post_init__(self) -> None:
        if self.storage not in ("file", "memory"):
            raise InvalidInputError(f"storage must be 'file' or 'memory', got {self.storage!r}")
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or not 1 <= self.replicas <= 5:
            raise InvalidInputError(f"replicas must be an int from 1 to 5, got {self.replicas!r}")
        if not isinstance(self.stream, str) or not _SAFE_TOKEN.fullmatch(self.stream):
            raise InvalidInputError(f"stream must be ASCII letters, digits, '_' or '-', got {self.stream!r}")
        if not isinstance(self.subject_prefix, str) or not re.fullmatch(
                r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", self.subject_prefix):
            raise InvalidInputError(f"subject_prefix must be dot-separated tokens, got {self.subject_prefix!r}")
        for name in ("max_age", "duplicate_window", "timeout", "retry_for"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (
                    name == "timeout" and value == 0):
                raise InvalidInputError(f"{name} must be a number of seconds >= 0 (timeout > 0), got {value!r}")
        if isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise InvalidInputError(f"max_batch must be a positive int, got {self.max_batch!r}")
        for name in ("max_bytes", "max_msgs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < -1 or value == 0:
                raise InvalidInputError(f"{name} must be a positive int or -1 (unlimited), got {value!r}")


def stream_name(namespace: str, stream: str = "events") -> str:
    """Aether's stream name for a namespace: ``<namespace>_<stream>`` with every character
    other than ASCII letters, digits and ``_`` replaced by ``_``."""
    return _STREAM_CHARS.sub("_", f"{validate_namespace(namespace)}_{stream}")


def actor_token(actor_id: str) -> str:
    """The subject token of an actor id (reversible, see :func:`actor_from_token`)."""
    if _SAFE_TOKEN.fullmatch(actor_id):
        return actor_id
    return "~" + base64.urlsafe_b64encode(actor_id.encode("utf-8")).rstrip(b"=").decode("ascii")


def actor_from_token(token: str) -> str:
    """The actor id of a subject token made by :func:`actor_token`."""
    if not token.startswith("~"):
        return token
    body = token[1:]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("utf-8")


def _nanos(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


class _Transient(Exception):
    """A request failed in a way worth retrying (timeout, no responders, no leader)."""


class JetStreamEventStore:
    """The async event store over JetStream; open it with :meth:`open`.

    ``store = await JetStreamEventStore.open("nats://127.0.0.1:4222", namespace="tenant-a")``
    (a URL, a list of URLs, or a connected ``nats.aio.client.Client``, which the store then
    does not close). Every method of the EventStore and SnapshotStore protocols is a
    coroutine here, except ``read_all`` and ``subscribe`` (async iterators, arguments
    checked at the call), ``transaction`` (an async context manager) and ``closed``. ``bus``: an object with ``publish(namespace, event)`` (sync or
    async), given an ``EventStored`` notice after each stored event.
    """

    def __init__(self, nc: Client, config: JetStreamConfig, namespace: str, *, owns_connection: bool,
                 bus: Any = None, denied: set[str] | None = None) -> None:
        self._nc = nc
        # subjects (lower-cased) the server reported a permissions violation for, filled by
        # the error callback of a connection the store made; a request to one of them that
        # times out raises NatsAccessError instead of being retried, one that succeeds
        # removes it
        self._denied = set() if denied is None else denied
        self.config = config
        self.namespace = namespace
        self.stream = stream_name(namespace, config.stream)
        self.snapshot_stream = f"{self.stream}_snapshots"
        self._subject_base = f"{config.subject_prefix}.{self.stream}."
        self._snap_base = f"{config.subject_prefix}.{self.snapshot_stream}."
        self._owns = owns_connection
        self._bus = bus
        self._tips: dict[str, tuple[int, int]] = {}      # actor -> (last sequence, version): a hint
        self._snap_seqs: dict[str, int] = {}              # actor -> its snapshot's sequence seen last
        # the highest sequence of the events stream this store has seen: a direct get may be
        # served by a replica that lags behind, and an answer older than this is retried
        self._seen = 0
        self._streaming: set[asyncio.Event] = set()      # wake-ups of open streamed reads, set at close
        self.atomic_batches = False
        self.max_event_bytes = int(nc.max_payload)
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def open(cls, servers: str | list[str] | Client, *, namespace: str = DEFAULT_NAMESPACE,
                   config: JetStreamConfig | None = None, bus: Any = None, creds: str | None = None,
                   **connect_options: Any) -> Self:
        """Connect (unless given a client), create the namespace's streams if missing, and
        check that an existing stream belongs to this namespace.

        ``connect_options`` go to ``nats.connect``: ``user`` / ``password``, ``token``,
        ``nkeys_seed`` (an nkey seed file), ``tls`` (an ``ssl.SSLContext``), ... ``creds``
        is a credentials file (nats-py's ``user_credentials``); nkeys and creds need the
        ``nkeys`` package. Refused credentials raise NatsAccessError at once (the store
        otherwise retries connecting forever). A write or read the user's permissions deny
        raises NatsAccessError naming the subject, after the request ``timeout``, when the
        store made the connection (on a given client the denial goes to that client's
        ``error_cb`` and the request ends in StorageError after ``retry_for``)."""
        from .bus import connect_nats, permission_denial

        namespace = validate_namespace(namespace)
        config = JetStreamConfig() if config is None else config
        if not isinstance(config, JetStreamConfig):
            raise InvalidTypeError(f"config must be a JetStreamConfig, got {type(config).__name__}")
        denied: set[str] = set()
        if isinstance(servers, (str, list)):
            user_cb = connect_options.pop("error_cb", None)

            async def on_error(error: Exception) -> None:
                denial = permission_denial(error)
                if denial is not None:
                    denied.add(denial[1])
                if user_cb is not None:
                    await user_cb(error)
                else:
                    _log.info("NATS connection of the JetStream store: %r", error)

            options = {"max_reconnect_attempts": -1, "reconnect_time_wait": 0.2, **connect_options}
            if creds is not None:
                options["user_credentials"] = creds
            try:
                nc = await connect_nats(servers, error_cb=on_error, **options)
            except NatsBusError:
                raise
            except Exception as e:
                raise StorageError(f"could not connect to NATS ({servers}): {e!r}") from e
            owns = True
        else:
            if creds is not None or connect_options:
                raise InvalidInputError("give either a connected client or connection options, not both")
            nc, owns = servers, False
        store = cls(nc, config, namespace, owns_connection=owns, bus=bus, denied=denied)
        try:
            await store._ensure_streams()
        except BaseException:
            await store.close()
            raise
        return store

    async def _ensure_streams(self) -> None:
        cfg = self.config
        common = {"storage": cfg.storage, "num_replicas": cfg.replicas, "retention": "limits",
                  "discard": "old", "allow_direct": True, "metadata": {"aether_namespace": self.namespace}}
        events = {**common, "name": self.stream, "subjects": [self._subject_base + "*"],
                  "max_age": _nanos(cfg.max_age), "max_bytes": cfg.max_bytes, "max_msgs": cfg.max_msgs,
                  "duplicate_window": _nanos(cfg.duplicate_window),
                  "allow_atomic": _server_supports_batches(self._nc)}
        snapshots = {**common, "name": self.snapshot_stream, "subjects": [self._snap_base + "*"],
                     "max_msgs_per_subject": 1}
        info = await self._ensure_stream(events)
        await self._ensure_stream(snapshots)
        self.atomic_batches = bool(info["config"].get("allow_atomic")) and _server_supports_batches(self._nc)

    async def _ensure_stream(self, config: dict) -> dict:
        name = config["name"]
        reply = await self._api(f"$JS.API.STREAM.INFO.{name}", b"", allow_error=True)
        if "error" in reply:
            if reply["error"].get("code") != 404:
                raise StorageError(f"stream {name!r}: {reply['error'].get('description')}",
                                   reply["error"].get("err_code", 0))
            reply = await self._api(f"$JS.API.STREAM.CREATE.{name}", orjson.dumps(config), allow_error=True)
            if "error" in reply and reply["error"].get("err_code") == 10058:   # created meanwhile
                reply = await self._api(f"$JS.API.STREAM.INFO.{name}", b"")
            elif "error" in reply:
                raise StorageError(f"cannot create stream {name!r}: {reply['error'].get('description')}",
                                   reply["error"].get("err_code", 0))
        owner = (reply["config"].get("metadata") or {}).get("aether_namespace")
        if owner != self.namespace:
            raise InvalidInputError(
                f"stream {name!r} belongs to namespace {owner!r}, not {self.namespace!r} "
                "(namespaces that differ only in '.'/'-' vs '_' share a stream name; pick another)")
        return reply

    async def close(self) -> None:
        """Close the store (idempotent); closes the connection if the store opened it."""
        if self._closed:
            return
        self._closed = True
        for ready in self._streaming:      # streamed reads and subscriptions end with StoreClosedError
            ready.set()
        if self._owns and not self._nc.is_closed:
            await self._nc.close()

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"JetStreamEventStore(stream={self.stream!r}, namespace={self.namespace!r}" + (
            ", closed)" if self._closed else ")")

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"JetStream store of namespace {self.namespace!r} is closed")

    # -- requests --------------------------------------------------------------------------

    async def _request(self, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> Any:
        """One request with the store's timeout; transient failures raise _Transient."""
        from nats.errors import NoRespondersError
        from nats.errors import TimeoutError as NatsTimeout

        try:
            reply = await self._nc.request(subject, payload, timeout=self.config.timeout, headers=headers)
        except (NatsTimeout, NoRespondersError, asyncio.TimeoutError) as err:
            if self._denied and subject.lower() in self._denied:
                raise self._access_denied(subject) from err
            raise _Transient(f"{type(err).__name__} on {subject}") from err
        if self._denied:
            self._denied.discard(subject.lower())     # allowed now (the permissions were changed)
        return reply

    def _access_denied(self, subject: str) -> AetherError:
        return NatsAccessError(
            f"NATS permissions of this connection's user deny publishing to {subject!r} (namespace "
            f"{self.namespace!r}, stream {self.stream!r}): nothing was stored", subject, self.namespace)

    async def _retrying(self, attempt: Any) -> Any:
        """Run ``attempt()`` until it does not raise _Transient, for at most ``retry_for`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.retry_for
        delay = 0.05
        while True:
            self._check_open()
            try:
                return await attempt()
            except _Transient as err:
                if loop.time() + delay > deadline:
                    raise StorageError(f"JetStream did not answer within {self.config.retry_for} s: {err}") from err
            await asyncio.sleep(delay)     # a retry backoff, bounded by the deadline
            delay = min(delay * 2, 1.0)

    async def _api(self, subject: str, payload: bytes, *, allow_error: bool = False) -> dict:
        async def attempt() -> dict:
            reply = orjson.loads((await self._request(subject, payload)).data)
            error = reply.get("error")
            if error and (error.get("code") in _TRANSIENT_STATUS or error.get("err_code") == 10008):
                raise _Transient(error.get("description", "unavailable"))
            if error and not allow_error:
                raise StorageError(f"{subject}: {error.get('description')}", error.get("err_code", 0))
            return reply
        return await self._retrying(attempt)

    # -- writes ----------------------------------------------------------------------------

    async def save_event(self, event: Event) -> int:
        """Store one event; its version must exceed the actor's latest (else
        VersionConflictError). Re-saving a stored event returns its position."""
        if not isinstance(event, Event):
            raise InvalidTypeError(f"expected an Event, got {type(event).__name__}: {event!r:.80}")
        self._check_open()
        return (await self._write(event.actor_id, [event], 0, 0))[0]

    async def append(self, actor_id: str, events: Sequence[Event], *,
                     expected_version: ExpectedVersion = "any") -> list[int]:
        """Store one actor's events atomically (one batch); returns their positions.

        Same contract as ``LmdbEventStore.append``: versions strictly increase and exceed
        the actor's latest, ``expected_version`` checks that latest, a resent batch returns
        its original positions, and a failed check writes nothing."""
        self._check_open()
        check_actor_id(actor_id)
        kind, expected = parse_expected_version(expected_version)
        events = check_batch(actor_id, events)
        if len(events) > self.config.max_batch:
            raise InvalidInputError(
                f"a JetStream batch holds at most max_batch={self.config.max_batch} events, got {len(events)}")
        return await self._write(actor_id, events, kind, expected) if events else []

    def _records(self, events: list[Event]) -> list[bytes]:
        records = [encode_record(ev) for ev in events]
        for ev, rec in zip(events, records):
            if len(rec) > self.max_event_bytes:
                raise InvalidInputError(
                    f"event {ev.id!r} encodes to {len(rec)} bytes, over the server's max_payload "
                    f"of {self.max_event_bytes}")
        return records

    async def _write(self, actor_id: str, events: list[Event], kind: int, expected: int) -> list[int]:
        records = self._records(events)
        txn = self._txn()
        if txn is not None:
            return await self._write_in_txn(txn, actor_id, events, records, kind, expected)
        if len(events) > 1 and not self.atomic_batches:
            raise AtomicBatchUnsupportedError(
                f"stream {self.stream!r} does not allow atomic batch publish (needs nats-server 2.12+ and "
                "allow_atomic on the stream): a multi-event append would not be atomic, so nothing was sent")
        subject = self._subject_base + actor_token(actor_id)
        first = events[0]
        tip = self._tips.get(actor_id, (0, 0))    # a hint: the server checks it
        fresh = False
        for _ in range(1000):
            seq, latest = tip
            if _fails(first.version, latest, kind, expected):
                if not fresh:
                    tip, fresh = await self._fetch_tip(actor_id), True
                    continue
                return await self._refused(actor_id, events, latest, kind, expected)
            messages = [(subject, rec) for rec in records]
            headers = {"Nats-Expected-Last-Subject-Sequence": str(seq)}
            if len(events) == 1:
                headers["Nats-Msg-Id"] = first.id
            try:
                ack = await self._publish(messages, headers)
            except _Transient:    # lost in transit or no leader: resending is safe (see _stored_positions)
                ack = await self._retrying(lambda m=messages, h=headers: self._publish(m, h))
            error = ack.get("error")
            if error is None:
                last = ack["seq"]
                self._saw(last)
                self._tips[actor_id] = (last, events[-1].version)
                positions = list(range(last - len(events) + 1, last + 1))
                if self._bus is not None:
                    await self._notify(events, positions)
                return positions
            if error.get("err_code") == _ERR_WRONG_LAST_SEQUENCE:
                tip, fresh = await self._fetch_tip(actor_id, _wrong_last(error)), True
                continue
            if error.get("err_code") == _ERR_BATCH_DISABLED:
                self.atomic_batches = False
                raise AtomicBatchUnsupportedError(f"stream {self.stream!r}: {error.get('description')}; nothing was stored")
            raise StorageError(f"JetStream refused the write to {subject}: {error.get('description')}",
                               error.get("err_code", 0))
        raise StorageError(f"actor {actor_id!r}: no write succeeded after 1000 attempts under contention")

    async def _publish(self, messages: list[tuple[str, bytes]], first_headers: dict[str, str]) -> dict:
        """Publish one message, or the messages as one atomic batch (``first_headers`` on
        the first); returns the parsed ack."""
        if len(messages) == 1:
            return orjson.loads((await self._request(*messages[0], first_headers)).data)
        batch_id = uuid.uuid4().hex
        start = asyncio.ensure_future(self._request(*messages[0], {
            "Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": "1", **first_headers}))
        try:
            await asyncio.sleep(0)      # let the first message go out before the rest
            for i, (subject, rec) in enumerate(messages[1:-1], 2):
                await self._nc.publish(subject, rec, headers={"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(i)})
            commit = await self._request(*messages[-1], {
                "Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(len(messages)), "Nats-Batch-Commit": "1"})
        finally:
            [started] = await asyncio.gather(start, return_exceptions=True)
        if not isinstance(started, BaseException) and started.data:
            first = orjson.loads(started.data)
            if first.get("error"):
                return first
        return orjson.loads(commit.data)

    async def _refused(self, actor_id: str, events: list[Event], latest: int, kind: int, expected: int) -> list[int]:
        """After a failed check against the actor's true ``latest`` version: the positions
        of an idempotent retry, else VersionConflictError (as the other stores)."""
        first = events[0]
        if first.version <= latest:
            stored = await self._stored_positions(actor_id, events)
            if stored is not None:
                return stored
            raise VersionConflictError(actor_id, latest, first.version, None if kind == 0 else (
                expected if kind == 3 else EXPECT_NAMES[kind]))
        raise VersionConflictError(actor_id, latest, first.version, expected if kind == 3 else EXPECT_NAMES[kind])

    # -- transactions ------------------------------------------------------------------------

    def _txn(self) -> _Txn | None:
        txn = _TXN.get()
        return txn if txn is not None and txn.store is self else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Every write of this task inside the block is kept back and committed at the end
        as one atomic batch (reads in the block see them); an exception discards them all.
        Tasks created inside the block share it (it lives in a context variable).

        The commit succeeds only if nothing else was written to the namespace's stream
        since the block began (``Nats-Expected-Last-Sequence``), so the positions returned
        inside the block are exact; otherwise TransactionConflictError and nothing is
        stored: run the block again. At most 1000 events; snapshots saved in the block are
        written after the events commit."""
        txn = await self._begin()
        token = _TXN.set(txn)
        try:
            yield
        finally:
            _TXN.reset(token)
        await self._commit(txn)

    async def _begin(self) -> _Txn:
        self._check_open()
        if self._txn() is not None:
            raise AetherError("a transaction is already open here; transactions do not nest")
        if not self.atomic_batches:
            raise AtomicBatchUnsupportedError(
                f"stream {self.stream!r} does not allow atomic batch publish, which transactions need")
        return _Txn(self, await self.last_position())

    async def _write_in_txn(self, txn: _Txn, actor_id: str, events: list[Event], records: list[bytes],
                            kind: int, expected: int) -> list[int]:
        pending = txn.by_actor.get(actor_id)
        latest = pending[-1].version if pending else (await self._fetch_tip(actor_id))[1]
        if _fails(events[0].version, latest, kind, expected):
            return await self._refused(actor_id, events, latest, kind, expected)
        if len(txn.events) + len(events) > self.config.max_batch:
            raise InvalidInputError(
                f"a JetStream transaction holds at most max_batch={self.config.max_batch} events")
        subject = self._subject_base + actor_token(actor_id)
        positions = []
        for ev, rec in zip(events, records):
            stored = with_position(ev, txn.base + len(txn.events) + 1)
            txn.events.append(stored)
            txn.by_actor.setdefault(actor_id, []).append(stored)
            txn.messages.append((subject, rec))
            positions.append(stored.position)
        return positions

    async def _commit(self, txn: _Txn) -> None:
        if txn.events:
            headers = {"Nats-Expected-Last-Sequence": str(txn.base)}
            if len(txn.events) == 1:
                headers["Nats-Msg-Id"] = txn.events[0].id
            try:
                ack = await self._publish(txn.messages, headers)
            except _Transient:
                ack = await self._retrying(lambda: self._publish(txn.messages, headers))
            error = ack.get("error")
            if error is not None:
                if error.get("err_code") != _ERR_WRONG_LAST_SEQUENCE:
                    raise StorageError(f"JetStream refused the transaction: {error.get('description')}",
                                       error.get("err_code", 0))
                first = await self.read_range(txn.base + 1, 1)
                if not first or first[0].id != txn.events[0].id:     # not an earlier try of ours
                    raise TransactionConflictError(
                        f"stream {self.stream!r} changed since the transaction began (at position "
                        f"{txn.base}); nothing of the transaction was stored")
            self._saw(txn.events[-1].position)
            for actor_id, evs in txn.by_actor.items():
                self._tips[actor_id] = (evs[-1].position, evs[-1].version)
            if self._bus is not None:
                await self._notify(txn.events, [e.position for e in txn.events])
        for snapshot in txn.snapshots:
            await self.save_snapshot(snapshot)

    async def _notify(self, events: list[Event], positions: list[int]) -> None:
        for ev, pos in zip(events, positions):
            result = self._bus.publish(self.namespace, EventStored.notice(ev, pos))
            if inspect.isawaitable(result):
                await result

    async def _stored_positions(self, actor_id: str, events: list[Event]) -> list[int] | None:
        """The positions of ``events`` if each is stored (same id at the same version)."""
        stored = {e.version: e for e in await self.get_events(actor_id, events[0].version)}
        out = []
        for ev in events:
            found = stored.get(ev.version)
            if found is None or found.id != ev.id:
                return None
            out.append(found.position)
        return out

    async def save_snapshot(self, snapshot: ActorSnapshot) -> None:
        """Store a snapshot; it replaces the actor's snapshot unless that one has a higher
        version (only the latest is kept, so ``get_latest_snapshot`` is one read)."""
        self._check_open()
        actor_id, version, ts_ns, state, raw = encode_snapshot(snapshot)
        txn = self._txn()
        if txn is not None:
            txn.snapshots.append(snapshot)
            return
        subject = self._snap_base + actor_token(actor_id)
        payload = _SNAP_HEADER.pack(version, ts_ns, raw) + state
        at_least = self._snap_seqs.get(actor_id, 0)
        for _ in range(1000):
            current = await self._direct_last(self.snapshot_stream, subject, at_least)
            seq = 0
            if current is not None:
                seq = self._snap_seqs[actor_id] = int(current.headers["Nats-Sequence"])
                if _SNAP_HEADER.unpack_from(current.data)[0] > version:
                    return
            ack = await self._retrying(lambda s=seq: self._request(
                subject, payload, {"Nats-Expected-Last-Subject-Sequence": str(s)}))
            reply = orjson.loads(ack.data)
            error = reply.get("error")
            if error is None:
                self._snap_seqs[actor_id] = reply["seq"]
                return
            at_least = _wrong_last(error)
            if error.get("err_code") != _ERR_WRONG_LAST_SEQUENCE:
                raise StorageError(f"JetStream refused the snapshot of {actor_id!r}: {error.get('description')}")
        raise StorageError(f"snapshot of {actor_id!r}: no write succeeded after 1000 attempts")

    # -- reads -----------------------------------------------------------------------------

    def _saw(self, seq: int) -> None:
        self._seen = max(self._seen, seq)

    async def _direct_last(self, stream: str, subject: str, at_least: int = 0) -> Any:
        """The last message on ``subject`` (a direct get), or None; an answer older than
        sequence ``at_least`` comes from a lagging replica and is asked again."""

        async def attempt() -> Any:
            msg = await self._request(f"$JS.API.DIRECT.GET.{stream}.{subject}", b"")
            status = msg.headers.get("Status") if msg.headers else None
            if status == "503" or (at_least and (
                    status == "404" or (status is None and int(msg.headers["Nats-Sequence"]) < at_least))):
                raise _Transient(f"direct get of {subject}: a replica behind sequence {at_least} answered")
            return msg

        msg = await self._retrying(attempt)
        status = msg.headers.get("Status") if msg.headers else None
        if status == "404":
            return None
        if status is not None:
            raise StorageError(f"direct get of {subject}: status {status} {msg.headers.get('Description', '')}")
        return msg

    async def _fetch_tip(self, actor_id: str, at_least: int = 0) -> tuple[int, int]:
        """The actor's (last sequence, version), read from the stream; not older than the
        hint or than ``at_least``."""
        known = max(self._tips.get(actor_id, (0, 0))[0], at_least)
        msg = await self._direct_last(self.stream, self._subject_base + actor_token(actor_id), known)
        if msg is None:
            self._tips.pop(actor_id, None)
            return (0, 0)
        seq = int(msg.headers["Nats-Sequence"])
        tip = (seq, decode_record(msg.data, seq).version)
        self._tips[actor_id] = tip
        return tip

    async def get_latest_version(self, actor_id: str) -> int:
        """The actor's latest version, 0 when it has none: one read of its last message."""
        self._check_open()
        txn = self._txn()
        if txn is not None and actor_id in txn.by_actor:
            return txn.by_actor[actor_id][-1].version
        return (await self._fetch_tip(check_actor_id(actor_id)))[1]

    async def _direct_batch(self, start: int, limit: int, subject: str | None,
                            at_least: int) -> tuple[list[tuple[int, bytes]], int]:
        """Up to ``limit`` messages from sequence ``start`` (of one subject if given), in
        order, with the count still pending after them; an answer that ends before
        sequence ``at_least`` comes from a lagging replica and is asked again."""
        request = {"seq": start, "batch": limit}
        if subject is not None:
            request["next_by_subj"] = subject
        payload = orjson.dumps(request)

        async def attempt() -> tuple[list[tuple[int, bytes]], int]:
            out: list[tuple[int, bytes]] = []
            done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

            async def on_msg(msg: Any) -> None:
                headers = msg.headers
                status = headers.get("Status") if headers else None
                if status is None:
                    out.append((int(headers["Nats-Sequence"]), msg.data))
                elif not done.done():
                    if status == "204":
                        done.set_result(int(headers.get("Nats-Num-Pending", "0")))
                    elif status == "404":
                        done.set_result(0)
                    elif status == "503":
                        done.set_exception(_Transient(f"direct get: {headers.get('Description', '')}"))
                    else:
                        done.set_exception(StorageError(f"direct get: status {status} {headers.get('Description', '')}"))

            inbox = self._nc.new_inbox()
            sub = await self._nc.subscribe(inbox, cb=on_msg)
            try:
                await self._nc.publish(f"$JS.API.DIRECT.GET.{self.stream}", payload, reply=inbox)
                try:
                    pending = await asyncio.wait_for(done, self.config.timeout)
                except asyncio.TimeoutError:
                    raise _Transient(f"direct get from {start} timed out") from None
            finally:
                await sub.unsubscribe()
            last = out[-1][0] if out else start - 1
            if not pending and last < at_least:
                raise _Transient(f"direct get: a replica behind sequence {at_least} answered")
            return out, pending

        return await self._retrying(attempt)

    async def _actor_records(self, actor_id: str) -> list[tuple[int, bytes]]:
        subject = self._subject_base + actor_token(actor_id)
        known = self._tips.get(actor_id, (0, 0))[0]
        out: list[tuple[int, bytes]] = []
        start = 1
        while True:
            chunk, pending = await self._direct_batch(start, _CHUNK, subject, known)
            out += chunk
            if not chunk or not pending:
                return out
            start = chunk[-1][0] + 1

    async def get_events(self, actor_id: str, from_version: int = 1) -> list[Event]:
        """The actor's events with version >= ``from_version``, in version order; raises
        CorruptRecordError on an undecodable message (see ``get_events_with_errors``)."""
        self._check_open()
        check_actor_id(actor_id)
        from_version = check_from_version(from_version)
        events = [decode_record(data, seq) for seq, data in await self._actor_records(actor_id)]
        return [e for e in events + self._pending(actor_id) if e.version >= from_version]

    def _pending(self, actor_id: str) -> list[Event]:
        """The actor's events written in this task's open transaction."""
        txn = self._txn()
        return [] if txn is None else txn.by_actor.get(actor_id, [])

    async def get_events_with_errors(self, actor_id: str, from_version: int = 1) -> ReplayResult:
        """The decodable events, and a ReplayError per undecodable message."""
        self._check_open()
        check_actor_id(actor_id)
        from_version = check_from_version(from_version)
        events: list[Event] = []
        errors: list[ReplayError] = []
        for seq, data in await self._actor_records(actor_id):
            try:
                event = decode_record(data, seq)
            except CorruptRecordError as err:
                errors.append(ReplayError(seq, data, err))
                continue
            if event.version >= from_version:
                events.append(event)
        events += [e for e in self._pending(actor_id) if e.version >= from_version]
        return ReplayResult(events, errors)

    async def last_position(self) -> int:
        """The sequence of the stream's last message (0 when empty)."""
        self._check_open()
        txn = self._txn()
        if txn is not None:
            return txn.base + len(txn.events)
        info = await self._api(f"$JS.API.STREAM.INFO.{self.stream}", b"")
        last = int(info["state"]["last_seq"])
        self._saw(last)
        return last

    async def read_range(self, from_position: int, limit: int) -> list[Event]:
        """Up to ``limit`` events of the global log from ``from_position``, in order."""
        self._check_open()
        txn = self._txn()
        stored_limit = limit if txn is None else max(0, min(limit, txn.base - from_position + 1))
        events = []
        if stored_limit:
            chunk, _ = await self._direct_batch(from_position, stored_limit, None,
                                                min(self._seen, from_position + stored_limit - 1))
            events = [decode_record(data, seq) for seq, data in chunk]
        if txn is not None and len(events) < limit:
            events += [e for e in txn.events if e.position >= from_position][:limit - len(events)]
        return events

    def read_all(self, from_position: int = 1, limit: int | None = None) -> AsyncIterator[Event]:
        """The global log from ``from_position`` on (stream order). Up to the stream's last
        message at the call, more than a chunk is streamed by an ephemeral consumer,
        the rest is read in chunks by batched direct gets (so later events appear too)."""
        self._check_open()
        start = check_position(from_position, "from_position")
        limit = _check_limit(limit)

        async def events() -> AsyncIterator[Event]:
            position, left = start, limit
            last = await self.last_position()
            if self._txn() is None and last - position + 1 > _CHUNK and (left is None or left > _CHUNK):
                end = last if left is None else min(last, position + left - 1)
                async for chunk in self._stream_range(position, end):
                    for event in chunk:
                        yield event
                    position = chunk[-1].position + 1
                    if left is not None:
                        left -= len(chunk)
            while left is None or left > 0:
                chunk = await self.read_range(position, _CHUNK if left is None else min(left, _CHUNK))
                if not chunk:
                    return
                for event in chunk:
                    yield event
                position = chunk[-1].position + 1
                if left is not None:
                    left -= len(chunk)

        return events()

    async def _stream_range(self, start: int, end: int | None) -> AsyncIterator[list[Event]]:
        """Events from ``start`` to ``end`` (None: on and on, live), in chunks, pushed by an
        ephemeral ordered consumer (no acks, flow control). A gap in its delivery (a slow
        subscriber), or heartbeats that stop (a lost consumer), restart it after the last
        event received. Cheaper per message than direct gets (no per-message headers)."""
        loop = asyncio.get_running_loop()
        while end is None or start <= end:
            self._check_open()
            ready = asyncio.Event()
            box: list[Event] = []
            state: dict[str, Any] = {"next_cseq": 1, "restart": False, "done": False, "error": None,
                                     "alive": loop.time()}

            async def on_msg(msg: Any, box: list[Event] = box, ready: asyncio.Event = ready,
                             state: dict = state) -> None:
                headers = msg.headers
                if headers and "Status" in headers:
                    state["alive"] = loop.time()
                    if msg.reply:       # flow control: answer so delivery goes on
                        await self._nc.publish(msg.reply, b"")
                    return
                tokens = msg.reply.split(".")
                sseq, cseq = (int(tokens[5]), int(tokens[6])) if len(tokens) == 9 else (
                    int(tokens[7]), int(tokens[8]))
                if cseq != state["next_cseq"] or state["done"] or state["error"]:
                    state["restart"] = True
                    ready.set()
                    return
                state["next_cseq"] = cseq + 1
                if end is None or sseq <= end:
                    try:
                        box.append(decode_record(msg.data, sseq))
                    except CorruptRecordError as err:   # reported, never skipped
                        state["error"] = err
                if end is not None and sseq >= end:
                    state["done"] = True
                if end is None or len(box) >= _CHUNK or state["done"] or state["error"]:
                    ready.set()

            inbox = self._nc.new_inbox()
            sub = await self._nc.subscribe(inbox, cb=on_msg)
            name = f"aether_{uuid.uuid4().hex}"
            config = {"name": name, "deliver_subject": inbox, "deliver_policy": "by_start_sequence",
                      "opt_start_seq": start, "ack_policy": "none", "flow_control": True,
                      "idle_heartbeat": _nanos(_HEARTBEAT), "mem_storage": True, "num_replicas": 1,
                      "inactive_threshold": _nanos(30.0)}
            self._streaming.add(ready)
            try:
                await self._api(f"$JS.API.CONSUMER.CREATE.{self.stream}.{name}",
                                orjson.dumps({"stream_name": self.stream, "config": config}))
                while True:
                    try:
                        await asyncio.wait_for(ready.wait(), _HEARTBEAT)
                        self._check_open()
                    except asyncio.TimeoutError:
                        if loop.time() - state["alive"] > 3 * _HEARTBEAT:
                            break        # no heartbeat: the consumer is gone; start another
                        continue
                    ready.clear()
                    state["alive"] = loop.time()
                    chunk, box[:] = box[:], []
                    if chunk:
                        start = chunk[-1].position + 1
                        yield chunk
                    if state["error"] is not None:
                        raise state["error"]
                    if state["restart"] or state["done"]:
                        break
            finally:
                self._streaming.discard(ready)
                if not self._nc.is_closed:
                    await sub.unsubscribe()
                    await self._nc.publish(f"$JS.API.CONSUMER.DELETE.{self.stream}.{name}", b"")

    def subscribe(self, from_position: int = 1, *, event_types: Iterable[str] | None = None) -> AsyncIterator[Event]:
        """Every event from ``from_position`` on, history then live, in position order with no
        gap or repeat, pushed by the server (no polling): ``async for event in
        store.subscribe(...)``; close the iterator (``aclose()``, or leave the loop) to stop."""
        self._check_open()
        position = check_position(from_position, "from_position")
        types = _check_event_types(event_types)

        async def events() -> AsyncIterator[Event]:
            async for chunk in self._stream_range(position, None):
                for event in chunk:
                    if types is None or event.event_type in types:
                        yield event

        return events()

    async def read_columns(self, actor_id: str | None = None, *, from_position: int = 1,
                           to_position: int | None = None) -> ColumnarEvents:
        """Numpy columns (see ColumnarEvents) of one actor's events or of the global log
        between two positions (inclusive)."""
        self._check_open()
        if actor_id is not None:
            check_actor_id(actor_id)
        start = check_position(from_position, "from_position")
        end = 2**63 - 1 if to_position is None else check_position(to_position, "to_position")
        if actor_id is not None:
            rows = [e for e in await self.get_events(actor_id) if start <= e.position <= end]
        else:
            rows = []
            async for e in self.read_all(start, None if end == 2**63 - 1 else max(0, end - start + 1)):
                rows.append(e)
        return ColumnarEvents.from_events(rows)

    async def get_latest_snapshot(self, actor_id: str) -> ActorSnapshot | None:
        """The actor's snapshot with the highest version, or None."""
        self._check_open()
        check_actor_id(actor_id)
        msg = await self._direct_last(self.snapshot_stream, self._snap_base + actor_token(actor_id),
                                      self._snap_seqs.get(actor_id, 0))
        latest = None
        if msg is not None:
            version, ts_ns, raw = _SNAP_HEADER.unpack_from(msg.data)
            latest = decode_snapshot(actor_id, version, ts_ns, msg.data[_SNAP_HEADER.size:], bool(raw))
        txn = self._txn()
        for snap in [] if txn is None else txn.snapshots:     # later ones replace equal versions
            if snap.actor_id == actor_id and (latest is None or snap.version >= latest.version):
                _, version, ts_ns, state, raw = encode_snapshot(snap)
                latest = decode_snapshot(actor_id, version, ts_ns, state, raw)
        return latest


_TXN: contextvars.ContextVar[_Txn | None] = contextvars.ContextVar("aether_jetstream_txn", default=None)


@dataclass
class _Txn:
    """The writes of an open transaction, kept back until its commit."""

    store: JetStreamEventStore
    base: int                                   # the stream's last sequence when it began
    events: list[Event] = field(default_factory=list)
    by_actor: dict[str, list[Event]] = field(default_factory=dict)
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    snapshots: list[ActorSnapshot] = field(default_factory=list)


async def _within(txn: _Txn, coro: Any) -> Any:
    """Run ``coro`` with ``txn`` as the task's open transaction."""
    _TXN.set(txn)
    return await coro


def _fails(version: int, latest: int, kind: int, expected: int) -> bool:
    """Whether writing ``version`` breaks the version rule or the expectation, given ``latest``."""
    return version <= latest or (kind == 1 and latest > 0) or (kind == 2 and not latest) or (
        kind == 3 and latest != expected)


def _wrong_last(error: dict) -> int:
    """The subject's last sequence named by a 'wrong last sequence: N' error (0 if absent)."""
    found = _WRONG_LAST.search(error.get("description", ""))
    return int(found.group(1)) if found else 0


def _check_event_types(event_types: object) -> frozenset[str] | None:
    if event_types is None:
        return None
    if isinstance(event_types, str) or not isinstance(event_types, Iterable):
        raise InvalidTypeError(f"event_types must be a collection of str, got {type(event_types).__name__}")
    types = frozenset(event_types)
    if not all(isinstance(t, str) and t for t in types):
        raise InvalidInputError(f"event_types must be non-empty strings, got {sorted(map(repr, types))}")
    return types


def _check_limit(limit: object) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidTypeError(f"limit must be an int or None, got {type(limit).__name__}")
    if limit < 0:
        raise InvalidInputError(f"limit must be >= 0, got {limit}")
    return limit


def _server_supports_batches(nc: Client) -> bool:
    """Whether the connected server has atomic batch publish (nats-server 2.12+)."""
    version = nc.connected_server_version
    try:
        return (version.major, version.minor) >= (2, 12)
    except (TypeError, ValueError):
        return False




class SyncJetStreamEventStore:
    """The blocking EventStore/SnapshotStore API over a :class:`JetStreamEventStore` run on
    a private event-loop thread; same arguments as ``JetStreamEventStore.open``.

    ``subscribe`` polls the stream every ``poll_interval`` (0.05 s: each poll is a request
    to the server) for other writers' events and is woken at once by this object's own
    writes; the async store's ``subscribe`` is pushed by the server instead."""

    def __init__(self, servers: str | list[str], *, namespace: str = DEFAULT_NAMESPACE,
                 config: JetStreamConfig | None = None, bus: Any = None, creds: str | None = None,
                 **connect_options: Any) -> None:
        if not isinstance(servers, (str, list)):
            raise InvalidTypeError(f"servers must be a URL or a list of URLs, got {type(servers).__name__}")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="aether-jetstream", daemon=True)
        self._thread.start()
        self._notifier = CommitNotifier()
        self._local = threading.local()
        try:
            self._store: JetStreamEventStore = self._run(JetStreamEventStore.open(
                servers, namespace=namespace, config=config, bus=bus, creds=creds, **connect_options))
        except BaseException:
            self._stop_loop()
            raise
        self.namespace = self._store.namespace

    def _run(self, coro: Any) -> Any:
        txn = getattr(self._local, "txn", None)
        if txn is not None:
            coro = _within(txn, coro)
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _live(self) -> JetStreamEventStore:
        self._store._check_open()
        return self._store

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    @property
    def store(self) -> JetStreamEventStore:
        """The async store underneath (its coroutines run on this object's loop)."""
        return self._store

    def close(self) -> None:
        if self._store.closed:
            return
        self._run(self._store.close())
        self._stop_loop()

    @property
    def closed(self) -> bool:
        return self._store.closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Sync{self._store!r}"

    def save_event(self, event: Event) -> int:
        position = self._run(self._live().save_event(event))
        self._notifier.notify()
        return position

    def append(self, actor_id: str, events: Sequence[Event], *,
               expected_version: ExpectedVersion = "any") -> list[int]:
        positions = self._run(self._live().append(actor_id, events, expected_version=expected_version))
        self._notifier.notify()
        return positions

    def save_snapshot(self, snapshot: ActorSnapshot) -> None:
        self._run(self._live().save_snapshot(snapshot))

    def get_events(self, actor_id: str, from_version: int = 1) -> list[Event]:
        return self._run(self._live().get_events(actor_id, from_version))

    def get_events_with_errors(self, actor_id: str, from_version: int = 1) -> ReplayResult:
        return self._run(self._live().get_events_with_errors(actor_id, from_version))

    def get_latest_version(self, actor_id: str) -> int:
        return self._run(self._live().get_latest_version(actor_id))

    def get_latest_snapshot(self, actor_id: str) -> ActorSnapshot | None:
        return self._run(self._live().get_latest_snapshot(actor_id))

    def last_position(self) -> int:
        return self._run(self._live().last_position())

    def read_all(self, from_position: int = 1, limit: int | None = None) -> Iterator[Event]:
        store = self._live()
        start = check_position(from_position, "from_position")
        limit = _check_limit(limit)

        def events() -> Iterator[Event]:
            position, left = start, limit
            while left is None or left > 0:
                chunk = self._run(store.read_range(position, _CHUNK if left is None else min(left, _CHUNK)))
                if not chunk:
                    return
                yield from chunk
                position = chunk[-1].position + 1
                if left is not None:
                    left -= len(chunk)

        return events()

    def read_columns(self, actor_id: str | None = None, *, from_position: int = 1,
                     to_position: int | None = None) -> ColumnarEvents:
        return self._run(self._live().read_columns(actor_id, from_position=from_position, to_position=to_position))

    def subscribe(self, from_position: int = 1, *, event_types: Iterable[str] | None = None,
                  poll_interval: float = 0.05) -> Subscription:
        store = self._live()
        return Subscription(lambda position, limit: self._run(store.read_range(position, limit)), self._notifier,
                            from_position=from_position, event_types=event_types, poll_interval=poll_interval)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """This thread's writes inside the block commit together at its end, as
        ``JetStreamEventStore.transaction``; an exception discards them."""
        store = self._live()
        if getattr(self._local, "txn", None) is not None:
            raise AetherError("a transaction is already open in this thread; transactions do not nest")
        txn = self._run(store._begin())
        self._local.txn = txn
        try:
            yield
        finally:
            self._local.txn = None
        self._run(store._commit(txn))
        self._notifier.notify()


__all__ = [
    "AtomicBatchUnsupportedError",
    "JetStreamConfig",
    "JetStreamEventStore",
    "SyncJetStreamEventStore",
    "TransactionConflictError",
    "actor_from_token",
    "actor_token",
    "stream_name",
]
