"""Recording, crash states and their check (see the package docstring)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
SECTOR = 512
CRASH_BOOT_ID = "power-loss-harness-after-reboot"
WORKLOADS = ("single", "batches", "transaction", "snapshots", "threads", "processes")

# One of the 3 writer processes of the "processes" workload: own actors and one shared, a
# conflict (another process took the version) is not acknowledged and is retried.
PROCESS = r"""
import json, os, sys
from aether_fast import Event, LmdbEventStore, VersionConflictError
path, durability, mark, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
mfd = os.open(mark, os.O_WRONLY | os.O_APPEND)
def note(tag, op):
    os.write(mfd, (json.dumps({tag: op}) + "\n").encode())
with LmdbEventStore(path, durability=durability) as store:
    for v in range(1, 4):
        for actor in (f"p{k}", "shared"):
            for attempt in range(10):
                version = store.get_latest_version(actor) + 1
                e = Event(event_type="T", actor_id=actor, version=version, data={"k": k, "v": v})
                op = {"events": [[e.id, e.actor_id, e.version, e.payload.hex()]], "batch": False}
                note("try", op)
                try:
                    store.save_event(e)
                except VersionConflictError:
                    continue             # another process took that version: not acknowledged
                note("ack", op)
                break
"""

# The workload: one store, markers before and after each operation. Markers are JSON lines
# written to the mark file: {"try": op} before, {"ack": op} after it returned.
WORKLOAD = f"PROC = {PROCESS!r}\n" + r"""
import json, os, sys, threading
from aether_fast import ActorSnapshot, Event, LmdbEventStore
path, kind, durability, engine, mark = sys.argv[1:6]
mfd = os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
lock = threading.Lock()
def note(tag, op):
    with lock:
        os.write(mfd, (json.dumps({tag: op}) + "\n").encode())
def evs(actor, versions):
    return [Event(event_type="T", actor_id=actor, version=v, data={"a": actor, "v": v, "pad": "x" * 150})
            for v in versions]
def op_events(events):
    return [[e.id, e.actor_id, e.version, e.payload.hex()] for e in events]
store = LmdbEventStore(path, durability=durability, engine=engine, journal_segment_bytes=1 << 16)
note("ack", {"created": True})
def save(events, how):
    op = {"events": op_events(events), "batch": len(events) > 1}
    note("try", op)
    if how == "save":
        store.save_event(events[0])
    elif how == "append":
        store.append(events[0].actor_id, events)
    else:
        with store.transaction():
            for e in events:
                store.save_event(e)
    note("ack", op)
if kind == "single":
    for v in range(1, 9):
        save(evs("a", [v]), "save")
elif kind == "batches":
    for b in range(4):
        save(evs("b", range(3 * b + 1, 3 * b + 4)), "append")
elif kind == "transaction":
    for t in range(4):
        save([e for k in range(3) for e in evs(f"t{k}", [t + 1])], "txn")
elif kind == "snapshots":
    for v in range(1, 5):
        save(evs("s", [v]), "save")
        op = {"snapshot": ["s", v]}
        note("try", op)
        store.save_snapshot(ActorSnapshot("s", v, {"v": v}))
        note("ack", op)
elif kind == "processes":        # 3 writer processes (this one waits), own actors and one shared
    import subprocess
    store.close()
    kids = [subprocess.Popen([sys.executable, "-c", PROC, path, durability, mark, str(k)]) for k in range(3)]
    assert all(k.wait() == 0 for k in kids)
    sys.exit(0)
elif kind == "threads":
    def run(k):
        for v in range(1, 4):
            save(evs(f"g{k}", [v]), "save")
    ts = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
store.close()
"""

# The check of many crash states: one forked child per state (a torn LMDB file can end a
# process with SIGBUS; that state then counts as one that did not open).
CHECK = r"""
import json, os, signal, sys
from aether_fast import Event, LmdbEventStore
from aether_fast.store.admin import verify_store

def check(path):
    try:
        events, snaps = [], {}
        if "default" in LmdbEventStore.list_namespaces(path):   # else its creation was lost: empty
            with LmdbEventStore(path, create=False) as s:
                events = [[e.position, e.id, e.actor_id, e.version, e.payload.hex()] for e in s.read_all()]
                for actor in {e[2] for e in events}:
                    snap = s.get_latest_snapshot(actor)
                    if snap is not None:
                        snaps[actor] = snap.version
        ok = bool(verify_store(path).ok)
        with LmdbEventStore(path) as s:
            s.save_event(Event(event_type="AfterCrash", actor_id="after-crash", version=1))
        return {"events": events, "snapshots": snaps, "verify": ok}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"[:300]}

out = []
for path in sys.argv[1:]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, json.dumps(check(path)).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 1 << 16):
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        out.append({"error": f"{signal.Signals(os.WTERMSIG(status)).name}: the process was killed opening it"})
    else:
        out.append(json.loads(data))
print(json.dumps(out))
"""


def build_recorder(out_dir: Path) -> Path:
    """Compile recorder.c (a missing compiler is an error, not a skip)."""
    lib = out_dir / "recorder.so"
    cc = os.environ.get("CC", "cc")
    done = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(HERE / "recorder.c"), "-ldl",
                           "-lpthread"], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"cannot build the recorder with {cc}: {done.stderr}")
    return lib


@dataclass
class Trace:
    ops: list[tuple]                       # ("P", id, dsync, path) / ("W", id, off, data) / ("F", id) / ...
    store: Path

    def marks(self) -> list[tuple[int, str, dict]]:
        """(index of the trace record, "try" or "ack", the operation) of each marker."""
        out = []
        for i, op in enumerate(self.ops):
            if op[0] == "M":
                for line in op[1].decode().splitlines():
                    (tag, value), = json.loads(line).items()
                    out.append((i, tag, value))
        return out


def record(workload: str, durability: str, engine: str, work: Path, recorder: Path,
           drop_fsync: bool = False) -> Trace:
    """Run one workload under the recorder in a new store at ``work/store``."""
    store = work / "store"
    store.mkdir(parents=True)
    trace, mark = work / "trace.bin", work / "marks.jsonl"
    env = {**os.environ, "LD_PRELOAD": str(recorder), "AETHER_TRACE_DIR": str(store.resolve()) + "/",
           "AETHER_TRACE_FILE": str(trace), "AETHER_TRACE_MARK": str(mark),
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    env.pop("AETHER_TRACE_DROP_FSYNC", None)
    if drop_fsync:
        env["AETHER_TRACE_DROP_FSYNC"] = "1"
    done = subprocess.run([sys.executable, "-c", WORKLOAD, str(store), workload, durability, engine, str(mark)],
                          env=env, capture_output=True, text=True, timeout=300, check=False, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"workload {workload} failed: {done.stderr[-2000:]}")
    return Trace(parse(trace.read_bytes()), store.resolve())


def parse(raw: bytes) -> list[tuple]:
    ops, at = [], 0
    head = struct.Struct("<cIQQ")
    while at < len(raw):
        op, fid, off, n = head.unpack_from(raw, at)
        at += head.size
        data = raw[at:at + n]
        at += n
        kind = op.decode()
        if kind == "R":                     # the new path follows, NUL-terminated
            end = raw.index(b"\0", at)
            ops.append(("R", data.decode(), raw[at:end].decode()))
            at = end + 1
        elif kind == "P":
            ops.append(("P", fid, off, data.decode()))
        elif kind == "W":
            ops.append(("W", fid, off, data))
        elif kind in "FTX":
            ops.append((kind, fid, off))
        elif kind == "U":
            ops.append(("U", data.decode()))
        else:
            ops.append(("M", data))
    return ops


@dataclass
class FileState:
    durable: bytearray = field(default_factory=bytearray)
    pending: list[tuple[int, bytes]] = field(default_factory=list)    # writes since the last flush


ENUMERATE_MAX = 8      # at most this many unflushed sectors: every subset of them is tried


def crash_states(trace: Trace, rng: random.Random, points: int, subsets: int):
    """Yield (crash index, {path: bytes}) for sampled crash points k (the last write or flush
    always among them): after record k, every subset of the unflushed sectors when there
    are at most ENUMERATE_MAX, else nothing unflushed, everything, and ``subsets`` random
    subsets (seeded by ``rng``)."""
    if any(op[0] == "X" for op in trace.ops):
        raise RuntimeError("the workload wrote through a shared writable mmap: the recorder cannot see those writes")
    interesting = [i for i, op in enumerate(trace.ops) if op[0] in "WF"]
    chosen = sorted(set(rng.sample(interesting, min(points, len(interesting))) + interesting[-1:]))
    files: dict[str, FileState] = {}
    names: dict[int, str] = {}
    at = 0
    for k in chosen:
        while at <= k:
            _apply(trace.ops[at], files, names)
            at += 1
        for state in states_of(files, rng, subsets):
            yield k, state


def states_of(files: dict[str, FileState], rng: random.Random, subsets: int):
    """The contents a power loss could leave of ``files`` (see crash_states)."""
    sectors = [(path, w, sec) for path, st in files.items() if not os.path.isdir(path)
               for w, (off, data) in enumerate(st.pending)
               for sec in range(off // SECTOR, (off + len(data) - 1) // SECTOR + 1)]
    if len(sectors) <= ENUMERATE_MAX:
        for mask in range(1 << len(sectors)):
            yield _materialize(files, {s for i, s in enumerate(sectors) if mask >> i & 1})
        return
    yield _materialize(files, set())
    yield _materialize(files, set(sectors))
    for _ in range(subsets):
        yield _materialize(files, {s for s in sectors if rng.random() < 0.5})


def _apply(op: tuple, files: dict[str, FileState], names: dict[int, str]) -> None:
    kind = op[0]
    if kind == "P":
        names[op[1]] = op[3]
        files.setdefault(op[3], FileState())
    elif kind == "W":
        files[names[op[1]]].pending.append((op[2], op[3]))
    elif kind == "F":
        st = files[names[op[1]]]
        for off, data in st.pending:
            _put(st.durable, off, data)
        st.pending.clear()
    elif kind == "T":
        st = files[names[op[1]]]
        for off, data in st.pending:
            _put(st.durable, off, data)
        st.pending.clear()
        del st.durable[op[2]:]
        st.durable.extend(bytes(max(0, op[2] - len(st.durable))))
    elif kind == "R":
        if op[1] in files:
            files[op[2]] = files.pop(op[1])
            for fid, name in names.items():
                if name == op[1]:
                    names[fid] = op[2]
    elif kind == "U":
        files.pop(op[1], None)


def _put(buf: bytearray, off: int, data: bytes) -> None:
    if len(buf) < off + len(data):
        buf.extend(bytes(off + len(data) - len(buf)))
    buf[off:off + len(data)] = data


def _materialize(files: dict[str, FileState], persisted: set[tuple[str, int, int]]) -> dict[str, bytes]:
    """Each file: its durable bytes, then the ``persisted`` (path, write, sector) parts of its
    unflushed writes in write order (so a later write to a sector wins)."""
    out = {}
    for path, st in files.items():
        if os.path.isdir(path):          # a directory opened for its fsync
            continue
        buf = bytearray(st.durable)
        for w, (off, data) in enumerate(st.pending):
            for sec in range(off // SECTOR, (off + len(data) - 1) // SECTOR + 1):
                if (path, w, sec) in persisted:
                    lo, hi = max(off, sec * SECTOR), min(off + len(data), (sec + 1) * SECTOR)
                    _put(buf, lo, data[lo - off:hi - off])
        out[path] = bytes(buf)
    return out


@dataclass
class Tally:
    states: int = 0
    lost: int = 0          # states where an acknowledged event (or snapshot) is missing or changed
    partial: int = 0       # states with part of a batch
    unopened: int = 0      # states that did not open (or refused a write after)
    invented: int = 0      # states with an event never attempted, a gap, or a broken version run
    unverified: int = 0    # states that opened but verify_store reported damage
    uncreated: int = 0     # states of a crash before the store's constructor returned (not counted above)
    errors: Counter = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)

    def row(self) -> dict[str, object]:
        return {"states": self.states, "uncreated": self.uncreated, "lost": self.lost, "partial": self.partial, "unopened": self.unopened,
                "invented": self.invented, "unverified": self.unverified, "errors": dict(self.errors)}


def check_states(trace: Trace, work: Path, rng: random.Random, points: int, subsets: int) -> Tally:
    """Materialize the sampled crash states of ``trace`` and check them in one new process."""
    marks = trace.marks()
    tally = Tally()
    batch, expected = [], []
    seen: set[str] = set()
    for n, (k, state) in enumerate(crash_states(trace, rng, points, subsets)):
        digest = hashlib.sha1(repr(sorted((p, hashlib.sha1(b).digest()) for p, b in state.items())).encode())
        if digest.hexdigest() in seen:
            continue
        seen.add(digest.hexdigest())
        d = work / f"state-{n}"
        for path, data in state.items():
            rel = os.path.relpath(path, trace.store)
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_bytes(data)
        for sub in ("", "journal"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        batch.append(str(d))
        expected.append(([op for i, tag, op in marks if tag == "ack" and i < k],
                         [op for i, tag, op in marks if tag == "try" and i < k]))
    env = {**os.environ, "AETHER_FAST_BOOT_ID": CRASH_BOOT_ID,
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    env.pop("LD_PRELOAD", None)
    done = subprocess.run([sys.executable, "-c", CHECK, *batch], env=env, capture_output=True, text=True,
                          timeout=600, check=False, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"the checker failed ({done.returncode}): {done.stderr[-2000:]} {done.stdout[-500:]}")
    for found, (acked, tried) in zip(json.loads(done.stdout), expected):
        _judge(found, acked, tried, tally)
    for d in batch:
        shutil.rmtree(d, ignore_errors=True)
    return tally


def _judge(found: dict, acked: list[dict], tried: list[dict], tally: Tally) -> None:
    if not any(op.get("created") for op in acked):
        tally.uncreated += 1       # nothing was promised yet: any outcome is allowed
        return
    tally.states += 1
    if "error" in found:
        tally.unopened += 1
        tally.errors[found["error"].split(":")[0]] += 1
        tally.messages.append(found["error"])
        return
    events = found["events"]
    by_id = {e[1]: e for e in events}
    want = {e[0]: e for op in acked for e in op.get("events", [])}
    attempted = {e[0]: e for op in tried for e in op.get("events", [])}
    if any(i not in by_id or by_id[i][2:] != e[1:] for i, e in want.items()) or any(found["snapshots"].get(op["snapshot"][0], 0) < op["snapshot"][1] for op in acked if "snapshot" in op):
        tally.lost += 1
    positions = [e[0] for e in events]
    versions: dict[str, list[int]] = {}
    for e in events:
        versions.setdefault(e[2], []).append(e[3])
    if (positions != list(range(1, len(events) + 1)) or len(by_id) != len(events)
            or any(i not in attempted or attempted[i][1:] != by_id[i][2:] for i in by_id)
            or any(v != list(range(1, len(v) + 1)) for v in versions.values())):
        tally.invented += 1
    if any(op.get("batch") and 0 < sum(e[0] in by_id for e in op["events"]) < len(op["events"]) for op in tried):
        tally.partial += 1
    if not found["verify"]:
        tally.unverified += 1


def run(engine: str, durability: str, workload: str, *, seed: int, points: int, subsets: int,
        drop_fsync: bool = False, recorder: Path | None = None) -> Tally:
    """Record one workload and check its sampled crash states."""
    with tempfile.TemporaryDirectory(prefix="powerloss-") as tmp:
        work = Path(tmp)
        lib = recorder or build_recorder(work)
        trace = record(workload, durability, engine, work / "run", lib, drop_fsync)
        return check_states(trace, work, random.Random(seed), points, subsets)
