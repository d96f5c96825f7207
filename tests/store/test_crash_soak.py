"""A bounded crash soak: writers killed with SIGKILL at random moments lose nothing.

Three writer processes (one per durability mode) append to their own actors and race for
one shared actor; each logs every acknowledged event to its own file (fsync after each
ack) before its next write. A loop kills a random writer with SIGKILL at random moments
and starts it again; two reader processes check what they see as they go, and this
process runs a catch-up subscription. At the end every acknowledged event is present
exactly once at its acknowledged position, each actor's versions run 1, 2, 3, ...,
positions are gapless, no record is damaged, the subscriber saw every position once, in
order, and ``verify_store`` (``aether-fast verify``) finds no problem. The store has only 8 reader slots for 7 live readers, so the slots that killed
writers leave behind must be reclaimed (before that fix, a restarted writer failed with
MDB_READERS_FULL within seconds).

The run lasts ``AETHER_SOAK_SECONDS`` (default 60) of killing; it prints how many kills
and events it survived (``pytest -s``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aether_fast import LmdbEventStore
from aether_fast.store.admin import verify_store

ROOT = Path(__file__).resolve().parents[2]
SOAK_SECONDS = float(os.environ.get("AETHER_SOAK_SECONDS", "60"))
WRITERS = 3
READERS = 2
MAX_READERS = 8         # 7 live readers (see above)

WRITER = """
import os, random, sys
from aether_fast import Event, LmdbEventStore, VersionConflictError

path, wid, ack_path, stop_path, max_readers = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
rng = random.Random()
store = LmdbEventStore(path, durability=("sync", "metasync", "nosync")[wid % 3], max_readers=max_readers)
actors = [f"w{wid}-{k}" for k in range(4)] + ["shared"]

def data(actor, version):
    return {"actor": actor, "version": version, "writer": wid}

# An idempotent retry of the last acknowledged event: the original position comes back.
with open(ack_path, "a+") as f:
    f.seek(0)
    lines = [line.split() for line in f.read().split("\\n")[:-1]]   # a cut-off last line is dropped
if lines:
    eid, actor, version, position = lines[-1]
    again = store.save_event(Event(id=eid, event_type="Soaked", actor_id=actor, version=int(version),
                                   data=data(actor, int(version))))
    assert again == int(position), (again, position)

ack = open(ack_path, "a")
while not os.path.exists(stop_path):
    actor = rng.choice(actors)
    latest = store.get_latest_version(actor)
    count = 1 if actor == "shared" else rng.randint(1, 3)
    events = [Event(id=f"{actor}.{latest + i}.{wid}.{rng.getrandbits(32):08x}", event_type="Soaked",
                    actor_id=actor, version=latest + i, data=data(actor, latest + i))
              for i in range(1, count + 1)]
    try:
        if count == 1 and rng.random() < 0.5:
            positions = [store.save_event(events[0])]
        else:
            positions = store.append(actor, events, expected_version=latest)
    except VersionConflictError:
        continue
    for event, position in zip(events, positions):
        ack.write(f"{event.id} {actor} {event.version} {position}\\n")
    ack.flush()
    os.fsync(ack.fileno())
store.close()
"""

READER = """
import os, random, sys
from aether_fast import LmdbEventStore
from aether_fast.store.admin import verify_store

path, stop_path, max_readers = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random()
store = LmdbEventStore(path, max_readers=max_readers)
actors = [f"w{w}-{k}" for w in range(3) for k in range(4)] + ["shared"]
checks = 0
while not os.path.exists(stop_path):
    last = store.last_position()
    start = rng.randint(1, max(1, last))
    seen = [e.position for e in store.read_all(start, limit=300)]
    assert seen == list(range(start, start + len(seen))), f"gap or disorder from {start}: {seen[:20]}"
    actor = rng.choice(actors)
    result = store.get_events_with_errors(actor)
    assert result.errors == [], result.errors
    versions = [e.version for e in result.events]
    assert versions == list(range(1, len(versions) + 1)), f"{actor}: {versions}"
    positions = [e.position for e in result.events]
    assert positions == sorted(set(positions)), f"{actor}: {positions}"
    checks += 1
store.close()
print(checks)
"""


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _start(code: str, args: list[object], log: Path) -> subprocess.Popen:
    with open(log, "ab") as err:
        return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE,
                                stderr=err, env=_child_env(), cwd=str(ROOT))


def _acked(ack_file: Path) -> list[tuple[str, str, int, int]]:
    text = ack_file.read_text() if ack_file.exists() else ""
    rows = [line.split() for line in text.split("\n")[:-1]]
    return [(eid, actor, int(version), int(position)) for eid, actor, version, position in rows]


@pytest.mark.parametrize("engine", ["lmdb", "journal"])
def test_crash_soak(tmp_path, engine):
    """On each engine: the writers open the store created here, so they use its engine."""
    path = tmp_path / "store"
    stop = tmp_path / "stop"
    rng = random.Random()
    store = LmdbEventStore(path, max_readers=MAX_READERS, engine=engine)
    seen: list[int] = []
    failures: list[BaseException] = []
    sub = store.subscribe(poll_interval=0.01)

    def subscribe() -> None:
        try:
            for event in sub:
                seen.append(event.position)
        except BaseException as e:  # noqa: BLE001 - reported by the test below
            failures.append(e)

    subscriber = threading.Thread(target=subscribe, daemon=True)
    subscriber.start()

    def start_writer(w: int) -> subprocess.Popen:
        return _start(WRITER, [path, w, tmp_path / f"acks-{w}", stop, MAX_READERS], tmp_path / f"writer-{w}.log")

    writers = [start_writer(w) for w in range(WRITERS)]
    readers = [_start(READER, [path, stop, MAX_READERS], tmp_path / f"reader-{r}.log") for r in range(READERS)]
    kills = 0
    pause = threading.Event()        # never set: a wait with a timeout that a signal cannot cut short
    try:
        deadline = time.monotonic() + SOAK_SECONDS
        while time.monotonic() < deadline:
            pause.wait(rng.uniform(0.2, 1.2))        # a random moment: the point of the soak
            for r, reader in enumerate(readers):
                assert reader.poll() is None, (tmp_path / f"reader-{r}.log").read_text()
            w = rng.randrange(WRITERS)
            if writers[w].poll() is not None:
                assert writers[w].returncode == 0, (tmp_path / f"writer-{w}.log").read_text()
            writers[w].send_signal(signal.SIGKILL)
            writers[w].wait(60)
            kills += writers[w].returncode == -signal.SIGKILL
            writers[w] = start_writer(w)
        stop.touch()
        for w, proc in enumerate(writers):
            proc.wait(120)
            assert proc.returncode == 0, (tmp_path / f"writer-{w}.log").read_text()
        reader_checks = 0
        for r, proc in enumerate(readers):
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, (tmp_path / f"reader-{r}.log").read_text()
            reader_checks += int(out)
    finally:
        stop.touch()
        for proc in writers + readers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(60)

    last = store.last_position()
    for _ in range(600):            # the subscriber catches up within a bounded wait
        if len(seen) >= last:
            break
        pause.wait(0.1)
    sub.stop()
    subscriber.join(60)
    assert failures == []

    events = list(store.read_all())
    assert [e.position for e in events] == list(range(1, last + 1))           # gapless
    by_id = {e.id: e for e in events}
    assert len(by_id) == len(events)                                        # no event twice
    acked = [row for w in range(WRITERS) for row in _acked(tmp_path / f"acks-{w}")]
    for eid, actor, version, position in acked:
        event = by_id[eid]                                                  # every ack is there
        assert (event.actor_id, event.version, event.position) == (actor, version, position)
        assert event.data == {"actor": actor, "version": version, "writer": int(eid.split(".")[-2])}
    actors = {e.actor_id for e in events}
    for actor in actors:
        result = store.get_events_with_errors(actor)
        assert result.errors == []
        assert [e.version for e in result.events] == list(range(1, len(result.events) + 1))
    assert seen == list(range(1, last + 1)), "the subscriber missed or repeated a position"
    store.close()

    report = verify_store(path)         # the admin check (``aether-fast verify``) agrees
    assert report.ok, [str(p) for p in report.problems]
    counts = report.namespaces["default"]
    assert (counts["records"], counts["last_position"], counts["actors"]) == (len(events), last, len(actors))

    print(f"\ncrash soak: {SOAK_SECONDS:.0f} s, {kills} SIGKILLs, {len(events)} events stored "
          f"({len({a[0] for a in acked})} acknowledged) over {len(actors)} actors, "
          f"{reader_checks} reader checks, subscriber saw {len(seen)}")
    assert kills >= min(10, SOAK_SECONDS / 3)
    assert len({a[0] for a in acked}) >= 100
