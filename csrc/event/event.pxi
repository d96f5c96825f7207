# The Event type: immutable, validated once at construction, JSON payload encoded once.
# Included by _native.pyx.

import base64 as _base64
import os as _os
import time as _time
from datetime import datetime as _datetime, timedelta as _timedelta, timezone as _timezone
from types import MappingProxyType as _MappingProxy

import orjson as _orjson

cdef dict _NO_METADATA = {}   # shared by events without metadata: Event never exposes it mutably
cdef object _EPOCH = _datetime(1970, 1, 1, tzinfo=_timezone.utc)
cdef object _time_ns = _time.time_ns
cdef object _urandom = _os.urandom

MAX_ID_BYTES = 255          # id, actor_id, command_id (UTF-8 bytes)
MAX_EVENT_TYPE_BYTES = 1024
cdef Py_ssize_t _MAX_ID = 255
cdef Py_ssize_t _MAX_TYPE = 1024
cdef long long _MAX_VERSION = 0x7FFFFFFFFFFFFFFF
cdef int _MAX_JSON_DEPTH = 200

CORRELATION_ID = "correlationId"
CAUSATION_ID = "causationId"
USER_ID = "userId"
TRACE_ID = "traceId"
SPAN_ID = "spanId"


cdef inline object _short_repr(object value):
    r = repr(value)
    return r if len(r) <= 80 else r[:77] + "..."


cdef str _check_str(object value, str name, Py_ssize_t max_bytes):
    cdef Py_ssize_t n
    if type(value) is not str:
        if not isinstance(value, str):
            raise InvalidTypeError(f"{name} must be a str, got {type(value).__name__}: {_short_repr(value)}")
        value = str(value)
    try:
        PyUnicode_AsUTF8AndSize(value, &n)
    except UnicodeEncodeError:
        raise InvalidInputError(f"{name} is not valid Unicode text (a lone surrogate): {_short_repr(value)}") from None
    if n == 0:
        raise InvalidInputError(f"{name} must not be empty")
    if n > max_bytes:
        raise InvalidInputError(f"{name} is {n} bytes in UTF-8, over the limit of {max_bytes}: {_short_repr(value)}")
    return value


cdef long long _check_version(object value, str name) except? -1:
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidTypeError(f"{name} must be an int, got {type(value).__name__}: {_short_repr(value)}")
    if value < 1 or value > _MAX_VERSION:
        raise InvalidInputError(f"{name} must be between 1 and {_MAX_VERSION}, got {value}")
    return value


cdef _check_json(object obj, str path, int depth):
    """Accept exactly what JSON round-trips: dict (str keys), list, str, int, finite float, bool, None."""
    t = type(obj)
    if t is str or t is int or t is bool or obj is None:
        return
    if t is float:
        if obj != obj or obj in (float("inf"), float("-inf")):
            raise InvalidInputError(f"data{path} is {obj!r}, which JSON cannot represent")
        return
    if depth > _MAX_JSON_DEPTH:
        raise InvalidInputError(f"data{path} nests deeper than {_MAX_JSON_DEPTH} levels")
    if t is dict:
        for k, v in (<dict>obj).items():
            if type(k) is not str:
                raise InvalidInputError(f"data{path} has a non-str key {k!r}; JSON keys are strings")
            _check_json(v, f"{path}[{k!r}]", depth + 1)
        return
    if t is list:
        for i, v in enumerate(<list>obj):
            _check_json(v, f"{path}[{i}]", depth + 1)
        return
    raise InvalidTypeError(
        f"data{path} is a {t.__name__} ({_short_repr(obj)}), which does not round-trip through JSON; "
        "use dict, list, str, int, float, bool or None, or pass bytes"
    )


cpdef bytes encode_json(object value):
    """Validate ``value`` as exactly JSON-round-trippable and encode it (compact UTF-8)."""
    if type(value) is not dict:
        raise InvalidTypeError(f"data must be a dict or bytes, got {type(value).__name__}: {_short_repr(value)}")
    _check_json(value, "", 0)
    try:
        return _orjson.dumps(value)
    except _orjson.JSONEncodeError as e:  # e.g. an int beyond 64 bits
        raise InvalidInputError(f"data cannot be encoded as JSON: {e}") from None


cdef inline long long _now_ns() noexcept nogil:
    """Nanoseconds since the epoch: ``time.time_ns()`` (the same clock) without a Python call."""
    cdef timespec t
    clock_gettime(CLOCK_REALTIME, &t)
    return <long long>t.tv_sec * 1_000_000_000 + t.tv_nsec


cdef long long _timestamp_ns(object ts) except? -1:
    if ts is None:
        return _now_ns()
    if isinstance(ts, _datetime):
        if ts.tzinfo is None or ts.utcoffset() is None:
            raise InvalidInputError(f"timestamp must be timezone-aware, got naive {ts!r}")
        d = ts - _EPOCH
        ts = (d.days * 86400 + d.seconds) * 1_000_000_000 + d.microseconds * 1000
    elif type(ts) is not int:
        raise InvalidTypeError(
            f"timestamp must be an aware datetime or int nanoseconds since the epoch, got {type(ts).__name__}: {_short_repr(ts)}"
        )
    if not -_MAX_VERSION <= ts <= _MAX_VERSION:
        raise InvalidInputError(f"timestamp {ts} ns is outside the 64-bit range (years 1678..2262)")
    return ts


cdef dict _check_metadata(object metadata):
    if metadata is None:
        return _NO_METADATA
    if not isinstance(metadata, dict):
        try:
            metadata = dict(metadata)
        except (TypeError, ValueError):
            raise InvalidTypeError(f"metadata must be a mapping of str to str, got {type(metadata).__name__}") from None
    for k, v in (<dict>metadata).items():
        if type(k) is not str or type(v) is not str:
            raise InvalidTypeError(f"metadata must map str to str, got {k!r}: {_short_repr(v)}")
    return dict(metadata)


# Random UUIDs from os.urandom read 4 KiB at a time (one system call per 256 ids); the
# unused bytes are dropped in a forked child so that two processes never share them.
cdef bytes _uuid_pool = b""
cdef Py_ssize_t _uuid_next = 0


def _drop_uuid_pool():
    global _uuid_pool, _uuid_next
    _uuid_pool = b""
    _uuid_next = 0


_os.register_at_fork(after_in_child=_drop_uuid_pool)


cdef str _new_uuid4():
    global _uuid_pool, _uuid_next
    cdef const unsigned char *r
    cdef char out[36]
    cdef int i, j = 0
    cdef unsigned char byte
    cdef const char *hexdigits = b"0123456789abcdef"
    if _uuid_next + 16 > len(_uuid_pool):
        _uuid_pool = _urandom(4096)
        _uuid_next = 0
    r = <const unsigned char *>PyBytes_AS_STRING(_uuid_pool) + _uuid_next
    _uuid_next += 16
    for i in range(16):
        byte = r[i]
        if i == 6:
            byte = (byte & 0x0F) | 0x40      # version 4
        elif i == 8:
            byte = (byte & 0x3F) | 0x80      # RFC 4122 variant
        if i == 4 or i == 6 or i == 8 or i == 10:
            out[j] = b"-"
            j += 1
        out[j] = hexdigits[byte >> 4]
        out[j + 1] = hexdigits[byte & 15]
        j += 2
    return PyUnicode_DecodeASCII(out, 36, NULL)


cdef long long _days_from_civil(long long y, long long m, long long d) noexcept nogil:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    cdef long long era = (y if y >= 0 else y - 399) // 400
    cdef long long yoe = y - era * 400
    cdef long long doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    cdef long long doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef void _civil_from_days(long long z, long long *y, int *m, int *d) noexcept nogil:
    """The date of a day count since 1970-01-01 (the inverse of _days_from_civil)."""
    z += 719468
    cdef long long era = (z if z >= 0 else z - 146096) // 146097
    cdef long long doe = z - era * 146097
    cdef long long yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef long long doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef long long mp = (5 * doy + 2) // 153
    d[0] = <int>(doy - (153 * mp + 2) // 5 + 1)
    m[0] = <int>(mp + 3 if mp < 10 else mp - 9)
    y[0] = yoe + era * 400 + (m[0] <= 2)


cdef str _format_rfc3339(object ns):
    """Go's RFC3339Nano: UTC, 'Z', fraction with trailing zeros trimmed (``ns`` is a 64-bit
    count, so the year has 4 digits)."""
    cdef long long t = ns, secs, frac, y
    cdef int mo, d, n
    cdef char buf[40]
    cdef long long days, rem
    secs = t / 1_000_000_000          # C division (cdivision): floor it by hand
    frac = t - secs * 1_000_000_000
    if frac < 0:
        frac += 1_000_000_000
        secs -= 1
    days = secs / 86400
    rem = secs - days * 86400
    if rem < 0:
        rem += 86400
        days -= 1
    _civil_from_days(days, &y, &mo, &d)
    secs = rem
    _put_digits(buf, y, 4)
    buf[4] = b"-"
    _put_digits(buf + 5, mo, 2)
    buf[7] = b"-"
    _put_digits(buf + 8, d, 2)
    buf[10] = b"T"
    _put_digits(buf + 11, secs // 3600, 2)
    buf[13] = b":"
    _put_digits(buf + 14, (secs // 60) % 60, 2)
    buf[16] = b":"
    _put_digits(buf + 17, secs % 60, 2)
    n = 19
    if frac:
        buf[19] = b"."
        _put_digits(buf + 20, frac, 9)
        n = 29
        while buf[n - 1] == b"0":
            n -= 1
    buf[n] = b"Z"
    return PyUnicode_DecodeASCII(buf, n + 1, NULL)


cdef inline void _put_digits(char *p, long long v, int width) noexcept nogil:
    cdef int k
    for k in range(width - 1, -1, -1):
        p[k] = <char>(48 + v % 10)
        v //= 10


cdef inline int _digits(const char *p, int width) noexcept nogil:
    """The value of ``width`` ASCII digits at ``p``, or -1."""
    cdef int v = 0, k
    for k in range(width):
        if p[k] < 48 or p[k] > 57:
            return -1
        v = v * 10 + (p[k] - 48)
    return v


cdef object _parse_rfc3339(object text):
    """Nanoseconds since the epoch of an RFC 3339 timestamp (up to 9 fraction digits)."""
    cdef Py_ssize_t n, i
    cdef const char *p
    cdef int y, mo, d, hh, mi, ss, oh = 0, om = 0, sign = 0, k
    cdef long long frac = 0, scale = 100_000_000
    if type(text) is not str or not (<str>text).isascii():
        raise InvalidInputError(f"timestamp {text!r} is not RFC 3339")
    p = PyUnicode_AsUTF8AndSize(text, &n)
    if (n < 20 or p[4] != b"-" or p[7] != b"-" or (p[10] != b"T" and p[10] != b"t")
            or p[13] != b":" or p[16] != b":"):
        raise InvalidInputError(f"timestamp {text!r} is not RFC 3339")
    y, mo, d = _digits(p, 4), _digits(p + 5, 2), _digits(p + 8, 2)
    hh, mi, ss = _digits(p + 11, 2), _digits(p + 14, 2), _digits(p + 17, 2)
    if y < 0 or mo < 0 or d < 0 or hh < 0 or mi < 0 or ss < 0:
        raise InvalidInputError(f"timestamp {text!r} is not RFC 3339")
    i = 19
    if p[i] == b".":
        i += 1
        k = 0
        while i < n and 48 <= p[i] <= 57:
            if k == 9:
                raise InvalidInputError(f"timestamp {text!r} is not RFC 3339")
            frac += (p[i] - 48) * scale
            scale //= 10
            k += 1
            i += 1
        if k == 0:
            raise InvalidInputError(f"timestamp {text!r} is not RFC 3339")
    if i == n - 1 and (p[i] == b"Z" or p[i] == b"z"):
        pass
    elif i == n - 6 and (p[i] == b"+" or p[i] == b"-") and p[i + 3] == b":":
        oh, om = _digits(p + i + 1, 2), _digits(p + i + 4, 2)
        if oh < 0 or om < 0 or oh > 23 or om > 59:
            raise InvalidInputError(f"timestamp {text!r} is not RFC 3339")
        sign = 1 if p[i] == b"+" else -1
    else:
        raise InvalidInputError(f"timestamp {text!r} is not RFC 3339")
    if (y < 1 or mo < 1 or mo > 12 or d < 1 or d > _month_days(y, mo) or hh > 23 or mi > 59
            or ss > 59):
        raise InvalidInputError(f"timestamp {text!r} is not a valid RFC 3339 date and time")
    cdef long long secs = _days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss
    secs -= sign * (oh * 3600 + om * 60)
    return <object>secs * 1_000_000_000 + frac     # a Python int: the range is checked by the caller


cdef inline int _month_days(int y, int m) noexcept nogil:
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    return 30 if m == 4 or m == 6 or m == 9 or m == 11 else 31


@cython.no_gc
cdef class Event:
    """An immutable fact about one actor.

    ``data`` is a JSON-round-trippable dict (encoded once, at construction) or ``bytes``
    stored verbatim. ``timestamp`` is an aware UTC datetime; ``timestamp_ns`` keeps the
    full nanosecond precision that the stores preserve. ``position`` is the global log
    position, set on events read back from a store (``None`` otherwise) and not part of
    equality.
    """

    cdef readonly str id
    cdef readonly str event_type
    cdef readonly str actor_id
    cdef readonly object command_id
    cdef readonly long long version
    cdef readonly long long timestamp_ns
    cdef long long _position   # 0: not read from a store
    cdef dict _metadata
    cdef bytes _payload
    cdef bint _raw

    def __init__(self, *, event_type, actor_id, version, data=None, id=None, metadata=None,
                 timestamp=None, command_id=None):
        self.event_type = _check_str(event_type, "event_type", _MAX_TYPE)
        self.actor_id = _check_str(actor_id, "actor_id", _MAX_ID)
        self.version = _check_version(version, "version")
        self.id = _new_uuid4() if id is None else _check_str(id, "id", _MAX_ID)
        self.command_id = None if command_id is None else _check_str(command_id, "command_id", _MAX_ID)
        self._metadata = _check_metadata(metadata)
        self.timestamp_ns = _timestamp_ns(timestamp)
        self._position = 0
        if data is None:
            self._payload = b"{}"
            self._raw = False
        elif type(data) is bytes:
            self._payload = data
            self._raw = True
        elif isinstance(data, (bytes, bytearray, memoryview)):
            self._payload = bytes(data)
            self._raw = True
        else:
            self._payload = encode_json(data)
            self._raw = False

    @property
    def data(self):
        """The payload: a new dict decoded from the stored JSON on each access (so the
        event cannot be changed through it), or the raw bytes."""
        if self._raw:
            return self._payload
        try:
            data = _orjson.loads(self._payload)
        except _orjson.JSONDecodeError as e:
            data = e
        if type(data) is not dict:   # only a damaged or foreign record holds such a payload
            raise CorruptRecordError(f"stored data is not a JSON object: {_short_repr(data)}",
                                     self._position or None)
        return data

    @property
    def metadata(self):
        """The metadata, as a read-only mapping of str to str."""
        return _MappingProxy(self._metadata)

    @property
    def position(self):
        """The global log position (1-based) of an event read from a store, else None."""
        return None if self._position == 0 else self._position

    @property
    def payload(self) -> bytes:
        """The stored payload bytes: the compact JSON encoding, or the raw bytes."""
        return self._payload

    @property
    def is_bytes(self) -> bool:
        """True when ``data`` is raw bytes rather than JSON."""
        return self._raw

    @property
    def timestamp(self):
        """The timestamp as an aware UTC datetime (microsecond resolution; see ``timestamp_ns``)."""
        return _EPOCH + _timedelta(microseconds=(<object>self.timestamp_ns) // 1000)

    # -- metadata helpers ------------------------------------------------------------

    @property
    def correlation_id(self):
        return self._metadata.get(CORRELATION_ID)

    @property
    def causation_id(self):
        return self._metadata.get(CAUSATION_ID)

    @property
    def user_id(self):
        return self._metadata.get(USER_ID)

    @property
    def trace_id(self):
        return self._metadata.get(TRACE_ID)

    @property
    def span_id(self):
        return self._metadata.get(SPAN_ID)

    def with_metadata(self, metadata=None, /, **fields):
        """A copy of this event with metadata merged in; keyword names may be the
        snake_case helpers (``correlation_id=...``) or any metadata key."""
        merged = dict(self._metadata)
        if metadata is not None:
            merged.update(_check_metadata(metadata))
        for key, value in fields.items():
            merged[_METADATA_KEYS.get(key, key)] = value
        return self.replace(metadata=merged)

    def copy_metadata_from(self, Event other):
        """A copy of this event with ``other``'s metadata merged in (Aether's CopyMetadataFrom)."""
        return self.with_metadata(other._metadata)

    def replace(self, **changes):
        """A new event with some fields changed (``position`` is not carried over)."""
        fields = dict(
            event_type=self.event_type, actor_id=self.actor_id, version=self.version,
            id=self.id, metadata=self._metadata, timestamp=self.timestamp_ns,
            command_id=self.command_id,
        )
        fields.update(changes)
        if "data" not in changes:
            ev = Event(**fields)
            ev._payload = self._payload
            ev._raw = self._raw
            return ev
        return Event(**fields)

    # -- JSON (Aether's camelCase wire form) -----------------------------------------

    def to_dict(self):
        """Aether's camelCase form; bytes data goes in ``dataBase64``."""
        d = {"id": self.id, "eventType": self.event_type, "actorId": self.actor_id}
        if self.command_id is not None:
            d["commandId"] = self.command_id
        d["version"] = self.version
        if self._raw:
            d["dataBase64"] = _base64.b64encode(self._payload).decode("ascii")
        else:
            d["data"] = self.data
        d["metadata"] = dict(self._metadata)
        d["timestamp"] = _format_rfc3339(<object>self.timestamp_ns)
        return d

    def to_json(self) -> str:
        """Aether's camelCase JSON (compact)."""
        return _orjson.dumps(self.to_dict()).decode()

    @staticmethod
    def from_dict(d):
        """Build an event from Aether's camelCase form (inverse of ``to_dict``); any
        problem with the input is an InvalidInputError."""
        if not isinstance(d, dict):
            raise InvalidInputError(f"event JSON must be an object, got {type(d).__name__}: {_short_repr(d)}")
        unknown = set(d) - _JSON_FIELDS
        if unknown:
            raise InvalidInputError(f"event JSON has unknown fields {sorted(unknown)}")
        for key in ("id", "eventType", "actorId", "version", "timestamp"):
            if key not in d:
                raise InvalidInputError(f"event JSON lacks {key!r}")
        if "data" in d and "dataBase64" in d:
            raise InvalidInputError("event JSON has both 'data' and 'dataBase64'")
        if "dataBase64" in d:
            try:
                data = _base64.b64decode(d["dataBase64"], validate=True)
            except (ValueError, TypeError):
                raise InvalidInputError(f"dataBase64 is not base64: {_short_repr(d['dataBase64'])}") from None
        else:
            data = d.get("data")
            if data is None:
                data = {}
        try:
            return Event(
                id=d["id"], event_type=d["eventType"], actor_id=d["actorId"],
                command_id=d.get("commandId") or None, version=d["version"], data=data,
                metadata=d.get("metadata") or {}, timestamp=_parse_rfc3339(d["timestamp"]),
            )
        except InvalidTypeError as e:
            raise InvalidInputError(f"event JSON: {e}") from None

    @staticmethod
    def from_json(text):
        """Parse Aether's camelCase JSON (str or bytes) into an event."""
        try:
            d = _orjson.loads(text)
        except (_orjson.JSONDecodeError, TypeError) as e:
            raise InvalidInputError(f"not valid JSON: {e}: {_short_repr(text)}") from None
        return Event.from_dict(d)

    # -- value semantics ---------------------------------------------------------------

    def __eq__(self, other):
        if not isinstance(other, Event):
            return NotImplemented
        cdef Event o = <Event>other
        return (self.id == o.id and self.version == o.version and self.actor_id == o.actor_id
                and self.event_type == o.event_type and self.timestamp_ns == o.timestamp_ns
                and self._raw == o._raw and self._payload == o._payload
                and self.command_id == o.command_id and self._metadata == o._metadata)

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        pos = "" if self.position is None else f", position={self.position}"
        return (f"Event(id={self.id!r}, event_type={self.event_type!r}, actor_id={self.actor_id!r}, "
                f"version={self.version}{pos})")

    def __reduce__(self):
        return (_event_from_state, (self.id, self.event_type, self.actor_id, self.command_id,
                                    self.version, self.timestamp_ns, self._metadata,
                                    self._payload, self._raw, self.position))


_METADATA_KEYS = {
    "correlation_id": CORRELATION_ID, "causation_id": CAUSATION_ID, "user_id": USER_ID,
    "trace_id": TRACE_ID, "span_id": SPAN_ID,
}
_JSON_FIELDS = frozenset(
    ["id", "eventType", "actorId", "commandId", "version", "data", "dataBase64", "metadata", "timestamp"]
)


def _event_from_state(id, event_type, actor_id, command_id, version, timestamp_ns, metadata,
                      payload, raw, position):
    cdef Event ev = Event.__new__(Event)
    ev.id = id
    ev.event_type = event_type
    ev.actor_id = actor_id
    ev.command_id = command_id
    ev.version = version
    ev.timestamp_ns = timestamp_ns
    ev._metadata = metadata
    ev._payload = payload
    ev._raw = raw
    ev._position = 0 if position is None else position
    return ev


def with_position(Event event, position):
    """A copy of ``event`` carrying a global log position (for stores written in Python)."""
    cdef Event ev = _event_from_state(event.id, event.event_type, event.actor_id, event.command_id,
                                      event.version, event.timestamp_ns, event._metadata,
                                      event._payload, event._raw, position)
    return ev


def check_id(value, str name):
    """``value`` if it is a non-empty str of at most MAX_ID_BYTES UTF-8 bytes."""
    return _check_str(value, name, _MAX_ID)


def check_version(value, str name):
    """``value`` if it is an int version in 1 .. 2**63 - 1."""
    return _check_version(value, name)


cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object o, int *overflow) except? -1


def event_runs(stored_events, actor_of, check, str token):
    """The eventsourcing library's ``StoredEvent``s as raw-bytes Events, in runs of
    consecutive events of one actor (in the given order): ``[(actor, [Event, ...]), ...]``.

    ``actor_of(originator_id)`` gives the actor of an originator id, called when the
    originator object changes. An event's version is ``originator_version + 1``, its type the
    topic, its data the state, its id ``token`` and its index in ``stored_events``, its
    timestamp now. ``check(actor, version, last, state)`` handles the rare cases (a
    version not above the run's last one, a state that is not ``bytes``): it raises, or
    returns the state as bytes. Topics, actors and versions are validated as ``Event()``
    does, in its order, and raise its errors; a ``TypeError`` comes from a version that
    does not compare with ints."""
    cdef list runs = []
    cdef list run = None
    cdef object prev_oid = None, actor, run_actor = "", v, last = -1, state, topic, seen_topic = None
    cdef object next_version = None
    cdef str actor_id = None, event_type = None
    cdef bint started = False, actor_checked = False, last_exact = True, fast
    cdef long long c_last = -1, cv = 0, version
    cdef int overflow = 0
    cdef Py_ssize_t i = 0, tn, n
    cdef char idbuf[256]
    cdef Event ev
    cdef const char *tp = PyUnicode_AsUTF8AndSize(token, &tn)
    if tn != len(token) or tn + 19 > _MAX_ID:   # 19: the digits of any index
        raise InvalidInputError(f"token must be ASCII of at most {_MAX_ID - 19} characters: {_short_repr(token)}")
    memcpy(idbuf, tp, tn)
    for s in stored_events:
        oid = s.originator_id
        if oid is not prev_oid or not started:
            actor = actor_of(oid)
            prev_oid, started = oid, True
            if actor != run_actor or run is None:
                run_actor, last, c_last, last_exact, actor_checked = actor, -1, -1, True, False
                run = []
                runs.append((actor, run))
        v = s.originator_version
        state = s.state
        fast = False
        if last_exact and type(v) is int:
            cv = PyLong_AsLongLongAndOverflow(v, &overflow)
            fast = overflow == 0 and c_last < cv < _MAX_VERSION    # so v > last and v + 1 is a version
        if fast:
            if type(state) is not bytes:
                state = check(run_actor, v, last, state)
        elif v <= last or type(state) is not bytes:
            state = check(run_actor, v, last, state)
        topic = s.topic
        if not fast:
            next_version = v + 1
        if topic is not seen_topic:
            event_type = _check_str(topic, "event_type", _MAX_TYPE)
            seen_topic = topic
        if not actor_checked:
            actor_id = _check_str(run_actor, "actor_id", _MAX_ID)
            actor_checked = True
        if fast:
            version = cv + 1
        else:
            version = _check_version(next_version, "version")
            last_exact = type(v) is int         # then v = version - 1 fits
            cv = version - 1
        n = tn
        _put_index(idbuf, &n, i)
        ev = Event.__new__(Event)
        ev.id = PyUnicode_DecodeASCII(idbuf, n, NULL)
        ev.event_type = event_type
        ev.actor_id = actor_id
        ev.command_id = None
        ev.version = version
        ev.timestamp_ns = _now_ns()
        ev._metadata = _NO_METADATA
        ev._payload = state
        ev._raw = True
        ev._position = 0
        run.append(ev)
        last, c_last = v, cv
        i += 1
    return runs


cdef inline void _put_index(char *buf, Py_ssize_t *n, Py_ssize_t i) noexcept nogil:
    """Append the decimal digits of ``i`` (>= 0) at ``buf + n[0]``."""
    cdef char tmp[20]
    cdef int k = 0
    while True:
        tmp[k] = <char>(48 + i % 10)
        k += 1
        i //= 10
        if i == 0:
            break
    while k:
        k -= 1
        buf[n[0]] = tmp[k]
        n[0] += 1


cdef extern from "Python.h":
    ctypedef struct PyObject
    ctypedef struct PyTypeObject:
        object (*tp_new)(PyTypeObject *t, object args, PyObject *kwds)    # NULL: raises
    PyTypeObject PyBaseObject_Type
    object PyObject_GenericGetDict(object o, void *context)
    int PyDict_SetItem(object d, object k, object v) except -1


@cython.final
cdef class Projection:
    """Builds plain objects of ``cls`` from events without calling ``cls.__init__`` (for
    frozen dataclasses, whose ``__init__`` is slow): each gets the instance dict
    ``{names[0]: originator, names[1]: version - version_offset, names[2]: event_type,
    names[3]: payload[, names[4]: position]}``. With ``originator_of``, the originator is
    ``originator_of(actor_id)``, called once per actor. Stores take one to build these
    objects straight from their records (``get_events(..., projection=p)``)."""

    cdef PyTypeObject *tp
    cdef readonly type cls
    cdef object n0, n1, n2, n3, n4, originator, originator_of
    cdef Py_ssize_t nf
    cdef long long offset
    cdef dict cache
    cdef str actor
    cdef str last_type        # the last event type decoded from a record (runs share one str)

    def __init__(self, type cls, tuple names, originator=None, originator_of=None, long long version_offset=0):
        self.nf = len(names)
        if self.nf != 4 and self.nf != 5:
            raise InvalidInputError(f"names must have 4 or 5 field names, got {names!r}")
        if cls.__new__ is not object.__new__ or cls.__dictoffset__ == 0:
            raise InvalidTypeError(f"{cls.__name__} is not a plain class with an instance __dict__")
        self.cls = cls
        self.tp = <PyTypeObject *>cls
        self.n0, self.n1, self.n2, self.n3 = names[0], names[1], names[2], names[3]
        self.n4 = names[4] if self.nf == 5 else None
        self.originator = originator
        self.originator_of = originator_of
        self.offset = version_offset
        self.cache = {}

    cdef object build(self, str actor_id, long long version, str event_type, bytes payload, long long position):
        cdef tuple no_args = ()
        if self.originator_of is not None and actor_id is not self.actor:
            self.actor = actor_id
            found = self.cache.get(actor_id)
            if found is None:
                found = self.cache[actor_id] = self.originator_of(actor_id)
            self.originator = found
        obj = PyBaseObject_Type.tp_new(self.tp, no_args, NULL)     # object.__new__(cls), no Python call
        d = PyObject_GenericGetDict(obj, NULL)     # its own dict (inline values on 3.13 stay consistent)
        PyDict_SetItem(d, self.n0, self.originator)
        PyDict_SetItem(d, self.n1, version - self.offset)
        PyDict_SetItem(d, self.n2, event_type)
        PyDict_SetItem(d, self.n3, payload)
        if self.nf == 5:
            PyDict_SetItem(d, self.n4, position)
        return obj

    def of_events(self, list events):
        """The objects of ``events``, in one native loop."""
        cdef Py_ssize_t i, n = len(events)
        cdef Event e
        out = [None] * n
        for i in range(n):
            e = <Event?>events[i]
            out[i] = self.build(e.actor_id, e.version, e.event_type, e._payload, e._position)
        return out
