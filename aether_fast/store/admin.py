"""Operating a store: facts, verification, export and import as Aether's JSON lines, hot backup.

The library functions behind the ``aether-fast`` commands. Each takes a store path or an
open :class:`LmdbEventStore`. Functions that read (``store_info``, ``verify_store``,
``export_events``) never create anything: a path that is not an existing store is a
``StoreNotFoundError`` (an ``InvalidInputError``) naming it, and so is a namespace the store
does not have. They only read, so they do not wait for another process's write transaction.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import IO

import orjson

from .. import _native
from ..errors import AetherError, CorruptRecordError, ImportRefusedError, InvalidInputError
from ..model import Event
from ..namespace import DEFAULT_NAMESPACE, validate_namespace
from .lmdb import DATA_FILE, LmdbEventStore, existing_store_path

StoreRef = str | os.PathLike[str] | LmdbEventStore
"""A store path, or a store already open in this process."""

Progress = Callable[[int], None]
"""Called with the amount of work done since the last call (events or bytes)."""

LOCK_FILE = "lock.mdb"
_CHUNK = 1024
_MAX_PROBLEMS = 1000


# -- opening ------------------------------------------------------------------------------


def check_store_path(path: str | os.PathLike[str]) -> str:
    """The real path of an existing store directory; StoreNotFoundError (InvalidInputError
    when not a directory) naming ``path`` otherwise. Nothing is created."""
    return existing_store_path(path)


def list_namespaces(ref: StoreRef) -> list[str]:
    """The namespaces stored at ``ref``, without creating any."""
    return LmdbEventStore.list_namespaces(ref.path if isinstance(ref, LmdbEventStore) else ref)


@contextmanager
def open_namespace(ref: StoreRef, namespace: str | None = None, *, create: bool = False) -> Iterator[LmdbEventStore]:
    """The store of one namespace at ``ref`` (default: the open store's own, or "default").

    Without ``create`` the store and the namespace must exist. A store passed in is used as
    it is and left open; a store opened here is closed at the end."""
    if isinstance(ref, LmdbEventStore):
        if namespace is None or namespace == ref.namespace:
            yield ref
            return
        names = list_namespaces(ref)
        path, durability = ref.path, ref.durability
    else:
        path = os.fspath(ref)
        fresh = create and (not os.path.exists(path) or (os.path.isdir(path) and not os.listdir(path)))
        names = [] if fresh else list_namespaces(path)
        durability = LmdbEventStore.durability_in_process(path) or "sync"
    ns = validate_namespace(DEFAULT_NAMESPACE if namespace is None else namespace)
    with LmdbEventStore(path, namespace=ns, durability=durability, create=create,
                        max_namespaces=max(64, len(names) + 1)) as store:
        yield store


# -- info -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NamespaceInfo:
    """Counts of one namespace."""

    name: str
    events: int
    actors: int
    last_position: int
    snapshots: int


@dataclass(frozen=True)
class StoreInfo:
    """Facts about a store. ``durability`` is not stored in the files: each process
    chooses it when it opens the store; this is the mode of the opening that read it."""

    path: str
    format_version: str
    namespaces: list[NamespaceInfo]
    file_bytes: int             # apparent size of data.mdb + lock.mdb
    disk_bytes: int             # blocks they occupy on disk
    map_size: int
    map_used_bytes: int
    page_size: int
    readers: int
    max_readers: int
    durability: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def store_info(ref: StoreRef) -> StoreInfo:
    """Namespaces with their counts, sizes, map use, format version of the store at ``ref``."""
    names = list_namespaces(ref)
    found: list[NamespaceInfo] = []
    env_info: dict[str, int] = {}
    durability = "sync"
    for ns in names:
        with open_namespace(ref, ns) as store:
            log = store._live()
            stats = log.stats()
            found.append(NamespaceInfo(ns, stats["events"], log.count_actors(), log.last_position(),
                                       stats["snapshots"]))
            env_info = store._env.info()
            durability = store.durability
    path = ref.path if isinstance(ref, LmdbEventStore) else check_store_path(ref)
    file_bytes = disk_bytes = 0
    for name in (DATA_FILE, LOCK_FILE):
        try:
            st = os.stat(os.path.join(path, name))
        except FileNotFoundError:
            continue
        file_bytes += st.st_size
        disk_bytes += st.st_blocks * 512
    return StoreInfo(
        path=path, format_version=_native.STORE_FORMAT.decode(), namespaces=found,
        file_bytes=file_bytes, disk_bytes=disk_bytes, map_size=env_info.get("map_size", 0),
        map_used_bytes=env_info.get("used_bytes", 0), page_size=env_info.get("page_size", 0),
        readers=env_info.get("readers", 0), max_readers=env_info.get("max_readers", 0), durability=durability,
    )


# -- verify -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One finding of ``verify_store``: ``kind`` is "record" (damaged record), "gap"
    (missing positions), "order" (an actor's versions do not grow with positions) or
    "index" (index and log disagree)."""

    namespace: str
    kind: str
    message: str
    position: int | None = None
    actor_id: str | None = None

    def __str__(self) -> str:
        where = [f"namespace {self.namespace!r}"]
        if self.actor_id is not None:
            where.append(f"actor {self.actor_id!r}")
        if self.position is not None:
            where.append(f"position {self.position}")
        return f"{', '.join(where)}: {self.message}"


@dataclass
class VerifyReport:
    """The outcome of ``verify_store``; ``ok`` when no problem was found. At most 1,000
    problems are kept; ``problem_count`` counts all."""

    path: str
    namespaces: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def add(self, problem: Problem) -> None:
        self.problem_count += 1
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(problem)

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "ok": self.ok, "namespaces": self.namespaces,
                "problem_count": self.problem_count,
                "problems": [{**vars(p), "text": str(p)} for p in self.problems]}


def verify_store(ref: StoreRef) -> VerifyReport:
    """Check every namespace of the store at ``ref``: every record's checksum and structure,
    positions gapless from 1, each actor's versions growing with its positions, and the
    index agreeing with the log both ways (every record indexed under its actor and
    version, every index entry pointing at such a record). Reads only; memory grows with
    the number of actors, not of events."""
    report = VerifyReport(ref.path if isinstance(ref, LmdbEventStore) else check_store_path(ref))
    for ns in list_namespaces(ref):
        with open_namespace(ref, ns) as store:
            report.namespaces[ns] = _verify_namespace(store, report)
    return report


def _verify_namespace(store: LmdbEventStore, report: VerifyReport) -> dict[str, int]:
    ns = store.namespace
    log = store._live()
    actors: dict[str, list[int]] = {}          # actor -> [last version, records in the log]
    damaged: dict[int, str] = {}               # position -> problem, for the index pass to name
    expect, records = 1, 0
    while True:
        events, errors = log.read_range(expect, _CHUNK, True)
        if not events and not errors:
            break
        items: list = events
        if errors:
            items = sorted([*events, *errors], key=lambda x: x.position if isinstance(x, Event) else x[0])
        for item in items:
            position = item.position if isinstance(item, Event) else item[0]
            if position != expect:
                missing = f"position {expect} is" if position == expect + 1 else f"positions {expect} to {position - 1} are"
                report.add(Problem(ns, "gap", f"{missing} missing", expect))
            expect = position + 1
            records += 1
            if not isinstance(item, Event):
                damaged[position] = item[2]
                continue
            seen = actors.get(item.actor_id)
            if seen is None:
                actors[item.actor_id] = [item.version, 1]
                continue
            if item.version <= seen[0]:
                report.add(Problem(ns, "order", f"version {item.version} comes after version {seen[0]}",
                                   position, item.actor_id))
            seen[0] = max(seen[0], item.version)
            seen[1] += 1
    indexed = 0
    for actor, (_, in_log) in actors.items():
        try:
            events, errors = log.get_events(actor, 0, True)
        except CorruptRecordError as e:
            report.add(Problem(ns, "index", str(e), None, actor))
            continue
        indexed += len(events) + len(errors)
        for position, _raw, problem in errors:
            if position in damaged:
                report.add(Problem(ns, "record", f"damaged record: {damaged.pop(position)}", position, actor))
            else:
                report.add(Problem(ns, "index", problem, position, actor))
        last = 0
        for ev in events:
            if ev.position <= last:
                report.add(Problem(ns, "order", f"version {ev.version} is at position {ev.position}, "
                                   f"before the previous version's position {last}", ev.position, actor))
            last = ev.position
        if len(events) != in_log:
            report.add(Problem(ns, "index", f"{in_log} readable records in the log but {len(events)} in "
                               "the index", None, actor))
    for position, problem in damaged.items():
        report.add(Problem(ns, "record", f"damaged record (no index entry names its actor): {problem}", position))
    stats = log.stats()
    if stats["index_entries"] != indexed:
        report.add(Problem(ns, "index", f"the index has {stats['index_entries']} entries, {indexed} of them "
                           "for actors with a readable record in the log"))
    return {"records": records, "last_position": expect - 1, "actors": len(actors),
            "index_entries": stats["index_entries"], "snapshots": stats["snapshots"]}


# -- export / import ------------------------------------------------------------------------


def json_line(event: Event) -> bytes:
    """One event as a line of Aether's camelCase JSON (the export and ``--json`` format)."""
    return orjson.dumps(event.to_dict(), option=orjson.OPT_APPEND_NEWLINE)


def export_events(ref: StoreRef, out: IO[bytes], *, namespace: str | None = None, from_position: int = 1,
                  progress: Progress | None = None) -> int:
    """Write the namespace's events from ``from_position`` on to ``out`` as Aether's
    camelCase JSON, one event per line, in position order; returns the count. Streams in
    chunks (constant memory); a damaged record stops it with CorruptRecordError."""
    count = 0
    with open_namespace(ref, namespace) as store:
        log = store._live()
        position = from_position
        while True:
            events = log.read_range(position, _CHUNK, False)
            if not events:
                break
            out.write(b"".join([json_line(ev) for ev in events]))
            count += len(events)
            position = events[-1].position + 1
            if progress is not None:
                progress(len(events))
    return count


@dataclass(frozen=True)
class ImportResult:
    """What ``import_events`` did: lines read, events written, events skipped (already
    stored, with ``resume``), and the positions of the first and last written event."""

    lines: int
    imported: int
    skipped: int
    first_position: int | None
    last_position: int | None


def import_events(ref: StoreRef, lines: Iterable[bytes | str], *, namespace: str | None = None,
                  resume: bool = False, commit_every: int = 10_000,
                  progress: Progress | None = None) -> ImportResult:
    """Append events given as Aether's JSON lines (as ``export_events`` writes them),
    keeping their ids, versions and timestamps, in line order. Creates the store and the
    namespace when missing. Streams: memory does not grow with the input.

    Every event must be acceptable to the store (its version above its actor's latest);
    the first line that is not (bad JSON, a version already taken) raises
    ImportRefusedError with its line number.

    - Default, all or nothing: the whole import is one write transaction, so a refused
      line (or a crash, or Ctrl-C) leaves the store as it was. It holds the writer lock
      throughout: other writers, and processes creating a store or namespace there, wait
      until it ends (opening an existing one and reading do not; nor does a compact
      backup, a plain one does); LMDB keeps the transaction's pages in memory up to its
      spill limit (about 512 MiB with 4 KiB pages). Best for a new store.
    - ``resume=True``: commits every ``commit_every`` events (constant memory, short
      transactions: the store stays usable by others), and events already stored
      (same actor, version and id) are skipped, so running the same import again after
      an interruption or a refusal carries on where it stopped; a refused line keeps
      what came before it.
    ``progress`` is called with the bytes of each group of lines read."""
    if isinstance(commit_every, bool) or not isinstance(commit_every, int) or commit_every < 1:
        raise InvalidInputError(f"commit_every must be a positive int, got {commit_every!r}")
    state = _Import(resume)
    with open_namespace(ref, namespace, create=True) as store, ExitStack() as txn:
        txn.enter_context(store.transaction())
        try:
            for run in _runs(lines, state, progress):
                state.write(store, run)
                if resume and state.pending >= commit_every:
                    txn.close()                       # commit this part
                    state.committed += state.pending
                    state.pending = 0
                    txn.enter_context(store.transaction())
        except ImportRefusedError as e:
            if not resume:
                raise                                  # the transaction rolls back: nothing written
            txn.close()                                # keep what came before the refused line
            raise ImportRefusedError(e.reason, e.line, state.committed + state.pending) from None
    return ImportResult(state.lines, state.committed + state.pending, state.skipped, state.first, state.last)


class _Import:
    """Counters and the version checks of one import."""

    def __init__(self, resume: bool) -> None:
        self.resume = resume
        self.lines = self.committed = self.pending = self.skipped = 0
        self.first: int | None = None
        self.last: int | None = None

    def write(self, store: LmdbEventStore, run: list[tuple[int, Event]]) -> None:
        """Append one actor's run of events (versions already checked to grow)."""
        actor = run[0][1].actor_id
        latest = store.get_latest_version(actor)
        if run[0][1].version <= latest:
            if not self.resume:
                line, ev = run[0]
                stored = store.get_events(actor, ev.version)
                again = bool(stored) and stored[0].version == ev.version and stored[0].id == ev.id
                hint = " (that very event is already stored: a resumed import, --resume, skips such events)" if again else ""
                raise ImportRefusedError(
                    f"version conflict: actor {actor!r} has version {latest} in the store, the line has "
                    f"version {ev.version}{hint}", line)
            stored = {s.version: s.id for s in store.get_events(actor, run[0][1].version) if s.version <= latest}
            for line, ev in run:
                if ev.version > latest:
                    break
                if stored.get(ev.version) != ev.id:
                    what = "another event" if ev.version in stored else "no event (the store has later ones)"
                    raise ImportRefusedError(
                        f"version conflict: actor {actor!r} has {what} at version {ev.version}, "
                        f"the line has event {ev.id!r}", line)
                self.skipped += 1
            run = [item for item in run if item[1].version > latest]
            if not run:
                return
        positions = store.append(actor, [ev for _, ev in run])
        if self.first is None:
            self.first = positions[0]
        self.last = positions[-1]
        self.pending += len(positions)


def _runs(lines: Iterable[bytes | str], state: _Import, progress: Progress | None) -> Iterator[list[tuple[int, Event]]]:
    """Consecutive events of one actor (at most 1,024 at a time), with their line numbers;
    a line that does not parse, or that does not raise its actor's version over the
    previous line's, is refused."""
    run: list[tuple[int, Event]] = []
    read = 0
    for number, line in enumerate(lines, 1):
        state.lines = number
        read += len(line)
        if progress is not None and number % _CHUNK == 0:
            progress(read)
            read = 0
        if not line.strip():
            continue
        try:
            ev = Event.from_json(line)
        except AetherError as e:
            raise ImportRefusedError(str(e), number) from None
        if run and run[-1][1].actor_id == ev.actor_id:
            if ev.version <= run[-1][1].version:
                raise ImportRefusedError(
                    f"actor {ev.actor_id!r} version {ev.version} follows its version {run[-1][1].version} "
                    f"(line {run[-1][0]}); versions must grow", number)
            if len(run) < _CHUNK:
                run.append((number, ev))
                continue
        if run:
            yield run
        run = [(number, ev)]
    if run:
        yield run
    if progress is not None and read:
        progress(read)


# -- backup -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupResult:
    """Where the copy went and its size; open ``dest`` as a store to restore."""

    dest: str
    bytes: int
    compact: bool


def backup_store(ref: StoreRef, dest: str | os.PathLike[str], *, compact: bool = False) -> BackupResult:
    """A consistent copy of the whole store (every namespace) at ``ref`` into ``dest``, a
    new or empty directory, taken while writers go on (LMDB's hot copy reads one
    snapshot; writers are not blocked). ``compact`` leaves out free pages. A plain copy
    takes the writer lock for a moment to start (LMDB's way to pick its snapshot), so it
    waits for a long write transaction of another process to end; a compact copy does
    not. Restore by opening ``dest`` as a store (or copying it back in place of the
    original)."""
    source = ref.path if isinstance(ref, LmdbEventStore) else check_store_path(ref)
    target = os.fspath(dest)
    if os.path.realpath(target) == source:
        raise InvalidInputError(f"backup destination {target!r} is the store itself")
    if os.path.exists(target):
        if not os.path.isdir(target) or os.listdir(target):
            raise InvalidInputError(f"backup destination {target!r} must be a new or empty directory")
        made = False
    else:
        parent = os.path.dirname(os.path.abspath(target))
        if not os.path.isdir(parent):
            raise InvalidInputError(f"backup destination {target!r}: its directory {parent!r} does not exist")
        os.mkdir(target)
        made = True
    try:
        names = list_namespaces(ref)
        with open_namespace(ref, names[0] if names else None, create=not names) as store:
            store._env.copy_to(target, compact)
    except BaseException:
        if made:
            shutil.rmtree(target, ignore_errors=True)
        else:
            for name in os.listdir(target):
                os.unlink(os.path.join(target, name))
        raise
    return BackupResult(target, os.path.getsize(os.path.join(target, DATA_FILE)), compact)


__all__ = [
    "BackupResult",
    "ImportRefusedError",
    "ImportResult",
    "NamespaceInfo",
    "Problem",
    "StoreInfo",
    "StoreRef",
    "VerifyReport",
    "backup_store",
    "check_store_path",
    "export_events",
    "import_events",
    "list_namespaces",
    "open_namespace",
    "store_info",
    "verify_store",
]
