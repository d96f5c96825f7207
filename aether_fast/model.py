"""The event model: events, snapshots, replay results, columnar reads, expected versions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Literal

import numpy as np
import orjson

from ._native import (
    CAUSATION_ID,
    CORRELATION_ID,
    MAX_EVENT_TYPE_BYTES,
    MAX_ID_BYTES,
    SPAN_ID,
    TRACE_ID,
    USER_ID,
    Event,
    check_id,
    check_version,
    encode_json,
)
from .errors import CorruptRecordError, InvalidInputError, InvalidTypeError, VersionConflictError

ExpectedVersion = int | Literal["any", "no_stream", "exists"]
"""``append``'s concurrency check: ``"any"`` (only Aether's rule that versions grow),
``"no_stream"`` (the actor has no events), ``"exists"`` (it has some), or an int N
(its latest version is exactly N; 0 means no stream)."""

EXPECT_NAMES = ("any", "no_stream", "exists")   # the named kinds, by their native code
_EXPECT_KINDS = {name: kind for kind, name in enumerate(EXPECT_NAMES)}


def parse_expected_version(expected: object) -> tuple[int, int]:
    """``(kind, value)`` for the native append; raises on a bad expectation."""
    if isinstance(expected, str):
        if expected not in _EXPECT_KINDS:
            raise InvalidInputError(
                f"expected_version must be an int >= 0 or one of 'any', 'no_stream', 'exists'; got {expected!r}"
            )
        return _EXPECT_KINDS[expected], 0
    if isinstance(expected, bool) or not isinstance(expected, int):
        raise InvalidTypeError(
            f"expected_version must be an int or 'any'/'no_stream'/'exists', got {type(expected).__name__}"
        )
    if expected < 0 or expected >= 2**63:
        raise InvalidInputError(f"expected_version must be >= 0, got {expected}")
    return 3, expected


@dataclass(frozen=True)
class ActorSnapshot:
    """An actor's state at a version (Aether's ``ActorSnapshot``).

    ``state`` is a JSON-round-trippable dict or raw bytes."""

    actor_id: str
    version: int
    state: dict | bytes
    timestamp: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass(frozen=True)
class ReplayError:
    """A stored record that could not be decoded (Aether's ``ReplayError``)."""

    position: int
    raw: bytes
    error: CorruptRecordError


@dataclass(frozen=True)
class ReplayResult:
    """The decodable events and the records that were not (Aether's ``ReplayResult``)."""

    events: list[Event]
    errors: list[ReplayError]


@dataclass(frozen=True)
class ColumnarEvents:
    """Events as numpy columns, for analytics without one Python object per event.

    Row ``i`` is the event at ``positions[i]``; its event type is
    ``event_types[type_codes[i]]``, its actor ``actor_ids[actor_codes[i]]``, its payload
    ``payload[payload_offsets[i]:payload_offsets[i + 1]]`` (JSON unless ``is_bytes[i]``).
    """

    positions: np.ndarray
    versions: np.ndarray
    timestamps: np.ndarray
    type_codes: np.ndarray
    event_types: tuple[str, ...]
    actor_codes: np.ndarray
    actor_ids: tuple[str, ...]
    is_bytes: np.ndarray
    payload_offsets: np.ndarray
    payload: np.ndarray

    @classmethod
    def from_events(cls, rows: list) -> ColumnarEvents:
        """The columns of a list of Events (built in Python, for stores without a native scan)."""
        types: dict[str, int] = {}
        actors: dict[str, int] = {}
        offsets = [0]
        for e in rows:
            offsets.append(offsets[-1] + len(e.payload))
        return cls(
            positions=np.array([e.position for e in rows], dtype="<i8"),
            versions=np.array([e.version for e in rows], dtype="<i8"),
            timestamps=np.array([e.timestamp_ns for e in rows], dtype="<i8").view("datetime64[ns]"),
            type_codes=np.array([types.setdefault(e.event_type, len(types)) for e in rows], dtype="<u4"),
            event_types=tuple(types),
            actor_codes=np.array([actors.setdefault(e.actor_id, len(actors)) for e in rows], dtype="<u4"),
            actor_ids=tuple(actors),
            is_bytes=np.array([e.is_bytes for e in rows], dtype=np.bool_),
            payload_offsets=np.array(offsets, dtype="<i8"),
            payload=np.frombuffer(b"".join(e.payload for e in rows), dtype=np.uint8),
        )

    @classmethod
    def from_native(cls, cols: dict) -> ColumnarEvents:
        return cls(
            positions=np.frombuffer(cols["positions"], dtype="<i8"),
            versions=np.frombuffer(cols["versions"], dtype="<i8"),
            timestamps=np.frombuffer(cols["timestamps"], dtype="<i8").view("datetime64[ns]"),
            type_codes=np.frombuffer(cols["type_codes"], dtype="<u4"),
            event_types=tuple(cols["event_types"]),
            actor_codes=np.frombuffer(cols["actor_codes"], dtype="<u4"),
            actor_ids=tuple(cols["actor_ids"]),
            is_bytes=np.frombuffer(cols["is_bytes"], dtype=np.bool_),
            payload_offsets=np.frombuffer(cols["payload_offsets"], dtype="<i8"),
            payload=np.frombuffer(cols["payload"], dtype=np.uint8),
        )

    def __len__(self) -> int:
        return len(self.positions)

    def payload_at(self, i: int) -> bytes:
        """The stored payload bytes of row ``i``."""
        return self.payload[self.payload_offsets[i] : self.payload_offsets[i + 1]].tobytes()


def check_actor_id(actor_id: object) -> str:
    """The actor id if it is a non-empty str of at most 255 UTF-8 bytes."""
    return check_id(actor_id, "actor_id")


def check_batch(actor_id: str, events: object) -> list[Event]:
    """One actor's batch as a list, or the error naming the first bad event: a sequence of
    Events of ``actor_id`` (checked by the caller) whose versions strictly increase."""
    if isinstance(events, (str, bytes, Event)) or not isinstance(events, Sequence):
        raise InvalidTypeError(f"events must be a sequence of Event, got {type(events).__name__}")
    events = list(events)
    for i, ev in enumerate(events):
        if not isinstance(ev, Event):
            raise InvalidTypeError(f"events[{i}] is a {type(ev).__name__}, not an Event")
        if ev.actor_id != actor_id:
            raise InvalidInputError(f"events[{i}] is for actor {ev.actor_id!r}, but the batch is for {actor_id!r}")
        if i and ev.version <= events[i - 1].version:
            raise InvalidInputError(
                f"versions must strictly increase within a batch: events[{i}] has version "
                f"{ev.version} after {events[i - 1].version}")
    return events


def check_from_version(from_version: object) -> int:
    if isinstance(from_version, bool) or not isinstance(from_version, int):
        raise InvalidTypeError(f"from_version must be an int, got {type(from_version).__name__}")
    if from_version < 0 or from_version >= 2**63:
        raise InvalidInputError(f"from_version must be >= 0, got {from_version}")
    return from_version


def check_position(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1 or value >= 2**63:
        raise InvalidInputError(f"{name} must be >= 1, got {value}")
    return value


MAX_SNAPSHOT_STATE_BYTES = 0xFFFFFFFF
"""The most state a snapshot record can hold: its length field has 32 bits."""


def check_max_snapshot_bytes(value: object) -> int:
    """A store's ``max_snapshot_bytes`` option: an int from 1 to MAX_SNAPSHOT_STATE_BYTES."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTypeError(f"max_snapshot_bytes must be an int, got {type(value).__name__}")
    if not 1 <= value <= MAX_SNAPSHOT_STATE_BYTES:
        raise InvalidInputError(
            f"max_snapshot_bytes must be 1 to {MAX_SNAPSHOT_STATE_BYTES} (4 GiB - 1), got {value}")
    return value


def encode_snapshot(snapshot: object, max_state_bytes: int = MAX_SNAPSHOT_STATE_BYTES
                    ) -> tuple[str, int, int, bytes, bool]:
    """Validate a snapshot: ``(actor_id, version, timestamp_ns, state bytes, is_bytes)``;
    a state over ``max_state_bytes`` (encoded) is refused."""
    if not isinstance(snapshot, ActorSnapshot):
        raise InvalidTypeError(f"expected an ActorSnapshot, got {type(snapshot).__name__}")
    actor_id = check_actor_id(snapshot.actor_id)
    version = check_version(snapshot.version, "snapshot version")
    ts = snapshot.timestamp
    if not isinstance(ts, datetime) or ts.tzinfo is None or ts.utcoffset() is None:
        raise InvalidInputError(f"snapshot timestamp must be a timezone-aware datetime, got {ts!r}")
    delta = ts - _EPOCH
    ts_ns = (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    if not -(2**63) <= ts_ns < 2**63:
        raise InvalidInputError(
            f"snapshot timestamp {ts.isoformat()} is outside the storable range (years 1677 to 2262)")
    raw = isinstance(snapshot.state, (bytes, bytearray, memoryview))
    state = bytes(snapshot.state) if raw else encode_json(snapshot.state)
    if len(state) > max_state_bytes:
        raise InvalidInputError(
            f"snapshot of actor {actor_id!r} version {version} has {len(state)} bytes of state, "
            f"over the store's max_snapshot_bytes={max_state_bytes}")
    return actor_id, version, ts_ns, state, raw


def decode_snapshot(actor_id: str, version: int, ts_ns: int, state: bytes, raw: bool) -> ActorSnapshot:
    """The snapshot of stored parts; a JSON state that is not a JSON object is corrupt."""
    if not raw:
        try:
            decoded = orjson.loads(state)
        except orjson.JSONDecodeError as e:
            raise CorruptRecordError(f"snapshot of actor {actor_id!r} is damaged: state is not JSON ({e})") from None
        if not isinstance(decoded, dict):
            raise CorruptRecordError(f"snapshot of actor {actor_id!r} is damaged: state is not a JSON object")
        state = decoded
    return ActorSnapshot(
        actor_id=actor_id,
        version=version,
        state=state,
        timestamp=_EPOCH + timedelta(microseconds=ts_ns // 1000),
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# -- the notices of commits and conflicts (published on the bus by NotifyingStore, across
# nodes by the JetStream store) --------------------------------------------------------------

EVENT_STORED = "EventStored"
VERSION_CONFLICT = "VersionConflict"



def _rfc3339(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    text = (_EPOCH + timedelta(seconds=secs)).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


@dataclass(frozen=True)
class EventStored:
    """An event was committed (Aether's ``EventStored``, plus its global ``position``)."""

    event_id: str
    actor_id: str
    version: int
    position: int
    timestamp: datetime

    @staticmethod
    def notice(event: Event, position: int) -> Event:
        """The bus event announcing that ``event`` is stored at ``position``."""
        return Event(
            event_type=EVENT_STORED, actor_id=event.actor_id, version=event.version,
            timestamp=event.timestamp_ns,
            data={"eventId": event.id, "actorId": event.actor_id, "version": event.version,
                  "position": position, "timestamp": _rfc3339(event.timestamp_ns)},
            metadata={"causationId": event.id, **({"correlationId": event.correlation_id}
                                                 if event.correlation_id is not None else {})},
        )

    @classmethod
    def from_event(cls, event: Event) -> EventStored:
        if event.event_type != EVENT_STORED:
            raise InvalidTypeError(f"not an {EVENT_STORED} notice: {event!r}")
        d = event.data
        return cls(d["eventId"], d["actorId"], d["version"], d["position"], event.timestamp)


@dataclass(frozen=True)
class VersionConflict:
    """A save lost the version check (Aether's backlog ``VersionConflict`` notice)."""

    actor_id: str
    current_version: int
    attempted_version: int

    @staticmethod
    def notice(err: VersionConflictError) -> Event:
        """The bus event reporting ``err``."""
        return Event(
            event_type=VERSION_CONFLICT, actor_id=err.actor_id, version=max(1, err.attempted_version),
            data={"actorId": err.actor_id, "currentVersion": err.current_version,
                  "attemptedVersion": err.attempted_version},
        )

    @classmethod
    def from_event(cls, event: Event) -> VersionConflict:
        if event.event_type != VERSION_CONFLICT:
            raise InvalidTypeError(f"not a {VERSION_CONFLICT} notice: {event!r}")
        d = event.data
        return cls(d["actorId"], d["currentVersion"], d["attemptedVersion"])


__all__ = [
    "CAUSATION_ID",
    "CORRELATION_ID",
    "EVENT_STORED",
    "MAX_EVENT_TYPE_BYTES",
    "MAX_ID_BYTES",
    "SPAN_ID",
    "TRACE_ID",
    "USER_ID",
    "VERSION_CONFLICT",
    "ActorSnapshot",
    "ColumnarEvents",
    "Event",
    "EventStored",
    "ExpectedVersion",
    "ReplayError",
    "ReplayResult",
    "VersionConflict",
    "parse_expected_version",
]
