"""The embedded LMDB event store: the fast default.

Each operation validates its arguments in Python and then makes one call into the
native core, which does the version check, record encoding and LMDB work.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

from .. import _native
from ..errors import (
    CorruptRecordError,
    InvalidInputError,
    InvalidTypeError,
    StoreAlreadyOpenError,
    StoreClosedError,
    StoreNotFoundError,
)
from ..model import (
    ActorSnapshot,
    ColumnarEvents,
    Event,
    ExpectedVersion,
    ReplayError,
    ReplayResult,
    check_actor_id,
    check_from_version,
    check_max_snapshot_bytes,
    check_position,
    decode_snapshot,
    encode_snapshot,
    parse_expected_version,
)
from ..namespace import DEFAULT_NAMESPACE, validate_namespace
from .group_commit import COMMIT_SECONDS_BUCKETS, GROUP_SIZE_BUCKETS, GroupCommitter, cumulative
from .subscription import CommitNotifier, Subscription

if TYPE_CHECKING:
    from typing_extensions import Self

Durability = Literal["sync", "metasync", "nosync"]
Engine = Literal["lmdb", "journal"]
MAX_RECORD_PART_BYTES = 0xFFFFFFFF    # a record's metadata and payload lengths are 32-bit
DEFAULT_MAP_SIZE = (16 << 30) if sys.maxsize > 2**32 else (256 << 20)
DATA_FILE = "data.mdb"

_registry_lock = threading.Lock()
_open_envs: dict[str, tuple[_native.NativeEnv, set[str], GroupCommitter, CommitNotifier]] = {}


@dataclass(frozen=True)
class StoreMetrics:
    """A snapshot of an LMDB store's counters.

    Appends are counted per environment (``path``: every namespace of a path shares one
    writer): ``events_appended``, ``append_conflicts`` (calls refused with
    VersionConflictError), ``append_failures`` (other errors), ``append_calls`` (answered
    calls); ``commits`` group transactions, with the latency histogram
    ``commit_seconds_buckets`` (``(upper bound, cumulative count)``, the last bound is
    ``inf``) and ``commit_seconds_sum``, and the group-size histogram ``group_size_buckets``.
    Appends inside an explicit ``transaction()`` are counted when written, not as commits.
    The rest are gauges: this namespace's ``last_position``, ``events`` and ``snapshots``,
    and the environment's ``map_size``, ``map_used_bytes``, ``readers`` and
    ``size_on_disk`` (bytes of the data file).
    """

    path: str
    namespace: str
    events_appended: int
    append_calls: int
    append_conflicts: int
    append_failures: int
    commits: int
    commit_seconds_sum: float
    commit_seconds_buckets: tuple[tuple[float, int], ...]
    group_size_buckets: tuple[tuple[float, int], ...]
    last_position: int
    events: int
    snapshots: int
    map_size: int
    map_used_bytes: int
    readers: int
    size_on_disk: int


class LmdbEventStore:
    """An event store in an LMDB environment directory at ``path``.

    ``durability`` trades safety against commit speed; a process crash (even SIGKILL)
    never loses an acknowledged event in any mode, the modes differ on a crash of the
    machine or a power loss:

    - ``"sync"`` (default): every commit is on disk when the call returns.
    - ``"metasync"``: data pages are flushed, the meta page is not; the last commits may
      be lost on power failure but the store is never corrupted.
    - ``"nosync"``: nothing is flushed by commits (call ``sync()``); the fastest, and may
      lose recent commits on a machine crash, though LMDB keeps the file consistent
      only if the file system preserves write order.

    ``map_size`` is the initial size of the memory map (address space, not disk: the file
    grows with the data). It grows on demand between transactions; a single explicit
    transaction larger than the map fails with StoreFullError, so the default is large
    on 64-bit systems. One path
    may hold many namespaces (``max_namespaces``); each is isolated by construction.
    ``max_event_bytes`` bounds one encoded event, ``max_snapshot_bytes`` the encoded state
    of one snapshot (at most 4 GiB - 1, the record's 32-bit length field).

    Group commit (concurrent appends sharing one transaction) closes a group at
    ``group_max`` requests, and under contention waits at most ``group_gather`` seconds
    for callers to join; both are set by the first open of a path in a process.

    Opening an existing store and namespace only reads (it does not wait for another
    process's long write transaction); creating a store or a namespace takes LMDB's
    writer lock, so it waits for such a transaction to end. With ``create=False`` a
    missing store or namespace raises StoreNotFoundError and nothing is created.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "sync",
        map_size: int = DEFAULT_MAP_SIZE,
        namespace: str = DEFAULT_NAMESPACE,
        max_namespaces: int = 64,
        max_readers: int = 126,
        max_event_bytes: int = 16 << 20,
        max_snapshot_bytes: int = 256 << 20,
        group_max: int = 512,
        group_gather: float = 0.0005,
        create: bool = True,
        engine: Engine | None = None,
        journal_segment_bytes: int = 64 << 20,
    ) -> None:
        if durability not in _native.DURABILITY_FLAGS:
            raise InvalidInputError(
                f"durability must be one of 'sync', 'metasync', 'nosync'; got {durability!r}"
            )
        if engine not in (None, "lmdb", "journal"):
            raise InvalidInputError(f"engine must be 'lmdb' or 'journal' (or None: the store's own), got {engine!r}")
        if isinstance(group_gather, bool) or not isinstance(group_gather, (int, float)) \
                or not 0 <= group_gather <= 1:
            raise InvalidInputError(f"group_gather must be 0 to 1 seconds, got {group_gather!r}")
        for name, value in (("map_size", map_size), ("max_namespaces", max_namespaces), ("group_max", group_max),
                            ("max_readers", max_readers), ("max_event_bytes", max_event_bytes),
                            ("journal_segment_bytes", journal_segment_bytes)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidTypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < 1:
                raise InvalidInputError(f"{name} must be positive, got {value}")
        if max_event_bytes > MAX_RECORD_PART_BYTES:
            raise InvalidInputError(
                f"max_event_bytes must be at most {MAX_RECORD_PART_BYTES} (4 GiB - 1: the record's "
                f"32-bit length fields), got {max_event_bytes}")
        self.max_snapshot_bytes = check_max_snapshot_bytes(max_snapshot_bytes)
        self.namespace = validate_namespace(namespace)
        self.durability = durability
        self.max_event_bytes = max_event_bytes
        path = os.fspath(path)
        if create:
            if os.path.exists(path) and not os.path.isdir(path):
                raise InvalidInputError(f"store path {path!r} exists and is not a directory")
            os.makedirs(path, exist_ok=True)
            self.path = os.path.realpath(path)
        else:
            self.path = existing_store_path(path)
        with _registry_lock:
            entry = _open_envs.get(self.path)
            if entry is not None and (entry[0].closed or entry[0].forked):
                entry = None   # a store inherited through fork() is opened anew
            if entry is None:
                env = _native.NativeEnv(
                    self.path, map_size=map_size, durability=durability,
                    max_namespaces=max_namespaces, max_readers=max_readers, create=create,
                    engine=engine, segment_bytes=journal_segment_bytes,
                )
                notifier = CommitNotifier()
                committer = GroupCommitter(env, max_group=group_max, gather=float(group_gather),
                                           on_commit=notifier.notify)
                entry = _open_envs[self.path] = (env, set(), committer, notifier)
            env, users, committer, notifier = entry
            if env.durability != durability:
                raise InvalidInputError(
                    f"store {self.path!r} is already open in this process with durability "
                    f"{env.durability!r}; namespaces of one path share it, got {durability!r}"
                )
            if self.namespace in users:
                raise StoreAlreadyOpenError(
                    f"store {self.path!r} namespace {self.namespace!r} is already open in this process"
                )
            users.add(self.namespace)      # reserved; opened below, outside the registry lock
        try:
            # only a new namespace waits for LMDB's writer lock (its sub-databases are created)
            log = env.open_log(self.namespace, create)
            if log is None:
                names = env.namespaces()
                raise StoreNotFoundError(
                    f"store {self.path!r} has no namespace {self.namespace!r} "
                    f"(it has: {', '.join(map(repr, names)) or 'none'})")
            self._log = log
        except BaseException:
            with _registry_lock:
                users.discard(self.namespace)
                if not users and _open_envs.get(self.path) is entry:
                    del _open_envs[self.path]
                    env.close()
            raise
        self._env = env
        self._committer = committer
        self._notifier = notifier
        self._closed = False

    @staticmethod
    def list_namespaces(path: str | os.PathLike[str]) -> list[str]:
        """The namespaces stored at ``path``, sorted; StoreNotFoundError when there is no
        store. Reads only (it creates no store, no namespace) and does not wait for
        writers, whether or not the store is open in this process."""
        real = existing_store_path(path)
        with _registry_lock:     # one environment per path per process: reuse an open one
            entry = _open_envs.get(real)
            if entry is not None and not entry[0].closed and not entry[0].forked:
                return entry[0].namespaces()
            env = _native.NativeEnv(real, map_size=DEFAULT_MAP_SIZE, durability="sync",
                                    max_namespaces=64, max_readers=126, create=False)
            try:
                return env.namespaces()
            finally:
                env.close()

    @staticmethod
    def durability_in_process(path: str | os.PathLike[str]) -> Durability | None:
        """The durability the store at ``path`` is open with in this process (its
        namespaces share it), or None when it is not open here."""
        with _registry_lock:
            entry = _open_envs.get(os.path.realpath(os.fspath(path)))
            if entry is None or entry[0].closed or entry[0].forked:
                return None
            return cast(Durability, entry[0].durability)

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Close the store (idempotent). The environment closes with its last namespace."""
        if self._closed:
            return
        with _registry_lock:
            entry = _open_envs.get(self.path)
            if entry is not None and entry[0] is self._env:
                if entry[1] == {self.namespace}:
                    self._env.close()      # may refuse (another thread's transaction): nothing changes
                    del _open_envs[self.path]
                entry[1].discard(self.namespace)
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.durability
        return f"LmdbEventStore({self.path!r}, namespace={self.namespace!r}, {state})"

    def _live(self) -> _native.NativeLog:
        if self._closed:
            raise StoreClosedError(f"store {self.path!r} namespace {self.namespace!r} is closed")
        return self._log

    # -- writes --------------------------------------------------------------------------

    def save_event(self, event: Event) -> int:
        """Store one event (Aether's SaveEvent): its version must exceed the actor's latest,
        else VersionConflictError. Re-saving an event already stored (same id and version)
        returns its original position. Returns the event's global position."""
        return self._committer.append(self._live(), [event], 0, 0, self.max_event_bytes)[0]

    def append(
        self, actor_id: str, events: Sequence[Event], *, expected_version: ExpectedVersion = "any"
    ) -> list[int]:
        """Store one actor's events atomically, in one transaction; returns their positions.

        Versions must strictly increase and exceed the actor's latest version;
        ``expected_version`` adds a check of that latest version. A batch whose event ids
        are already stored at those versions returns its original positions (idempotent
        retry). Nothing is written when any check fails."""
        log = self._live()
        check_actor_id(actor_id)
        kind, expected = parse_expected_version(expected_version)
        if not isinstance(events, list):
            if isinstance(events, (str, bytes, Event)) or not isinstance(events, Sequence):
                raise InvalidTypeError(f"events must be a sequence of Event, got {type(events).__name__}")
            events = list(events)
        if events and isinstance(events[0], Event) and events[0].actor_id != actor_id:
            raise InvalidInputError(
                f"events[0] is for actor {events[0].actor_id!r}, not {actor_id!r}"
            )
        if not events:
            return []
        return self._committer.append(log, events, kind, expected, self.max_event_bytes)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction for every save and append of this thread inside the block,
        committed at the end; an exception rolls all of it back. Writes from other threads
        wait until it ends. Reads in the block see its writes."""
        self._live()
        self._env.begin_transaction()
        try:
            yield
        except BaseException:
            self._env.end_transaction(False)
            raise
        self._env.end_transaction(True)
        self._notifier.notify()

    def save_snapshot(self, snapshot: ActorSnapshot) -> None:
        """Store a snapshot; one of the same actor and version is replaced."""
        log = self._live()
        log.save_snapshot(*encode_snapshot(snapshot, self.max_snapshot_bytes))

    @property
    def engine(self) -> Engine:
        """``"journal"`` or ``"lmdb"``: the store's engine (chosen when it was created)."""
        return "journal" if self._env.journal is not None else "lmdb"

    def sync(self) -> None:
        """Flush everything to disk (for the 'metasync' and 'nosync' modes)."""
        self._live()
        self._env.sync()

    # -- reads ----------------------------------------------------------------------------

    def get_events(self, actor_id: str, from_version: int = 1, *,
                   projection: _native.Projection | None = None) -> list:
        """The actor's events with version >= ``from_version``, in version order; raises
        CorruptRecordError on a damaged record (see ``get_events_with_errors``). With a
        ``Projection``, its objects are built straight from the records instead of Events."""
        log = self._live()
        if projection is not None and not isinstance(projection, _native.Projection):
            raise InvalidTypeError(f"projection must be a Projection, got {type(projection).__name__}")
        return log.get_events(check_actor_id(actor_id), check_from_version(from_version), False, projection)

    def get_events_with_errors(self, actor_id: str, from_version: int = 1) -> ReplayResult:
        """The decodable events, and a ReplayError for each damaged record."""
        log = self._live()
        events, errors = log.get_events(check_actor_id(actor_id), check_from_version(from_version), True)
        return ReplayResult(events, [_replay_error(*e) for e in errors])

    def get_latest_version(self, actor_id: str) -> int:
        """The actor's latest version, 0 when it has none (one index seek, no cache)."""
        return self._live().latest_version(check_actor_id(actor_id))

    def last_position(self) -> int:
        """The position of the last event in this namespace's log (0 when empty)."""
        return self._live().last_position()

    def read_all(self, from_position: int = 1, limit: int | None = None) -> Iterator[Event]:
        """The global log from ``from_position`` on, in position order (gapless, 1-based).

        Read in chunks, each in its own read transaction: events committed while the
        iterator runs appear at its end."""
        log = self._live()
        pos = check_position(from_position, "from_position")
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise InvalidTypeError(f"limit must be an int or None, got {type(limit).__name__}")
            if limit < 0:
                raise InvalidInputError(f"limit must be >= 0, got {limit}")
        return log.iterate(pos, -1 if limit is None else limit)

    def subscribe(
        self, from_position: int = 1, *, event_types: Iterable[str] | None = None, poll_interval: float = 0.001
    ) -> Subscription:
        """A catch-up subscription: every event from ``from_position`` on, history first,
        then live as commits land (also those of other processes, seen within about
        ``poll_interval``), in position order, with no gap and no duplicate."""
        self._live()
        return Subscription(
            lambda position, limit: self._live().read_range(position, limit, False),
            self._notifier,
            from_position=from_position,
            event_types=event_types,
            poll_interval=poll_interval,
        )

    def read_columns(
        self, actor_id: str | None = None, *, from_position: int = 1, to_position: int | None = None
    ) -> ColumnarEvents:
        """One native call returning numpy columns: of one actor's events (``actor_id``), or of
        the global log between two positions (inclusive)."""
        log = self._live()
        if actor_id is not None:
            check_actor_id(actor_id)
        start = check_position(from_position, "from_position")
        end = 2**63 - 1 if to_position is None else check_position(to_position, "to_position")
        return ColumnarEvents.from_native(log.columnar(actor_id, start, end))

    def get_latest_snapshot(self, actor_id: str) -> ActorSnapshot | None:
        """The actor's snapshot with the highest version, or None."""
        found = self._live().latest_snapshot(check_actor_id(actor_id))
        return None if found is None else decode_snapshot(actor_id, *found)

    def stats(self) -> dict[str, int]:
        """Counts of this namespace: events, index entries, snapshots."""
        return self._live().stats()

    def metrics(self) -> StoreMetrics:
        """A snapshot of the store's counters and gauges (see StoreMetrics)."""
        log = self._live()
        stats, info, commits = log.stats(), self._env.info(), self._committer.stats
        try:
            size_on_disk = os.stat(os.path.join(self.path, "data.mdb")).st_size
        except OSError:
            size_on_disk = 0
        return StoreMetrics(
            path=self.path, namespace=self.namespace,
            events_appended=commits.events, append_calls=commits.requests,
            append_conflicts=commits.conflicts, append_failures=commits.failures,
            commits=commits.commits, commit_seconds_sum=commits.commit_seconds,
            commit_seconds_buckets=cumulative(COMMIT_SECONDS_BUCKETS, commits.commit_buckets),
            group_size_buckets=cumulative(GROUP_SIZE_BUCKETS, commits.group_buckets),
            last_position=log.last_position(), events=stats["events"], snapshots=stats["snapshots"],
            map_size=info["map_size"], map_used_bytes=info["used_bytes"], readers=info["readers"],
            size_on_disk=size_on_disk,
        )

    def info(self) -> dict[str, object]:
        """Environment facts: map size and use, readers, namespaces."""
        self._live()
        return {**self._env.info(), "namespaces": self._env.namespaces(), "path": self.path}


def existing_store_path(path: str | os.PathLike[str]) -> str:
    """The real path of the existing store directory ``path``; StoreNotFoundError naming
    it otherwise (InvalidInputError when it is not a directory). Nothing is created."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise StoreNotFoundError(f"no store at {p!r}: the path does not exist")
    if not os.path.isdir(p):
        raise InvalidInputError(f"{p!r} is not a store: it is not a directory")
    if not os.path.isfile(os.path.join(p, DATA_FILE)):
        raise StoreNotFoundError(f"{p!r} is not a store: it has no {DATA_FILE}")
    return os.path.realpath(p)


def _replay_error(position: int, raw: bytes, problem: str | CorruptRecordError) -> ReplayError:
    if isinstance(problem, CorruptRecordError):     # raised by the decoder, position included
        return ReplayError(position, raw, problem)
    return ReplayError(position, raw, CorruptRecordError(problem, position))


__all__ = ["Durability", "LmdbEventStore"]
