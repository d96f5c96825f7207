"""The C baseline: it builds here, writes aether_fast's layout with the same checks and
positions, and reads back what aether_fast reads. No timing."""

import struct
import subprocess
import sys

import pytest

from aether_fast import _native
from aether_fast.bench import c_baseline
from aether_fast.bench.c_baseline import CHECK, COLUMNS, RAW, CInput, CStore
from aether_fast.bench.common import Config, make_data
from aether_fast.bench.core import Bench
from aether_fast.store.lmdb import LmdbEventStore

CFG = Config(events=600, actors=6, repeats=1)


@pytest.fixture(scope="module")
def data():
    return make_data(CFG)


@pytest.fixture
def stores(tmp_path, data):
    """The same events written by the C loop and by aether_fast, each in its own directory."""
    (tmp_path / "c").mkdir()
    c = CStore(str(tmp_path / "c"), "nosync")
    ours = LmdbEventStore(str(tmp_path / "ours"), durability="nosync")
    c.append(CInput([events for _, events in data.batches]))
    c.append(CInput(data.big_batches))
    for actor, events in data.batches:
        ours.append(actor, events)
    for batch in data.big_batches:
        ours.append(data.big_actor, batch)
    yield c, ours
    c.close()
    ours.close()


def test_it_builds_with_the_system_compiler_and_lmdb():
    assert c_baseline.available() is None, c_baseline.available()
    lib = c_baseline.load()
    assert lib.command.startswith(("cc ", c_baseline.os.environ.get("CC", "cc")))
    assert lib.lmdb_version.count(".") == 2
    for data in (b"", b"a", b"hello world", bytes(range(256)) * 3):
        assert lib.crc32c(data) == _native.crc32c(data)


def test_same_counts_positions_and_versions_as_aether_fast(stores, data):
    c, ours = stores
    total = CFG.bulk_events + CFG.replay_events
    every = list(ours.read_all())
    assert len(every) == total and ours.last_position() == total
    versions = sum(e.version for e in every)
    assert c.read(CHECK) == (total, versions, total)
    assert c.read(COLUMNS) == (total, versions, total)
    assert c.read(RAW)[0] == total and c.read(RAW)[2] == total
    for actor in ("account-000003", data.big_actor):
        events = ours.get_events(actor)
        count, vsum, last = c.read(CHECK, actor)
        assert (count, vsum, last) == (len(events), sum(e.version for e in events), events[-1].position)
        assert c.read(COLUMNS, actor) == (count, vsum, last)
    start, end = 101, 250
    cols = ours.read_columns(from_position=start, to_position=end)
    assert c.read(COLUMNS, None, start, end) == (len(cols), int(cols.versions.sum()), end)


def test_a_batch_that_does_not_follow_the_actors_version_is_refused(stores, data):
    c, _ = stores
    with pytest.raises(RuntimeError, match="version conflict"):
        c.append(CInput([data.batches[0][1]]))
    assert c.read(CHECK)[0] == CFG.bulk_events + CFG.replay_events     # nothing written


def test_the_records_are_aether_fasts(tmp_path, data):
    """Read in another process with py-lmdb: each record decodes to its event, CRC32C holds,
    positions are gapless and the index points at them."""
    path = tmp_path / "c"
    path.mkdir()
    c = CStore(str(path), "nosync")
    c.append(CInput([events for _, events in data.batches]))
    c.close()
    code = (
        "import lmdb, sys, json\n"
        "env = lmdb.open(sys.argv[1], max_dbs=4, readonly=True, lock=False)\n"
        "log, idx = env.open_db(b'log', create=False), env.open_db(b'idx', create=False)\n"
        "with env.begin() as t:\n"
        "    recs = [(k.hex(), v.hex()) for k, v in t.cursor(log)]\n"
        "    index = [(k.hex(), v.hex()) for k, v in t.cursor(idx)]\n"
        "print(json.dumps([recs, index]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    import json

    recs, index = json.loads(out.stdout)
    events = [e for _, batch in data.batches for e in batch]
    assert [int(k, 16) for k, _ in recs] == list(range(1, len(events) + 1))
    for (_, hexrec), e in zip(recs, events):
        rec = bytes.fromhex(hexrec)
        assert struct.unpack_from("<I", rec)[0] == _native.crc32c(rec[4:])
        fmt, flags, typ_n, version, ts, id_n, actor_n, cmd_n, _, meta_n, data_n = struct.unpack_from(
            "<BBHqqHHHHII", rec, 4)
        assert (fmt, flags, version, ts, cmd_n, meta_n) == (1, 1, e.version, e.timestamp_ns, 0, 0)
        body = rec[40:]
        assert body == (e.id + e.event_type + e.actor_id).encode() + e.payload
        assert (id_n, typ_n, actor_n, data_n) == (len(e.id), len(e.event_type), len(e.actor_id), len(e.payload))
    positions = {}
    for k, v in index:
        key = bytes.fromhex(k)
        actor = key[1:1 + key[0]].decode()
        positions[(actor, int.from_bytes(key[-8:], "big"))] = int.from_bytes(bytes.fromhex(v), "little")
    assert positions == {(e.actor_id, e.version): i for i, e in enumerate(events, 1)}


def test_rows_say_why_when_the_baseline_is_unavailable(monkeypatch, tmp_path):
    monkeypatch.setattr(c_baseline, "available", lambda: "no C compiler ('cc' not found; apt-get install gcc)")
    rows = Bench(CFG, str(tmp_path)).run()
    c_rows = [r for r in rows if r.key.endswith("/c")]
    assert {r.key for r in c_rows} == {"bulk_append/c", "replay/c", "columns_actor/c", "columns_range/c",
                                       "read_all/c"}
    for r in c_rows:
        assert r.verdict == "baseline unavailable" and "no C compiler" in r.note and r.ratio is None
    assert all(r.verdict != "baseline unavailable" for r in rows if r not in c_rows)
