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


MAX_ACTOR_PATTERN_BYTES = 255
_PATTERN_TOKEN = re.compile(r"[A-Za-z0-9_-]+|\*|>")
_WHITESPACE = re.compile(r"\s")


def _check_tokens(pattern: str, what: str, token_rule: re.Pattern[str] | None) -> None:
    tokens = pattern.split(".")
    last = len(tokens) - 1
    for i, token in enumerate(tokens):
        if not token:
            raise InvalidNamespaceError(
                f"invalid {what} {pattern!r}: token {i + 1} is empty (no leading, trailing or double dots)"
            )
        if token == ">" and i != last:
            raise InvalidNamespaceError(f"invalid {what} {pattern!r}: '>' may only be the last token")
        if token in ("*", ">"):
            continue
        if "*" in token or ">" in token:
            raise InvalidNamespaceError(
                f"invalid {what} {pattern!r}: wildcards are whole tokens ('*' one token, '>' the rest), "
                f"so {token!r} is not allowed; write e.g. 'tenant.*', not 'tenant-*'"
            )
        if token_rule is not None and not token_rule.fullmatch(token):
            raise InvalidNamespaceError(
                f"invalid {what} {pattern!r}: token {token!r} must be ASCII letters, digits, '_' or '-', "
                "or a whole-token wildcard '*' or '>'"
            )


def validate_namespace_pattern(pattern: object) -> str:
    """Return ``pattern`` if it is a namespace pattern, else raise InvalidNamespaceError.

    NATS token rules: tokens separated by ``.``, each a namespace token (ASCII letters,
    digits, ``_``, ``-``) or a wildcard that is a whole token: ``*`` matches exactly one
    token, ``>`` one or more trailing tokens and may only be last. A pattern without
    wildcards matches only the namespace of that name. At most 200 characters.
    """
    if not isinstance(pattern, str):
        raise InvalidTypeError(
            f"namespace pattern must be a str, got {type(pattern).__name__}: {pattern!r:.80}"
        )
    if not pattern:
        raise InvalidNamespaceError("namespace pattern must not be empty")
    if len(pattern) > MAX_NAMESPACE_LENGTH:
        raise InvalidNamespaceError(
            f"namespace pattern is {len(pattern)} characters, over the limit of {MAX_NAMESPACE_LENGTH}: "
            f"{pattern[:40]!r}..."
        )
    if _NAME.fullmatch(pattern):
        return pattern
    _check_tokens(pattern, "namespace pattern", _PATTERN_TOKEN)
    return pattern


def validate_actor_pattern(pattern: object) -> str:
    """Return ``pattern`` if it is an actor pattern, else raise InvalidNamespaceError.

    Actor ids are split on ``.`` into tokens and matched with the namespace token rules:
    ``*`` is exactly one token (which may be empty in an actor id), ``>`` one or more
    trailing tokens, only last; other tokens match literally. A pattern has no empty
    tokens, no whitespace and wildcards only as whole tokens; at most 255 UTF-8 bytes.
    """
    if not isinstance(pattern, str):
        raise InvalidTypeError(f"actor pattern must be a str, got {type(pattern).__name__}: {pattern!r:.80}")
    if not pattern:
        raise InvalidNamespaceError("actor pattern must not be empty")
    try:
        size = len(pattern.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidNamespaceError(f"actor pattern {pattern!r:.80} is not valid Unicode text") from None
    if size > MAX_ACTOR_PATTERN_BYTES:
        raise InvalidNamespaceError(
            f"actor pattern is {size} bytes in UTF-8, over the limit of {MAX_ACTOR_PATTERN_BYTES}: "
            f"{pattern[:40]!r}..."
        )
    if _WHITESPACE.search(pattern):
        raise InvalidNamespaceError(f"invalid actor pattern {pattern!r}: whitespace is not allowed")
    _check_tokens(pattern, "actor pattern", None)
    return pattern


def is_wildcard(pattern: str) -> bool:
    """True when a (valid) pattern has a ``*`` or ``>`` token, so it may match other names."""
    return "*" in pattern or ">" in pattern
