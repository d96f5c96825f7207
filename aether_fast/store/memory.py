"""The in-memory event store: pure Python, same contract as the LMDB store; for tests."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .._native import with_position
from ..errors import (
    AetherError,
    InvalidInputError,
    InvalidTypeError,
    StoreClosedError,
    VersionConflictError,
)
from ..model import (
    EXPECT_NAMES,
    ActorSnapshot,
    ColumnarEvents,
    Event,
    ExpectedVersion,
    ReplayResult,
    check_actor_id,
    check_batch,
    check_from_version,
    check_max_snapshot_bytes,
    check_position,
    decode_snapshot,
    encode_snapshot,
    parse_expected_version,
)
from ..namespace import DEFAULT_NAMESPACE, validate_namespace
from .subscription import CommitNotifier, Subscription

if TYPE_CHECKING:
    from typing_extensions import Self



class InMemoryEventStore:
    """Events in Python lists, guarded by one lock. Nothing survives the process."""

    def __init__(self, *, namespace: str = DEFAULT_NAMESPACE, max_event_bytes: int = 16 << 20,
                 max_snapshot_bytes: int = 256 << 20) -> None:
        self.namespace = validate_namespace(namespace)
        self.max_event_bytes = max_event_bytes
        self.max_snapshot_bytes = check_max_snapshot_bytes(max_snapshot_bytes)
        self._lock = threading.RLock()
        self._log: list[Event] = []
        self._actors: dict[str, list[Event]] = {}
        self._snapshots: dict[str, dict[int, tuple]] = {}
        self._txn_owner: int | None = None
        self._notifier = CommitNotifier()
        self._closed = False

    def close(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"in-memory store namespace {self.namespace!r} is closed")

    # -- writes ---------------------------------------------------------------------------

    def save_event(self, event: Event) -> int:
        """Store one event; its version must exceed the actor's latest. Returns its position."""
        if not isinstance(event, Event):
            raise InvalidTypeError(f"expected an Event, got {type(event).__name__}: {event!r:.80}")
        return self._append([event], 0, 0)[0]

    def append(
        self, actor_id: str, events: Sequence[Event], *, expected_version: ExpectedVersion = "any"
    ) -> list[int]:
        """Store one actor's events atomically; same contract as ``LmdbEventStore.append``."""
        self._check_open()
        check_actor_id(actor_id)
        kind, expected = parse_expected_version(expected_version)
        events = check_batch(actor_id, events)
        return self._append(events, kind, expected) if events else []

    def _append(self, events: list[Event], kind: int, expected: int) -> list[int]:
        self._check_open()
        for ev in events:
            size = len(ev.payload) + 40 + len(ev.id) + len(ev.event_type) + len(ev.actor_id)
            if size > self.max_event_bytes:
                raise InvalidInputError(
                    f"event {ev.id!r} encodes to about {size} bytes, over max_event_bytes={self.max_event_bytes}"
                )
        first = events[0]
        with self._locked():
            stream = self._actors.get(first.actor_id, [])
            latest = stream[-1].version if stream else 0
            if first.version <= latest:
                stored = self._stored_positions(stream, events)
                if stored is not None:
                    return stored
                raise VersionConflictError(
                    first.actor_id, latest, first.version,
                    None if kind == 0 else (expected if kind == 3 else EXPECT_NAMES[kind]),
                )
            if (kind == 1 and latest) or (kind == 2 and not latest) or (kind == 3 and latest != expected):
                raise VersionConflictError(
                    first.actor_id, latest, first.version, expected if kind == 3 else EXPECT_NAMES[kind]
                )
            positions = []
            for ev in events:
                stored_ev = with_position(ev, len(self._log) + 1)
                self._log.append(stored_ev)
                self._actors.setdefault(ev.actor_id, []).append(stored_ev)
                positions.append(stored_ev.position)
        if self._txn_owner is None:
            self._notifier.notify()
        return positions

    @staticmethod
    def _stored_positions(stream: list[Event], events: list[Event]) -> list[int] | None:
        versions = [e.version for e in stream]
        out = []
        for ev in events:
            i = bisect.bisect_left(versions, ev.version)
            if i == len(versions) or versions[i] != ev.version or stream[i].id != ev.id:
                return None
            out.append(stream[i].position)
        return out

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            yield

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes of this thread inside the block commit together; an exception undoes them."""
        self._check_open()
        with self._lock:
            if self._txn_owner is not None:
                raise AetherError("a transaction is already open in this thread; transactions do not nest")
            self._txn_owner = threading.get_ident()
            log_len = len(self._log)
            snapshots = {a: dict(s) for a, s in self._snapshots.items()}
            try:
                yield
            except BaseException:
                for ev in self._log[log_len:]:
                    self._actors[ev.actor_id].pop()
                    if not self._actors[ev.actor_id]:
                        del self._actors[ev.actor_id]
                del self._log[log_len:]
                self._snapshots = snapshots
                raise
            finally:
                self._txn_owner = None
        self._notifier.notify()

    def save_snapshot(self, snapshot: ActorSnapshot) -> None:
        self._check_open()
        actor_id, version, ts_ns, state, raw = encode_snapshot(snapshot, self.max_snapshot_bytes)
        with self._lock:
            self._snapshots.setdefault(actor_id, {})[version] = (version, ts_ns, state, raw)

    # -- reads ------------------------------------------------------------------------------

    def get_events(self, actor_id: str, from_version: int = 1) -> list[Event]:
        self._check_open()
        check_actor_id(actor_id)
        from_version = check_from_version(from_version)
        with self._lock:
            return [e for e in self._actors.get(actor_id, ()) if e.version >= from_version]

    def get_events_with_errors(self, actor_id: str, from_version: int = 1) -> ReplayResult:
        """Records in memory cannot be damaged: the errors list is always empty."""
        return ReplayResult(self.get_events(actor_id, from_version), [])

    def get_latest_version(self, actor_id: str) -> int:
        self._check_open()
        check_actor_id(actor_id)
        with self._lock:
            stream = self._actors.get(actor_id)
            return stream[-1].version if stream else 0

    def last_position(self) -> int:
        self._check_open()
        return len(self._log)

    def read_all(self, from_position: int = 1, limit: int | None = None) -> Iterator[Event]:
        self._check_open()
        start = check_position(from_position, "from_position") - 1
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise InvalidInputError(f"limit must be an int >= 0 or None, got {limit!r}")
        with self._lock:
            end = len(self._log) if limit is None else min(len(self._log), start + limit)
            return iter(self._log[start:end])

    def subscribe(
        self, from_position: int = 1, *, event_types: Iterable[str] | None = None, poll_interval: float = 0.001
    ) -> Subscription:
        """A catch-up subscription, as ``LmdbEventStore.subscribe``."""
        self._check_open()

        def read_range(position: int, limit: int) -> list[Event]:
            self._check_open()
            with self._lock:
                return self._log[position - 1 : position - 1 + limit]

        return Subscription(
            read_range, self._notifier, from_position=from_position, event_types=event_types,
            poll_interval=poll_interval,
        )

    def read_columns(
        self, actor_id: str | None = None, *, from_position: int = 1, to_position: int | None = None
    ) -> ColumnarEvents:
        """Columns like ``LmdbEventStore.read_columns`` (built in Python)."""
        self._check_open()
        start = check_position(from_position, "from_position")
        end = 2**63 - 1 if to_position is None else check_position(to_position, "to_position")
        with self._lock:
            source = self._actors.get(check_actor_id(actor_id), []) if actor_id is not None else self._log
            rows = [e for e in source if start <= e.position <= end]
        return ColumnarEvents.from_events(rows)

    def get_latest_snapshot(self, actor_id: str) -> ActorSnapshot | None:
        self._check_open()
        check_actor_id(actor_id)
        with self._lock:
            versions = self._snapshots.get(actor_id)
            if not versions:
                return None
            return decode_snapshot(actor_id, *versions[max(versions)])
