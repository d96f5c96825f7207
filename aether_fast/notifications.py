"""Store notifications on the bus: ``EventStored`` after each commit, ``VersionConflict`` on conflict.

``NotifyingStore(store, bus)`` wraps any event store (LmdbEventStore, InMemoryEventStore, ...)
and delegates everything to it. After a ``save_event`` or ``append`` has committed, it
publishes one ``EventStored`` notice per stored event to the bus, in the store's namespace
(or ``namespace=``); when one fails with VersionConflictError it publishes a
``VersionConflict`` notice and re-raises. Inside ``transaction()`` the notices wait for the
commit at the end of the block and are discarded if the block rolls back, so a notice is
never published for an event that is not stored.

A notice is an Event (so bus filters apply to it): ``event_type`` "EventStored" or
"VersionConflict", ``actor_id`` the actor concerned, ``version`` the stored (or attempted)
version, ``timestamp`` the stored event's timestamp (or the time of the conflict), and
camelCase ``data`` as on Aether's wire: ``{"eventId", "actorId", "version", "position",
"timestamp"}`` and ``{"actorId", "currentVersion", "attemptedVersion"}``. ``EventStored.from_event``
and ``VersionConflict.from_event`` turn them back into dataclasses.

Delivery is at least once: an idempotent retry (the same event ids saved again, which the
stores accept and answer with the original positions) announces those events again with the
same ``event_id`` and ``position``. A notice that the bus cannot deliver (a subscriber's full
buffer with ``overflow="error"`` or a ``"block"`` timeout, or a closed bus) is counted by the
bus and logged; the store call still returns normally, since its commit happened.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .bus import BusClosedError, EventBus, SubscriberOverflowError
from .errors import InvalidTypeError, VersionConflictError
from .model import EVENT_STORED, VERSION_CONFLICT, Event, EventStored, ExpectedVersion, VersionConflict
from .namespace import validate_namespace

if TYPE_CHECKING:
    from typing_extensions import Self

_log = logging.getLogger("aether_fast.notifications")


class NotifyingStore:
    """Wraps ``store``: the same API, plus notices on ``bus`` after commits and conflicts.

    ``namespace`` defaults to the store's own ``namespace``. Every attribute not defined
    here (reads, snapshots, ``close``, ...) is the store's.
    """

    def __init__(self, store: Any, bus: EventBus, namespace: str | None = None) -> None:
        if not isinstance(bus, EventBus):
            raise InvalidTypeError(f"bus must be an EventBus, got {type(bus).__name__}")
        self.store = store
        self.bus = bus
        self.namespace = validate_namespace(namespace if namespace is not None else store.namespace)
        self._local = threading.local()

    def __getattr__(self, name: str) -> Any:
        if name == "store":   # not set yet (e.g. during unpickling)
            raise AttributeError(name)
        return getattr(self.store, name)

    def __repr__(self) -> str:
        return f"NotifyingStore({self.store!r}, namespace={self.namespace!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.store.close()

    # -- writes --

    def save_event(self, event: Event) -> int:
        try:
            position = self.store.save_event(event)
        except VersionConflictError as err:
            self._publish([VersionConflict.notice(err)])
            raise
        self._stored([EventStored.notice(event, position)])
        return position

    def append(self, actor_id: str, events: Sequence[Event], *,
               expected_version: ExpectedVersion = "any") -> list[int]:
        try:
            positions = self.store.append(actor_id, events, expected_version=expected_version)
        except VersionConflictError as err:
            self._publish([VersionConflict.notice(err)])
            raise
        self._stored([EventStored.notice(ev, pos) for ev, pos in zip(events, positions)])
        return positions

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """The store's transaction; the EventStored notices of the writes inside it are
        published after it commits, and dropped if it rolls back."""
        outer = getattr(self._local, "pending", None) is None
        if outer:
            self._local.pending = []
        try:
            with self.store.transaction():
                yield
        except BaseException:
            if outer:
                self._local.pending = None
            raise
        if outer:
            pending, self._local.pending = self._local.pending, None
            self._publish(pending)

    # -- publishing --

    def _stored(self, notices: list[Event]) -> None:
        pending = getattr(self._local, "pending", None)
        if pending is not None:
            pending.extend(notices)
        else:
            self._publish(notices)

    def _publish(self, notices: list[Event]) -> None:
        if not notices:
            return
        try:
            self.bus.publish_many(self.namespace, notices)
        except (SubscriberOverflowError, BusClosedError) as err:
            _log.warning("store notices for namespace %r not delivered everywhere: %s", self.namespace, err)


__all__ = ["EVENT_STORED", "VERSION_CONFLICT", "EventStored", "NotifyingStore", "VersionConflict"]
