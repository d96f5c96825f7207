"""The store protocols every event store implements (in-memory, LMDB, JetStream)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

from .model import ActorSnapshot, Event, ExpectedVersion, ReplayResult
from .store.subscription import Subscription


@runtime_checkable
class EventStore(Protocol):
    """Append-only, per-actor versioned event storage with a global log."""

    def save_event(self, event: Event) -> int:
        """Store one event; its version must exceed the actor's latest. Returns its position."""

    def append(
        self, actor_id: str, events: Sequence[Event], *, expected_version: ExpectedVersion = "any"
    ) -> list[int]:
        """Store one actor's events atomically; returns their global positions."""

    def get_events(self, actor_id: str, from_version: int = 1) -> list[Event]:
        """The actor's events from ``from_version`` (inclusive), in version order."""

    def get_events_with_errors(self, actor_id: str, from_version: int = 1) -> ReplayResult:
        """Like ``get_events`` but reporting undecodable records instead of raising."""

    def get_latest_version(self, actor_id: str) -> int:
        """The actor's latest version, 0 when it has no events."""

    def read_all(self, from_position: int = 1, limit: int | None = None) -> Iterator[Event]:
        """The global log from ``from_position`` on, in commit order."""

    def subscribe(
        self, from_position: int = 1, *, event_types: Iterable[str] | None = None, poll_interval: float = 0.001
    ) -> Subscription:
        """Every event from ``from_position`` on, history then live, in position order."""

    def transaction(self) -> AbstractContextManager[None]:
        """Group several writes into one atomic commit."""

    def close(self) -> None:
        """Release the store's resources."""


@runtime_checkable
class SnapshotStore(Protocol):
    """Optional snapshots of actor state."""

    def save_snapshot(self, snapshot: ActorSnapshot) -> None:
        """Store a snapshot (a snapshot of the same actor and version is replaced)."""

    def get_latest_snapshot(self, actor_id: str) -> ActorSnapshot | None:
        """The snapshot with the highest version, or None."""
