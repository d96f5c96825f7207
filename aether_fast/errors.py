"""One error tree, rooted at :class:`AetherError`: every error aether_fast raises is here.

Errors about bad input also inherit the matching builtin (``ValueError``,
``TypeError``) so that ordinary ``except ValueError`` code keeps working; timeouts are
also ``TimeoutError``. The modules that raise an error re-export it, so
``aether_fast.bus.BusClosedError`` is ``aether_fast.errors.BusClosedError``. This module
imports nothing optional (no nats-py): the NATS and cluster errors can be caught without it.

::

    AetherError
    ├── InvalidInputError (ValueError)
    │   ├── InvalidNamespaceError
    │   ├── StoreNotFoundError (FileNotFoundError)
    │   ├── ImportRefusedError             admin: an import line is refused
    │   └── MalformedMessageError          NATS bus: not an Aether event message
    ├── InvalidTypeError (TypeError)
    ├── VersionConflictError
    ├── CorruptRecordError
    ├── StorageError
    │   ├── StoreFullError
    │   └── AtomicBatchUnsupportedError    JetStream: no atomic batch
    ├── StoreClosedError
    ├── StoreAlreadyOpenError
    ├── StoreForkedError
    ├── IncompatibleFormatError
    ├── TransactionConflictError           JetStream: the stream moved under a transaction
    ├── BusClosedError                     local bus
    ├── ReceiveTimeoutError (TimeoutError)
    ├── SubscriberOverflowError
    │   └── PublishTimeoutError (TimeoutError)
    ├── EmptyRingError (LookupError)       hash ring without nodes
    ├── NatsBusError                       NATS bus
    │   └── NatsAccessError
    └── ClusterError                       cluster
        └── ClusterConfigError
"""

from __future__ import annotations


class AetherError(Exception):
    """Root of every error raised by aether_fast."""


class InvalidInputError(AetherError, ValueError):
    """A value is not acceptable (empty or oversized id, version < 1, bad JSON, ...)."""


class InvalidTypeError(AetherError, TypeError):
    """An argument has the wrong type."""


class InvalidNamespaceError(InvalidInputError):
    """A namespace name or pattern breaks the namespace rules."""


class VersionConflictError(AetherError):
    """An append lost the optimistic concurrency check (Aether's ``ErrVersionConflict``).

    ``current_version`` is the actor's latest stored version, ``attempted_version`` the
    version the caller tried to write, ``expected_version`` the caller's expectation
    when one was given to ``append``.
    """

    def __init__(
        self,
        actor_id: str,
        current_version: int,
        attempted_version: int,
        expected_version: int | str | None = None,
    ) -> None:
        self.actor_id = actor_id
        self.current_version = current_version
        self.attempted_version = attempted_version
        self.expected_version = expected_version
        if expected_version is None:
            msg = (
                f"version conflict: actor {actor_id!r} has version {current_version}, "
                f"cannot save version {attempted_version}"
            )
        else:
            msg = (
                f"version conflict: actor {actor_id!r} has version {current_version}, "
                f"expected {expected_version!r}, cannot save version {attempted_version}"
            )
        super().__init__(msg)

    def __reduce__(self):
        return (
            type(self),
            (self.actor_id, self.current_version, self.attempted_version, self.expected_version),
        )


class CorruptRecordError(AetherError):
    """A stored record failed its checksum or structure check; it is never decoded."""

    def __init__(self, message: str, position: int | None = None) -> None:
        self.position = position
        super().__init__(message if position is None else f"{message} (position {position})")

    def __reduce__(self):
        return (type(self), (self.args[0], None))


class StorageError(AetherError):
    """The storage engine reported an error (LMDB return code in ``code``)."""

    def __init__(self, message: str, code: int = 0) -> None:
        self.code = code
        super().__init__(message)


class StoreFullError(StorageError):
    """The store could not grow to hold a write; nothing of that write was kept."""


class StoreClosedError(AetherError):
    """The store was closed; open it again to use it."""


class StoreAlreadyOpenError(AetherError):
    """The same store path and namespace is already open in this process."""


class StoreForkedError(AetherError):
    """A store opened before ``fork()`` was used in the child; open it anew in the child."""


class StoreNotFoundError(InvalidInputError, FileNotFoundError):
    """No store, or no such namespace in it, and the opening may not create one
    (``create=False``). Also a ``ValueError`` and a ``FileNotFoundError``."""


class IncompatibleFormatError(AetherError):
    """The path holds an LMDB environment of another format or of another program."""


# -- operations (aether_fast.store.admin) -----------------------------------------------------------


class ImportRefusedError(InvalidInputError):
    """An import line is not acceptable (bad JSON, a version the store cannot take).

    ``line`` is its 1-based line number; ``imported`` the events committed before it
    (always 0 unless the import was resumable)."""

    def __init__(self, reason: str, line: int, imported: int = 0) -> None:
        self.reason = reason
        self.line = line
        self.imported = imported
        super().__init__(f"line {line}: {reason}")

    def __reduce__(self):
        return (type(self), (self.reason, self.line, self.imported))


# -- JetStream store (aether_fast.nats.jetstream) --------------------------------------------------


class AtomicBatchUnsupportedError(StorageError):
    """The server or stream cannot store a batch atomically; nothing of the batch was sent."""


class TransactionConflictError(AetherError):
    """The stream changed while a transaction was open; nothing of it was stored."""


# -- local event bus (aether_fast.bus) --------------------------------------------------------


class BusClosedError(AetherError):
    """The bus is closed, or a subscription is closed and has no buffered event left."""


class ReceiveTimeoutError(AetherError, TimeoutError):
    """No event arrived within the timeout given to ``get`` / ``aget``."""


class SubscriberOverflowError(AetherError):
    """``publish`` could not deliver to some subscriptions with full buffers.

    Raised after every other subscription got the event(s). ``missed`` maps each such
    subscription to the number of events it did not get in this call (each one also
    counted in its ``dropped``); ``namespace`` is the namespace published to.
    """

    def __init__(self, message: str, namespace: str = "", missed: dict | None = None) -> None:
        super().__init__(message)
        self.namespace = namespace
        self.missed = missed or {}

    def __reduce__(self):
        return (type(self), (self.args[0], self.namespace, {}))


class PublishTimeoutError(SubscriberOverflowError, TimeoutError):
    """A subscription with ``overflow="block"`` had no room within its ``block_timeout``."""


# -- hash ring (aether_fast.ring) -------------------------------------------------------------


class EmptyRingError(AetherError, LookupError):
    """A lookup on a hash ring that has no node."""


# -- NATS event bus (aether_fast.nats.bus) ----------------------------------------------------


class NatsBusError(AetherError):
    """NATS refused an operation of the bus (not connected, connection closed, outbound
    buffer full while reconnecting, ...); the original error is the ``__cause__``."""


class NatsAccessError(NatsBusError):
    """NATS denied access: the server refused the credentials at connect, or the user's
    permissions deny a subject. ``subject`` and ``namespace`` name what was denied (None
    for refused credentials)."""

    def __init__(self, message: str, subject: str | None = None, namespace: str | None = None) -> None:
        self.subject = subject
        self.namespace = namespace
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.args[0], self.subject, self.namespace))


class MalformedMessageError(InvalidInputError):
    """A message on an event subject is not a valid Aether event message."""


# -- cluster (aether_fast.nats.cluster) ------------------------------------------------------------


class ClusterError(AetherError):
    """A cluster operation failed (not started, stopped, or NATS refused it)."""


class ClusterConfigError(ClusterError):
    """The cluster's stored state disagrees with this node's configuration
    (a bucket with another TTL, an assignment of another shard count)."""


__all__ = [
    "AetherError",
    "AtomicBatchUnsupportedError",
    "BusClosedError",
    "ClusterConfigError",
    "ClusterError",
    "CorruptRecordError",
    "EmptyRingError",
    "ImportRefusedError",
    "IncompatibleFormatError",
    "InvalidInputError",
    "InvalidNamespaceError",
    "InvalidTypeError",
    "MalformedMessageError",
    "NatsAccessError",
    "NatsBusError",
    "PublishTimeoutError",
    "ReceiveTimeoutError",
    "StorageError",
    "StoreAlreadyOpenError",
    "StoreClosedError",
    "StoreForkedError",
    "StoreFullError",
    "StoreNotFoundError",
    "SubscriberOverflowError",
    "TransactionConflictError",
    "VersionConflictError",
]
