"""One error tree, rooted at :class:`AetherError`.

Errors about bad input also inherit the matching builtin (``ValueError``,
``TypeError``) so that ordinary ``except ValueError`` code keeps working.
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


__all__ = [
    "AetherError",
    "CorruptRecordError",
    "IncompatibleFormatError",
    "InvalidInputError",
    "InvalidNamespaceError",
    "InvalidTypeError",
    "StorageError",
    "StoreAlreadyOpenError",
    "StoreClosedError",
    "StoreForkedError",
    "StoreFullError",
    "StoreNotFoundError",
    "VersionConflictError",
]
