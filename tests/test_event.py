"""The Event model: construction, validation, immutability, JSON wire form, helpers."""

from __future__ import annotations

import base64
import pickle
import re
import time
import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aether_fast
from aether_fast import (
    CAUSATION_ID,
    CORRELATION_ID,
    SPAN_ID,
    TRACE_ID,
    USER_ID,
    AetherError,
    Event,
    InvalidInputError,
    InvalidTypeError,
    _native,
)

MAX_I64 = 2**63 - 1
UTC = timezone.utc


def ev(**kw) -> Event:
    base = {"event_type": "OrderPlaced", "actor_id": "order-1", "version": 1}
    base.update(kw)
    return Event(**base)


# -- construction and defaults ----------------------------------------------------------


def test_defaults_id_is_a_fresh_uuid4():
    a, b = ev(), ev()
    parsed = uuid.UUID(a.id)
    assert parsed.version == 4
    assert str(parsed) == a.id  # canonical lowercase hyphenated form
    assert a.id != b.id


def test_defaults_timestamp_is_now():
    before = time.time_ns()
    e = ev()
    after = time.time_ns()
    assert before <= e.timestamp_ns <= after
    assert e.timestamp.tzinfo is not None
    assert e.timestamp.utcoffset() == timedelta(0)


def test_defaults_data_is_empty_dict_and_others_none_or_empty():
    e = ev()
    assert e.data == {}
    assert e.payload == b"{}"
    assert e.is_bytes is False
    assert e.metadata == {}
    assert e.command_id is None
    assert e.position is None


def test_fields_are_kept():
    ts = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    e = Event(
        id="evt-1", event_type="OrderPlaced", actor_id="order-123", command_id="cmd-9", version=7,
        data={"total": 12, "items": ["a", "b"]}, metadata={"k": "v"}, timestamp=ts,
    )
    assert (e.id, e.event_type, e.actor_id, e.command_id, e.version) == (
        "evt-1", "OrderPlaced", "order-123", "cmd-9", 7)
    assert e.data == {"total": 12, "items": ["a", "b"]}
    assert e.metadata == {"k": "v"}
    assert e.timestamp == ts
    assert e.timestamp_ns == 1714979289123456000


def test_construction_is_keyword_only():
    with pytest.raises(TypeError):
        Event("OrderPlaced", "order-1", 1)  # type: ignore[misc]


@pytest.mark.parametrize("missing", ["event_type", "actor_id", "version"])
def test_required_fields(missing):
    kw = {"event_type": "T", "actor_id": "a", "version": 1}
    del kw[missing]
    with pytest.raises(TypeError):
        Event(**kw)


# -- validation ---------------------------------------------------------------------------


def test_error_classes_are_builtin_compatible():
    assert issubclass(InvalidInputError, ValueError)
    assert issubclass(InvalidInputError, AetherError)
    assert issubclass(InvalidTypeError, TypeError)
    assert issubclass(InvalidTypeError, AetherError)


@pytest.mark.parametrize("field", ["id", "actor_id", "event_type", "command_id"])
def test_empty_strings_rejected(field):
    with pytest.raises(InvalidInputError, match=field):
        ev(**{field: ""})


@pytest.mark.parametrize("field", ["id", "actor_id", "command_id"])
def test_id_limit_is_255_utf8_bytes(field):
    assert getattr(ev(**{field: "x" * 255}), field) == "x" * 255
    # 127 two-byte characters + 1 = 255 bytes: accepted although only 128 characters
    ok = "é" * 127 + "a"
    assert getattr(ev(**{field: ok}), field) == ok
    with pytest.raises(InvalidInputError, match="256 bytes"):
        ev(**{field: "x" * 256})
    # 128 characters but 256 bytes in UTF-8
    with pytest.raises(InvalidInputError, match="256 bytes"):
        ev(**{field: "é" * 128})
    with pytest.raises(InvalidInputError, match="256 bytes"):
        ev(**{field: "🙂" * 64})


def test_event_type_limit_is_1024_utf8_bytes():
    assert ev(event_type="t" * 1024).event_type == "t" * 1024
    with pytest.raises(InvalidInputError, match="1025 bytes"):
        ev(event_type="t" * 1025)


@pytest.mark.parametrize("field", ["id", "actor_id", "event_type", "command_id"])
@pytest.mark.parametrize("value", [5, b"bytes", ["x"], 1.5])
def test_non_str_ids_rejected(field, value):
    with pytest.raises(InvalidTypeError, match=field):
        ev(**{field: value})


def test_str_subclass_ids_are_stored_as_plain_str():
    class S(str):
        pass

    e = ev(actor_id=S("order-9"))
    assert type(e.actor_id) is str
    assert e.actor_id == "order-9"


@pytest.mark.parametrize("version", [0, -1, -(2**63), MAX_I64 + 1, 2**64])
def test_version_out_of_range(version):
    with pytest.raises(InvalidInputError, match=str(version)):
        ev(version=version)


@pytest.mark.parametrize("version", [True, False, 1.0, "1", None, 2.5])
def test_version_wrong_type(version):
    with pytest.raises(InvalidTypeError, match="version"):
        ev(version=version)


def test_version_bounds_accepted():
    assert ev(version=1).version == 1
    assert ev(version=MAX_I64).version == MAX_I64


def test_naive_timestamp_rejected():
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        ev(timestamp=datetime(2024, 1, 1, 12, 0))


@pytest.mark.parametrize("ts", [1.5, "2024-01-01T00:00:00Z", True])
def test_timestamp_wrong_type(ts):
    with pytest.raises((InvalidTypeError, InvalidInputError)) as info:
        ev(timestamp=ts)
    assert "timestamp" in str(info.value)


def test_timestamp_int_out_of_64_bit_range():
    with pytest.raises(InvalidInputError, match="timestamp"):
        ev(timestamp=2**63)
    with pytest.raises(InvalidInputError, match="timestamp"):
        ev(timestamp=datetime(1500, 1, 1, tzinfo=UTC))


def test_timestamp_with_offset_is_converted_to_utc():
    local = datetime(2024, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    e = ev(timestamp=local)
    assert e.timestamp == datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
    assert e.timestamp.utcoffset() == timedelta(0)
    assert e.timestamp_ns == int(datetime(2024, 1, 1, 10, 0, tzinfo=UTC).timestamp()) * 10**9


@pytest.mark.parametrize("metadata", [{"k": 1}, {1: "v"}, {"k": None}, {"k": b"v"}, "abc", 5])
def test_metadata_must_map_str_to_str(metadata):
    with pytest.raises(InvalidTypeError, match="metadata"):
        ev(metadata=metadata)


def test_metadata_accepts_pairs_and_copies_input():
    src = {"a": "1"}
    e = ev(metadata=src)
    src["b"] = "2"
    assert e.metadata == {"a": "1"}
    assert ev(metadata=[("x", "y")]).metadata == {"x": "y"}


@pytest.mark.parametrize(
    "data, exc, where",
    [
        ({"x": float("nan")}, InvalidInputError, "nan"),
        ({"x": float("inf")}, InvalidInputError, "inf"),
        ({"x": [1, float("-inf")]}, InvalidInputError, "inf"),
        ({1: "a"}, InvalidInputError, "non-str key"),
        ({"x": {2: "a"}}, InvalidInputError, "non-str key"),
        ({"x": (1, 2)}, InvalidTypeError, "tuple"),
        ({"x": {1, 2}}, InvalidTypeError, "set"),
        ({"x": object()}, InvalidTypeError, "object"),
        ({"x": [{"y": (1,)}]}, InvalidTypeError, "['x'][0]['y']"),
        ({"x": 2**64}, InvalidInputError, "JSON"),
        ({"x": datetime(2024, 1, 1, tzinfo=UTC)}, InvalidTypeError, "datetime"),
        ([1, 2], InvalidTypeError, "list"),
        ("text", InvalidTypeError, "str"),
        (5, InvalidTypeError, "int"),
    ],
)
def test_data_must_round_trip_through_json(data, exc, where):
    with pytest.raises(exc) as info:
        ev(data=data)
    assert isinstance(info.value, AetherError)
    assert where in str(info.value)


def test_data_nesting_limit():
    deep: dict = {}
    cur = deep
    for _ in range(300):
        cur["a"] = {}
        cur = cur["a"]
    with pytest.raises(InvalidInputError, match="deeper"):
        ev(data=deep)


def test_data_dict_subclass_rejected():
    from collections import OrderedDict

    with pytest.raises(InvalidTypeError, match="OrderedDict"):
        ev(data=OrderedDict(a=1))


# -- immutability -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attr, value",
    [
        ("id", "x"), ("event_type", "x"), ("actor_id", "x"), ("command_id", "x"), ("version", 2),
        ("timestamp_ns", 0), ("metadata", {}), ("position", 3), ("data", {}), ("payload", b""),
        ("timestamp", datetime(2024, 1, 1, tzinfo=UTC)), ("is_bytes", True), ("new_attr", 1),
    ],
)
def test_attributes_cannot_be_assigned(attr, value):
    e = ev(command_id="c", data={"a": 1}, metadata={"k": "v"})
    before = getattr(e, attr, None)
    with pytest.raises(AttributeError):
        setattr(e, attr, value)
    assert getattr(e, attr, None) == before
    assert not hasattr(e, "new_attr")


def test_attributes_cannot_be_deleted():
    e = ev()
    with pytest.raises(AttributeError):
        del e.version
    assert e.version == 1


def test_metadata_cannot_be_changed_through_the_attribute():
    """An event is an immutable fact: mutating the dict it hands out must not change it."""
    e = ev(metadata={"k": "v"})
    before = e.to_json()
    try:
        e.metadata["k"] = "changed"
        e.metadata["new"] = "x"
    except TypeError:
        pass  # a read-only mapping is the other acceptable design
    assert e.metadata == {"k": "v"}
    assert e.to_json() == before
    assert _native.decode_record(_native.encode_record(e)).metadata == {"k": "v"}


def test_data_cannot_be_changed_through_the_attribute():
    """Mutating the decoded dict must not make ``data``/``to_json`` disagree with ``payload``."""
    e = ev(data={"n": 1})
    try:
        e.data["n"] = 2
    except TypeError:
        pass
    assert e.data == {"n": 1}
    assert orjson.loads(e.to_json())["data"] == {"n": 1}
    assert e.payload == b'{"n":1}'


# -- payloads and timestamps -----------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"\x00\xff\x10", b"{}", b"not json at all", bytes(range(256))])
def test_bytes_data_stored_verbatim(raw):
    e = ev(data=raw)
    assert e.is_bytes is True
    assert e.data == raw
    assert type(e.data) is bytes
    assert e.payload == raw


def test_bytearray_and_memoryview_data_become_bytes():
    for src in (bytearray(b"abc"), memoryview(b"abc")):
        e = ev(data=src)
        assert type(e.data) is bytes
        assert e.data == b"abc"
        assert e.is_bytes


def test_bytes_data_differs_from_equal_json_payload():
    a = ev(id="same", timestamp=0, data=b"{}")
    b = ev(id="same", timestamp=0, data={})
    assert a.payload == b.payload
    assert a != b


def test_json_payload_is_compact_and_ints_stay_ints():
    e = ev(data={"n": 1, "f": 1.0, "big": MAX_I64, "neg": -(2**63), "u64": 2**64 - 1, "s": "é"})
    assert e.payload == b'{"n":1,"f":1.0,"big":9223372036854775807,"neg":-9223372036854775808,' + (
        '"u64":18446744073709551615,"s":"é"}'.encode())
    d = e.data
    assert type(d["n"]) is int and d["n"] == 1
    assert type(d["f"]) is float
    assert d["big"] == MAX_I64 and type(d["big"]) is int
    assert d["u64"] == 2**64 - 1


@pytest.mark.parametrize("ns", [1_700_000_000_123_456_789, -1, 0, MAX_I64, -MAX_I64, 999])
def test_nanosecond_timestamp_preserved(ns):
    e = ev(timestamp=ns)
    assert e.timestamp_ns == ns
    assert Event.from_json(e.to_json()).timestamp_ns == ns
    assert pickle.loads(pickle.dumps(e)).timestamp_ns == ns


@pytest.mark.parametrize(
    "ns, expected",
    [
        (1_700_000_000_123_456_789, datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)),
        (999, datetime(1970, 1, 1, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (-1_000, datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        # 1 ns before the epoch is in 1969, not at the epoch: the datetime is floored
        (-1, datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        (-1_500, datetime(1969, 12, 31, 23, 59, 59, 999998, tzinfo=UTC)),
    ],
)
def test_timestamp_datetime_is_floored_to_microseconds(ns, expected):
    assert ev(timestamp=ns).timestamp == expected


def test_datetime_timestamp_before_epoch():
    ts = datetime(1969, 7, 20, 20, 17, 40, 500, tzinfo=UTC)
    e = ev(timestamp=ts)
    assert e.timestamp == ts
    assert e.timestamp_ns == -14182939_999_500_000


# -- JSON ------------------------------------------------------------------------------------


def test_to_dict_uses_aether_camel_case_names():
    e = Event(id="e1", event_type="OrderPlaced", actor_id="order-123", command_id="c1", version=3,
              data={"a": 1}, metadata={CORRELATION_ID: "corr"}, timestamp=1_700_000_000_000_000_000)
    assert e.to_dict() == {
        "id": "e1", "eventType": "OrderPlaced", "actorId": "order-123", "commandId": "c1",
        "version": 3, "data": {"a": 1}, "metadata": {"correlationId": "corr"},
        "timestamp": "2023-11-14T22:13:20Z",
    }
    assert orjson.loads(e.to_json()) == e.to_dict()


def test_to_dict_omits_absent_command_id_and_uses_data_base64_for_bytes():
    e = Event(id="e1", event_type="T", actor_id="a", version=1, data=b"\x00\xffhi", timestamp=0)
    d = e.to_dict()
    assert "commandId" not in d
    assert "data" not in d
    assert d["dataBase64"] == base64.b64encode(b"\x00\xffhi").decode()
    assert d["timestamp"] == "1970-01-01T00:00:00Z"


def test_json_ints_stay_ints():
    e = ev(version=MAX_I64, data={"n": 1, "f": 2.0, "l": [1, 2], "big": 2**63 - 1})
    text = e.to_json()
    assert '"version":9223372036854775807' in text
    assert '"n":1,' in text
    assert '"f":2.0' in text
    back = Event.from_json(text)
    assert type(back.data["n"]) is int
    assert type(back.data["f"]) is float
    assert back.version == MAX_I64
    assert back == e


@pytest.mark.parametrize(
    "ns, text",
    [
        (1_700_000_000_000_000_000, "2023-11-14T22:13:20Z"),
        (1_700_000_000_100_000_000, "2023-11-14T22:13:20.1Z"),
        (1_700_000_000_120_000_000, "2023-11-14T22:13:20.12Z"),
        (1_700_000_000_123_456_000, "2023-11-14T22:13:20.123456Z"),
        (1_700_000_000_123_456_789, "2023-11-14T22:13:20.123456789Z"),
        (1_700_000_000_000_000_001, "2023-11-14T22:13:20.000000001Z"),
        (1_700_000_000_000_000_010, "2023-11-14T22:13:20.00000001Z"),
        (0, "1970-01-01T00:00:00Z"),
        (-1, "1969-12-31T23:59:59.999999999Z"),
        (-1_000_000_000, "1969-12-31T23:59:59Z"),
        (951_782_400_000_000_000, "2000-02-29T00:00:00Z"),
    ],
)
def test_timestamp_is_rfc3339_nano_like_go(ns, text):
    e = ev(timestamp=ns)
    assert e.to_dict()["timestamp"] == text
    assert Event.from_json(e.to_json()).timestamp_ns == ns


@pytest.mark.parametrize(
    "text, ns",
    [
        ("2023-11-14T22:13:20Z", 1_700_000_000_000_000_000),
        ("2023-11-14T22:13:20z", 1_700_000_000_000_000_000),
        ("2023-11-14t22:13:20Z", 1_700_000_000_000_000_000),
        ("2023-11-14T22:13:20.5Z", 1_700_000_000_500_000_000),
        ("2023-11-14T22:13:20.000000001Z", 1_700_000_000_000_000_001),
        ("2023-11-14T23:13:20+01:00", 1_700_000_000_000_000_000),
        ("2023-11-14T16:43:20.25-05:30", 1_700_000_000_250_000_000),
        ("2023-11-15T00:13:20.123456789+02:00", 1_700_000_000_123_456_789),
        ("2023-11-14T22:13:20+00:00", 1_700_000_000_000_000_000),
        ("2023-11-14T22:13:20-00:00", 1_700_000_000_000_000_000),
    ],
)
def test_rfc3339_timestamps_with_offsets_are_parsed(text, ns):
    d = {"id": "e", "eventType": "T", "actorId": "a", "version": 1, "timestamp": text}
    e = Event.from_json(orjson.dumps(d))
    assert e.timestamp_ns == ns


def test_from_json_minimal_document():
    e = Event.from_json(
        '{"id":"e","eventType":"T","actorId":"a","version":2,"timestamp":"2024-01-01T00:00:00Z"}')
    assert e.data == {} and e.payload == b"{}"
    assert e.metadata == {}
    assert e.command_id is None
    assert e.version == 2
    assert e.position is None


def test_from_json_accepts_bytes_and_null_optional_fields():
    e = Event.from_json(
        b'{"id":"e","eventType":"T","actorId":"a","commandId":null,"version":2,"data":null,'
        b'"metadata":null,"timestamp":"2024-01-01T00:00:00Z"}'
    )
    assert e.data == {}
    assert e.metadata == {}
    assert e.command_id is None


def test_round_trip_our_own_output_exactly():
    e = Event(id="e-1", event_type="OrderShipped", actor_id="order-ü", command_id="cmd-1", version=42,
              data={"nested": {"list": [1, 2.5, None, True, "ß"]}, "n": -3},
              metadata={CORRELATION_ID: "c", "custom": "x"}, timestamp=1_700_000_000_000_000_100)
    text = e.to_json()
    back = Event.from_json(text)
    assert back == e
    assert back.to_json() == text
    assert back.metadata == e.metadata
    assert back.command_id == "cmd-1"
    assert back.timestamp_ns == e.timestamp_ns


def test_round_trip_bytes_data_via_data_base64():
    raw = bytes(range(256)) * 3
    e = ev(data=raw, command_id="c", metadata={"a": "b"}, timestamp=123)
    text = e.to_json()
    assert "dataBase64" in orjson.loads(text)
    back = Event.from_json(text)
    assert back == e
    assert back.is_bytes
    assert back.data == raw
    assert back.to_json() == text


_id_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)
_json_leaf = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
)
_json_value = st.recursive(
    _json_leaf,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=15,
)
_events = st.builds(
    lambda id, typ, actor, cmd, version, data, meta, ts: Event(
        id=id, event_type=typ, actor_id=actor, command_id=cmd, version=version, data=data,
        metadata=meta, timestamp=ts),
    _id_text, _id_text, _id_text, st.none() | _id_text, st.integers(1, MAX_I64),
    st.dictionaries(st.text(max_size=10), _json_value, max_size=5) | st.binary(max_size=64),
    st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=4),
    # RFC 3339 needs a 4-digit year: 0001-01-01 .. 9999; the int64 ns range is 1677..2262
    st.integers(-(2**63) + 10**9, MAX_I64),
)


@settings(max_examples=150, deadline=None)
@given(_events)
def test_json_round_trip_property(e):
    text = e.to_json()
    back = Event.from_json(text)
    assert back == e
    assert back.to_json() == text
    assert back.timestamp_ns == e.timestamp_ns
    assert back.is_bytes == e.is_bytes


def test_from_dict_is_inverse_of_to_dict():
    e = ev(data={"x": [1]}, metadata={"m": "n"}, command_id="c")
    assert Event.from_dict(e.to_dict()) == e


_DOC = '{"id":"e","eventType":"T","actorId":"a","version":1,"timestamp":"2024-01-01T00:00:00Z"'


@pytest.mark.parametrize(
    "text, needle",
    [
        ("not json", "not valid JSON"),
        ("{", "not valid JSON"),
        ('{"eventType":"T","actorId":"a","version":1,"timestamp":"2024-01-01T00:00:00Z"}', "'id'"),
        ('{"id":"e","actorId":"a","version":1,"timestamp":"2024-01-01T00:00:00Z"}', "'eventType'"),
        ('{"id":"e","eventType":"T","version":1,"timestamp":"2024-01-01T00:00:00Z"}', "'actorId'"),
        ('{"id":"e","eventType":"T","actorId":"a","timestamp":"2024-01-01T00:00:00Z"}', "'version'"),
        ('{"id":"e","eventType":"T","actorId":"a","version":1}', "'timestamp'"),
        (_DOC + ',"foo":1}', "foo"),
        (_DOC + ',"data":{},"dataBase64":""}', "dataBase64"),
        (_DOC + ',"dataBase64":"!!!"}', "dataBase64"),
        ('{"id":"e","eventType":"T","actorId":"a","version":1,"timestamp":"yesterday"}', "yesterday"),
        (_DOC.replace('"version":1', '"version":0') + "}", "version"),
        ('{"id":"","eventType":"T","actorId":"a","version":1,"timestamp":"2024-01-01T00:00:00Z"}', "id"),
        (_DOC + ',"data":{"x":1e999}}', "JSON"),
    ],
)
def test_bad_json_raises_invalid_input_naming_the_problem(text, needle):
    with pytest.raises(InvalidInputError) as info:
        Event.from_json(text)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    "stamp",
    [
        "2024-01-01T00:00:00",           # no zone
        "2024-01-01 00:00:00Z",          # space instead of T
        "2024-01-01T00:00:00.Z",         # empty fraction
        "2024-01-01T00:00:00.1234567890Z",  # beyond nanoseconds
        "2024-13-01T00:00:00Z",          # month 13
        "2024-02-30T00:00:00Z",          # no such day
        "2024-01-01T25:00:00Z",          # hour 25
        "2024-01-01T00:00:00+0100",      # offset without colon
        "2024-01-01T00:00:00+01",        # short offset
        "2024-01-01T00:00:00UTC",
        "2024-01-01T00:00:00+ 1:00",     # space inside the offset
        "2024-01-01T00:00:00+01:-1",     # negative offset minutes
        "2024-01-01T00:00:00.\u0661Z",    # a non-ASCII digit in the fraction
        "",
        "2024",
    ],
)
def test_malformed_rfc3339_rejected(stamp):
    d = {"id": "e", "eventType": "T", "actorId": "a", "version": 1, "timestamp": stamp}
    with pytest.raises(InvalidInputError, match="RFC 3339"):
        Event.from_json(orjson.dumps(d))


@pytest.mark.parametrize(
    "doc",
    [
        [],
        "just a string",
        {"id": 5, "eventType": "T", "actorId": "a", "version": 1, "timestamp": "2024-01-01T00:00:00Z"},
        {"id": "e", "eventType": "T", "actorId": "a", "version": "1", "timestamp": "2024-01-01T00:00:00Z"},
        {"id": "e", "eventType": "T", "actorId": "a", "version": 1.0, "timestamp": "2024-01-01T00:00:00Z"},
        {"id": "e", "eventType": "T", "actorId": "a", "version": 1, "timestamp": "2024-01-01T00:00:00Z",
         "data": [1, 2]},
        {"id": "e", "eventType": "T", "actorId": "a", "version": 1, "timestamp": "2024-01-01T00:00:00Z",
         "metadata": {"k": 1}},
        {"id": "e", "eventType": "T", "actorId": "a", "version": 1, "timestamp": 1700000000},
    ],
    ids=["array", "string", "int id", "str version", "float version", "list data", "int metadata value",
         "int timestamp"],
)
def test_wrongly_shaped_json_is_invalid_input(doc):
    """Parsing untrusted JSON raises one kind of error (a ValueError), whatever is wrong."""
    with pytest.raises(InvalidInputError):
        Event.from_json(orjson.dumps(doc))


# -- metadata helpers -----------------------------------------------------------------------


def test_metadata_key_constants_match_aether():
    assert CORRELATION_ID == "correlationId"
    assert CAUSATION_ID == "causationId"
    assert USER_ID == "userId"
    assert TRACE_ID == "traceId"
    assert SPAN_ID == "spanId"
    assert aether_fast.CORRELATION_ID == "correlationId"


def test_metadata_properties():
    e = ev(metadata={"correlationId": "c", "causationId": "ca", "userId": "u", "traceId": "t", "spanId": "s"})
    assert (e.correlation_id, e.causation_id, e.user_id, e.trace_id, e.span_id) == ("c", "ca", "u", "t", "s")
    bare = ev()
    assert (bare.correlation_id, bare.causation_id, bare.user_id, bare.trace_id, bare.span_id) == (
        None, None, None, None, None)


def test_with_metadata_by_helper_names_and_keys():
    e = ev(id="e1", version=3, data={"x": 1}, timestamp=5, command_id="c", metadata={"a": "1"})
    e2 = e.with_metadata(correlation_id="corr", causation_id="cause", user_id="u", trace_id="t",
                         span_id="s", custom="z")
    assert e2.metadata == {"a": "1", "correlationId": "corr", "causationId": "cause", "userId": "u",
                           "traceId": "t", "spanId": "s", "custom": "z"}
    assert e2.correlation_id == "corr"
    # the original is unchanged, everything else is kept
    assert e.metadata == {"a": "1"}
    assert (e2.id, e2.version, e2.payload, e2.timestamp_ns, e2.command_id, e2.event_type, e2.actor_id) == (
        "e1", 3, b'{"x":1}', 5, "c", e.event_type, e.actor_id)


def test_with_metadata_mapping_merges_and_overrides():
    e = ev(metadata={"a": "1", "b": "2"})
    e2 = e.with_metadata({"b": "B", "c": "3"}, a="A")
    assert e2.metadata == {"a": "A", "b": "B", "c": "3"}


def test_with_metadata_validates():
    with pytest.raises(InvalidTypeError):
        ev().with_metadata(user_id=5)
    with pytest.raises(InvalidTypeError):
        ev().with_metadata({"k": 1})


def test_copy_metadata_from():
    source = ev(metadata={CORRELATION_ID: "c1", TRACE_ID: "t1", "shared": "src"})
    target = ev(actor_id="other", metadata={"shared": "dst", "own": "x"}, data=b"raw")
    out = target.copy_metadata_from(source)
    assert out.metadata == {"shared": "src", "own": "x", CORRELATION_ID: "c1", TRACE_ID: "t1"}
    assert out.actor_id == "other"
    assert out.data == b"raw" and out.is_bytes
    assert target.metadata == {"shared": "dst", "own": "x"}
    with pytest.raises(TypeError):
        target.copy_metadata_from({"a": "b"})


# -- replace, equality, pickling --------------------------------------------------------------


def test_replace_changes_only_given_fields():
    e = ev(id="e1", version=1, data={"x": 1}, metadata={"m": "n"}, timestamp=77, command_id="c")
    e2 = e.replace(version=5)
    assert e2.version == 5
    assert (e2.id, e2.payload, e2.metadata, e2.timestamp_ns, e2.command_id, e2.is_bytes) == (
        "e1", b'{"x":1}', {"m": "n"}, 77, "c", False)
    assert e.version == 1
    e3 = e.replace(data=b"raw")
    assert e3.is_bytes and e3.data == b"raw"
    e4 = e3.replace(actor_id="z")
    assert e4.is_bytes and e4.data == b"raw" and e4.actor_id == "z"
    e5 = e.replace(data={"y": [2]})
    assert e5.data == {"y": [2]} and not e5.is_bytes


def test_replace_validates_and_rejects_unknown_fields():
    e = ev()
    with pytest.raises(InvalidInputError):
        e.replace(version=0)
    with pytest.raises(InvalidInputError):
        e.replace(actor_id="")
    with pytest.raises(TypeError):
        e.replace(colour="red")


def test_replace_does_not_carry_position():
    e = _native.decode_record(_native.encode_record(ev()), 9)
    assert e.position == 9
    assert e.replace(version=2).position is None


def test_equality_compares_every_field_but_position():
    e = ev(id="e", timestamp=1, data={"a": 1}, metadata={"k": "v"}, command_id="c")
    same = ev(id="e", timestamp=1, data={"a": 1}, metadata={"k": "v"}, command_id="c")
    assert e == same
    assert hash(e) == hash(same)
    positioned = _native.decode_record(_native.encode_record(e), 12)
    assert positioned.position == 12
    assert positioned == e
    for change in ({"id": "f"}, {"version": 2}, {"actor_id": "b"}, {"event_type": "U"},
                   {"timestamp": 2}, {"data": {"a": 2}}, {"metadata": {}}, {"command_id": None}):
        assert e.replace(**change) != e, change
    assert e != "e"
    assert (e == object()) is False


def test_pickle_round_trip():
    e = ev(data=b"\x00raw", metadata={"k": "v"}, command_id="c", timestamp=-5)
    for proto in range(2, pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(e, protocol=proto))
        assert back == e
        assert back.is_bytes and back.data == b"\x00raw"
        assert back.timestamp_ns == -5
        assert back.position is None
    j = ev(data={"a": [1, 2]})
    assert pickle.loads(pickle.dumps(j)).data == {"a": [1, 2]}
    positioned = _native.decode_record(_native.encode_record(j), 4)
    assert pickle.loads(pickle.dumps(positioned)).position == 4


def test_repr_mentions_identity():
    e = ev(id="e-1", version=3)
    r = repr(e)
    assert "e-1" in r and "order-1" in r and "version=3" in r


def test_default_ids_are_distinct_rfc4122_v4_uuids_even_across_fork():
    import os
    import uuid

    ids = [ev().id for _ in range(600)]          # crosses the 256-id random pool
    assert len(set(ids)) == 600
    for text in ids:
        u = uuid.UUID(text)
        assert str(u) == text and u.version == 4 and u.variant == uuid.RFC_4122
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child must not reuse the parent's unused random bytes
        os.close(read)
        os.write(write, " ".join(ev().id for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 1 << 16).decode().split()
    os.close(read)
    os.waitpid(pid, 0)
    parent = [ev().id for _ in range(5)]
    assert len(child) == 5 and not set(child) & set(parent)


class _Plain:
    def __init__(self, *args):
        raise AssertionError("a Projection must not call __init__")


class _Slotted:
    __slots__ = ("a",)


def test_a_projection_builds_plain_objects_without_init():
    from dataclasses import dataclass

    from aether_fast._native import Projection, with_position

    def project_events(events, cls, names, originator=None, originator_of=None, version_offset=0):
        return Projection(cls, names, originator, originator_of, version_offset).of_events(events)

    @dataclass(frozen=True)
    class Frozen:
        o: str
        v: int
        t: str
        s: bytes

    built = project_events([ev(version=3, data=b"x")], Frozen, ("o", "v", "t", "s"), "O", None, 1)
    assert built == [Frozen("O", 2, "OrderPlaced", b"x")] and built[0].v == 2 and hash(built[0])

    events = [with_position(ev(actor_id=a, version=v, data=b"p%d" % v), 10 + v)
              for a, v in (("x", 1), ("x", 2), ("y", 5))]
    calls = []

    def originator_of(actor):
        calls.append(actor)
        return actor.upper()

    out = project_events(events, _Plain, ("o", "v", "t", "s", "pos"), None, originator_of, 1)
    assert [vars(o) for o in out] == [
        {"o": "X", "v": 0, "t": events[0].event_type, "s": b"p1", "pos": 11},
        {"o": "X", "v": 1, "t": events[1].event_type, "s": b"p2", "pos": 12},
        {"o": "Y", "v": 4, "t": events[2].event_type, "s": b"p5", "pos": 15},
    ]
    assert calls == ["x", "y"]          # once per actor
    assert (out[2].o, out[2].v, out[2].s, out[2].pos) == ("Y", 4, b"p5", 15)   # attributes, not only vars()
    fixed = project_events(events[:1], _Plain, ("o", "v", "t", "s"), "same")
    assert vars(fixed[0]) == {"o": "same", "v": 1, "t": events[0].event_type, "s": b"p1"}
    with pytest.raises(InvalidInputError, match="4 or 5 field names"):
        project_events(events, _Plain, ("o", "v"))
    with pytest.raises(InvalidTypeError, match="_Slotted"):
        project_events(events, _Slotted, ("o", "v", "t", "s"))
    with pytest.raises(TypeError):
        project_events([object()], _Plain, ("o", "v", "t", "s"))


def _reference_rfc3339(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    text = (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=secs)).strftime("%Y-%m-%dT%H:%M:%S")
    return text + ("." + f"{frac:09d}".rstrip("0") if frac else "") + "Z"


@settings(max_examples=2000, deadline=None)
@given(st.integers(-(2**63) + 1, 2**63 - 1))
def test_native_rfc3339_matches_the_datetime_reference(ns):
    """The native formatter and parser agree with datetime on the whole 64-bit range."""
    d = ev(timestamp=ns).to_dict()
    assert d["timestamp"] == _reference_rfc3339(ns)
    assert Event.from_dict(d).timestamp_ns == ns


@pytest.mark.parametrize("stamp", [
    "2024-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2024-04-31T00:00:00Z",
    "2024-13-01T00:00:00Z", "2024-00-10T00:00:00Z", "2024-01-01T24:00:00Z", "2024-01-01T00:60:00Z",
    "2024-01-01T00:00:60Z", "2024-01-01T00:00:00+24:00", "2024-01-01T00:00:00+01:60",
    "2024-01-01T00:00:00.Z", "2024-01-01T00:00:00.1234567890Z", "2024-01-01T00:00:00Zx",
])
def test_impossible_dates_and_times_rejected(stamp):
    d = ev().to_dict()
    d["timestamp"] = stamp
    with pytest.raises(InvalidInputError, match=re.escape(repr(stamp))):
        Event.from_dict(d)


def test_leap_day_of_a_400_year_is_accepted():
    d = ev().to_dict()
    d["timestamp"] = "2000-02-29T23:59:59.999999999-00:30"
    assert Event.from_dict(d).to_dict()["timestamp"] == "2000-03-01T00:29:59.999999999Z"


@pytest.mark.parametrize("field", ["actor_id", "event_type", "id", "command_id"])
def test_a_lone_surrogate_is_invalid_input_naming_the_field(field):
    kw = {"event_type": "T", "actor_id": "a", "version": 1, field: "x\ud800"}
    with pytest.raises(InvalidInputError, match=field):
        Event(**kw)
