"""aether_fast as a persistence module of the `eventsourcing` library (9.5 and later 9.x).

Switch an existing application over with its environment::

    PERSISTENCE_MODULE=aether_fast.eventsourcing
    AETHER_FAST_PATH=/var/lib/myapp          # the store directory (required)
    AETHER_FAST_DURABILITY=sync              # sync (default) | metasync | nosync
    CREATE_TABLE=yes                         # the library's key: "no" = the store must exist
    ORIGINATOR_ID_TYPE=uuid                  # the library's key: uuid (default) | text

Every key may carry the application's name as a prefix (``BANKACCOUNTS_AETHER_FAST_PATH``),
as the library's ``Environment`` looks that up first.

Mapping onto the store (one LMDB environment per path, namespaces named like the
library's Postgres tables, ``<application name or "stored">_<purpose>``):

- A ``StoredEvent(originator_id, originator_version, topic, state)`` is an aether_fast
  ``Event`` with ``actor_id = str(originator_id)``, ``version = originator_version + 1``
  (the library counts from 0 in places, aether_fast versions start at 1), ``event_type =
  topic`` and ``data = state`` (bytes, stored verbatim). Each event gets a fresh random id,
  so that inserting an event twice is a conflict, never an idempotent retry.
- Events go to the ``<app>_events`` namespace, snapshots to ``<app>_snapshots``, tracking
  records to ``<app>_tracking`` (``<prefix>`` = the lower-cased application name, or
  ``stored``/``notification`` without one). A tracking record is an event of the tracking
  namespace whose actor is the upstream application's name and whose version is the
  notification id: the store's rule that versions grow is the library's tracking rule.
- ``insert_events`` is atomic over all its aggregates and its tracking record: one write
  transaction, one append per run of consecutive events of one aggregate. A version clash
  raises the library's ``IntegrityError`` and writes nothing.
- Notification ids are the global positions of the events namespace: gapless, and
  contiguous per ``insert_events`` call, since LMDB has a single writer.
- Concurrent ``insert_events`` calls of one aggregate each (what ``Application.save``
  of one aggregate does) share a transaction and its fsync: the store's group commit.
  A call spanning several aggregates, or carrying a tracking record, is one explicit
  transaction of its own.
- ``subscribe(gt=...)`` is a catch-up subscription of the store: commits of this process
  wake it at once, commits of other processes are seen within
  ``LmdbSubscription.poll_interval`` seconds (1 ms).

Differences from the SQL recorders: the versions of one originator must be inserted in
increasing order (every ``Application`` does so); inserting a version below the latest
stored one raises ``IntegrityError`` where an SQL table would accept it. Originator ids
are at most 255 UTF-8 bytes, topics at most 1024. ``CREATE_TABLE=no`` means the store
and the recorder's namespaces must already exist (``OperationalError`` otherwise, and
nothing is created), as the SQL recorders' tables must.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import itertools
import os
import re
import threading
import weakref
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, cast
from uuid import UUID

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    DatabaseError,
    DataError,
    InfrastructureFactory,
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    ProcessRecorder,
    ProgrammingError,
    Recorder,
    StoredEvent,
    Subscription,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.utils import Environment, EnvType, resolve_topic, strtobool

from ._native import Projection, event_runs, with_position
from .errors import (
    AetherError,
    CorruptRecordError,
    InvalidInputError,
    InvalidTypeError,
    StorageError,
    StoreClosedError,
    StoreForkedError,
    StoreNotFoundError,
    VersionConflictError,
)
from .model import Event
from .store.lmdb import Durability, LmdbEventStore

if TYPE_CHECKING:
    from collections.abc import Iterator

OriginatorIdType = Literal["uuid", "text"]
_Append = tuple[LmdbEventStore, str, list[Event]]   # (namespace store, actor id, its events)
DURABILITIES = ("sync", "metasync", "nosync")
TRACKING_EVENT_TYPE = "Tracking"


# -- errors ----------------------------------------------------------------------------------


def persistence_error(error: BaseException) -> BaseException:
    """The library's exception (PEP 249 names) for an aether_fast error."""
    message = str(error)
    if isinstance(error, VersionConflictError):
        return IntegrityError(message)
    if isinstance(error, (InvalidInputError, InvalidTypeError)):
        return DataError(message)
    if isinstance(error, (StoreClosedError, StoreForkedError)):
        return InterfaceError(message)
    if isinstance(error, StorageError):
        return OperationalError(message)
    if isinstance(error, CorruptRecordError):
        return DatabaseError(message)
    if isinstance(error, AetherError):
        return ProgrammingError(message)
    return error


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except AetherError as e:
        raise persistence_error(e) from e


# -- one store path opened by this process ---------------------------------------------------


class _SharedEnv:
    """A store path as this process uses it: one open store per namespace, shared by every
    datastore on the path (a namespace can be open only once per process)."""

    def __init__(self, path: str, durability: Durability) -> None:
        self.path = path
        self.durability = durability
        self.pid = os.getpid()
        self.users = 0
        self.lock = threading.Lock()
        self.stores: dict[str, LmdbEventStore] = {}

    def store(self, namespace: str, *, create: bool) -> LmdbEventStore:
        with self.lock:
            store = self.stores.get(namespace)
            if store is None:
                try:
                    store = self.stores[namespace] = LmdbEventStore(
                        self.path, durability=self.durability, namespace=namespace, create=create
                    )
                except StoreNotFoundError as e:      # only with create off
                    raise OperationalError(
                        f"{e}, and CREATE_TABLE is off: create it first (run once with "
                        "CREATE_TABLE=yes) or fix AETHER_FAST_PATH"
                    ) from e
                except AetherError as e:
                    raise persistence_error(e) from e
            return store

    def close(self) -> None:
        with self.lock:
            stores, self.stores = list(self.stores.values()), {}
        for store in stores:
            store.close()


_registry_lock = threading.Lock()
_registry: dict[str, _SharedEnv] = {}


def _acquire(path: str, durability: Durability) -> _SharedEnv:
    real = os.path.realpath(path)
    with _registry_lock:
        shared = _registry.get(real)
        if shared is not None and shared.pid != os.getpid():
            shared = None               # inherited through fork(): this process opens its own
        if shared is None:
            shared = _registry[real] = _SharedEnv(real, durability)
        elif shared.durability != durability:
            raise OperationalError(
                f"the store {real!r} is already open in this process with durability "
                f"{shared.durability!r}, not {durability!r}"
            )
        shared.users += 1
        return shared


def _release(shared: _SharedEnv) -> None:
    with _registry_lock:
        shared.users -= 1
        if shared.users > 0:
            return
        if _registry.get(shared.path) is shared:
            del _registry[shared.path]
    if shared.pid == os.getpid():
        shared.close()


# -- the datastore ---------------------------------------------------------------------------


class LmdbDatastore:
    """An aether_fast store directory as the recorders use it.

    Every datastore (and so every application) of this process on one path shares one
    LMDB environment and one store per namespace.
    ``originator_id_type`` says how originator ids come back: ``"uuid"`` (ids must be
    UUIDs, returned as ``UUID``) or ``"text"`` (returned as ``str``)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "sync",
        originator_id_type: OriginatorIdType = "uuid",
    ) -> None:
        if durability not in DURABILITIES:
            raise ValueError(f"durability must be one of {', '.join(DURABILITIES)}; got {durability!r}")
        if originator_id_type not in ("uuid", "text"):
            raise ValueError(f"originator_id_type must be 'uuid' or 'text'; got {originator_id_type!r}")
        self.path = os.fspath(path)
        self.durability = durability
        self.originator_id_type = originator_id_type
        self.uuid_ids = originator_id_type == "uuid"
        self._shared = _acquire(self.path, durability)
        self._closed = False
        self._finalizer = weakref.finalize(self, _release, self._shared)

    def close(self) -> None:
        """Release the store (idempotent); the environment closes with its last datastore."""
        self._closed = True
        self._finalizer()

    @property
    def closed(self) -> bool:
        return self._closed

    def store(self, namespace: str, *, create: bool = True) -> LmdbEventStore:
        """The open store of a namespace (opened, and created if missing, on first use)."""
        if self._closed:
            raise InterfaceError(f"datastore {self.path!r} is closed")
        return self._shared.store(namespace, create=create)

    # -- writes --

    def write(self, appends: list[_Append]) -> list[list[int]]:
        """Apply the appends atomically; their positions, append by append.

        One append is one ``LmdbEventStore.append``, which concurrent threads commit
        together (the store's group commit). Several appends (several aggregates, or
        events and a tracking record) are one explicit transaction of their own."""
        if self._closed:
            raise InterfaceError(f"datastore {self.path!r} is closed")
        try:
            if len(appends) == 1:
                store, actor, events = appends[0]
                return [store.append(actor, events)]
            with appends[0][0].transaction():
                return [store.append(actor, events) for store, actor, events in appends]
        except AetherError as e:
            raise persistence_error(e) from e

    def event_runs(self, stored_events: Sequence[StoredEvent]) -> list[tuple[str, list[Event]]]:
        """The stored events as aether_fast events, in runs of one originator each (in the
        given order), with this call's ids, built in one native loop. Raises DataError on a
        bad value, IntegrityError on a version that does not grow within a run."""
        try:
            return event_runs(stored_events, self.actor_id, self._check, _new_token())
        except AetherError as e:
            raise persistence_error(e) from e
        except TypeError as e:
            raise DataError(f"bad stored event: {e}") from e

    @staticmethod
    def _check(actor: str, version: int, last: int, state: object) -> bytes:
        """The state as bytes, after the checks of the rare cases of ``event_runs``."""
        if version <= last:
            if version < 0:
                raise DataError(f"originator_version must be >= 0, got {version!r}")
            raise IntegrityError(f"originator {actor!r}: version {version} follows version {last} in one insert")
        if isinstance(state, (bytes, bytearray, memoryview)):
            return bytes(state)
        raise DataError(f"stored event state must be bytes, got {type(state).__name__}")

    def tracking_append(self, store: LmdbEventStore, tracking: Tracking) -> _Append:
        """The append that records ``tracking`` in the tracking namespace ``store``."""
        nid = tracking.notification_id
        if isinstance(nid, bool) or not isinstance(nid, int) or nid < 1:
            raise DataError(f"tracking notification_id must be an int >= 1, got {nid!r}")
        name = tracking.application_name
        with _translated():
            event = Event(event_type=TRACKING_EVENT_TYPE, actor_id=name, version=nid, data=b"",
                          id=_new_token())
        return store, name, [event]

    # -- originator ids --

    def actor_id(self, originator_id: UUID | str) -> str:
        """The store's actor id of an originator id (canonical UUID text in "uuid" mode)."""
        if isinstance(originator_id, UUID):
            return str(originator_id)
        if not isinstance(originator_id, str):
            raise DataError(f"originator id must be a UUID or a str, got {type(originator_id).__name__}")
        if not self.uuid_ids:
            return str(originator_id)
        try:
            return str(UUID(originator_id))
        except ValueError:
            raise DataError(
                f"originator id {originator_id!r} is not a UUID (set ORIGINATOR_ID_TYPE=text for other ids)"
            ) from None

    def originator_id(self, actor_id: str) -> UUID | str:
        """The originator id of a stored actor id (the inverse of ``actor_id``)."""
        return UUID(actor_id) if self.uuid_ids else actor_id


def _new_token() -> str:
    """A prefix for the ids of one call's events, unique to the call: this process's random
    prefix and a counter. Each event id is the token and the event's index in the call."""
    return f"{_id_prefix}{next(_id_counter):x}."


def _new_id_prefix() -> None:
    global _id_prefix, _id_counter
    _id_prefix = base64.urlsafe_b64encode(os.urandom(9)).decode() + "-"
    _id_counter = itertools.count(1)


_id_prefix = ""
_id_counter = itertools.count(1)
_new_id_prefix()
os.register_at_fork(after_in_child=_new_id_prefix)


_STORED_EVENT_FIELDS = ("originator_id", "originator_version", "topic", "state")
_NOTIFICATION_FIELDS = (*_STORED_EVENT_FIELDS, "id")


def _plain_dataclass(cls: type, names: tuple[str, ...]) -> bool:
    """True when ``cls`` is a dataclass with exactly these fields, no slots and no
    ``__post_init__``, whose objects a native ``Projection`` builds equal to
    ``cls(...)``: then we skip the frozen dataclass ``__init__``, which calls
    ``object.__setattr__`` once per field and so doubles the cost of reading events."""
    probe = Event(event_type="t", actor_id="a", version=2, data=b"s")
    try:
        return (
            tuple(f.name for f in dataclasses.fields(cls)) == names
            and "__slots__" not in vars(cls) and not hasattr(cls, "__post_init__")
            and Projection(cls, names, "a", None, 1).of_events([with_position(probe, 7)])
            == [cls(*("a", 1, "t", b"s", 7)[: len(names)])]
        )
    except Exception:  # noqa: BLE001 -- any surprise: build the objects the library's way
        return False


_NATIVE_BUILD = _plain_dataclass(StoredEvent, _STORED_EVENT_FIELDS) and \
    _plain_dataclass(Notification, _NOTIFICATION_FIELDS)


def _stored_events(events: list[Event], originator_id: UUID | str) -> list[StoredEvent]:
    """The library's StoredEvent of each of one originator's events, in one native call."""
    if _NATIVE_BUILD:
        return Projection(StoredEvent, _STORED_EVENT_FIELDS, originator_id, None, 1).of_events(events)
    return [StoredEvent(originator_id, e.version - 1, e.event_type, e.payload)  # pragma: no cover
            for e in events]


def _notifications(events: list[Event], originator_of: Callable[[str], UUID | str]) -> list[Notification]:
    """The library's Notification of each event (id = position), in one native call;
    ``originator_of`` is called once per actor."""
    if _NATIVE_BUILD:
        return Projection(Notification, _NOTIFICATION_FIELDS, None, originator_of, 1).of_events(events)
    return [Notification(originator_of(e.actor_id), e.version - 1,  # pragma: no cover
                         e.event_type, e.payload, e.position) for e in events]


# -- recorders -------------------------------------------------------------------------------


class LmdbRecorder(Recorder):
    """A recorder over a datastore; ``create=False`` refuses to create the store directory."""

    def __init__(self, datastore: LmdbDatastore, *, create: bool = True) -> None:
        assert isinstance(datastore, LmdbDatastore), datastore
        self.datastore = datastore
        self.create = create


class LmdbAggregateRecorder(LmdbRecorder, AggregateRecorder):
    """Stored events of aggregates (or snapshots) in one namespace."""

    def __init__(self, datastore: LmdbDatastore, events_namespace: str = "stored_events", *,
                 create: bool = True) -> None:
        super().__init__(datastore, create=create)
        self.events_namespace = events_namespace
        self.events_store = datastore.store(events_namespace, create=create)

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        self._insert_events(stored_events, None)
        return None

    def _insert_events(self, stored_events: Sequence[StoredEvent], tracking: _Append | None) -> list[int]:
        """Write the events (and the tracking append first) atomically; their positions."""
        datastore = self.datastore
        store = self.events_store
        appends = [(store, actor, events) for actor, events in datastore.event_runs(stored_events)]
        if tracking is not None:
            appends.insert(0, tracking)
        if not appends:
            return []
        results = datastore.write(appends)
        if tracking is not None:
            del results[0]
        if not results:
            return []
        if len(results) == 1:
            return results[0]
        return [p for positions in results for p in positions]

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        datastore = self.datastore
        actor = datastore.actor_id(originator_id)
        oid = originator_id if type(originator_id) is UUID and datastore.uuid_ids else datastore.originator_id(actor)
        first = 1 if gt is None else max(1, gt + 2)      # stored versions are originator versions + 1
        last = None if lte is None else lte + 1
        if (last is not None and last < first) or (limit is not None and limit <= 0):
            return []
        store = self.events_store
        with _translated():
            if desc and limit is not None:
                events = self._tail(actor, first, last, limit)
            elif last is None and not desc and _NATIVE_BUILD:    # the whole tail: built from the records
                stored = store.get_events(actor, first, projection=Projection(
                    StoredEvent, _STORED_EVENT_FIELDS, oid, None, 1))
                return stored if limit is None else stored[:limit]
            else:
                events = store.get_events(actor, first)
                if last is not None and events and events[-1].version > last:
                    del events[_bisect_version(events, last):]
        if desc:
            events.reverse()
        if limit is not None and len(events) > limit:
            del events[limit:]
        return _stored_events(events, oid)

    def _tail(self, actor: str, first: int, last: int | None, limit: int) -> list[Event]:
        """The last ``limit`` events with versions in ``first..last``, in version order:
        read from ``limit`` versions below the top, then from ``first`` if versions have gaps."""
        store = self.events_store
        top = store.get_latest_version(actor)
        if last is not None:
            top = min(top, last)
        if top < first:
            return []
        start = max(first, top - limit + 1)
        while True:
            events = store.get_events(actor, start)
            if events and events[-1].version > top:
                del events[_bisect_version(events, top):]
            if len(events) >= limit or start == first:
                return events[-limit:]
            start = first


def _bisect_version(events: list[Event], version: int) -> int:
    """The index of the first event whose version exceeds ``version`` (events in version order)."""
    lo, hi = 0, len(events)
    while lo < hi:
        mid = (lo + hi) // 2
        if events[mid].version <= version:
            lo = mid + 1
        else:
            hi = mid
    return lo


class LmdbApplicationRecorder(LmdbAggregateRecorder, ApplicationRecorder):
    """Stored events in the application sequence: notification ids are global positions."""

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        return self._insert_events(stored_events, None)

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        first = 1 if start is None else (start if inclusive_of_start else start + 1)
        first = max(first, 1)
        if limit <= 0 or (stop is not None and stop < first):
            return []
        try:
            if not topics:
                count = limit if stop is None else min(limit, stop - first + 1)
                events = list(self.events_store.read_all(first, count))
            else:
                wanted = frozenset(topics)
                events = []
                for e in self.events_store.read_all(first):
                    if stop is not None and e.position > stop:
                        break
                    if e.event_type in wanted:
                        events.append(e)
                        if len(events) == limit:
                            break
        except AetherError as e:
            raise persistence_error(e) from e
        return _notifications(events, self.datastore.originator_id)

    def max_notification_id(self) -> int | None:
        with _translated():
            return self.events_store.last_position() or None

    def subscribe(self, gt: int | None = None, topics: Sequence[str] = ()) -> Subscription[ApplicationRecorder]:
        return LmdbSubscription(self, gt=gt, topics=topics)


class LmdbSubscription(Subscription[LmdbApplicationRecorder]):
    """The application sequence after ``gt``, history then live: an aether_fast catch-up
    subscription of the events namespace, woken at once by commits of this process and
    polling for those of other processes (within ``poll_interval`` seconds)."""

    poll_interval = 0.001

    def __init__(self, recorder: LmdbApplicationRecorder, gt: int | None = None,
                 topics: Sequence[str] = ()) -> None:
        assert isinstance(recorder, LmdbApplicationRecorder), recorder
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._originator_of = functools.lru_cache(maxsize=10_000)(recorder.datastore.originator_id)
        with _translated():
            self._events = recorder.events_store.subscribe(
                max(gt or 0, 0) + 1, event_types=topics or None, poll_interval=self.poll_interval
            )

    def stop(self) -> None:
        super().stop()
        self._events.stop()

    def __next__(self) -> Notification:
        if self._has_been_stopped:
            raise StopIteration
        with _translated():
            e = self._events.next()
        if e is None:
            raise StopIteration
        self._last_notification_id = e.position
        return _notifications([e], self._originator_of)[0]


class LmdbTrackingRecorder(LmdbRecorder, TrackingRecorder):
    """Tracking records: per upstream application, the notification ids it has processed."""

    def __init__(self, datastore: LmdbDatastore, tracking_namespace: str = "notification_tracking", *,
                 create: bool = True, **kwargs: Any) -> None:
        super().__init__(datastore, create=create, **kwargs)
        self.tracking_namespace = tracking_namespace
        self.tracking_store = datastore.store(tracking_namespace, create=create)

    def insert_tracking(self, tracking: Tracking) -> None:
        self.datastore.write([self.datastore.tracking_append(self.tracking_store, tracking)])

    def max_tracking_id(self, application_name: str) -> int | None:
        with _translated():
            return self.tracking_store.get_latest_version(application_name) or None


class LmdbProcessRecorder(LmdbTrackingRecorder, LmdbApplicationRecorder, ProcessRecorder):
    """Events and tracking records in two namespaces of one store, written atomically."""

    def __init__(self, datastore: LmdbDatastore, *, events_namespace: str = "stored_events",
                 tracking_namespace: str = "notification_tracking", create: bool = True) -> None:
        super().__init__(datastore, tracking_namespace, create=create, events_namespace=events_namespace)

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        tracking: Tracking | None = kwargs.get("tracking")
        return self._insert_events(
            stored_events, None if tracking is None else self.datastore.tracking_append(self.tracking_store, tracking)
        )


# -- the infrastructure factory ----------------------------------------------------------------


_NOT_IN_NAMESPACE = re.compile(r"[^A-Za-z0-9_-]")


class LmdbFactory(InfrastructureFactory[LmdbTrackingRecorder]):
    """Recorders over an aether_fast store, configured from the environment (see the
    module docstring)."""

    AETHER_FAST_PATH = "AETHER_FAST_PATH"
    AETHER_FAST_DURABILITY = "AETHER_FAST_DURABILITY"
    ORIGINATOR_ID_TYPE = "ORIGINATOR_ID_TYPE"
    CREATE_TABLE = "CREATE_TABLE"

    aggregate_recorder_class = LmdbAggregateRecorder
    application_recorder_class = LmdbApplicationRecorder
    tracking_recorder_class = LmdbTrackingRecorder
    process_recorder_class = LmdbProcessRecorder

    def __init__(self, env: Environment | EnvType | None):
        super().__init__(env)
        path = self.env.get(self.AETHER_FAST_PATH)
        if not path:
            raise OSError(
                "aether_fast store path not found in environment with keys: "
                f"{', '.join(self.env.create_keys(self.AETHER_FAST_PATH))}"
            )
        durability = (self.env.get(self.AETHER_FAST_DURABILITY) or "sync").strip().lower()
        if durability not in DURABILITIES:
            raise OSError(
                f"Invalid {self.AETHER_FAST_DURABILITY} {durability!r}, must be one of {', '.join(DURABILITIES)}"
            )
        originator_id_type = (self.env.get(self.ORIGINATOR_ID_TYPE) or "uuid").strip().lower()
        if originator_id_type not in ("uuid", "text"):
            raise OSError(f"Invalid {self.ORIGINATOR_ID_TYPE} {originator_id_type!r}, must be 'uuid' or 'text'")
        self.datastore = LmdbDatastore(
            path,
            durability=cast(Durability, durability),
            originator_id_type=cast(OriginatorIdType, originator_id_type),
        )

    def namespace(self, purpose: str, default_prefix: str = "stored") -> str:
        """The store namespace of a purpose: ``<application name>_<purpose>``, lower-cased
        like the library's Postgres table names (characters a namespace cannot hold become ``_``)."""
        prefix = _NOT_IN_NAMESPACE.sub("_", self.env.name.lower()) or default_prefix
        return f"{prefix}_{_NOT_IN_NAMESPACE.sub('_', purpose)}"

    def env_create_table(self) -> bool:
        default = "yes"
        return bool(strtobool(self.env.get(self.CREATE_TABLE, default) or default))

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        return self.aggregate_recorder_class(
            self.datastore, self.namespace(purpose), create=self.env_create_table()
        )

    def application_recorder(self) -> ApplicationRecorder:
        cls = self._recorder_class(self.APPLICATION_RECORDER_TOPIC, self.application_recorder_class)
        return cls(self.datastore, self.namespace("events"), create=self.env_create_table())

    def tracking_recorder(
        self, tracking_recorder_class: type[LmdbTrackingRecorder] | None = None
    ) -> LmdbTrackingRecorder:
        cls = tracking_recorder_class or self._recorder_class(
            self.TRACKING_RECORDER_TOPIC, self.tracking_recorder_class
        )
        assert issubclass(cls, LmdbTrackingRecorder), cls
        return cls(self.datastore, self.namespace("tracking", "notification"), create=self.env_create_table())

    def process_recorder(self) -> ProcessRecorder:
        cls = self._recorder_class(self.PROCESS_RECORDER_TOPIC, self.process_recorder_class)
        return cls(
            self.datastore,
            events_namespace=self.namespace("events"),
            tracking_namespace=self.namespace("tracking", "notification"),
            create=self.env_create_table(),
        )

    def _recorder_class(self, topic_key: str, default: type[Any]) -> type[Any]:
        topic = self.env.get(topic_key)
        if not topic:
            return default
        cls = resolve_topic(topic)
        assert issubclass(cls, default), f"{topic_key}={topic!r} is not a subclass of {default.__qualname__}"
        return cls

    def close(self) -> None:
        self.datastore.close()


Factory = LmdbFactory

__all__ = [
    "Factory",
    "LmdbAggregateRecorder",
    "LmdbApplicationRecorder",
    "LmdbDatastore",
    "LmdbFactory",
    "LmdbProcessRecorder",
    "LmdbRecorder",
    "LmdbSubscription",
    "LmdbTrackingRecorder",
    "persistence_error",
]
