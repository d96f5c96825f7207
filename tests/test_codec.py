"""The binary record codec and its CRC32C checksum (aether_fast._native)."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aether_fast import CorruptRecordError, Event, _native

MAX_I64 = 2**63 - 1
HDR = 40

# -- CRC32C ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, crc",
    [
        (b"", 0),
        (b"123456789", 0xE3069283),
        (b"a", 0xC1D04330),
        (bytes(32), 0x8A9136AA),                      # RFC 3720 B.4: 32 bytes of zeros
        (b"\xff" * 32, 0x62A8AB43),                   # 32 bytes of ones
        (bytes(range(32)), 0x46DD794E),               # incrementing
        (bytes(range(31, -1, -1)), 0x113FDB5C),       # decrementing
    ],
)
def test_crc32c_known_vectors(data, crc):
    assert _native.crc32c(data) == crc
    assert _native.crc32c_software(data) == crc


def test_crc32c_accepts_buffers():
    assert _native.crc32c(bytearray(b"123456789")) == 0xE3069283
    assert _native.crc32c(memoryview(b"xx123456789")[2:]) == 0xE3069283


def test_crc32c_chains():
    data = b"The quick brown fox jumps over the lazy dog" * 7
    for cut in (0, 1, 7, 8, 9, 64, len(data)):
        assert _native.crc32c(data[cut:], _native.crc32c(data[:cut])) == _native.crc32c(data)
        sw = _native.crc32c_software
        assert sw(data[cut:], sw(data[:cut])) == _native.crc32c(data)


def test_crc32c_hardware_matches_software_every_length_and_alignment():
    rng = random.Random(1234)
    blob = rng.randbytes(600)
    view = memoryview(blob)
    for start in range(9):
        for length in range(591):   # every length across the 3 x 48-byte block joins
            chunk = view[start:start + length]
            assert _native.crc32c(chunk) == _native.crc32c_software(chunk), (start, length)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096), st.integers(0, 2**32 - 1))
def test_crc32c_hardware_matches_software_random(data, seed):
    assert _native.crc32c(data, seed) == _native.crc32c_software(data, seed)


def test_crc32c_detects_difference():
    assert _native.crc32c(b"123456789") != _native.crc32c(b"123456788")


# -- round trip -------------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=60)  # <= 240 UTF-8 bytes
_json_leaf = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
)
_json = st.recursive(
    _json_leaf,
    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=12), c, max_size=5),
    max_leaves=25,
)


@st.composite
def _big_bytes(draw):
    """Payloads up to ~1 MiB without asking hypothesis for a megabyte of entropy."""
    size = draw(st.integers(0, 1 << 20))
    seed = draw(st.integers(0, 2**32 - 1))
    return random.Random(seed).randbytes(size)


_payload = st.one_of(
    st.dictionaries(st.text(max_size=12), _json, max_size=6),
    st.binary(max_size=300),
    _big_bytes(),
)


@st.composite
def events(draw):
    return Event(
        id=draw(_text),
        event_type=draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=250)),
        actor_id=draw(_text),
        command_id=draw(st.none() | _text),
        version=draw(st.integers(1, MAX_I64)),
        timestamp=draw(st.integers(-MAX_I64, MAX_I64)),
        metadata=draw(st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=6)),
        data=draw(_payload),
    )


def _assert_same(back: Event, e: Event) -> None:
    assert back == e
    assert (back.id, back.event_type, back.actor_id, back.command_id, back.version, back.timestamp_ns) == (
        e.id, e.event_type, e.actor_id, e.command_id, e.version, e.timestamp_ns)
    assert back.metadata == e.metadata
    assert list(back.metadata) == list(e.metadata)
    assert back.payload == e.payload
    assert back.is_bytes == e.is_bytes
    assert back.data == e.data


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events(), st.none() | st.integers(1, MAX_I64))
def test_record_round_trip(e, position):
    rec = _native.encode_record(e)
    assert isinstance(rec, bytes)
    back = _native.decode_record(rec, position)
    _assert_same(back, e)
    assert back.position == position
    # the checksum covers everything after itself
    assert struct.unpack_from("<I", rec)[0] == _native.crc32c(rec[4:])
    # decoding is deterministic and does not depend on the buffer type
    _assert_same(_native.decode_record(bytearray(rec)), e)
    _assert_same(_native.decode_record(memoryview(rec)), e)


def test_record_layout_of_a_small_event():
    e = Event(id="i", event_type="T", actor_id="a", command_id="c", version=7, timestamp=-2,
              metadata={"k": "vv"}, data=b"xyz")
    rec = _native.encode_record(e)
    assert len(rec) == HDR + 1 + 1 + 1 + 1 + (4 + 1 + 4 + 2) + 3
    assert rec[4] == 1                      # record format
    assert rec[5] == 1 | 2                  # raw data, command id present
    assert struct.unpack_from("<q", rec, 8)[0] == 7
    assert struct.unpack_from("<q", rec, 16)[0] == -2
    assert rec[HDR:HDR + 4] == b"iTac"
    assert rec.endswith(b"xyz")


def test_extreme_but_valid_events_round_trip():
    cases = [
        Event(id="i" * 255, event_type="t" * 1024, actor_id="é" * 127 + "a", command_id="🙂" * 63,
              version=MAX_I64, timestamp=-MAX_I64, data={}),
        Event(id="x", event_type="T", actor_id="a", version=1, timestamp=MAX_I64, data=b""),
        Event(id="x", event_type="T", actor_id="a", version=1, timestamp=0,
              metadata={"": "", "\x00": "\x00", "k" * 1000: "v" * 100000}, data={"": None}),
    ]
    for e in cases:
        _assert_same(_native.decode_record(_native.encode_record(e), 1), e)


def test_decode_without_position_gives_none():
    e = Event(event_type="T", actor_id="a", version=1)
    assert _native.decode_record(_native.encode_record(e)).position is None


# -- damage ---------------------------------------------------------------------------------------

_SAMPLES = [
    Event(id="e-1", event_type="OrderPlaced", actor_id="order-123", command_id="cmd", version=6,
          timestamp=1_700_000_000_123_456_789, metadata={"correlationId": "c-1", "userId": "u"},
          data={"total": 12.5, "items": [1, 2, 3]}),
    Event(id="e-2", event_type="Raw", actor_id="é-actor", version=2**40, timestamp=-5,
          data=b"\x00\x01\x02binary\xff"),
    Event(id="e-3", event_type="Empty", actor_id="a", version=1, timestamp=0, data={}),
]


@pytest.mark.parametrize("e", _SAMPLES, ids=lambda e: e.event_type)
def test_every_single_bit_flip_is_detected(e):
    rec = _native.encode_record(e)
    assert _native.decode_record(rec) == e
    buf = bytearray(rec)
    for i in range(len(buf)):
        for bit in range(8):
            buf[i] ^= 1 << bit
            with pytest.raises(CorruptRecordError):
                _native.decode_record(bytes(buf), 3)
            buf[i] ^= 1 << bit
    assert bytes(buf) == rec


@pytest.mark.parametrize("e", _SAMPLES, ids=lambda e: e.event_type)
def test_every_truncation_is_detected(e):
    rec = _native.encode_record(e)
    for n in range(len(rec)):
        with pytest.raises(CorruptRecordError):
            _native.decode_record(rec[:n])


@pytest.mark.parametrize("e", _SAMPLES, ids=lambda e: e.event_type)
def test_trailing_bytes_are_detected(e):
    rec = _native.encode_record(e)
    for extra in (b"\x00", b"x" * 7, rec):
        with pytest.raises(CorruptRecordError, match="length"):
            _native.decode_record(rec + extra)


def test_corrupt_record_error_names_the_problem_and_position():
    rec = bytearray(_native.encode_record(_SAMPLES[0]))
    rec[-1] ^= 0x40
    with pytest.raises(CorruptRecordError, match="checksum") as info:
        _native.decode_record(bytes(rec), 17)
    assert info.value.position == 17
    assert "17" in str(info.value)
    with pytest.raises(CorruptRecordError, match="shorter than its header"):
        _native.decode_record(b"")
    bad_format = bytearray(_native.encode_record(_SAMPLES[0]))
    bad_format[4] = 2
    struct.pack_into("<I", bad_format, 0, _native.crc32c(bytes(bad_format[4:])))
    with pytest.raises(CorruptRecordError, match="format"):
        _native.decode_record(bytes(bad_format))


@settings(max_examples=100, deadline=None)
@given(events(), st.data())
def test_random_damage_is_detected(e, data):
    rec = bytearray(_native.encode_record(e))
    n = len(rec)
    # flip 1..3 bits anywhere (CRC32C detects every error of up to 3 bits at these lengths)
    positions = data.draw(st.sets(st.integers(0, n * 8 - 1), min_size=1, max_size=3))
    for p in positions:
        rec[p // 8] ^= 1 << (p % 8)
    with pytest.raises(CorruptRecordError):
        _native.decode_record(bytes(rec))
    cut = data.draw(st.integers(0, n - 1))
    with pytest.raises(CorruptRecordError):
        _native.decode_record(_native.encode_record(e)[:cut])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_decode(blob):
    with pytest.raises(CorruptRecordError):
        _native.decode_record(blob)


def _seal(body: bytearray) -> bytes:
    struct.pack_into("<I", body, 0, _native.crc32c(bytes(body[4:])))
    return bytes(body)


@st.composite
def _forged_records(draw):
    """Records with a valid checksum and consistent lengths but arbitrary contents."""
    lens = [draw(st.integers(0, 12)) for _ in range(6)]  # type, id, actor, cmd, meta, data
    body = bytearray(HDR)
    body[4] = 1
    body[5] = draw(st.integers(0, 3))
    struct.pack_into("<H", body, 6, lens[0])
    struct.pack_into("<q", body, 8, draw(st.integers(-(2**63), MAX_I64)))
    struct.pack_into("<q", body, 16, draw(st.integers(-(2**63), MAX_I64)))
    struct.pack_into("<HHH", body, 24, lens[1], lens[2], lens[3])
    struct.pack_into("<II", body, 32, lens[4], lens[5])
    body += draw(st.binary(min_size=sum(lens), max_size=sum(lens)))
    return _seal(body)


@settings(max_examples=300, deadline=None)
@given(_forged_records())
def test_forged_records_never_crash_the_decoder(rec):
    """A record whose checksum holds but whose contents are nonsense (a writer bug, a
    malicious file) must decode to an Event or raise CorruptRecordError, nothing else."""
    try:
        e = _native.decode_record(rec)
    except CorruptRecordError:
        return
    assert isinstance(e, Event)


@pytest.mark.parametrize("field_offset", [HDR, HDR + 1, HDR + 2])  # inside id, type, actor
def test_invalid_utf8_with_valid_checksum_is_a_corrupt_record(field_offset):
    e = Event(id="i", event_type="T", actor_id="a", version=1, data=b"")
    rec = bytearray(_native.encode_record(e))
    rec[field_offset] = 0xFF
    with pytest.raises(CorruptRecordError):
        _native.decode_record(_seal(rec))


def test_metadata_lengths_inconsistent_with_valid_checksum():
    e = Event(id="i", event_type="T", actor_id="a", version=1, metadata={"k": "v"}, data=b"")
    rec = bytearray(_native.encode_record(e))
    meta = HDR + 3
    struct.pack_into("<I", rec, meta, 200)  # key length beyond the metadata block
    with pytest.raises(CorruptRecordError, match="metadata"):
        _native.decode_record(_seal(rec))
