"""The journal engine (``LmdbEventStore(path, engine="journal")``): one flushed write per
commit into segment files, LMDB as derived state committed without flushes.

The store contract runs on it unchanged; the rest checks recovery: frames past LMDB's end
(a writer that died after its flush) are indexed by the next open, a machine crash while
the journal state is dirty rebuilds LMDB from the journal, a torn last frame is cut, and
a failed commit leaves nothing behind. The power-loss tests (test_power_loss.py) check the
same on simulated crash states of the files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.conformance import StoreConformance, ev

from aether_fast import (
    ActorSnapshot,
    IncompatibleFormatError,
    InvalidInputError,
    LmdbEventStore,
    VersionConflictError,
)
from aether_fast.store.admin import verify_store

ROOT = Path(__file__).resolve().parents[2]
SEGMENT = 1 << 20


def journal_store(path, **kw) -> LmdbEventStore:
    return LmdbEventStore(path, engine="journal", journal_segment_bytes=SEGMENT, **kw)


class TestJournalConformance(StoreConformance):
    """The whole store contract on the journal engine."""

    @pytest.fixture
    def store(self, tmp_path):
        store = journal_store(tmp_path / "journal-store")
        yield store
        store.close()


def contents(path) -> dict:
    """Every namespace's events and the snapshots of actor "a", read in a new process."""
    code = (
        "import json, sys\n"
        "from aether_fast import LmdbEventStore\n"
        "out = {}\n"
        "for ns in LmdbEventStore.list_namespaces(sys.argv[1]):\n"
        "    with LmdbEventStore(sys.argv[1], namespace=ns) as s:\n"
        "        snap = s.get_latest_snapshot('a')\n"
        "        out[ns] = {'events': [[e.position, e.id, e.actor_id, e.version, e.payload.hex()]\n"
        "                              for e in s.read_all()],\n"
        "                   'snapshot': None if snap is None else [snap.version, snap.state],\n"
        "                   'engine': s.engine}\n"
        "print(json.dumps(out, sort_keys=True))\n"
    )
    env = {**os.environ, "AETHER_FAST_BOOT_ID": os.environ.get("AETHER_FAST_BOOT_ID", "")}
    if not env["AETHER_FAST_BOOT_ID"]:
        del env["AETHER_FAST_BOOT_ID"]
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          timeout=120, check=False, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    import json
    return json.loads(done.stdout)


def fill(store: LmdbEventStore) -> None:
    store.save_event(ev("a", 1))
    store.append("a", [ev("a", 2), ev("a", 3)])
    with store.transaction():
        for i in range(5):
            store.save_event(ev(f"t{i}", 1))
    store.save_snapshot(ActorSnapshot("a", 3, {"n": 3}))


def test_a_journal_store_has_segments_and_reopens_with_its_engine(tmp_path):
    path = tmp_path / "s"
    with journal_store(path) as store:
        fill(store)
        assert store.engine == "journal"
        expected = [(e.position, e.id) for e in store.read_all()]
    assert sorted(os.listdir(path / "journal")) == ["seg-000000000000", "state"]
    with LmdbEventStore(path) as again:          # no engine given: the store's own
        assert again.engine == "journal"
        assert [(e.position, e.id) for e in again.read_all()] == expected
        assert again.get_latest_snapshot("a").state == {"n": 3}
    assert verify_store(str(path)).ok


def test_engine_is_chosen_at_creation_and_bad_values_are_refused(tmp_path):
    with LmdbEventStore(tmp_path / "plain") as plain:
        plain.save_event(ev("a", 1))
        assert plain.engine == "lmdb"
    with pytest.raises(IncompatibleFormatError, match="lmdb engine"):
        LmdbEventStore(tmp_path / "plain", engine="journal")
    with LmdbEventStore(tmp_path / "plain") as plain:     # unchanged by the refusal
        assert [e.version for e in plain.get_events("a")] == [1]
    with pytest.raises(InvalidInputError, match="'wal'"):
        LmdbEventStore(tmp_path / "x", engine="wal")
    assert not (tmp_path / "x").exists() or not os.listdir(tmp_path / "x")


def test_a_rebuild_after_a_machine_crash_restores_everything(tmp_path):
    """The files as a crash left them (the state is dirty) opened under another boot id:
    LMDB is rebuilt from the journal, events, snapshots and namespaces alike."""
    path = tmp_path / "s"
    with journal_store(path) as store, journal_store(path, namespace="other") as other:
        fill(store)
        other.save_event(ev("o", 1))
        expected = contents(path)
        shutil.copytree(path, tmp_path / "crashed")     # still open: the state is dirty
    crashed = tmp_path / "crashed"
    os.environ["AETHER_FAST_BOOT_ID"] = "another-boot"
    try:
        assert contents(crashed) == expected
    finally:
        del os.environ["AETHER_FAST_BOOT_ID"]
    with LmdbEventStore(crashed) as store:              # rebuilt and marked clean: it accepts writes
        assert store.save_event(ev("a", 4)) == 9
    assert verify_store(str(crashed)).ok


def test_frames_past_the_index_are_indexed_by_the_next_open(tmp_path):
    """LMDB as of an earlier commit beside the journal of a later one (a writer that died
    after its flush and before its LMDB commit): nothing of the journal is lost."""
    path = tmp_path / "s"
    early = tmp_path / "early"
    with journal_store(path) as store:
        store.save_event(ev("a", 1))
        shutil.copytree(path, early)
        store.append("a", [ev("a", 2), ev("a", 3)])
        store.save_snapshot(ActorSnapshot("a", 3, {"n": 3}))
    expected = contents(path)
    shutil.rmtree(early / "journal")
    shutil.copytree(path / "journal", early / "journal")
    assert contents(early) == expected
    with LmdbEventStore(early) as store:
        with pytest.raises(VersionConflictError):
            store.save_event(ev("a", 3))
        assert store.save_event(ev("a", 4)) == 4


def test_a_torn_last_frame_is_cut_and_overwritten(tmp_path):
    path = tmp_path / "s"
    with journal_store(path) as store:
        store.save_event(ev("a", 1))
        shutil.copytree(path, tmp_path / "before")
        store.save_event(ev("a", 2))
        end = store._env.journal.off
    seg = path / "journal" / "seg-000000000000"
    crashed = tmp_path / "torn"
    shutil.copytree(tmp_path / "before", crashed)        # LMDB knows event 1 only
    shutil.copy(seg, crashed / "journal" / seg.name)
    with open(crashed / "journal" / seg.name, "r+b") as f:   # half of the second frame reached disk
        f.seek(end - 16)
        f.write(b"\0" * 16)
    got = contents(crashed)["default"]["events"]
    assert [row[3] for row in got] == [1]
    with LmdbEventStore(crashed) as store:
        assert store.save_event(ev("a", 2, data={"again": True})) == 2
        assert [e.data for e in store.get_events("a")][1] == {"again": True}
    assert [row[3] for row in contents(crashed)["default"]["events"]] == [1, 2]


def test_a_refused_write_leaves_the_journal_unchanged(tmp_path):
    path = tmp_path / "s"
    with journal_store(path) as store:
        store.save_event(ev("a", 1))
        seg = path / "journal" / "seg-000000000000"
        before = seg.read_bytes()
        end = store._env.journal.off
        with pytest.raises(VersionConflictError):
            store.append("a", [ev("a", 1), ev("a", 2)])
        with pytest.raises(InvalidInputError):
            store.append("a", [ev("a", 3), ev("a", 2)])
        with pytest.raises(RuntimeError), store.transaction():
            store.save_event(ev("b", 1))
            raise RuntimeError("rolled back")
        assert seg.read_bytes() == before and store._env.journal.off == end
        assert store.last_position() == 1


def test_a_reader_process_sees_each_commit_of_a_writer_process(tmp_path):
    path = tmp_path / "s"
    journal_store(path).close()
    writer = (
        "import sys\n"
        "from aether_fast import Event, LmdbEventStore\n"
        "with LmdbEventStore(sys.argv[1]) as s:\n"
        "    for v in range(1, 51):\n"
        "        s.save_event(Event(event_type='T', actor_id='w', version=v))\n"
        "        print(v, flush=True)\n"
        "        sys.stdin.readline()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", writer, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        with LmdbEventStore(path) as reader:
            for v in range(1, 51):
                assert proc.stdout.readline().strip() == str(v)
                assert reader.get_latest_version("w") == v     # acknowledged: visible here
                proc.stdin.write("\n")
                proc.stdin.flush()
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0


@pytest.mark.parametrize("durability", ["sync", "metasync", "nosync"])
def test_every_durability_mode_round_trips(tmp_path, durability):
    path = tmp_path / durability
    with journal_store(path, durability=durability) as store:
        fill(store)
        store.sync()
    assert contents(path)["default"]["events"][-1][0] == 8
