"""The one rule for namespace names, used by every store, bus and subject."""

from __future__ import annotations

import re

from .errors import InvalidNamespaceError, InvalidTypeError

MAX_NAMESPACE_LENGTH = 200
DEFAULT_NAMESPACE = "default"
_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def validate_namespace(name: object) -> str:
    """Return ``name`` if it is a concrete namespace, else raise InvalidNamespaceError.

    A namespace is NATS-style: tokens separated by ``.``, each token made of ASCII
    letters, digits, ``_`` and ``-``; no empty tokens, no wildcards, at most
    200 characters.
    """
    if not isinstance(name, str):
        raise InvalidTypeError(f"namespace must be a str, got {type(name).__name__}: {name!r}")
    if not name:
        raise InvalidNamespaceError("namespace must not be empty")
    if len(name) > MAX_NAMESPACE_LENGTH:
        raise InvalidNamespaceError(
            f"namespace is {len(name)} characters, over the limit of {MAX_NAMESPACE_LENGTH}: {name[:40]!r}..."
        )
    if not _NAME.fullmatch(name):
        raise InvalidNamespaceError(
            f"invalid namespace {name!r}: use tokens of ASCII letters, digits, '_' and '-' "
            "separated by single dots (no wildcards, spaces or empty tokens)"
        )
    return name
