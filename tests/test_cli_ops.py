"""The operating commands end to end, in subprocesses on real LMDB stores: info, events, tail,
export -> import -> verify, verify on a damaged file, hot backup while a writer runs,
progress bars on a pseudo-terminal only, refused imports, bad arguments.

The test process opens a store only while no subprocess uses it, or to read while another
process writes (one environment per path per process)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import queue
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from aether_fast import ActorSnapshot, Event, LmdbEventStore
from aether_fast.__main__ import main
from aether_fast.store.admin import ImportRefusedError, backup_store, import_events, verify_store

TIMEOUT = 180


def cli(*args: object, stdin=None, input: bytes | None = None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aether_fast", *map(str, args)], stdin=stdin, input=input,
                          capture_output=True, timeout=TIMEOUT, check=False, env=env)


def wait_for(condition, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def fill(path: Path, actors: int, versions: int, *, namespace: str = "default") -> None:
    """actors x versions events, interleaved in rounds of 10 versions per actor, with JSON
    and bytes payloads, metadata and command ids."""
    with LmdbEventStore(path, durability="nosync", namespace=namespace) as store, store.transaction():
        for first in range(1, versions + 1, 10):
            for a in range(actors):
                actor = f"actor-{a}"
                store.append(actor, [
                    Event(event_type="Raw" if v % 7 == 0 else "Counted", actor_id=actor, version=v,
                          data=bytes([v % 256, a % 256]) if v % 7 == 0 else {"n": v, "actor": a, "é": "ü"},
                          metadata={"correlationId": f"c-{a}-{v}"} if v % 3 == 0 else None,
                          command_id=f"cmd-{v}" if v % 5 == 0 else None)
                    for v in range(first, min(first + 10, versions + 1))
                ])


# -- round trip -------------------------------------------------------------------------------


def test_export_import_verify_round_trip_of_100k_events(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    fill(src, actors=1000, versions=100)
    dump = tmp_path / "events.jsonl"
    with open(dump, "wb") as out:
        proc = subprocess.run([sys.executable, "-m", "aether_fast", "export", str(src)], stdout=out,
                              stderr=subprocess.PIPE, timeout=TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert b"exported 100,000 events" in proc.stderr
    lines = dump.read_bytes().splitlines()
    assert len(lines) == 100_000
    first = json.loads(lines[0])
    assert set(first) >= {"id", "eventType", "actorId", "version", "metadata", "timestamp"}

    with open(dump, "rb") as f:
        proc = cli("import", dst, stdin=f)
    assert proc.returncode == 0, proc.stderr
    assert b"imported 100,000 events at positions 1..100000" in proc.stderr

    proc = cli("verify", dst)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert b"OK" in proc.stdout and b"100,000 records" in proc.stdout

    again = tmp_path / "again.jsonl"
    with open(again, "wb") as out:
        proc = subprocess.run([sys.executable, "-m", "aether_fast", "export", str(dst)], stdout=out,
                              stderr=subprocess.PIPE, timeout=TIMEOUT, check=False)
    assert proc.returncode == 0
    assert again.read_bytes() == dump.read_bytes()   # same events, ids, versions, times and order
    with LmdbEventStore(src) as a, LmdbEventStore(dst) as b:
        ca, cb = a.read_columns(), b.read_columns()
        assert (ca.positions == cb.positions).all() and (ca.versions == cb.versions).all()
        assert a.get_events("actor-7") == b.get_events("actor-7")


# -- verify on a damaged store -------------------------------------------------------------------


def test_verify_finds_a_flipped_byte_and_names_actor_and_position(tmp_path):
    path = tmp_path / "s"
    marker = b"FLIP-ME-8c1f3b2a-record"
    fill(path, actors=20, versions=5)
    with LmdbEventStore(path) as store:
        store.append("victim", [Event(event_type="T", actor_id="victim", version=1),
                                Event(event_type="T", actor_id="victim", version=2,
                                      data={"marker": marker.decode()}),
                                Event(event_type="T", actor_id="victim", version=3)])
        damaged = store.get_events("victim")[1].position
    assert cli("verify", path).returncode == 0
    data = bytearray((path / "data.mdb").read_bytes())
    at = data.find(marker)
    assert at > 0
    while at >= 0:                     # every copy of the record's page (old copies are harmless)
        data[at + 3] ^= 0x01
        at = data.find(marker, at + 1)
    (path / "data.mdb").write_bytes(bytes(data))

    proc = cli("verify", path)
    assert proc.returncode == 1, proc.stdout
    out = proc.stdout.decode()
    assert f"actor 'victim', position {damaged}: damaged record: checksum mismatch" in out
    assert "FAILED" in out and "1 problem(s)" in out

    report = json.loads(cli("verify", path, "--json").stdout)
    assert report["ok"] is False
    assert [(p["kind"], p["actor_id"], p["position"]) for p in report["problems"]] == [
        ("record", "victim", damaged)]

    proc = cli("events", path, "victim")         # reading it is an error, not garbage
    assert proc.returncode == 1
    assert f"checksum mismatch (position {damaged})".encode() in proc.stderr


DAMAGE_INDEX = r"""
import struct, sys
import lmdb
env = lmdb.open(sys.argv[1], max_dbs=8)
log, idx = env.open_db(b"default/log", create=False), env.open_db(b"default/idx", create=False)
with env.begin(write=True) as txn:
    assert txn.delete(struct.pack(">Q", int(sys.argv[2])), db=log)        # a record gone: a gap
    actor = sys.argv[3].encode()
    key = bytes([len(actor)]) + actor + struct.pack(">Q", int(sys.argv[4]))
    assert txn.delete(key, db=idx)                                       # an index entry gone
env.close()
"""


def test_verify_reports_a_gap_and_index_disagreement(tmp_path):
    path = tmp_path / "s"
    fill(path, actors=3, versions=10)           # actor-0 at positions 1..10, actor-1 at 11..20, ...
    proc = subprocess.run([sys.executable, "-c", DAMAGE_INDEX, str(path), "5", "actor-1", "3"],
                          capture_output=True, timeout=TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(cli("verify", path, "--json").stdout)
    assert report["ok"] is False
    found = {(p["kind"], p["actor_id"], p["position"]) for p in report["problems"]}
    assert ("gap", None, 5) in found
    proc = cli("verify", path)
    assert proc.returncode == 1 and "position 5 is missing" in proc.stdout.decode()
    assert ("index", "actor-0", 5) in found                         # its index entry points nowhere
    assert ("index", "actor-1", None) in found                      # a record without index entry


# -- backup while a writer runs --------------------------------------------------------------------

WRITER = r"""
import os, sys, time
from aether_fast import Event, LmdbEventStore
path, stop = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 120
with LmdbEventStore(path, durability="nosync") as store:
    version = 0
    while not os.path.exists(stop) and time.monotonic() < deadline:
        version += 1
        with store.transaction():
            for a in range(20):
                store.append(f"w-{a}", [Event(event_type="W", actor_id=f"w-{a}", version=version,
                                              data={"v": version, "pad": "x" * 200})])
        if version == 1:
            print("ready", flush=True)
        time.sleep(0.001)
print(version, flush=True)
"""


@pytest.mark.parametrize("compact", [False, True], ids=["plain", "compact"])
def test_backup_taken_while_a_writer_runs_is_consistent_and_opens(tmp_path, compact):
    src, copy, stop = tmp_path / "src", tmp_path / "copy", tmp_path / "stop"
    fill(src, actors=200, versions=100)                 # 20,000 events before the writer starts
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(src), str(stop)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready", writer.stderr.read()
        proc = cli("backup", src, copy, *(["--compact"] if compact else []))
        assert proc.returncode == 0, proc.stderr
        assert ("compacted copy" in proc.stdout.decode()) == compact
        assert writer.poll() is None                    # the writer ran through the whole backup
        with LmdbEventStore(copy) as restored:
            copied = restored.last_position()
        with LmdbEventStore(src) as source:           # writes go on after the copy's snapshot
            wait_for(lambda: source.last_position() > copied + 100, what="writes after the backup")
    finally:
        stop.touch()
        _, err = writer.communicate(timeout=TIMEOUT)
    assert writer.returncode == 0, err

    proc = cli("verify", copy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert copied > 20_000
    with LmdbEventStore(src) as source, LmdbEventStore(copy) as restored:
        assert list(restored.read_all()) == list(source.read_all(limit=copied))   # a prefix: one snapshot
        restored.save_event(Event(event_type="After", actor_id="w-0", version=10**6))   # usable as a store


def test_backup_refuses_a_non_empty_destination_and_leaves_it(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    fill(src, actors=2, versions=3)
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    proc = cli("backup", src, dest)
    assert proc.returncode == 2
    assert b"must be a new or empty directory" in proc.stderr
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]


# -- import: refused, unchanged, resumable --------------------------------------------------------------


def jsonl(events: list[Event]) -> bytes:
    return b"".join(e.to_json().encode() + b"\n" for e in events)


def stored(path: Path) -> list[Event]:
    with LmdbEventStore(path) as store:
        return list(store.read_all())


def test_import_refuses_a_conflicting_file_with_its_line_and_changes_nothing(tmp_path):
    path = tmp_path / "s"
    fill(path, actors=5, versions=10)
    before = stored(path)
    new = [Event(event_type="New", actor_id=f"new-{i}", version=1) for i in range(300)]
    clash = Event(event_type="Clash", actor_id="actor-3", version=4)          # actor-3 has 1..10
    body = jsonl(new[:200]) + jsonl([clash]) + jsonl(new[200:])
    proc = cli("import", path, input=body)
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "line 201: version conflict: actor 'actor-3' has version 10" in err
    assert "nothing was imported" in err and err.count("\n") == 1
    assert stored(path) == before

    bad_json = jsonl(new[:50]) + b'{"id": "x", "eventType": \n' + jsonl(new[50:])
    proc = cli("import", path, input=bad_json)
    assert proc.returncode == 1 and b"line 51: not valid JSON" in proc.stderr
    backwards = jsonl(new[:10]) + jsonl([Event(event_type="A", actor_id="new-9", version=1)])
    proc = cli("import", path, input=backwards)
    assert proc.returncode == 1 and b"line 11: actor 'new-9' version 1 follows its version 1" in proc.stderr
    assert stored(path) == before

    # the same file imported twice is refused the second time, and the hint names --resume
    assert cli("import", path, input=jsonl(new)).returncode == 0
    proc = cli("import", path, input=jsonl(new))
    assert proc.returncode == 1 and b"line 1:" in proc.stderr and b"--resume" in proc.stderr


def test_import_with_resume_commits_in_parts_and_carries_on_after_a_refusal(tmp_path):
    path = tmp_path / "s"
    events = [Event(event_type="E", actor_id=f"a-{i % 50}", version=i // 50 + 1) for i in range(5_000)]
    wrong = Event(event_type="Wrong", actor_id="a-1", version=1)                 # taken by line 2
    body = jsonl(events[:3_000]) + jsonl([wrong]) + jsonl(events[3_000:])
    proc = cli("import", path, "--resume", "--commit-every", "500", input=body)
    assert proc.returncode == 1
    assert b"line 3001:" in proc.stderr and b"3,000 events before it were committed" in proc.stderr
    with LmdbEventStore(path) as store:
        assert store.last_position() == 3_000

    proc = cli("import", path, "--resume", "--commit-every", "500", input=jsonl(events))   # fixed file
    assert proc.returncode == 0, proc.stderr
    assert b"imported 2,000 events at positions 3001..5000 from 5,000 lines, skipped 3,000" in proc.stderr
    assert cli("verify", path).returncode == 0
    with LmdbEventStore(path) as store:
        assert [e.id for e in store.read_all()] == [e.id for e in events]


@pytest.mark.parametrize("resume", [False, True], ids=["all-or-nothing", "resume"])
def test_an_import_killed_midway_leaves_nothing_or_resumes(tmp_path, resume):
    """SIGKILL while the import is inside its work (its input pipe still open): all or
    nothing keeps the store as it was; --resume keeps whole parts, and the same command
    run again completes it."""
    path = tmp_path / "s"
    fill(path, actors=3, versions=10)
    before = stored(path)
    events = [Event(event_type="E", actor_id=f"k-{i % 100}", version=i // 100 + 1) for i in range(20_000)]
    options = ["--resume", "--commit-every", "1000"] if resume else []
    proc = subprocess.Popen([sys.executable, "-m", "aether_fast", "import", str(path), *options],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # returns once the child has read (and so written) all but a pipe's buffer of it; the
        # child then waits for more input inside its transaction (which also holds the writer
        # lock: opening the store here would wait for it)
        proc.stdin.write(jsonl(events[:15_000]))
        proc.stdin.flush()
        assert proc.poll() is None
        proc.kill()
        proc.wait(timeout=TIMEOUT)
    finally:
        proc.stdin.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    with LmdbEventStore(path) as store:
        kept = store.last_position() - 30
        assert list(store.read_all(limit=30)) == before
        assert kept == 0 if not resume else kept % 1000 == 0 and kept >= 10_000
    assert cli("verify", path).returncode == 0

    done = cli("import", path, *options, input=jsonl(events))
    assert done.returncode == 0, done.stderr
    assert f"skipped {kept:,} already stored".encode() in done.stderr if resume else b"skipped" not in done.stderr
    assert [e.id for e in stored(path)[30:]] == [e.id for e in events]


def test_import_api_all_or_nothing_and_resume(tmp_path):
    events = [Event(event_type="E", actor_id="x", version=v) for v in range(1, 11)]
    lines = [e.to_json() for e in events]
    with LmdbEventStore(tmp_path / "s") as store:
        store.save_event(events[4])                              # x at version 5
        with pytest.raises(ImportRefusedError) as err:
            import_events(store, lines)
        assert err.value.line == 1 and err.value.imported == 0
        assert store.last_position() == 1
        with pytest.raises(ImportRefusedError) as err:            # versions 1..4 would fill a gap below 5
            import_events(store, lines, resume=True)
        assert err.value.line == 1 and "has no event (the store has later ones) at version 1" in str(err.value)
        result = import_events(store, lines[4:], resume=True)
        assert (result.imported, result.skipped, result.first_position) == (5, 1, 2)
        assert verify_store(store).ok


# -- progress bars ----------------------------------------------------------------------------------------


def run_on_pty(args: list[str], stdout, stdin=None) -> str:
    """Run the CLI with its standard error on a pseudo-terminal; return what it wrote there."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))   # a 100-column terminal
    proc = subprocess.Popen([sys.executable, "-m", "aether_fast", *args], stdin=stdin, stdout=stdout,
                            stderr=slave)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:            # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        os.close(master)
    return b"".join(chunks).decode(errors="replace")


def test_progress_bar_on_a_terminal_and_not_in_a_pipe(tmp_path):
    path, dump = tmp_path / "s", tmp_path / "e.jsonl"
    fill(path, actors=100, versions=100)
    with open(dump, "wb") as out:
        shown = run_on_pty(["export", str(path)], stdout=out)
    assert "export:" in shown and "\r" in shown and "10.0k" in shown      # tqdm's bar, with its total
    with open(dump, "rb") as f:
        shown = run_on_pty(["import", str(tmp_path / "t")], stdout=subprocess.DEVNULL, stdin=f)
    assert "import:" in shown and "\r" in shown

    proc = subprocess.run([sys.executable, "-m", "aether_fast", "export", str(path)], capture_output=True,
                          timeout=TIMEOUT, check=False)
    assert proc.returncode == 0
    assert proc.stderr == b"exported 10,000 events of namespace 'default'\n"    # no bar in a pipe
    with open(dump, "rb") as f:
        proc = cli("import", tmp_path / "u", stdin=f)
    assert proc.returncode == 0 and proc.stderr.count(b"\n") == 1 and b"\r" not in proc.stderr


# -- reading commands -------------------------------------------------------------------------------------


def test_info_events_and_tail(tmp_path):
    path = tmp_path / "s"
    fill(path, actors=3, versions=20)
    fill(path, actors=2, versions=1, namespace="tenant-a")
    with LmdbEventStore(path) as store:
        store.save_snapshot(ActorSnapshot("actor-1", 20, {"total": 20}))
        expected = store.get_events("actor-1", 15)
        last3 = list(store.read_all(58))

    info = json.loads(cli("info", path, "--json").stdout)
    assert info["format_version"] == "1" and info["durability"] == "sync"
    assert info["namespaces"] == [
        {"name": "default", "events": 60, "actors": 3, "last_position": 60, "snapshots": 1},
        {"name": "tenant-a", "events": 2, "actors": 2, "last_position": 2, "snapshots": 0},
    ]
    assert info["disk_bytes"] > 0 and 0 < info["map_used_bytes"] <= info["map_size"]
    text = cli("info", path).stdout.decode()
    assert "tenant-a" in text and "events 60" in text and "durability" in text

    proc = cli("events", path, "actor-1", "--from-version", "15", "--json")
    assert proc.returncode == 0
    assert [Event.from_json(line) for line in proc.stdout.splitlines()] == expected
    lines = cli("events", path, "actor-1", "--from-version", "15").stdout.decode().splitlines()
    assert len(lines) == 6 and all(f"actor-1  v{e.version}  " in line for e, line in zip(expected, lines))

    proc = cli("tail", path, "-n", "3", "--json")
    assert [Event.from_json(line) for line in proc.stdout.splitlines()] == last3
    proc = cli("tail", path, "--namespace", "tenant-a")
    assert len(proc.stdout.splitlines()) == 2


def test_tail_follow_prints_events_committed_by_another_process(tmp_path):
    path = tmp_path / "s"
    fill(path, actors=2, versions=10)
    proc = subprocess.Popen([sys.executable, "-m", "aether_fast", "tail", str(path), "--follow", "--json",
                             "--from-position", "19"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        got = [Event.from_json(lines.get(timeout=60)) for _ in range(2)]    # positions 19 and 20
        assert [(e.actor_id, e.version) for e in got] == [("actor-1", 9), ("actor-1", 10)]
        with LmdbEventStore(path) as store:
            store.save_event(Event(event_type="Live", actor_id="live", version=1, data={"x": 1}))
        live = Event.from_json(lines.get(timeout=60))
        assert (live.event_type, live.actor_id) == ("Live", "live")
    finally:
        proc.send_signal(signal.SIGTERM)        # the end of --follow (as Ctrl-C is, on a terminal)
        proc.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr.read()


# -- bad arguments -------------------------------------------------------------------------------------------


def bad_cases(tmp: Path) -> list[list[str]]:
    store = tmp / "store"
    missing = tmp / "missing"
    a_file = tmp / "file.txt"
    plain_dir = tmp / "plain"
    return [
        ["info"], ["info", str(missing)], ["info", str(a_file)], ["info", str(plain_dir)],
        ["info", str(tmp / "other-lmdb")],   # an LMDB environment of another program
        ["verify", str(missing)], ["verify", str(plain_dir)],
        ["events", str(missing), "a"], ["events", str(store)], ["events", str(store), "a", "--from-version", "x"],
        ["events", str(store), "a", "--namespace", "nope"], ["events", str(store), "a", "--namespace", "bad name!"],
        ["events", str(store), ""],
        ["tail", str(missing)], ["tail", str(store), "-n", "-1"], ["tail", str(store), "-n", "2", "--from-position", "1"],
        ["export", str(missing)], ["export", str(store), "--output", str(missing / "x.jsonl")],
        ["import", str(a_file), "--input", str(a_file)], ["import", str(store), "--input", str(missing)],
        ["import", str(plain_dir), "--input", str(a_file)],
        ["backup", str(missing), str(tmp / "dest")], ["backup", str(store), str(missing / "deeper" / "dest")],
        ["backup", str(store), str(store)], ["backup", str(store)],
        ["bench", "--plot", str(tmp / "chart.txt")], ["bench", "--from-json", str(a_file)],
        ["bench", "--plot", str(tmp / "c.png"), "--from-json", str(a_file)],
        ["bench", "--plot", str(tmp / "c.png"), "--from-json", str(tmp / "empty.json")],
        ["bench", "--plot", str(tmp / "c.png"), "--from-json", str(tmp / "partial.json")],
    ]


@pytest.fixture
def bad_tree(tmp_path: Path) -> Path:
    fill(tmp_path / "store", actors=1, versions=1)
    (tmp_path / "file.txt").write_text("not a store\n")
    (tmp_path / "empty.json").write_text('{"workloads": []}')
    (tmp_path / "partial.json").write_text('{"workloads": [{"ratio": 2, "met": true}]}')
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hi")
    import lmdb

    env = lmdb.open(str(tmp_path / "other-lmdb"), max_dbs=2)
    with env.begin(write=True) as txn:
        txn.put(b"key", b"value")
    env.close()
    return tmp_path


def test_bad_arguments_exit_2_with_one_line_and_create_nothing(bad_tree, capsys):
    before = sorted(str(p) for p in bad_tree.rglob("*"))
    for argv in bad_cases(bad_tree):
        with pytest.raises(SystemExit) as exc:
            raise SystemExit(main(argv))
        err = capsys.readouterr().err
        assert exc.value.code == 2, (argv, err)
        lines = [line for line in err.splitlines() if not line.startswith(("usage:", " "))]
        assert len(lines) == 1 and "error:" in lines[0], (argv, err)
    assert sorted(str(p) for p in bad_tree.rglob("*")) == before       # nothing created, nothing removed


@pytest.mark.parametrize("argv", [["info", "{missing}"], ["verify", "{missing}"], ["events", "{missing}", "a"],
                                  ["info", "{other}"]])
def test_bad_paths_in_a_subprocess(tmp_path, argv):
    import lmdb

    env = lmdb.open(str(tmp_path / "other"))
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v")
    env.close()
    args = [a.format(missing=tmp_path / "missing", other=tmp_path / "other") for a in argv]
    proc = cli(*args)
    assert proc.returncode == 2
    assert proc.stderr.decode().count("\n") == 1 and proc.stderr.startswith(f"aether-fast {argv[0]}: error:".encode())
    assert not (tmp_path / "missing").exists()


def test_every_command_has_help_with_examples(capsys):
    proc = cli("--help")
    assert proc.returncode == 0 and b"examples:" in proc.stdout
    for command in ("info", "events", "tail", "export", "import", "verify", "backup", "bench"):
        assert command.encode() in proc.stdout
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        out = capsys.readouterr().out
        assert exc.value.code == 0
        assert "examples:" in out and f"  aether-fast {command} " in out


# -- bench --plot -------------------------------------------------------------------------------------------


def test_bench_plot_draws_a_saved_run(tmp_path):
    run = {"machine": {"cores": 2, "python": "3.11"}, "workloads": [
        {"workload": "bulk append", "baseline": "py-lmdb", "ratio": 3.5, "met": True,
         "target_kind": "ratio", "target_value": 2.0},
        {"workload": "8 threads", "baseline": "sqlite3", "ratio": 0.9, "met": False,
         "target_kind": "ratio", "target_value": 5.0},
        {"workload": "catch-up", "baseline": "(rate target)", "ratio": 1.0, "met": True,
         "target_kind": "rate", "target_value": 2e6, "target": ">= 2M ev/s", "aether_fast": 4.3e6},
    ]}
    saved, chart = tmp_path / "run.json", tmp_path / "chart.png"
    saved.write_text(json.dumps(run))
    proc = cli("bench", "--from-json", saved, "--plot", chart)
    assert proc.returncode == 0, proc.stderr
    png = chart.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width > 600 and height > 150


def test_bench_plot_without_matplotlib_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from aether_fast.__main__ import main; raise SystemExit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "bench", "--quick", "--plot", str(tmp_path / "c.png")],
                          capture_output=True, timeout=TIMEOUT, check=False)
    assert proc.returncode == 2
    assert b"pip install 'aether_fast[plot]'" in proc.stderr
    assert not (tmp_path / "c.png").exists()


# -- library ------------------------------------------------------------------------------------------------


def test_backup_and_verify_of_a_store_open_in_this_process(tmp_path):
    with LmdbEventStore(tmp_path / "s") as store:
        store.append("a", [Event(event_type="T", actor_id="a", version=v) for v in (1, 2, 5)])
        report = verify_store(store)
        assert report.ok and report.namespaces["default"]["records"] == 3
        result = backup_store(store, tmp_path / "copy", compact=True)
        assert result.bytes > 0 and store.get_latest_version("a") == 5    # still open and usable
    with LmdbEventStore(tmp_path / "copy") as copy:
        assert copy.get_latest_version("a") == 5
