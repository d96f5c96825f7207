# The on-disk event record: a fixed little-endian header, variable parts, CRC32C.
# Included by _native.pyx.
#
#   0  u32 crc32c of bytes [4:]        24 u16 id length
#   4  u8  record format (1)           26 u16 actor id length
#   5  u8  flags (1 raw data, 2 cmd)   28 u16 command id length
#   6  u16 event type length           30 u16 reserved (0)
#   8  i64 version                     32 u32 metadata length
#  16  i64 timestamp (ns, UTC)         36 u32 data length
#  40  id | event type | actor id | command id | metadata | data
#
# metadata = repeated (u32 key length, key, u32 value length, value), UTF-8.

cdef enum:
    HDR = 40
    RECORD_FORMAT = 1
    FLAG_RAW = 1
    FLAG_CMD = 2

cdef struct Rec:
    const char *id
    Py_ssize_t id_n
    const char *typ
    Py_ssize_t typ_n
    const char *actor
    Py_ssize_t actor_n
    const char *cmd
    Py_ssize_t cmd_n
    const char *payload
    Py_ssize_t payload_n
    Py_ssize_t meta_n
    Py_ssize_t total
    long long version


cdef int rec_prepare(Rec *r, Event ev, Py_ssize_t max_bytes) except -1:
    """Point ``r`` at the event's UTF-8 parts and size the record."""
    cdef Py_ssize_t n
    r.id = PyUnicode_AsUTF8AndSize(ev.id, &r.id_n)
    r.typ = PyUnicode_AsUTF8AndSize(ev.event_type, &r.typ_n)
    r.actor = PyUnicode_AsUTF8AndSize(ev.actor_id, &r.actor_n)
    if ev.command_id is None:
        r.cmd = NULL
        r.cmd_n = 0
    else:
        r.cmd = PyUnicode_AsUTF8AndSize(ev.command_id, &r.cmd_n)
    r.payload = PyBytes_AS_STRING(ev._payload)
    r.payload_n = PyBytes_GET_SIZE(ev._payload)
    r.meta_n = 0
    for k, v in ev._metadata.items():
        PyUnicode_AsUTF8AndSize(k, &n)
        r.meta_n += 4 + n
        PyUnicode_AsUTF8AndSize(v, &n)
        r.meta_n += 4 + n
    r.version = ev.version
    r.total = HDR + r.id_n + r.typ_n + r.actor_n + r.cmd_n + r.meta_n + r.payload_n
    if r.total > max_bytes:
        raise InvalidInputError(
            f"event {ev.id!r} of actor {ev.actor_id!r} version {ev.version} encodes to {r.total} bytes, "
            f"over the store's max_event_bytes={max_bytes}")
    return 0


cdef void rec_write(const Rec *r, Event ev, unsigned char *out):
    """Write the record into ``out`` (``r.total`` bytes), checksum last."""
    cdef unsigned char *p = out + HDR
    cdef const char *s
    cdef Py_ssize_t n
    out[4] = RECORD_FORMAT
    out[5] = (FLAG_RAW if ev._raw else 0) | (FLAG_CMD if r.cmd != NULL else 0)
    af_put_u16le(out + 6, <uint16_t>r.typ_n)
    af_put_u64le(out + 8, <uint64_t>r.version)
    af_put_u64le(out + 16, <uint64_t>ev.timestamp_ns)
    af_put_u16le(out + 24, <uint16_t>r.id_n)
    af_put_u16le(out + 26, <uint16_t>r.actor_n)
    af_put_u16le(out + 28, <uint16_t>r.cmd_n)
    af_put_u16le(out + 30, 0)
    af_put_u32le(out + 32, <uint32_t>r.meta_n)
    af_put_u32le(out + 36, <uint32_t>r.payload_n)
    memcpy(p, r.id, r.id_n); p += r.id_n
    memcpy(p, r.typ, r.typ_n); p += r.typ_n
    memcpy(p, r.actor, r.actor_n); p += r.actor_n
    if r.cmd_n:
        memcpy(p, r.cmd, r.cmd_n); p += r.cmd_n
    for k, v in ev._metadata.items():
        s = PyUnicode_AsUTF8AndSize(k, &n)
        af_put_u32le(p, <uint32_t>n); memcpy(p + 4, s, n); p += 4 + n
        s = PyUnicode_AsUTF8AndSize(v, &n)
        af_put_u32le(p, <uint32_t>n); memcpy(p + 4, s, n); p += 4 + n
    memcpy(p, r.payload, r.payload_n)
    af_put_u32le(out, af_crc32c(0, out + 4, r.total - 4))


cdef int rec_check(const unsigned char *p, size_t n) noexcept nogil:
    """0 when the record is whole and its checksum holds, else a reason code."""
    if n < HDR:
        return 1
    if p[4] != RECORD_FORMAT:
        return 2
    if p[5] & ~(FLAG_RAW | FLAG_CMD):
        return 3
    cdef size_t want = (HDR + <size_t>af_get_u16le(p + 6) + af_get_u16le(p + 24) + af_get_u16le(p + 26)
                        + af_get_u16le(p + 28) + af_get_u32le(p + 32) + af_get_u32le(p + 36))
    if want != n:
        return 4
    if af_crc32c(0, p + 4, n - 4) != af_get_u32le(p):
        return 5
    if not rec_fields_valid(p):
        return 6
    return 0


cdef inline bint rec_fields_valid(const unsigned char *p) noexcept nogil:
    """The header holds only what an Event can be: version >= 1, non-empty texts within
    their limits, a command id exactly when flagged, the reserved field 0."""
    cdef uint16_t typ_n = af_get_u16le(p + 6), id_n = af_get_u16le(p + 24)
    cdef uint16_t actor_n = af_get_u16le(p + 26), cmd_n = af_get_u16le(p + 28)
    cdef bint has_cmd = (p[5] & FLAG_CMD) != 0
    return (<int64_t>af_get_u64le(p + 8) >= 1 and af_get_u16le(p + 30) == 0
            and 1 <= id_n <= _MAX_ID and 1 <= actor_n <= _MAX_ID and 1 <= typ_n <= _MAX_TYPE
            and (1 <= cmd_n <= _MAX_ID if has_cmd else cmd_n == 0))


cdef str rec_problem(int code):
    return ("", "record shorter than its header", "unknown record format", "unknown record flags",
            "record length disagrees with its header", "checksum mismatch",
            "record header fields out of range")[code]


cdef inline str _text(const unsigned char *q, size_t n, str previous):
    """Decode UTF-8, reusing ``previous`` when it has the same bytes (runs of one actor or
    one event type then share one str: less decoding, less memory)."""
    cdef Py_ssize_t m
    cdef const char *c
    if previous is not None:
        c = PyUnicode_AsUTF8AndSize(previous, &m)
        if <size_t>m == n and memcmp(c, q, n) == 0:
            return previous
    return PyUnicode_DecodeUTF8(<const char *>q, n, NULL)


cdef Event rec_decode(const unsigned char *p, size_t n, long long position, Event previous=None):
    """Build an Event from a record that passed ``rec_check``; a record whose text is not
    UTF-8 or whose metadata is malformed raises CorruptRecordError."""
    try:
        return _rec_decode(p, n, position, previous)
    except UnicodeDecodeError as e:
        raise CorruptRecordError(f"record text is not UTF-8 ({e.reason})", position) from None


cdef Event _rec_decode(const unsigned char *p, size_t n, long long position, Event previous):
    cdef Event ev = Event.__new__(Event)
    cdef size_t typ_n = af_get_u16le(p + 6), id_n = af_get_u16le(p + 24)
    cdef size_t actor_n = af_get_u16le(p + 26), cmd_n = af_get_u16le(p + 28)
    cdef size_t meta_n = af_get_u32le(p + 32), data_n = af_get_u32le(p + 36)
    cdef const unsigned char *q = p + HDR
    cdef const unsigned char *end
    cdef size_t kn, vn
    cdef Py_ssize_t entries = 0
    ev.version = <long long>af_get_u64le(p + 8)
    ev.timestamp_ns = <long long>af_get_u64le(p + 16)
    ev.id = PyUnicode_DecodeUTF8(<const char *>q, id_n, NULL); q += id_n
    ev.event_type = _text(q, typ_n, None if previous is None else previous.event_type); q += typ_n
    ev.actor_id = _text(q, actor_n, None if previous is None else previous.actor_id); q += actor_n
    if p[5] & FLAG_CMD:
        ev.command_id = PyUnicode_DecodeUTF8(<const char *>q, cmd_n, NULL)
    else:
        ev.command_id = None
    q += cmd_n
    if meta_n == 0:
        ev._metadata = _NO_METADATA
    else:
        ev._metadata = {}
    end = q + meta_n
    while q < end:
        if end - q < 4:
            raise CorruptRecordError("metadata is truncated", position)
        kn = af_get_u32le(q)
        if <size_t>(end - q) < 8 + kn or <size_t>(end - q) - 8 - kn < af_get_u32le(q + 4 + kn):
            raise CorruptRecordError("metadata is truncated", position)
        vn = af_get_u32le(q + 4 + kn)
        ev._metadata[PyUnicode_DecodeUTF8(<const char *>q + 4, kn, NULL)] = \
            PyUnicode_DecodeUTF8(<const char *>q + 8 + kn, vn, NULL)
        q += 8 + kn + vn
        entries += 1
    if entries != len(ev._metadata):
        raise CorruptRecordError("metadata repeats a key", position)
    ev._payload = PyBytes_FromStringAndSize(<const char *>q, data_n)
    ev._raw = (p[5] & FLAG_RAW) != 0
    ev._position = position
    return ev


def crc32c(data, unsigned int crc=0):
    """CRC32C (Castagnoli) of ``data``; the checksum of every stored record."""
    cdef const unsigned char[::1] view = memoryview(data).cast("B")
    if view.shape[0] == 0:
        return af_crc32c(crc, NULL, 0)
    return af_crc32c(crc, &view[0], view.shape[0])


def crc32c_software(data, unsigned int crc=0):
    """The portable CRC32C, for checking the hardware path against it."""
    cdef const unsigned char[::1] view = memoryview(data).cast("B")
    if view.shape[0] == 0:
        return af_crc32c_sw(crc, NULL, 0)
    return af_crc32c_sw(crc, &view[0], view.shape[0])


def encode_record(Event event):
    """The stored record of ``event`` (for tests and tools)."""
    cdef Rec r
    rec_prepare(&r, event, 0x7FFFFFFF)
    out = PyBytes_FromStringAndSize(NULL, r.total)
    rec_write(&r, event, <unsigned char *>PyBytes_AS_STRING(out))
    return out


def decode_record(data, position=None):
    """Decode one stored record; a damaged one raises CorruptRecordError."""
    cdef const unsigned char[::1] view = memoryview(data).cast("B")
    cdef size_t n = view.shape[0]
    cdef int code = rec_check(&view[0], n) if n else 1
    if code:
        raise CorruptRecordError(rec_problem(code), position)
    return rec_decode(&view[0], n, 0 if position is None else position)
