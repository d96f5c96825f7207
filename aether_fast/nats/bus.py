"""The NATS event bus: the local event bus, plus events crossing processes over NATS.

``NatsEventBus`` (asyncio, nats-py; ``pip install "aether_fast[nats]"``) is Aether's
``NATSEventBus``: ``publish(namespace, event)`` delivers to the local subscribers, then
sends the event on the subject ``<prefix>.<namespace>`` (prefix ``aether.events``) as
Aether's JSON message ``{"node_id", "namespace_id", "event"}`` with the camelCase event
form (``Event.to_dict``), so a Go Aether node and this bus can share subjects.

Subscriptions take the same arguments as ``EventBus.subscribe`` (namespace pattern with
NATS token rules, event types, actor pattern, callback or bounded buffer with an overflow
policy). The namespace pattern becomes the NATS subject pattern as it is (``*`` and ``>``
are NATS wildcards); the event-type and actor filters are applied locally. Each distinct
pattern has one NATS subscription, shared by its local subscribers and unsubscribed when
the last of them closes, and one local ``EventBus`` that holds those subscribers: an event
from NATS is delivered to the subscribers of the pattern it arrived on, an event published
here to every local subscriber whose pattern matches, so each subscriber gets each event
once. Every bus has a UUID ``node_id``; messages carrying it (its own echoes) are skipped.

Events from the wire are delivered in the event loop's thread (nats-py calls back there).
When a ``"block"`` subscription of the pattern is full, the delivery first waits for room
without blocking the loop (a reader in the loop keeps reading), at most the
subscription's ``block_timeout``; then the local bus's overflow policy applies (for a
``"block"`` subscription read by an ``async for`` in the same loop: counted as a drop).
A message that is not a valid Aether event message (bad JSON, missing fields, an invalid
event, a namespace that disagrees with the subject or is not a valid namespace) is logged
and counted in ``subscribe_errors`` under the pattern it arrived on; it never stops the bus.

Core NATS delivers at most once: events published while a subscriber is disconnected are
not replayed to it (use a store's catch-up subscription for that). The connection
reconnects by itself (nats-py's ``max_reconnect_attempts`` /
``reconnect_time_wait``) and re-subscribes; publishes made while it
reconnects are buffered by nats-py (``pending_size`` bytes) and sent once connected.

Access control: credentials go to nats-py as they are (``user`` / ``password``,
``token``, ``nkeys_seed``, ``creds``, ``tls``); credentials the server refuses raise
NatsAccessError at ``connect()`` at once (nats-py alone would retry them like an
unreachable server). A core publish is never acknowledged, so the server reports a
subject the user's permissions deny only afterwards, asynchronously (nats-py's error
callback): on its own connection the bus counts such a denial in ``publish_errors`` of
the namespace (``subscribe_errors`` of the pattern for a denied subscription) and the next
``flush()`` raises NatsAccessError naming the subject and namespace (each denial once).
``publish`` itself cannot know and returns normally. On a given ``nc`` the denial goes
to that client's ``error_cb`` only.

Like the local bus, the bus keeps a small record (its counters and cached routes) for every
namespace it has been asked to publish to, for its lifetime. Use it from one event loop;
only ``NatsSubscription`` reading and ``close()`` may happen in other threads.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import orjson

from .._native import Event, PatternIndex
from ..bus import (
    DEFAULT_BLOCK_TIMEOUT,
    DEFAULT_BUFFER,
    BusClosedError,
    BusMetrics,
    BusSubscription,
    EventBus,
    Overflow,
    SubscriberOverflowError,
    _check_buffer,
    _check_overflow,
    _check_timeout,
)
from ..errors import (
    AetherError,
    InvalidInputError,
    InvalidTypeError,
    MalformedMessageError,
    NatsAccessError,
    NatsBusError,
)
from ..namespace import MAX_NAMESPACE_LENGTH, validate_namespace, validate_namespace_pattern

if TYPE_CHECKING:
    from typing_extensions import Self

DEFAULT_SUBJECT_PREFIX = "aether.events"

_log = logging.getLogger("aether_fast.nats.bus")
# nats-py hands the server's -ERR text lower-cased: 'permissions violation for publish to "x.y"'
_DENIED = re.compile(r'permissions violation for (publish|subscription) to "?([^"\s]+)"?')
_AUTH_REFUSED = "authorization violation"
_DEFAULT = object()
_ROOM_POLL_MAX = 0.005      # the longest pause between two looks for room in a full buffer

# the local buses' counters summed into the NatsEventBus's metrics
_SUMMED = ("events_received", "events_dropped", "publish_errors", "callback_errors")


def permission_denial(error: Exception) -> tuple[str, str] | None:
    """``("publish" | "subscription", subject)`` when ``error`` (from nats-py's error
    callback) reports a permissions violation, else None. The subject is lower-cased:
    nats-py lower-cases the server's error text."""
    found = _DENIED.search(str(error).lower())
    return None if found is None else (found.group(1), found.group(2))


async def connect_nats(servers: str | list[str], **options: Any) -> Any:
    """``nats.connect`` that fails fast when the server refuses the credentials.

    nats-py treats an authorization violation at the first connect like an unreachable
    server and retries it ``max_reconnect_attempts`` times (forever with -1); this raises
    NatsAccessError at the first refusal instead. Later reconnects keep nats-py's policy.
    ``options`` are ``nats.connect``'s keywords (``error_cb`` still gets every error).
    """
    from nats.aio.client import Client

    loop = asyncio.get_running_loop()
    refused: asyncio.Future[Exception] = loop.create_future()
    user_cb = options.pop("error_cb", None)

    async def on_error(error: Exception) -> None:
        if _AUTH_REFUSED in str(error).lower() and not refused.done() and not nc.is_connected:
            refused.set_result(error)
        if user_cb is not None:
            await user_cb(error)
        else:
            _log.info("NATS connection: %r", error)

    nc = Client()
    connecting = asyncio.ensure_future(nc.connect(servers, error_cb=on_error, **options))
    await asyncio.wait({connecting, refused}, return_when=asyncio.FIRST_COMPLETED)
    if not refused.done():
        refused.cancel()
        connecting.result()     # it is done: re-raises nats-py's error, if any
        return nc
    connecting.cancel()
    await asyncio.gather(connecting, return_exceptions=True)
    if not nc.is_closed:
        await asyncio.gather(asyncio.wait_for(nc.close(), 5.0), return_exceptions=True)
    raise NatsAccessError(f"could not connect to NATS ({servers}): the server refused the credentials: "
                          f"{refused.result()!r}")


class NatsSubscription:
    """A subscription of a NatsEventBus: a local ``BusSubscription`` (every reading method
    and counter of it is available here: ``get``, ``aget``, ``iter``, ``drain``, ``for``,
    ``async for``, ``pending``, ``received``, ``dropped``, ...) tied to the NATS
    subscription of its pattern.

    ``close()`` closes it (idempotent); when it is the last subscriber of its pattern, the
    NATS subscription is removed in the background; ``await bus.unsubscribe(sub)`` does
    the same and returns once the server has been told.
    """

    __slots__ = ("_bus", "_route", "local")

    def __init__(self, bus: NatsEventBus, route: _Route, local: BusSubscription) -> None:
        self._bus = bus
        self._route = route
        self.local = local

    def __getattr__(self, name: str) -> Any:
        return getattr(self.local, name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.local)

    def __aiter__(self) -> BusSubscription:
        return self.local.__aiter__()

    def __len__(self) -> int:
        return len(self.local)

    def close(self) -> None:
        """Unsubscribe: no new event arrives; buffered ones stay readable."""
        if self.local.closed:
            return
        self.local.close()
        self._bus._release(self._route, self)

    unsubscribe = close

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Nats{self.local!r}"


class _Route:
    """One namespace pattern: its local bus (the subscribers of the pattern), its NATS
    subscription, and the ``"block"`` subscriptions whose room a wire delivery waits for."""

    __slots__ = ("blocking", "bus", "nats_sub", "pattern", "subs")

    def __init__(self, pattern: str, bus: EventBus) -> None:
        self.pattern = pattern
        self.bus = bus
        self.nats_sub: Any = None
        self.subs: list[NatsSubscription] = []          # its reference count is len(subs)
        self.blocking: list[BusSubscription] = []


class NatsEventBus:
    """Local delivery plus NATS (Aether's NATSEventBus), for one asyncio event loop.

    Give it a connected nats-py client (``nc``; the bus never closes it), or connection
    options for a connection of its own, made by ``connect()`` / ``async with`` and closed
    by ``close()``: ``servers``, ``user`` / ``password``, ``token``, ``creds`` (a
    credentials file, nats-py's ``user_credentials``; needs the ``nkeys`` package), ``tls`` (an ``ssl.SSLContext``) and
    any other ``nats.connect`` keyword. nats-py's reconnect defaults apply (60 attempts, 2 s
    apart, for the first connect too); ``max_reconnect_attempts=-1`` retries forever.

    ``subject_prefix``: subjects are ``<subject_prefix>.<namespace>``. ``node_id``: the id
    put in every message and used to skip this bus's own echoes (a new UUID by default).
    ``buffer`` / ``overflow`` / ``block_timeout``: defaults of ``subscribe``, as for
    ``EventBus``. ``pending_msgs_limit`` / ``pending_bytes_limit``: nats-py's limits of the
    queue of each NATS subscription (its defaults: 524,288 messages, 128 MiB); beyond them
    nats-py drops messages, which the bus counts in ``events_dropped`` when it owns the
    connection (on a given ``nc`` they go to that client's ``error_cb`` only).
    """

    def __init__(self, nc: Any = None, *, subject_prefix: str = DEFAULT_SUBJECT_PREFIX,
                 node_id: str | None = None, buffer: int = DEFAULT_BUFFER, overflow: Overflow = "block",
                 block_timeout: float | None = DEFAULT_BLOCK_TIMEOUT, creds: str | None = None,
                 pending_msgs_limit: int | None = None, pending_bytes_limit: int | None = None,
                 **connect_options: Any) -> None:
        if nc is not None and (connect_options or creds is not None):
            raise InvalidInputError(
                f"give either a connected client (nc) or connection options, not both: got nc and "
                f"{sorted([*connect_options, *(['creds'] if creds is not None else [])])}")
        try:
            validate_namespace(subject_prefix)
        except AetherError as e:
            raise type(e)(f"subject_prefix: {e}") from None
        if node_id is None:
            node_id = str(uuid.uuid4())
        elif not isinstance(node_id, str) or not node_id or '"' in node_id or "\\" in node_id:
            raise InvalidInputError(f"node_id must be a non-empty str without quotes or backslashes, got {node_id!r}")
        self.default_buffer = _check_buffer(buffer)
        self.default_overflow: Overflow = _check_overflow(overflow)  # type: ignore[assignment]
        self.default_block_timeout = _check_timeout(block_timeout)
        self.node_id = node_id
        self.subject_prefix = subject_prefix
        self.nc = nc
        self._own_connection = nc is None
        if creds is not None:
            connect_options["user_credentials"] = creds
        self._connect_options = connect_options
        self._routes: dict[str, _Route] = {}
        self._index = PatternIndex()
        self._gen = 0
        self._ns_routes: dict[str, tuple[int, tuple[_Route, ...], str]] = {}   # gen, routes, subject
        self._echo_prefix = orjson.dumps({"node_id": node_id})[:-1] + b","
        self._published: dict[str, int] = {}
        self._publish_errors: dict[str, int] = {}
        self._subscribe_errors: dict[str, int] = {}
        self._retired: dict[str, dict[str, int]] = {name: {} for name in _SUMMED}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._wire_drops: dict[str, int] = {}
        self._denials: list[NatsAccessError] = []
        self._limits = {name: value for name, value in (("pending_msgs_limit", pending_msgs_limit),
                                                         ("pending_bytes_limit", pending_bytes_limit))
                        if value is not None}
        for name, value in self._limits.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be a positive int, got {value!r}")
        self.closed = False

    # -- connection --

    async def connect(self) -> Self:
        """Connect (when made with connection options and not yet connected)."""
        if self.closed:
            raise BusClosedError("the NATS event bus is closed")
        self._loop = asyncio.get_running_loop()
        if self.nc is None:
            try:
                import nats  # noqa: F401 - an optional dependency: a clear message when missing
            except ImportError as e:
                raise ImportError("NatsEventBus needs nats-py: pip install 'aether_fast[nats]'") from e
            options = dict(self._connect_options)
            servers = options.pop("servers", "nats://localhost:4222")
            options["error_cb"] = self._error_callback(options.get("error_cb"))
            try:
                self.nc = await connect_nats(servers, **options)
            except NatsAccessError:
                raise
            except Exception as e:
                raise NatsBusError(f"could not connect to NATS ({servers}): {e!r}") from e
        return self

    def _error_callback(self, user_cb: Callable[[Exception], Awaitable[None]] | None
                        ) -> Callable[[Exception], Awaitable[None]]:
        """nats-py's error callback for the bus's own connection: a message nats-py
        dropped for one of the bus's subscriptions (its slow-consumer limit) is counted in
        ``events_dropped``; then ``user_cb`` (or a quiet log line) gets the error."""
        from nats.errors import SlowConsumerError

        async def on_error(error: Exception) -> None:
            if isinstance(error, SlowConsumerError) and any(
                    route.nats_sub is error.sub for route in self._routes.values()):
                namespace = error.subject[len(self.subject_prefix) + 1:]
                self._wire_drops[namespace] = self._wire_drops.get(namespace, 0) + 1
            denial = permission_denial(error)
            if denial is not None:
                self._denied(*denial)
            if user_cb is not None:
                await user_cb(error)
            else:
                _log.info("NATS connection: %r", error)

        return on_error

    def _denied(self, kind: str, subject: str) -> None:
        """Count a publish or subscription the server denied on one of this bus's subjects
        (``subject`` is lower-cased by nats-py: matched case-insensitively) and keep it
        for the next ``flush()`` to raise."""
        prefix = self.subject_prefix.lower() + "."
        if not subject.startswith(prefix):
            return
        name = subject[len(prefix):]
        if kind == "publish":
            namespace = next((ns for ns in self._published if ns.lower() == name), name)
            self._publish_errors[namespace] = self._publish_errors.get(namespace, 0) + 1
            what = f"publish to {subject!r} (namespace {namespace!r}): the event reached no other node"
        else:
            namespace = next((p for p in self._subscribe_patterns() if p.lower() == name), name)
            self._subscribe_errors[namespace] = self._subscribe_errors.get(namespace, 0) + 1
            what = f"subscription to {subject!r} (pattern {namespace!r}): it receives nothing from NATS"
        self._denials.append(NatsAccessError(
            f"NATS permissions of this connection's user deny the {what}", subject, namespace))

    def _subscribe_patterns(self) -> list[str]:
        return [*self._routes, *self._subscribe_errors]

    def _client(self) -> Any:
        if self.closed:
            raise BusClosedError("the NATS event bus is closed")
        if self.nc is None:
            raise NatsBusError("the NATS event bus is not connected: await bus.connect() or use 'async with'")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self.nc

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until the server has processed everything this bus sent (see ``flush_nats``).

        Then, on the bus's own connection, raises NatsAccessError for the publishes and
        subscriptions the server denied since the last flush (each is reported once)."""
        nc = self._client()
        try:
            await flush_nats(nc, timeout)
        except Exception as e:
            raise NatsBusError(f"flush failed: {e!r}") from e
        if self._denials:
            denials, self._denials = self._denials, []
            more = f" (and {len(denials) - 1} more denials)" if len(denials) > 1 else ""
            first = denials[0]
            raise NatsAccessError(f"{first.args[0]}{more}", first.subject, first.namespace)

    async def close(self) -> None:
        """Close every subscription (buffered events stay readable), remove the NATS
        subscriptions, and close the connection if the bus made it. Idempotent."""
        if self.closed:
            return
        self.closed = True
        for route in list(self._routes.values()):
            for sub in route.subs:
                sub.local.close()
            route.subs.clear()
            self._retire(route)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._own_connection and self.nc is not None and not self.nc.is_closed:
            await self.nc.close()

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- subscribing --

    async def subscribe(
        self,
        namespace_pattern: str,
        *,
        event_types: Iterable[str] | None = None,
        actor_pattern: str | None = None,
        callback: Callable[..., Any] | None = None,
        buffer: int | None = None,
        overflow: Overflow | None = None,
        block_timeout: float | None | object = _DEFAULT,
        with_namespace: bool = False,
    ) -> NatsSubscription:
        """Subscribe to the namespaces matching ``namespace_pattern``, here and on NATS.

        Same arguments and rules as ``EventBus.subscribe``; a callback runs in the event
        loop's thread. Returns once the NATS subscription of the pattern is sent (``await
        bus.flush()`` to know the server has it).
        """
        try:
            nc = self._client()
            validate_namespace_pattern(namespace_pattern)
            route = self._routes.get(namespace_pattern)
            new = route is None
            if route is None:
                route = _Route(namespace_pattern, EventBus(
                    buffer=self.default_buffer, overflow=self.default_overflow,
                    block_timeout=self.default_block_timeout))
            extra: dict[str, Any] = {} if block_timeout is _DEFAULT else {"block_timeout": block_timeout}
            local = route.bus.subscribe(namespace_pattern, event_types=event_types, actor_pattern=actor_pattern,
                                        callback=callback, buffer=buffer, overflow=overflow,
                                        with_namespace=with_namespace, **extra)
            sub = NatsSubscription(self, route, local)
            route.subs.append(sub)
            if local.callback is None and local.overflow == "block":
                route.blocking.append(local)
            if new:
                self._routes[namespace_pattern] = route
                self._index.add(namespace_pattern, route)
                self._gen += 1
                try:
                    route.nats_sub = await nc.subscribe(self._subject(namespace_pattern),
                                                        cb=self._handler(route), **self._limits)
                except Exception as e:
                    for other in route.subs:
                        other.local.close()
                    route.subs.clear()
                    self._retire(route)
                    raise NatsBusError(f"NATS subscribe to {self._subject(namespace_pattern)!r} failed: {e!r}") from e
        except AetherError:
            key = namespace_pattern[:MAX_NAMESPACE_LENGTH] if isinstance(namespace_pattern, str) else "?"
            self._subscribe_errors[key] = self._subscribe_errors.get(key, 0) + 1
            raise
        return sub

    async def unsubscribe(self, subscription: NatsSubscription) -> None:
        """Close ``subscription``; when it was the last of its pattern, return once the
        NATS unsubscribe is sent."""
        if not isinstance(subscription, NatsSubscription):
            raise InvalidTypeError(f"expected a NatsSubscription, got {type(subscription).__name__}")
        subscription.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def subscriptions(self) -> list[NatsSubscription]:
        """The active subscriptions."""
        return [sub for route in self._routes.values() for sub in route.subs]

    def nats_patterns(self) -> dict[str, int]:
        """The namespace patterns this bus has a NATS subscription for, with the number of
        local subscribers of each."""
        return {pattern: len(route.subs) for pattern, route in self._routes.items()}

    def _release(self, route: _Route, sub: NatsSubscription) -> None:
        loop = self._loop
        if loop is not None and asyncio._get_running_loop() is not loop:
            try:
                loop.call_soon_threadsafe(self._release, route, sub)
            except RuntimeError:    # the loop is closed: nothing left to release
                pass
            return
        if sub.local in route.blocking:
            route.blocking.remove(sub.local)
        if sub in route.subs:
            route.subs.remove(sub)
            if not route.subs and self._routes.get(route.pattern) is route:
                self._retire(route)

    def _retire(self, route: _Route) -> None:
        """Forget a pattern with no subscriber left: keep its counters, drop its NATS
        subscription (in a task of the loop: nats-py's unsubscribe is a coroutine)."""
        if self._routes.get(route.pattern) is route:
            del self._routes[route.pattern]
            self._index.remove(route.pattern, route)
            self._gen += 1
        counters = route.bus.metrics()
        for name, column in self._retired.items():
            for key, value in getattr(counters, name).items():
                column[key] = column.get(key, 0) + value
        route.bus.close()
        nats_sub, route.nats_sub = route.nats_sub, None
        if nats_sub is not None:
            task = asyncio.get_running_loop().create_task(self._nats_unsubscribe(nats_sub))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _nats_unsubscribe(self, nats_sub: Any) -> None:
        from nats.errors import Error as NatsError

        try:
            await nats_sub.unsubscribe()
        except NatsError as e:   # connection closed or draining: the interest is gone anyway
            _log.debug("NATS unsubscribe of %r: %r", nats_sub.subject, e)

    # -- publishing --

    def _subject(self, namespace: str) -> str:
        return f"{self.subject_prefix}.{namespace}"

    def _lookup(self, namespace: str) -> tuple[tuple[_Route, ...], str]:
        """The routes whose pattern matches ``namespace`` (cached until the patterns change)
        and its subject; the name is validated the first time."""
        hit = self._ns_routes.get(namespace)
        if hit is not None and hit[0] == self._gen:
            return hit[1], hit[2]
        if hit is None:
            validate_namespace(namespace)
        routes = self._index.match(namespace)
        subject = self._subject(namespace)
        self._ns_routes[namespace] = (self._gen, routes, subject)
        return routes, subject

    def encode(self, namespace: str, event: Event) -> bytes:
        """The NATS message body of ``event`` in ``namespace`` (Aether's JSON form)."""
        if not isinstance(event, Event):
            raise InvalidTypeError(f"publish takes an Event, got {type(event).__name__}")
        return orjson.dumps({"node_id": self.node_id, "namespace_id": namespace, "event": event.to_dict()})

    async def publish(self, namespace: str, event: Event) -> None:
        """Deliver ``event`` to the local subscribers of ``namespace``, then send it on NATS.

        Raises SubscriberOverflowError / PublishTimeoutError (after sending it on NATS)
        when a local ``"error"`` / ``"block"`` subscription could not take it, and
        NatsBusError when NATS refuses it (the local subscribers have it then).
        """
        nc = self._client()
        routes, subject = self._lookup(namespace)
        payload = self.encode(namespace, event)
        overflow: SubscriberOverflowError | None = None
        for route in routes:
            try:
                route.bus.publish(namespace, event)
            except SubscriberOverflowError as e:
                overflow = e
        self._published[namespace] = self._published.get(namespace, 0) + 1
        try:
            await nc.publish(subject, payload)
        except Exception as e:
            raise self._publish_failed(namespace, subject, e) from e
        if overflow is not None:
            raise overflow

    async def publish_many(self, namespace: str, events: Iterable[Event]) -> None:
        """``publish`` each of ``events`` in order (one local delivery call, one NATS
        message per event)."""
        if not isinstance(events, (list, tuple)):
            events = list(events)
        nc = self._client()
        routes, subject = self._lookup(namespace)
        payloads = [self.encode(namespace, event) for event in events]
        overflow: SubscriberOverflowError | None = None
        for route in routes:
            try:
                route.bus.publish_many(namespace, events)
            except SubscriberOverflowError as e:
                overflow = e
        self._published[namespace] = self._published.get(namespace, 0) + len(events)
        try:
            for payload in payloads:
                await nc.publish(subject, payload)
        except Exception as e:
            raise self._publish_failed(namespace, subject, e) from e
        if overflow is not None:
            raise overflow

    def _publish_failed(self, namespace: str, subject: str, error: Exception) -> NatsBusError:
        self._publish_errors[namespace] = self._publish_errors.get(namespace, 0) + 1
        return NatsBusError(f"NATS publish to {subject!r} failed: {error!r}")

    # -- receiving --

    def _handler(self, route: _Route) -> Callable[[Any], Awaitable[None]]:
        async def on_message(msg: Any) -> None:
            data = msg.data
            if data.startswith(self._echo_prefix):
                return
            try:
                node, namespace, event = self._decode(msg.subject, data)
            except AetherError as e:
                self._wire_error(route, msg.subject, e)
                return
            if node == self.node_id:
                return
            for sub in route.blocking:
                if sub.pending >= sub.buffer:
                    await self._wait_for_room(route)
                    break
            try:
                route.bus.publish(namespace, event)
            except (SubscriberOverflowError, BusClosedError):
                pass    # counted by the local bus (drops, publish_errors); or unsubscribed meanwhile
            except AetherError as e:
                self._wire_error(route, msg.subject, e)

        return on_message

    def _decode(self, subject: str, data: bytes) -> tuple[object, str, Event]:
        """(node id, namespace, event) of a message, or MalformedMessageError / InvalidInputError."""
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise MalformedMessageError(f"not JSON ({e}): {data[:80]!r}") from None
        if not isinstance(message, dict) or "event" not in message:
            raise MalformedMessageError(f"not an Aether event message (no 'event' field): {data[:80]!r}")
        namespace = subject[len(self.subject_prefix) + 1:]
        claimed = message.get("namespace_id")
        if claimed is not None and claimed != namespace:
            raise MalformedMessageError(f"namespace_id {claimed!r} disagrees with the subject {subject!r}")
        return message.get("node_id"), namespace, Event.from_dict(message["event"])

    def _wire_error(self, route: _Route, subject: str, error: Exception) -> None:
        self._subscribe_errors[route.pattern] = self._subscribe_errors.get(route.pattern, 0) + 1
        _log.warning("dropped a malformed message on %r (subscription %r): %s", subject, route.pattern, error)

    async def _wait_for_room(self, route: _Route) -> None:
        """Yield to the loop until every ``"block"`` subscription of ``route`` has room, at
        most its ``block_timeout``."""
        loop = asyncio.get_running_loop()
        for sub in list(route.blocking):
            if sub.pending < sub.buffer:
                continue
            timeout = sub.block_timeout
            deadline = None if timeout is None else loop.time() + timeout
            pause = 0.0
            while sub.pending >= sub.buffer and not sub.closed:
                if deadline is not None and loop.time() >= deadline:
                    break
                await asyncio.sleep(pause)      # a bounded wait for a reader to make room
                pause = min(max(pause * 2, 0.0001), _ROOM_POLL_MAX)

    # -- metrics --

    def metrics(self) -> BusMetrics:
        """The counters with the local bus's names: ``events_published`` (events published
        through this bus), ``events_received`` / ``events_dropped`` / ``callback_errors``
        (local deliveries, whatever the origin; drops include the messages nats-py dropped
        for a full subscription queue), ``publish_errors`` (local overflow
        errors and refused NATS publishes), ``active_subscriptions`` (per pattern), and
        ``subscribe_errors`` (refused subscribe calls and malformed messages, per pattern)."""
        summed = {name: dict(column) for name, column in self._retired.items()}
        for name, own in (("publish_errors", self._publish_errors), ("events_dropped", self._wire_drops)):
            for key, value in own.items():
                summed[name][key] = summed[name].get(key, 0) + value
        active: dict[str, int] = {}
        for route in self._routes.values():
            counters = route.bus.metrics()
            active.update(counters.active_subscriptions)
            for name, column in summed.items():
                for key, value in getattr(counters, name).items():
                    column[key] = column.get(key, 0) + value
        return BusMetrics(events_published=dict(self._published), active_subscriptions=active,
                          subscribe_errors=dict(self._subscribe_errors), **summed)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._routes)} patterns"
        return f"NatsEventBus(node_id={self.node_id!r}, subject_prefix={self.subject_prefix!r}, {state})"


async def flush_nats(nc: Any, timeout: float = 10.0) -> None:
    """Return once the server has processed every command sent on ``nc`` before the call.

    nats-py's ``nc.flush()`` writes its PING straight to the socket, ahead of commands
    still queued for its flusher task (a SUB just made, recent PUBs), so its PONG can come
    back before the server has seen them. This first waits for that queue to be written
    (nats-py's ``_flush_pending(force_flush=True)``, when present), then does the PING/PONG.
    """
    write_pending = getattr(nc, "_flush_pending", None)
    if write_pending is not None and nc.is_connected:
        await asyncio.wait_for(write_pending(force_flush=True), timeout)
    await nc.flush(timeout=timeout)


__all__ = [
    "DEFAULT_SUBJECT_PREFIX",
    "MalformedMessageError",
    "NatsAccessError",
    "NatsBusError",
    "NatsEventBus",
    "NatsSubscription",
    "connect_nats",
    "flush_nats",
    "permission_denial",
]
