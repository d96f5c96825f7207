"""Hostile bytes: the record decoder and the snapshot decoder never crash, hang or return
garbage.

A stored record is a 40-byte header, variable parts and a CRC32C (csrc/event/codec.pxi); a
snapshot record is a 28-byte header, the state and a CRC32C (csrc/store/log.pxi). Random
damage is caught by the checksum, so most cases here also *re-seal* the damaged bytes
with a valid checksum: that is what a buggy or hostile writer (or an import) could store,
and it reaches the structural checks and the text decoding behind the checksum.

Every case must end in one of two ways: a ``CorruptRecordError`` (an ``AetherError``),
or an ``Event`` that is exactly what the bytes say, i.e. encoding it again gives the same
bytes, and whose ``data`` is a dict, the raw bytes, or a ``CorruptRecordError``.

The store-level cases write raw records into a closed store with py-lmdb in a subprocess
(an environment is never opened twice in one process), then read them back through every
read path of ``LmdbEventStore``.
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aether_fast import (
    ActorSnapshot,
    AetherError,
    CorruptRecordError,
    Event,
    LmdbEventStore,
    _native,
)
from aether_fast.store.admin import verify_store

ROOT = Path(__file__).resolve().parents[2]
HDR = 40
SNAP_HDR = 28

# The writer: a JSON list of [sub-database name, key hex, value hex] on stdin, put with py-lmdb.
RAW_PUT = """
import json, sys
import lmdb
env = lmdb.open(sys.argv[1], max_dbs=64, map_size=1 << 30, subdir=True)
for db, key, value in json.load(sys.stdin):
    handle = env.open_db(db.encode(), create=False)
    with env.begin(write=True, db=handle) as txn:
        txn.put(bytes.fromhex(key), bytes.fromhex(value), db=handle)
env.close()
"""


def raw_put(path: Path, items: list[tuple[str, bytes, bytes]]) -> None:
    """Write raw key/value pairs into the (closed) store at ``path`` with py-lmdb."""
    payload = json.dumps([[db, k.hex(), v.hex()] for db, k, v in items])
    proc = subprocess.run([sys.executable, "-c", RAW_PUT, str(path)], input=payload, text=True,
                          capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr


def seal(record: bytes | bytearray) -> bytes:
    """The record with its CRC32C recomputed over bytes [4:]."""
    body = bytes(record[4:])
    return struct.pack("<I", _native.crc32c(body)) + body


def actor_key(actor: str, version: int) -> bytes:
    a = actor.encode()
    return bytes([len(a)]) + a + version.to_bytes(8, "big")


def snapshot_record(version: int, ts_ns: int, state: bytes, raw: bool, flags: int | None = None,
                    reserved: int = 0) -> bytes:
    """A snapshot record as csrc/store/log.pxi writes it."""
    body = struct.pack("<BBHqqI", 1, (1 if raw else 0) if flags is None else flags, reserved,
                       version, ts_ns, len(state)) + state
    return seal(b"\0\0\0\0" + body)


def sample_event(i: int = 0, **overrides: object) -> Event:
    fields: dict[str, object] = {
        "event_type": "OrderPlaced", "actor_id": f"order-{i}", "version": 1 + i,
        "data": {"n": i, "s": "ü" * (i % 3)}, "metadata": {"correlationId": f"c{i}", "k": "v"},
        "command_id": f"cmd-{i}", "timestamp": 1_700_000_000_000_000_000 + i,
    }
    fields.update(overrides)
    return Event(**fields)


SAMPLES = [
    sample_event(0),
    sample_event(1, data=b"\x00\xffraw bytes", metadata=None, command_id=None),
    sample_event(2, data={}, metadata={"": ""}),
    sample_event(3, actor_id="a" * 255, event_type="T" * 1024, data={"x": [1, 2.5, None, "y"]}),
]
SAMPLE_RECORDS = [_native.encode_record(e) for e in SAMPLES]


def assert_clean_decode(record: bytes) -> Event | None:
    """Decode ``record``: a CorruptRecordError, or an event that is exactly these bytes."""
    try:
        ev = _native.decode_record(record, 7)
    except CorruptRecordError as e:
        assert e.position == 7
        return None
    assert _native.encode_record(ev) == record, "decoded event does not re-encode to its record"
    assert ev.position == 7
    assert ev.version >= 1
    assert ev.id and ev.actor_id and ev.event_type
    assert_data_clean(ev)
    return ev


def assert_data_clean(ev: Event) -> None:
    try:
        data = ev.data
    except CorruptRecordError:
        return
    assert isinstance(data, bytes) if ev.is_bytes else isinstance(data, dict)


# -- the record decoder, in process ---------------------------------------------------------


def test_samples_round_trip():
    for ev, rec in zip(SAMPLES, SAMPLE_RECORDS):
        assert assert_clean_decode(rec) == ev


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes(data):
    assert_clean_decode(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=4, max_size=400))
def test_random_bytes_with_a_valid_checksum(data):
    assert_clean_decode(seal(data))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(SAMPLES) - 1), st.data())
def test_random_body_behind_a_valid_header(which, data):
    """A real header (so the lengths may add up), any body, a valid checksum."""
    rec = SAMPLE_RECORDS[which]
    body = data.draw(st.binary(min_size=len(rec) - HDR, max_size=len(rec) - HDR))
    assert_clean_decode(seal(rec[:HDR] + body))


def test_every_truncation_is_refused():
    for rec in SAMPLE_RECORDS:
        for n in range(len(rec)):
            with pytest.raises(CorruptRecordError):
                _native.decode_record(rec[:n])
            with pytest.raises(CorruptRecordError):
                _native.decode_record(seal(rec[:n]) if n >= 4 else rec[:n])


def test_every_single_bit_flip_is_caught_by_the_checksum():
    rec = SAMPLE_RECORDS[0]
    for bit in range(len(rec) * 8):
        damaged = bytearray(rec)
        damaged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(CorruptRecordError):
            _native.decode_record(bytes(damaged))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(SAMPLES) - 1),
       st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6))
def test_resealed_byte_mutations(which, edits):
    rec = bytearray(SAMPLE_RECORDS[which])
    for at, value in edits:
        rec[at % len(rec)] = value
    assert_clean_decode(seal(rec))


HEADER_FIELDS = [  # (offset, struct format) of every header field after the checksum
    (4, "B"), (5, "B"), (6, "H"), (8, "q"), (16, "q"), (24, "H"), (26, "H"), (28, "H"), (30, "H"),
    (32, "I"), (36, "I"),
]


@settings(max_examples=400, deadline=None)
@given(st.integers(0, len(SAMPLES) - 1), st.integers(0, len(HEADER_FIELDS) - 1), st.data())
def test_resealed_header_fields(which, field, data):
    """Each header field set to an edge or random value, the checksum made valid."""
    offset, fmt = HEADER_FIELDS[field]
    bits = struct.calcsize(fmt) * 8
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if fmt == "q" else (0, (1 << bits) - 1)
    value = data.draw(st.one_of(st.sampled_from([lo, hi, 0, 1, -1 if lo < 0 else 2]), st.integers(lo, hi)))
    rec = bytearray(SAMPLE_RECORDS[which])
    struct.pack_into("<" + fmt, rec, offset, value)
    assert_clean_decode(seal(rec))


def resealed(event: Event, change) -> bytes:
    rec = bytearray(_native.encode_record(event))
    change(rec)
    return seal(rec)


@pytest.mark.parametrize("case, change", [
    ("version 0", lambda r: struct.pack_into("<q", r, 8, 0)),
    ("negative version", lambda r: struct.pack_into("<q", r, 8, -5)),
    ("unknown flag", lambda r: r.__setitem__(5, r[5] | 0x80)),
    ("reserved field set", lambda r: struct.pack_into("<H", r, 30, 1)),
    ("command flag without a command id", lambda r: r.__setitem__(5, r[5] | 2)),
])
def test_fields_a_writer_never_produces_are_refused(case, change):
    """A record can only hold what ``Event`` accepts; anything else is corrupt, not an event."""
    with pytest.raises(CorruptRecordError):
        _native.decode_record(resealed(sample_event(0, command_id=None), change), 3)


def _lengths_record(id_n: int, typ_n: int, actor_n: int, cmd_n: int, flags: int = 0) -> bytes:
    body = b"i" * id_n + b"t" * typ_n + b"a" * actor_n + b"c" * cmd_n + b"{}"
    head = struct.pack("<IBBHqqHHHHII", 0, 1, flags, typ_n, 1, 0, id_n, actor_n, cmd_n, 0, 0, 2)
    return seal(head + body)


@pytest.mark.parametrize("id_n, typ_n, actor_n, cmd_n, flags", [
    (0, 1, 1, 0, 0),        # empty id
    (1, 0, 1, 0, 0),        # empty event type
    (1, 1, 0, 0, 0),        # empty actor id
    (256, 1, 1, 0, 0),      # id over 255 bytes
    (1, 1025, 1, 0, 0),     # event type over 1024 bytes
    (1, 1, 256, 0, 0),      # actor id over 255 bytes
    (1, 1, 1, 256, 2),      # command id over 255 bytes
    (1, 1, 1, 3, 0),        # command bytes without the command flag
])
def test_text_lengths_out_of_range_are_refused(id_n, typ_n, actor_n, cmd_n, flags):
    assert _native.decode_record(_lengths_record(1, 1, 1, 0)).actor_id == "a"   # the shape is right
    with pytest.raises(CorruptRecordError):
        _native.decode_record(_lengths_record(id_n, typ_n, actor_n, cmd_n, flags))


def test_metadata_damage_is_refused():
    ev = sample_event(0, metadata={"k": "v"})
    rec = _native.encode_record(ev)
    meta_at = HDR + len(ev.id) + len(ev.event_type) + len(ev.actor_id) + len(ev.command_id)

    def key_length(value: int):
        return lambda r: struct.pack_into("<I", r, meta_at, value)

    for change in (key_length(0xFFFFFFFF), key_length(2), key_length(1000)):
        with pytest.raises(CorruptRecordError, match="metadata"):
            _native.decode_record(resealed(ev, change))
    # two entries with one key: a dict cannot hold that, so the record is not an event
    twice = Event(event_type="T", actor_id="a", version=1, metadata={"k": "v", "q": "w"})
    rec = bytearray(_native.encode_record(twice))
    at = rec.index(b"q\x01\x00\x00\x00w")
    rec[at] = ord("k")
    with pytest.raises(CorruptRecordError, match="metadata"):
        _native.decode_record(seal(rec))


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b"\xff\xfe", b'{"a": ', b"1"])
def test_stored_data_that_is_not_a_json_object_reads_as_corrupt(payload):
    """The payload is decoded lazily (``data``): a JSON record whose payload is not a JSON
    object gives a CorruptRecordError there, not orjson's error or a list."""
    ev = Event(event_type="T", actor_id="a", version=1, data={})
    rec = _native.encode_record(ev)
    bad = bytearray(rec[:-2] + payload)
    struct.pack_into("<I", bad, 36, len(payload))
    decoded = _native.decode_record(seal(bad), 9)
    with pytest.raises(CorruptRecordError, match="position 9"):
        _ = decoded.data
    with pytest.raises(CorruptRecordError):
        decoded.to_dict()


def test_text_that_is_not_utf8_is_refused():
    ev = Event(event_type="T", actor_id="abc", version=1)
    for part in (ev.id, "T", "abc"):
        rec = bytearray(_native.encode_record(ev))
        at = rec.index(part.encode(), HDR)
        rec[at] = 0xFF
        with pytest.raises(CorruptRecordError, match="UTF-8"):
            _native.decode_record(seal(rec))


# -- through a real store: records ------------------------------------------------------------


def _mutations(rng: random.Random, rec: bytes) -> bytes:
    """One random damage of ``rec``: truncation, bit flips, byte edits, header edits, random."""
    kind = rng.randrange(6)
    out = bytearray(rec)
    if kind == 0:
        out = out[: rng.randrange(len(out))]
    elif kind == 1:
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(out) * 8)
            out[at // 8] ^= 1 << (at % 8)
        return bytes(out)                               # not re-sealed: the checksum must catch it
    elif kind == 2:
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif kind == 3:
        offset, fmt = rng.choice(HEADER_FIELDS)
        bits = struct.calcsize(fmt) * 8
        struct.pack_into("<" + fmt.upper() if fmt == "q" else "<" + fmt, out, offset,
                         rng.randrange(1 << bits))
    elif kind == 4:
        out = bytearray(rng.randbytes(rng.randrange(80)))
    else:
        out += rng.randbytes(rng.randint(1, 9))
    return seal(out) if len(out) >= 4 and rng.random() < 0.8 else bytes(out)


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory):
    """A store holding healthy actors, then 200 damaged records each indexed as version 1
    of its own actor ``fz-<i>`` (and one snapshot per damaged actor)."""
    path = tmp_path_factory.mktemp("fuzz") / "store"
    with LmdbEventStore(path) as store:
        for i in range(5):
            store.append(f"ok-{i}", [sample_event(j, actor_id=f"ok-{i}", version=j + 1, id=None)
                                     for j in range(3)])
        healthy = {f"ok-{i}": store.get_events(f"ok-{i}") for i in range(5)}
        first = store.last_position() + 1
    rng = random.Random(20261126)
    items, damaged = [], {}
    for i in range(200):
        actor = f"fz-{i}"
        rec = _native.encode_record(sample_event(i, actor_id=actor, version=1, id=f"id-{i}"))
        bad = _mutations(rng, rec)
        pos = first + i
        damaged[actor] = (pos, bad)
        items.append(("default/log", pos.to_bytes(8, "big"), bad))
        items.append(("default/idx", actor_key(actor, 1), pos.to_bytes(8, "little")))
    raw_put(path, items)
    return path, healthy, damaged, first


def test_damaged_records_through_every_read_path(hostile_store):
    path, healthy, damaged, first = hostile_store
    decoded = reported = 0
    with LmdbEventStore(path) as store:
        for actor, (pos, bad) in damaged.items():
            result = store.get_events_with_errors(actor)
            if result.errors:
                assert result.events == []
                (err,) = result.errors
                assert err.position == pos and err.raw == bad
                assert isinstance(err.error, CorruptRecordError) and err.error.position == pos
                assert str(err.error).count(f"position {pos}") == 1, str(err.error)
                with pytest.raises(CorruptRecordError):
                    store.get_events(actor)
                try:    # columns hold no id or metadata: damage there only the full decode sees
                    cols = store.read_columns(actor)
                except CorruptRecordError as e:
                    assert e.position in (pos, None)    # None: an interned actor/type text is not UTF-8
                else:
                    assert (list(cols.positions), list(cols.versions), cols.actor_ids) == ([pos], [1], (actor,))
                    assert bytes(bad).endswith(cols.payload_at(0))
                reported += 1
            else:   # the damage left a whole record of this actor at version 1
                (ev,) = result.events
                assert (ev.actor_id, ev.version, ev.position) == (actor, 1, pos)
                assert _native.encode_record(ev) == bad
                assert_data_clean(ev)
                decoded += 1
            try:
                evs = list(store.read_all(pos, limit=1))
            except CorruptRecordError as e:
                assert e.position == pos
            else:
                assert [e.position for e in evs] == [pos]
                assert _native.encode_record(evs[0]) == bad
        for actor, events in healthy.items():
            assert store.get_events(actor) == events
            assert store.get_events_with_errors(actor).errors == []
            assert list(store.read_columns(actor).positions) == [e.position for e in events]
        assert [e.position for e in store.read_all(1, limit=first - 1)] == list(range(1, first))
        with pytest.raises(AetherError):
            list(store.read_all())
        with pytest.raises(AetherError):
            store.read_columns()
    print(f"\n200 damaged records: {reported} reported, {decoded} still whole events")
    assert reported >= 150


def test_subscriber_stops_with_a_clean_error_at_damage(hostile_store):
    path, _healthy, damaged, _first = hostile_store
    bad_positions = sorted(pos for pos, bad in damaged.values()
                           if _decodes(bad) is None)
    with LmdbEventStore(path) as store, store.subscribe() as sub:
        seen = []
        with pytest.raises(CorruptRecordError) as info:
            while True:
                ev = sub.next(timeout=30)
                assert ev is not None, "subscriber timed out instead of reporting the damage"
                seen.append(ev.position)
        assert seen == list(range(1, bad_positions[0]))   # the healthy prefix, in order
        assert info.value.position == bad_positions[0]


def _decodes(record: bytes) -> Event | None:
    try:
        return _native.decode_record(record)
    except CorruptRecordError:
        return None


# -- through a real store: snapshots ----------------------------------------------------------


SNAPSHOT_CASES = {
    # name: (key version, record) -- every record but "good" must read as CorruptRecordError
    "good": (4, snapshot_record(4, 1_700_000_000_000_000_000, b'{"a":1}', raw=False)),
    "flipped": (4, bytes([snapshot_record(4, 0, b'{"a":1}', raw=False)[0] ^ 1])
                + snapshot_record(4, 0, b'{"a":1}', raw=False)[1:]),
    "truncated": (4, snapshot_record(4, 0, b'{"a":1}', raw=False)[:-2]),
    "short": (4, b"\x01\x02"),
    "empty": (4, b""),
    "long state length": (4, seal(bytearray(snapshot_record(4, 0, b"{}", raw=False)[:24])
                                  + struct.pack("<I", 0xFFFFFFFF) + b"{}")),
    "bad json": (4, snapshot_record(4, 0, b"{not json", raw=False)),
    "json not an object": (4, snapshot_record(4, 0, b"[1,2]", raw=False)),
    "not utf-8 json": (4, snapshot_record(4, 0, b'{"a":"\xff"}', raw=False)),
    "version differs from key": (4, snapshot_record(9, 0, b"{}", raw=False)),
    "version 0": (0, snapshot_record(0, 0, b"{}", raw=False)),
    "unknown flag": (4, snapshot_record(4, 0, b"x", raw=True, flags=0x81)),
    "reserved set": (4, snapshot_record(4, 0, b"x", raw=True, reserved=7)),
    "unknown format": (4, seal(b"\0\0\0\0\x02" + snapshot_record(4, 0, b"x", raw=True)[5:])),
    "extreme timestamp": (4, snapshot_record(4, -(1 << 63), b"x", raw=True)),
}


def test_damaged_snapshots_read_as_corrupt(tmp_path):
    path = tmp_path / "store"
    with LmdbEventStore(path) as store:
        store.save_snapshot(ActorSnapshot("healthy", 3, {"ok": True}))
    raw_put(path, [("default/snap", actor_key(f"s-{name}", version), rec)
                   for name, (version, rec) in SNAPSHOT_CASES.items()])
    with LmdbEventStore(path) as store:
        assert store.get_latest_snapshot("healthy").state == {"ok": True}
        assert store.get_latest_snapshot("s-good").state == {"a": 1}
        ts = store.get_latest_snapshot("s-extreme timestamp").timestamp
        assert ts.year == 1677
        for name in SNAPSHOT_CASES:
            if name in ("good", "extreme timestamp"):
                continue
            with pytest.raises(CorruptRecordError, match="snapshot"):
                store.get_latest_snapshot(f"s-{name}")
        store.save_snapshot(ActorSnapshot("s-bad json", 5, {"fixed": 1}))   # a newer one reads
        assert store.get_latest_snapshot("s-bad json").state == {"fixed": 1}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=60), min_size=20, max_size=20), st.booleans())
def test_random_snapshot_records(tmp_path_factory, records, reseal):
    path = tmp_path_factory.mktemp("snapfuzz") / "store"
    LmdbEventStore(path).close()
    raw_put(path, [("default/snap", actor_key(f"r{i}", 1), seal(rec) if reseal and len(rec) >= 4 else rec)
                   for i, rec in enumerate(records)])
    with LmdbEventStore(path) as store:
        for i in range(len(records)):
            try:
                snap = store.get_latest_snapshot(f"r{i}")
            except CorruptRecordError:
                continue
            assert snap is not None and snap.version == 1 and snap.actor_id == f"r{i}"
            assert isinstance(snap.state, (bytes, dict))


# -- bytes flipped in a real store file -------------------------------------------------------


def test_flipped_bytes_in_a_store_file_are_reported_with_their_position(tmp_path):
    """Flip one byte in the payload of one record and one in the header of another, in the
    file of a closed store: both are reported with their positions, nothing else changes."""
    path = tmp_path / "store"
    marker_payload = b"PAYLOAD-" + os.urandom(8).hex().encode()
    header_id = "HEADER-" + os.urandom(8).hex()
    big = os.urandom(3000)
    with LmdbEventStore(path) as store:
        for v in range(1, 4):
            store.save_event(Event(event_type="T", actor_id="healthy", version=v, data={"v": v}))
        store.save_event(Event(event_type="T", actor_id="victim-payload", version=1, data=big + marker_payload))
        store.save_event(Event(event_type="T", actor_id="victim-header", version=1, data=big, id=header_id))
        store.save_event(Event(event_type="T", actor_id="victim-payload", version=2, data={"after": 1}))
        store.save_snapshot(ActorSnapshot("healthy", 3, {"sum": 6}))
        healthy = store.get_events("healthy")
        victim_payload = store.get_events("victim-payload")[0]
        (victim_header,) = store.get_events("victim-header")
        payload_pos, header_pos = victim_payload.position, victim_header.position

    data_file = path / "data.mdb"
    payload_at, header_at = record_offsets(path, [payload_pos, header_pos])
    raw = bytearray(data_file.read_bytes())
    assert raw[payload_at:].startswith(_native.encode_record(victim_payload))
    assert raw[header_at:].startswith(_native.encode_record(victim_header))
    raw[raw.index(marker_payload, payload_at) + 3] ^= 0x10     # inside the payload
    raw[header_at + 8] ^= 0x01                                 # the version field of the header
    data_file.write_bytes(bytes(raw))

    report = verify_store(path)           # the admin check (``aether-fast verify``) finds both
    assert not report.ok
    assert {p.position for p in report.problems if p.kind == "record"} == {payload_pos, header_pos}, report.to_dict()
    # besides the two records: the index entry of the record whose header is damaged (its
    # actor cannot be read back) is counted as not matching a readable record
    assert all(p.kind == "record" or (p.kind == "index" and p.position is None) for p in report.problems), [
        str(p) for p in report.problems]
    assert all(p.actor_id != "healthy" for p in report.problems)

    with LmdbEventStore(path) as store:
        result = store.get_events_with_errors("victim-payload")
        assert [e.version for e in result.events] == [2]
        assert [(e.position, e.error.position) for e in result.errors] == [(payload_pos, payload_pos)]
        assert "checksum" in str(result.errors[0].error)

        result = store.get_events_with_errors("victim-header")
        assert result.events == []
        assert [e.position for e in result.errors] == [header_pos]

        assert store.get_events("healthy") == healthy
        assert store.get_latest_snapshot("healthy").state == {"sum": 6}
        assert [e.position for e in store.read_all(1, limit=3)] == [1, 2, 3]
        with pytest.raises(CorruptRecordError) as info:
            list(store.read_all())
        assert info.value.position == payload_pos
        store.save_event(Event(event_type="T", actor_id="healthy", version=4))   # still writable
        assert store.get_latest_version("healthy") == 4



# Where in data.mdb the live record of each position starts: py-lmdb hands out a buffer into
# the map, whose address less the map's start (from /proc/self/maps) is the file offset.
# (Searching the file for the bytes is not enough: LMDB leaves stale copies of records in the
# free space of reused pages.)
RECORD_OFFSETS = """
import json, os, sys
import lmdb, numpy
env = lmdb.open(sys.argv[1], max_dbs=64, readonly=True, lock=False)
data_file = os.path.realpath(os.path.join(sys.argv[1], "data.mdb"))
with open("/proc/self/maps") as maps:
    (base,) = [int(line.split("-")[0], 16) for line in maps if line.rstrip().endswith(data_file)]
log = env.open_db(b"default/log", create=False)
with env.begin(db=log, buffers=True) as txn:
    out = [numpy.frombuffer(txn.get(int(p).to_bytes(8, "big")), numpy.uint8).ctypes.data - base
           for p in sys.argv[2:]]
print(json.dumps(out))
"""


def record_offsets(path: Path, positions: list[int]) -> list[int]:
    proc = subprocess.run([sys.executable, "-c", RECORD_OFFSETS, str(path), *map(str, positions)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
