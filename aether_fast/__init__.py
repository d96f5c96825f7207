"""aether_fast: fast event-sourcing primitives over an LMDB append-only log."""

from .errors import (
    AetherError,
    CorruptRecordError,
    IncompatibleFormatError,
    InvalidInputError,
    InvalidNamespaceError,
    InvalidTypeError,
    StorageError,
    StoreAlreadyOpenError,
    StoreClosedError,
    StoreForkedError,
    StoreFullError,
    VersionConflictError,
)
from .lmdb_store import Durability, LmdbEventStore
from .memory import InMemoryEventStore
from .model import (
    CAUSATION_ID,
    CORRELATION_ID,
    SPAN_ID,
    TRACE_ID,
    USER_ID,
    ActorSnapshot,
    ColumnarEvents,
    Event,
    ExpectedVersion,
    ReplayError,
    ReplayResult,
)
from .namespace import validate_namespace
from .protocol import EventStore, SnapshotStore

__version__ = "0.1.0"

__all__ = [
    "CAUSATION_ID",
    "CORRELATION_ID",
    "SPAN_ID",
    "TRACE_ID",
    "USER_ID",
    "ActorSnapshot",
    "AetherError",
    "ColumnarEvents",
    "CorruptRecordError",
    "Durability",
    "Event",
    "EventStore",
    "ExpectedVersion",
    "InMemoryEventStore",
    "IncompatibleFormatError",
    "InvalidInputError",
    "InvalidNamespaceError",
    "InvalidTypeError",
    "LmdbEventStore",
    "ReplayError",
    "ReplayResult",
    "SnapshotStore",
    "StorageError",
    "StoreAlreadyOpenError",
    "StoreClosedError",
    "StoreForkedError",
    "StoreFullError",
    "VersionConflictError",
    "validate_namespace",
]
