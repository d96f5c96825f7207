"""aether_fast: fast event-sourcing primitives over an LMDB append-only log."""

from . import _moved
from .bus import BusMetrics, BusSubscription, EventBus
from .errors import (
    AetherError,
    AtomicBatchUnsupportedError,
    BusClosedError,
    ClusterConfigError,
    ClusterError,
    CorruptRecordError,
    EmptyRingError,
    ImportRefusedError,
    IncompatibleFormatError,
    InvalidInputError,
    InvalidNamespaceError,
    InvalidTypeError,
    MalformedMessageError,
    NatsAccessError,
    NatsBusError,
    PublishTimeoutError,
    ReceiveTimeoutError,
    StorageError,
    StoreAlreadyOpenError,
    StoreClosedError,
    StoreForkedError,
    StoreFullError,
    StoreNotFoundError,
    SubscriberOverflowError,
    TransactionConflictError,
    VersionConflictError,
)
from .model import (
    CAUSATION_ID,
    CORRELATION_ID,
    SPAN_ID,
    TRACE_ID,
    USER_ID,
    ActorSnapshot,
    ColumnarEvents,
    Event,
    EventStored,
    ExpectedVersion,
    ReplayError,
    ReplayResult,
    VersionConflict,
)
from .namespace import validate_actor_pattern, validate_namespace, validate_namespace_pattern
from .nats.bus import NatsEventBus, NatsSubscription
from .nats.jetstream import JetStreamConfig, JetStreamEventStore, SyncJetStreamEventStore
from .notifications import NotifyingStore
from .protocol import EventStore, SnapshotStore
from .ring import HashRing, PlacementStrategy, RingPlacement, ShardMap, shard_for
from .store.lmdb import Durability, LmdbEventStore
from .store.memory import InMemoryEventStore
from .store.subscription import Subscription

__version__ = "0.1.0"

_moved.install()      # the module paths of before the subpackages, as deprecated aliases

__all__ = [
    "CAUSATION_ID",
    "CORRELATION_ID",
    "SPAN_ID",
    "TRACE_ID",
    "USER_ID",
    "ActorSnapshot",
    "AetherError",
    "AtomicBatchUnsupportedError",
    "BusClosedError",
    "BusMetrics",
    "BusSubscription",
    "ClusterConfig",
    "ClusterConfigError",
    "ClusterError",
    "ClusterMetrics",
    "ClusterNode",
    "ColumnarEvents",
    "CorruptRecordError",
    "Durability",
    "EmptyRingError",
    "Event",
    "EventBus",
    "EventStore",
    "EventStored",
    "ExpectedVersion",
    "HashRing",
    "ImportRefusedError",
    "InMemoryEventStore",
    "IncompatibleFormatError",
    "InvalidInputError",
    "InvalidNamespaceError",
    "InvalidTypeError",
    "JetStreamConfig",
    "JetStreamEventStore",
    "LmdbEventStore",
    "MalformedMessageError",
    "NatsAccessError",
    "NatsBusError",
    "NatsEventBus",
    "NatsSubscription",
    "NotifyingStore",
    "PlacementStrategy",
    "PublishTimeoutError",
    "ReceiveTimeoutError",
    "ReplayError",
    "ReplayResult",
    "RingPlacement",
    "ShardMap",
    "SnapshotStore",
    "StorageError",
    "StoreAlreadyOpenError",
    "StoreClosedError",
    "StoreForkedError",
    "StoreFullError",
    "StoreNotFoundError",
    "SubscriberOverflowError",
    "Subscription",
    "SyncJetStreamEventStore",
    "TransactionConflictError",
    "VersionConflict",
    "VersionConflictError",
    "shard_for",
    "validate_actor_pattern",
    "validate_namespace",
    "validate_namespace_pattern",
]

# The cluster needs nats-py at import time: loaded on first use, so that `import aether_fast`
# works without the [nats] extra.
_LAZY = {"ClusterConfig": "nats.cluster", "ClusterMetrics": "nats.cluster", "ClusterNode": "nats.cluster"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
