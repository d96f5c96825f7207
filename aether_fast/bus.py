"""The local event bus: in-process pub/sub of events by namespace, with no silent loss.

``EventBus.subscribe(pattern, ...)`` takes a namespace pattern with NATS token rules
(``*`` one token, ``>`` one or more trailing tokens, only last; a pattern without
wildcards is one namespace), optionally AND-ed with a set of event types (OR-ed) and an
actor pattern (actor ids split on ``.``, same rules). ``publish(namespace, event)`` makes one
native call that finds the subscriptions of the namespace (cached per namespace until the
next subscribe or unsubscribe), applies their filters and delivers.

Delivery:

- a subscription with a ``callback`` runs it in the publisher's thread during ``publish``
  (nothing is buffered, so nothing is dropped; a slow callback slows the publisher; an
  exception in it is logged and counted, not raised to the publisher);
- otherwise events go into the subscription's bounded buffer, read by blocking iteration
  (``for e in sub``, ``sub.get(timeout)``, ``sub.iter(timeout)``) or asynchronously
  (``async for e in sub``, ``await sub.aget(timeout)``); publishing from any thread wakes an
  asyncio reader through its loop (``call_soon_threadsafe``), so the loop never blocks.
  A full buffer applies the subscription's overflow policy: ``"block"`` (the default: the
  publisher waits up to ``block_timeout`` seconds for room, then PublishTimeoutError),
  ``"drop_oldest"``, ``"drop_newest"`` or ``"error"`` (SubscriberOverflowError). Every
  drop is counted per subscription (``sub.dropped``, ``sub.dropped_by_namespace``) and per
  namespace (``bus.metrics().events_dropped``).

A publisher that would block on the buffer of a subscription read by an asyncio loop
running in the publisher's own thread cannot wait (the loop could never drain it): that
delivery is refused at once (counted as a drop, SubscriberOverflowError) instead of
deadlocking. Publish from another thread, or give such subscriptions room or a dropping
policy.

Isolation: a subscription with a wildcard pattern receives events of many namespaces; it
crosses namespace isolation and is meant for trusted components only (auditing,
projections across tenants). Exact patterns see only their own namespace.

The bus keeps a small record (its counters and cached subscriptions) for every namespace
it has been asked to publish to, for its lifetime.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ._native import OVERFLOW_POLICIES, BusSubscription, NativeBus
from .errors import (
    AetherError,
    BusClosedError,
    InvalidInputError,
    InvalidTypeError,
    PublishTimeoutError,
    ReceiveTimeoutError,
    SubscriberOverflowError,
)
from .namespace import MAX_NAMESPACE_LENGTH, validate_actor_pattern, validate_namespace_pattern

if TYPE_CHECKING:
    from typing_extensions import Self

Overflow = Literal["block", "drop_oldest", "drop_newest", "error"]

DEFAULT_BUFFER = 1024
DEFAULT_BLOCK_TIMEOUT = 5.0


@dataclass(frozen=True)
class BusMetrics:
    """A snapshot of the bus's counters, with Aether's metric names.

    Per namespace: ``events_published`` (events passed to publish), ``events_received``
    (deliveries: one per subscription that got the event), ``events_dropped``,
    ``publish_errors`` (publish calls that raised an overflow error) and
    ``callback_errors``. Per namespace pattern: ``active_subscriptions`` and
    ``subscribe_errors`` (refused subscribe calls).
    """

    events_published: dict[str, int] = field(default_factory=dict)
    events_received: dict[str, int] = field(default_factory=dict)
    events_dropped: dict[str, int] = field(default_factory=dict)
    publish_errors: dict[str, int] = field(default_factory=dict)
    callback_errors: dict[str, int] = field(default_factory=dict)
    active_subscriptions: dict[str, int] = field(default_factory=dict)
    subscribe_errors: dict[str, int] = field(default_factory=dict)

    def total(self, name: str) -> int:
        """The sum of one metric over every namespace (or pattern)."""
        return sum(getattr(self, name).values())

    def to_prometheus(self, prefix: str = "aether") -> str:
        """The Prometheus text exposition format (``aether_events_published_total{namespace="x"} 3``)."""
        lines = []
        for name, kind, label in PROMETHEUS_METRICS:
            metric = f"{prefix}_{name}_total" if kind == "counter" else f"{prefix}_{name}"
            lines.append(f"# TYPE {metric} {kind}")
            for key, value in sorted(getattr(self, name).items()):
                escaped = key.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                lines.append(f'{metric}{{{label}="{escaped}"}} {value}')
        return "\n".join(lines) + "\n"


PROMETHEUS_METRICS = (
    ("events_published", "counter", "namespace"),
    ("events_received", "counter", "namespace"),
    ("events_dropped", "counter", "namespace"),
    ("publish_errors", "counter", "namespace"),
    ("callback_errors", "counter", "namespace"),
    ("active_subscriptions", "gauge", "pattern"),
    ("subscribe_errors", "counter", "pattern"),
)

_DEFAULT = object()


class EventBus(NativeBus):
    """Local pub/sub of events by namespace (Aether's EventBus), thread-safe.

    ``buffer``, ``overflow`` and ``block_timeout`` are the defaults of ``subscribe``.
    ``publish(namespace, event)`` and ``publish_many(namespace, events)`` take a concrete
    namespace (checked once per name) and deliver in the caller's thread; they raise
    SubscriberOverflowError / PublishTimeoutError when an ``"error"`` or ``"block"``
    subscription could not take an event (after delivering to all the others), and
    BusClosedError after ``close()``.
    """

    def __init__(self, *, buffer: int = DEFAULT_BUFFER, overflow: Overflow = "block",
                 block_timeout: float | None = DEFAULT_BLOCK_TIMEOUT) -> None:
        self.default_buffer = _check_buffer(buffer)
        self.default_overflow = _check_overflow(overflow)
        self.default_block_timeout = _check_timeout(block_timeout)
        self._subscribe_errors: dict[str, int] = {}

    def subscribe(
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
    ) -> BusSubscription:
        """Subscribe to the namespaces matching ``namespace_pattern``.

        ``event_types``: only events of these types (any of them); ``actor_pattern``: only
        events whose actor id matches (NATS token rules over the id split on ``.``). Both
        filters are AND-ed and applied after the namespace match. ``callback``: called
        with each event (or ``(namespace, event)`` with ``with_namespace``) in the
        publisher's thread; otherwise events are buffered (``buffer`` slots, ``overflow``
        policy, ``block_timeout`` seconds for ``"block"``, None for no limit). A wildcard
        pattern crosses namespace isolation: for trusted components only.
        """
        try:
            if self.closed:
                raise BusClosedError("the event bus is closed")
            validate_namespace_pattern(namespace_pattern)
            types = _check_event_types(event_types)
            if actor_pattern is not None:
                validate_actor_pattern(actor_pattern)
            if callback is not None:
                if not callable(callback):
                    raise InvalidTypeError(f"callback must be callable, got {type(callback).__name__}")
                if buffer is not None or overflow is not None or block_timeout is not _DEFAULT:
                    raise InvalidInputError(
                        "buffer, overflow and block_timeout apply to buffered subscriptions, not to callbacks "
                        "(a callback runs in the publisher's thread and drops nothing)"
                    )
            size = self.default_buffer if buffer is None else _check_buffer(buffer)
            policy = self.default_overflow if overflow is None else _check_overflow(overflow)
            timeout = self.default_block_timeout if block_timeout is _DEFAULT else _check_timeout(block_timeout)
            sub = BusSubscription(namespace_pattern, types, actor_pattern, policy, size, callback,
                                  bool(with_namespace), timeout)
            self._attach(sub)
        except AetherError:
            key = namespace_pattern[:MAX_NAMESPACE_LENGTH] if isinstance(namespace_pattern, str) else "?"
            self._subscribe_errors[key] = self._subscribe_errors.get(key, 0) + 1
            raise
        return sub

    def unsubscribe(self, subscription: BusSubscription) -> None:
        """Same as ``subscription.close()``."""
        if not isinstance(subscription, BusSubscription):
            raise InvalidTypeError(f"expected a BusSubscription, got {type(subscription).__name__}")
        subscription.close()

    def subscriptions(self) -> list[BusSubscription]:
        """The active subscriptions."""
        return self._subscriptions()

    def metrics(self) -> BusMetrics:
        """A snapshot of the counters (see BusMetrics)."""
        counters = self._counters()
        columns: list[dict[str, int]] = [{}, {}, {}, {}, {}]
        for name, values in counters.items():
            for column, value in zip(columns, values):
                column[name] = value
        published, received, dropped, publish_errors, callback_errors = columns
        return BusMetrics(
            events_published=published, events_received=received, events_dropped=dropped,
            publish_errors=publish_errors, callback_errors=callback_errors,
            active_subscriptions=self._active_subscriptions(), subscribe_errors=dict(self._subscribe_errors),
        )

    def close(self) -> None:
        """Close every subscription (their buffered events stay readable) and refuse
        further publish and subscribe calls. Idempotent."""
        self._close_all()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._subscriptions())} subscriptions"
        return f"EventBus({state})"


def _check_buffer(buffer: object) -> int:
    if isinstance(buffer, bool) or not isinstance(buffer, int):
        raise InvalidTypeError(f"buffer must be an int, got {type(buffer).__name__}")
    if not 1 <= buffer <= 1 << 24:
        raise InvalidInputError(f"buffer must be between 1 and {1 << 24}, got {buffer}")
    return buffer


def _check_overflow(overflow: object) -> str:
    if overflow not in OVERFLOW_POLICIES:
        raise InvalidInputError(f"overflow must be one of {', '.join(map(repr, OVERFLOW_POLICIES))}; got {overflow!r}")
    return str(overflow)


def _check_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidTypeError(f"block_timeout must be a number of seconds or None, got {type(timeout).__name__}")
    if not timeout >= 0:
        raise InvalidInputError(f"block_timeout must be >= 0, got {timeout}")
    return float(timeout)


def _check_event_types(event_types: object) -> frozenset[str] | None:
    if event_types is None:
        return None
    if isinstance(event_types, str):
        raise InvalidTypeError(
            f"event_types must be a collection of str, not a str: use [{event_types!r}]"
        )
    if not isinstance(event_types, Iterable):
        raise InvalidTypeError(f"event_types must be a collection of str, got {type(event_types).__name__}")
    types = frozenset(event_types)
    if not types:
        raise InvalidInputError("event_types must not be empty; use None to accept every event type")
    for t in types:
        if not isinstance(t, str) or not t:
            raise InvalidInputError(f"event_types must be non-empty strings, got {t!r}")
    return types


__all__ = [
    "DEFAULT_BLOCK_TIMEOUT",
    "DEFAULT_BUFFER",
    "BusClosedError",
    "BusMetrics",
    "BusSubscription",
    "EventBus",
    "Overflow",
    "PublishTimeoutError",
    "ReceiveTimeoutError",
    "SubscriberOverflowError",
]
