# The event log of one namespace (NativeLog): appends with the version check, reads,
# columns, snapshots. Included by _native.pyx, after env.pxi; its iterators and buffers
# are in reads.pxi.

cdef class NativeLog:
    """One namespace of an environment: appends, reads, snapshots."""

    cdef NativeEnv env
    cdef readonly str namespace
    cdef MDB_dbi log, idx, snap

    cdef int read_txn(self, MDB_txn **txn) except -1:
        """A read transaction, or this thread's explicit transaction (see NativeEnv.read_txn)."""
        owned = self.env.read_txn(txn)
        if not owned:
            self.check_visible(txn[0])
        return owned

    cdef int check_visible(self, MDB_txn *txn) except -1:
        """Refuse this thread's explicit transaction if it began before this namespace was
        opened (by another thread, in a read transaction): LMDB hides the handles from it."""
        cdef unsigned int flags
        if (mdb_dbi_flags(txn, self.log, &flags) or mdb_dbi_flags(txn, self.idx, &flags)
                or mdb_dbi_flags(txn, self.snap, &flags)):
            raise AetherError(
                f"namespace {self.namespace!r} was opened after this thread's transaction began; "
                "open every namespace a transaction uses before starting it")
        return 0

    # -- writes ------------------------------------------------------------------------------

    cdef long long _latest(self, MDB_cursor *idx_cur, const char *actor, Py_ssize_t n) except -1:
        """The actor's latest version: the last idx key of its prefix (0 if none)."""
        cdef unsigned char key[KEY_MAX]
        cdef MDB_val k, v
        cdef int rc
        k.mv_size = pack_actor_key(key, actor, n, 0xFFFFFFFFFFFFFFFF)
        k.mv_data = key
        rc = mdb_cursor_get(idx_cur, &k, &v, MDB_SET_RANGE)
        if rc == MDB_NOTFOUND:
            rc = mdb_cursor_get(idx_cur, &k, &v, MDB_LAST)
        elif rc == 0:
            rc = mdb_cursor_get(idx_cur, &k, &v, MDB_PREV)
        if rc == MDB_NOTFOUND:
            return 0
        if rc:
            raise_lmdb(rc, "index read")
        if k.mv_size == <size_t>(n + 9) and memcmp(k.mv_data, key, n + 1) == 0:
            return <long long>af_get_u64be(<unsigned char *>k.mv_data + 1 + n)
        return 0

    cdef long long _last_position(self, MDB_cursor *log_cur) except -1:
        cdef MDB_val k, v
        cdef int rc = mdb_cursor_get(log_cur, &k, &v, MDB_LAST)
        if rc == MDB_NOTFOUND:
            return 0
        if rc:
            raise_lmdb(rc, "log read")
        return <long long>af_get_u64be(<unsigned char *>k.mv_data)

    cdef object _stored_positions(self, MDB_txn *txn, const Rec *recs, Py_ssize_t count):
        """Positions of a batch that is already stored with the same ids, else None."""
        cdef unsigned char key[KEY_MAX]
        cdef MDB_val k, v, lk, lv
        cdef unsigned char pk[8]
        cdef int rc
        cdef const unsigned char *rec
        positions = []
        for i in range(count):
            k.mv_size = pack_actor_key(key, recs[i].actor, recs[i].actor_n, <uint64_t>recs[i].version)
            k.mv_data = key
            rc = mdb_get(txn, self.idx, &k, &v)
            if rc == MDB_NOTFOUND:
                return None
            if rc:
                raise_lmdb(rc, "index read")
            if v.mv_size != 8:
                raise CorruptRecordError("an index entry of the batch's actor is damaged")
            pos = af_get_u64le(<unsigned char *>v.mv_data)
            af_put_u64be(pk, pos)
            lk.mv_data = pk
            lk.mv_size = 8
            rc = mdb_get(txn, self.log, &lk, &lv)
            if rc:
                raise_lmdb(rc, "log read")
            rec = <const unsigned char *>lv.mv_data
            if rec_check(rec, lv.mv_size):
                raise CorruptRecordError(rec_problem(rec_check(rec, lv.mv_size)), pos)
            if (af_get_u16le(rec + 24) != recs[i].id_n
                    or memcmp(rec + HDR, recs[i].id, recs[i].id_n) != 0):
                return None
            positions.append(pos)
        return positions

    cdef list _append_in(self, MDB_txn *txn, const Rec *recs, list events, int expect_kind,
                         long long expected):
        cdef MDB_cursor *log_cur = NULL
        cdef MDB_cursor *idx_cur = NULL
        cdef unsigned char key[KEY_MAX]
        cdef unsigned char pk[8]
        cdef MDB_val k, v
        cdef int rc
        cdef Py_ssize_t i, count = len(events)
        cdef long long latest, pos
        cdef uint64_t posbuf
        rc = mdb_cursor_open(txn, self.idx, &idx_cur)
        if rc:
            raise_lmdb(rc, "cursor")
        try:
            latest = self._latest(idx_cur, recs[0].actor, recs[0].actor_n)
            if recs[0].version <= latest:
                stored = self._stored_positions(txn, recs, count)
                if stored is not None:
                    return stored
                raise VersionConflictError(
                    (<Event>events[0]).actor_id, latest, recs[0].version,
                    None if expect_kind == EXPECT_ANY else
                    (expected if expect_kind == EXPECT_EXACT else _EXPECT_NAMES[expect_kind]))
            if ((expect_kind == EXPECT_NO_STREAM and latest != 0)
                    or (expect_kind == EXPECT_EXISTS and latest == 0)
                    or (expect_kind == EXPECT_EXACT and latest != expected)):
                raise VersionConflictError(
                    (<Event>events[0]).actor_id, latest, recs[0].version,
                    expected if expect_kind == EXPECT_EXACT else _EXPECT_NAMES[expect_kind])
            rc = mdb_cursor_open(txn, self.log, &log_cur)
            if rc:
                raise_lmdb(rc, "cursor")
            pos = self._last_position(log_cur)
            positions = []
            journal = self.env.journal if (self.env.journal is not None
                                           and self.env.journal.owner == txn) else None
            for i in range(count):
                pos += 1
                af_put_u64be(pk, <uint64_t>pos)
                k.mv_data = pk
                k.mv_size = 8
                v.mv_size = recs[i].total
                rc = mdb_cursor_put(log_cur, &k, &v, MDB_APPEND | MDB_RESERVE)
                if rc:
                    raise_lmdb(rc, "append")
                rec_write(&recs[i], <Event>events[i], <unsigned char *>v.mv_data)
                if journal is not None:
                    (<Journal>journal).add_event(self.namespace, <uint64_t>pos,
                                                 <const unsigned char *>v.mv_data, recs[i].total)
                k.mv_size = pack_actor_key(key, recs[i].actor, recs[i].actor_n, <uint64_t>recs[i].version)
                k.mv_data = key
                posbuf = 0
                af_put_u64le(<unsigned char *>&posbuf, <uint64_t>pos)
                v.mv_data = &posbuf
                v.mv_size = 8
                rc = mdb_cursor_put(idx_cur, &k, &v, 0)
                if rc:
                    raise_lmdb(rc, "index write")
                positions.append(pos)
            return positions
        finally:
            if log_cur != NULL:
                mdb_cursor_close(log_cur)
            mdb_cursor_close(idx_cur)

    cdef Rec *_prepare(self, list events, Py_ssize_t max_event_bytes) except NULL:
        """Validate and size a non-empty batch; the caller frees the array (PyMem_Free)."""
        cdef Py_ssize_t i, count = len(events)
        cdef Rec *recs = <Rec *>PyMem_Malloc(count * sizeof(Rec))
        if recs == NULL:
            raise MemoryError()
        try:
            for i in range(count):
                ev = events[i]
                if not isinstance(ev, Event):
                    raise InvalidTypeError(f"events[{i}] is a {type(ev).__name__}, not an Event: {_short_repr(ev)}")
                rec_prepare(&recs[i], <Event>ev, max_event_bytes)
                if i and (recs[i].actor_n != recs[0].actor_n
                          or memcmp(recs[i].actor, recs[0].actor, recs[0].actor_n) != 0):
                    raise InvalidInputError(
                        f"events[{i}] is for actor {(<Event>ev).actor_id!r}, but the batch is for "
                        f"{(<Event>events[0]).actor_id!r}; one append takes one actor's events")
                if i and recs[i].version <= recs[i - 1].version:
                    raise InvalidInputError(
                        f"versions must strictly increase within a batch: events[{i}] has version "
                        f"{recs[i].version} after {recs[i - 1].version}")
        except BaseException:
            PyMem_Free(recs)
            raise
        return recs

    def append(self, list events, int expect_kind=EXPECT_ANY, long long expected=0,
               Py_ssize_t max_event_bytes=0x7FFFFFFF):
        """Append one actor's events atomically, in this thread's explicit transaction or
        in a transaction of its own."""
        cdef Rec *recs
        cdef MDB_txn *txn
        if not events:
            return []
        self.env.check()
        recs = self._prepare(events, max_event_bytes)
        try:
            if self.env.in_explicit_txn():
                self.check_visible(self.env.wtxn)
                try:
                    return self._append_in(self.env.wtxn, recs, events, expect_kind, expected)
                except (VersionConflictError, CorruptRecordError):
                    raise       # raised by the checks, before anything was written
                except _MapFull:
                    self.env.fail_explicit_txn()
                    self.env.grow_after_full()
                    raise StoreFullError(
                        f"store at {self.env.path!r} ran out of map space inside a transaction; the whole "
                        "transaction was rolled back and the map has grown: run it again") from None
                except BaseException:
                    self.env.fail_explicit_txn()   # a write failed midway: keep nothing of it
                    raise
            while True:
                self.env._begin(&txn, 0)
                try:
                    positions = self._append_in(txn, recs, events, expect_kind, expected)
                except _MapFull:
                    self.env._abort(txn)
                    self.env.grow_after_full()
                    continue
                except BaseException:
                    self.env._abort(txn)
                    raise
                try:
                    self.env._commit(txn)
                except _MapFull:
                    self.env.grow_after_full()
                    continue
                return positions
        finally:
            PyMem_Free(recs)

    # -- reads -------------------------------------------------------------------------------

    def latest_version(self, str actor_id):
        cdef MDB_txn *txn
        cdef MDB_cursor *cur
        cdef const char *a
        cdef Py_ssize_t n
        a = PyUnicode_AsUTF8AndSize(actor_id, &n)
        owned = self.read_txn(&txn)
        try:
            rc = mdb_cursor_open(txn, self.idx, &cur)
            if rc:
                raise_lmdb(rc, "cursor")
            try:
                return self._latest(cur, a, n)
            finally:
                mdb_cursor_close(cur)
        finally:
            if owned:
                self.env._abort(txn)

    def last_position(self):
        cdef MDB_txn *txn
        cdef MDB_cursor *cur
        owned = self.read_txn(&txn)
        try:
            rc = mdb_cursor_open(txn, self.log, &cur)
            if rc:
                raise_lmdb(rc, "cursor")
            try:
                return self._last_position(cur)
            finally:
                mdb_cursor_close(cur)
        finally:
            if owned:
                self.env._abort(txn)

    cdef int _take(self, const unsigned char *rec, size_t n, long long pos, list events, list errors,
                   const char *actor, Py_ssize_t actor_n, long long version,
                   Projection projection=None, str actor_id=None) except -1:
        """Decode one record into ``events`` (an Event, or with ``projection`` its object for
        ``actor_id``), or report it in ``errors`` (raise if None)."""
        cdef int code = rec_check(rec, n)
        problem = None
        if code:
            problem = rec_problem(code)
        elif actor != NULL and (af_get_u16le(rec + 26) != actor_n
                                or memcmp(rec + HDR + af_get_u16le(rec + 24) + af_get_u16le(rec + 6),
                                          actor, actor_n) != 0
                                or <long long>af_get_u64le(rec + 8) != version):
            problem = "record disagrees with the actor index"
        if problem is None:
            try:
                if projection is None:
                    events.append(rec_decode(rec, n, pos, events[len(events) - 1] if events else None))
                else:
                    events.append(_rec_project(rec, pos, projection, actor_id))
                return 0
            except CorruptRecordError as e:
                if errors is None:
                    raise
                errors.append((pos, PyBytes_FromStringAndSize(<const char *>rec, n), e))
                return 0
        if errors is None:
            raise CorruptRecordError(problem, pos)
        else:
            errors.append((pos, PyBytes_FromStringAndSize(<const char *>rec, n), problem))
        return 0

    def get_events(self, str actor_id, long long from_version, bint with_errors, Projection projection=None):
        """The actor's events from ``from_version`` on (as ``projection``'s objects when
        given); with_errors: (events, errors)."""
        cdef MDB_txn *txn
        cdef MDB_cursor *idx_cur = NULL
        cdef MDB_cursor *log_cur = NULL
        cdef unsigned char key[KEY_MAX]
        cdef unsigned char pk[8]
        cdef MDB_val k, v, lk, lv
        cdef int rc
        cdef const char *a
        cdef Py_ssize_t n
        cdef long long pos, prev = -1, version
        a = PyUnicode_AsUTF8AndSize(actor_id, &n)
        events = []
        errors = [] if with_errors else None
        owned = self.read_txn(&txn)
        try:
            rc = mdb_cursor_open(txn, self.idx, &idx_cur)
            if rc == 0:
                rc = mdb_cursor_open(txn, self.log, &log_cur)
            if rc:
                raise_lmdb(rc, "cursor")
            k.mv_size = pack_actor_key(key, a, n, <uint64_t>from_version)
            k.mv_data = key
            rc = mdb_cursor_get(idx_cur, &k, &v, MDB_SET_RANGE)
            while rc == 0:
                if k.mv_size != <size_t>(n + 9) or memcmp(k.mv_data, key, n + 1) != 0:
                    break
                version = <long long>af_get_u64be(<unsigned char *>k.mv_data + 1 + n)
                if v.mv_size != 8:
                    raise CorruptRecordError(f"index entry of actor {actor_id!r} version {version} is damaged")
                pos = <long long>af_get_u64le(<unsigned char *>v.mv_data)
                rc = -1
                if pos == prev + 1:     # consecutive positions: step instead of seeking
                    rc = mdb_cursor_get(log_cur, &lk, &lv, MDB_NEXT)
                    if rc == 0 and <long long>af_get_u64be(<unsigned char *>lk.mv_data) != pos:
                        rc = -1
                if rc != 0:
                    af_put_u64be(pk, <uint64_t>pos)
                    lk.mv_data = pk
                    lk.mv_size = 8
                    rc = mdb_cursor_get(log_cur, &lk, &lv, MDB_SET_KEY)
                if rc == MDB_NOTFOUND:
                    if errors is None:
                        raise CorruptRecordError(f"index points at a missing record of actor {actor_id!r}", pos)
                    errors.append((pos, b"", "index points at a missing record"))
                elif rc:
                    raise_lmdb(rc, "log read")
                else:
                    self._take(<const unsigned char *>lv.mv_data, lv.mv_size, pos, events, errors,
                               a, n, version, projection, actor_id)
                prev = pos
                rc = mdb_cursor_get(idx_cur, &k, &v, MDB_NEXT)
            if rc != 0 and rc != MDB_NOTFOUND:
                raise_lmdb(rc, "index read")
        finally:
            if log_cur != NULL:
                mdb_cursor_close(log_cur)
            if idx_cur != NULL:
                mdb_cursor_close(idx_cur)
            if owned:
                self.env._abort(txn)
        return (events, errors) if with_errors else events

    def read_range(self, long long from_position, Py_ssize_t limit, bint with_errors):
        """Up to ``limit`` events of the global log from ``from_position`` on."""
        cdef MDB_txn *txn
        cdef MDB_cursor *cur = NULL
        cdef unsigned char pk[8]
        cdef MDB_val k, v
        cdef int rc
        cdef Py_ssize_t taken = 0
        events = []
        errors = [] if with_errors else None
        owned = self.read_txn(&txn)
        try:
            rc = mdb_cursor_open(txn, self.log, &cur)
            if rc:
                raise_lmdb(rc, "cursor")
            af_put_u64be(pk, <uint64_t>from_position)
            k.mv_data = pk
            k.mv_size = 8
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
            while rc == 0 and taken < limit:
                self._take(<const unsigned char *>v.mv_data, v.mv_size,
                           <long long>af_get_u64be(<unsigned char *>k.mv_data), events, errors, NULL, 0, 0)
                taken += 1
                rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)
            if rc != 0 and rc != MDB_NOTFOUND:
                raise_lmdb(rc, "log read")
        finally:
            if cur != NULL:
                mdb_cursor_close(cur)
            if owned:
                self.env._abort(txn)
        return (events, errors) if with_errors else events

    def iterate(self, long long from_position, long long limit):
        """A LogIterator over the log from ``from_position`` (``limit`` < 0: to the end)."""
        cdef LogIterator it = LogIterator.__new__(LogIterator)
        it.log = self
        it.chunk = []
        it.i = 0
        it.next_position = from_position
        it.remaining = limit
        it.done = limit == 0
        return it

    def columnar(self, actor_id, long long from_position, long long to_position):
        """Columns of an actor's events (``actor_id``) or of a position range, as bytes
        buffers; the Python side wraps them in numpy arrays."""
        cdef MDB_txn *txn
        cdef MDB_cursor *idx_cur = NULL
        cdef MDB_cursor *log_cur = NULL
        cdef unsigned char key[KEY_MAX]
        cdef unsigned char pk[8]
        cdef MDB_val k, v, lk, lv
        cdef int rc = 0, code = 0
        cdef const char *a = NULL
        cdef Py_ssize_t n = 0
        cdef bint by_actor = actor_id is not None
        cdef long long pos = 0, prev = -1
        cdef af_buf positions, versions, stamps, type_codes, actor_codes, flags, offsets, payload
        cdef af_intern types, actors
        cdef const unsigned char *rec
        cdef size_t rn, skip
        cdef int64_t code64
        cdef uint32_t c32
        cdef uint64_t off = 0
        cdef unsigned char fl
        cdef int oom = 0
        cdef long long rows = 0
        if by_actor:
            a = PyUnicode_AsUTF8AndSize(actor_id, &n)
        memset(&positions, 0, sizeof(af_buf)); memset(&versions, 0, sizeof(af_buf))
        memset(&stamps, 0, sizeof(af_buf)); memset(&type_codes, 0, sizeof(af_buf))
        memset(&actor_codes, 0, sizeof(af_buf)); memset(&flags, 0, sizeof(af_buf))
        memset(&offsets, 0, sizeof(af_buf)); memset(&payload, 0, sizeof(af_buf))
        if af_intern_init(&types) or af_intern_init(&actors):
            raise MemoryError()
        owned = self.read_txn(&txn)
        try:
            rc = mdb_cursor_open(txn, self.log, &log_cur)
            if rc == 0 and by_actor:
                rc = mdb_cursor_open(txn, self.idx, &idx_cur)
            if rc:
                raise_lmdb(rc, "cursor")
            if not by_actor:   # the row count is known: size the columns once
                rc = mdb_cursor_get(log_cur, &k, &v, MDB_LAST)
                if rc == 0:
                    rows = <long long>af_get_u64be(<unsigned char *>k.mv_data)
                    rows = min(rows, to_position) - from_position + 1
                    if rows > 0:
                        oom |= af_buf_reserve(&positions, rows * 8) | af_buf_reserve(&versions, rows * 8)
                        oom |= af_buf_reserve(&stamps, rows * 8) | af_buf_reserve(&type_codes, rows * 4)
                        oom |= af_buf_reserve(&actor_codes, rows * 4) | af_buf_reserve(&flags, rows)
                        oom |= af_buf_reserve(&offsets, rows * 8 + 8)
            oom |= af_buf_append(&offsets, &off, 8)
            with nogil:
                if by_actor:
                    k.mv_size = pack_actor_key(key, a, n, 1)
                    k.mv_data = key
                    rc = mdb_cursor_get(idx_cur, &k, &v, MDB_SET_RANGE)
                else:
                    af_put_u64be(pk, <uint64_t>from_position)
                    k.mv_data = pk
                    k.mv_size = 8
                    rc = mdb_cursor_get(log_cur, &k, &v, MDB_SET_RANGE)
                while rc == 0 and not oom:
                    if by_actor:
                        if k.mv_size != <size_t>(n + 9) or memcmp(k.mv_data, key, n + 1) != 0:
                            break
                        if v.mv_size != 8:
                            code = 7
                            break
                        pos = <long long>af_get_u64le(<unsigned char *>v.mv_data)
                        if pos < from_position or pos > to_position:
                            rc = mdb_cursor_get(idx_cur, &k, &v, MDB_NEXT)
                            continue
                        rc = -1
                        if pos == prev + 1:
                            rc = mdb_cursor_get(log_cur, &lk, &lv, MDB_NEXT)
                            if rc == 0 and <long long>af_get_u64be(<unsigned char *>lk.mv_data) != pos:
                                rc = -1
                        if rc != 0:
                            af_put_u64be(pk, <uint64_t>pos)
                            lk.mv_data = pk
                            lk.mv_size = 8
                            rc = mdb_cursor_get(log_cur, &lk, &lv, MDB_SET_KEY)
                        if rc:
                            code = 6
                            break
                        prev = pos
                    else:
                        pos = <long long>af_get_u64be(<unsigned char *>k.mv_data)
                        if pos > to_position:
                            break
                        lv = v
                    rec = <const unsigned char *>lv.mv_data
                    rn = lv.mv_size
                    code = rec_check(rec, rn)
                    if code:
                        break
                    if by_actor and (af_get_u16le(rec + 26) != n
                                     or memcmp(rec + HDR + af_get_u16le(rec + 24) + af_get_u16le(rec + 6), a, n) != 0
                                     or af_get_u64le(rec + 8) != af_get_u64be(<unsigned char *>k.mv_data + n + 1)):
                        code = 8
                        break
                    skip = HDR + af_get_u16le(rec + 24)
                    code64 = af_intern_code(&types, rec + skip, af_get_u16le(rec + 6))
                    c32 = <uint32_t>code64
                    if code64 < 0:
                        oom = 1
                    oom |= af_buf_append(&type_codes, &c32, 4)
                    code64 = af_intern_code(&actors, rec + skip + af_get_u16le(rec + 6), af_get_u16le(rec + 26))
                    c32 = <uint32_t>code64
                    if code64 < 0:
                        oom = 1
                    oom |= af_buf_append(&actor_codes, &c32, 4)
                    oom |= af_buf_append(&positions, &pos, 8)
                    oom |= af_buf_append(&versions, rec + 8, 8)
                    oom |= af_buf_append(&stamps, rec + 16, 8)
                    fl = rec[5] & FLAG_RAW
                    oom |= af_buf_append(&flags, &fl, 1)
                    if payload.cap == 0 and not by_actor and rows > 0:   # size by the first payload
                        # a guess from the first payload, capped: one big first event
                        # must not reserve memory for a big payload on every row
                        oom |= af_buf_reserve(&payload, min(rows * (af_get_u32le(rec + 36) + 16), 1 << 28))
                    oom |= af_buf_append(&payload, rec + rn - af_get_u32le(rec + 36), af_get_u32le(rec + 36))
                    off = payload.len
                    oom |= af_buf_append(&offsets, &off, 8)
                    if by_actor:
                        rc = mdb_cursor_get(idx_cur, &k, &v, MDB_NEXT)
                    else:
                        rc = mdb_cursor_get(log_cur, &k, &v, MDB_NEXT)
            if oom:
                raise MemoryError()
            if code == 6:
                raise CorruptRecordError("index points at a missing record", pos)
            if code == 7:
                raise CorruptRecordError(f"an index entry of actor {actor_id!r} is damaged")
            if code == 8:
                raise CorruptRecordError("record disagrees with the actor index", pos)
            if code:
                raise CorruptRecordError(rec_problem(code), pos)
            if rc != 0 and rc != MDB_NOTFOUND:
                raise_lmdb(rc, "read")
            return {
                "positions": _take_buf(&positions), "versions": _take_buf(&versions),
                "timestamps": _take_buf(&stamps), "type_codes": _take_buf(&type_codes),
                "actor_codes": _take_buf(&actor_codes), "is_bytes": _take_buf(&flags),
                "payload_offsets": _take_buf(&offsets), "payload": _take_buf(&payload),
                "event_types": _interned(&types), "actor_ids": _interned(&actors),
            }
        finally:
            if log_cur != NULL:
                mdb_cursor_close(log_cur)
            if idx_cur != NULL:
                mdb_cursor_close(idx_cur)
            if owned:
                self.env._abort(txn)
            af_buf_free(&positions); af_buf_free(&versions); af_buf_free(&stamps)
            af_buf_free(&type_codes); af_buf_free(&actor_codes); af_buf_free(&flags)
            af_buf_free(&offsets); af_buf_free(&payload)
            af_intern_free(&types)
            af_intern_free(&actors)

    # -- snapshots -------------------------------------------------------------------------

    def save_snapshot(self, str actor_id, long long version, long long timestamp_ns, bytes state, bint raw):
        cdef unsigned char key[KEY_MAX]
        cdef MDB_val k, v
        cdef MDB_txn *txn
        cdef const char *a
        cdef Py_ssize_t n, sn = len(state)
        cdef unsigned char *out
        cdef int rc
        a = PyUnicode_AsUTF8AndSize(actor_id, &n)
        k.mv_size = pack_actor_key(key, a, n, <uint64_t>version)
        k.mv_data = key
        explicit = self.env.in_explicit_txn()
        if explicit:
            self.check_visible(self.env.wtxn)
        while True:
            if explicit:
                txn = self.env.wtxn
            else:
                self.env._begin(&txn, 0)
            v.mv_size = SNAP_HDR + sn
            rc = mdb_put(txn, self.snap, &k, &v, MDB_RESERVE)
            if rc == 0:
                out = <unsigned char *>v.mv_data
                out[4] = 1
                out[5] = FLAG_RAW if raw else 0
                af_put_u16le(out + 6, 0)
                af_put_u64le(out + 8, <uint64_t>version)
                af_put_u64le(out + 16, <uint64_t>timestamp_ns)
                af_put_u32le(out + 24, <uint32_t>sn)
                memcpy(out + SNAP_HDR, PyBytes_AS_STRING(state), sn)
                af_put_u32le(out, af_crc32c(0, out + 4, SNAP_HDR + sn - 4))
                if self.env.journal is not None and self.env.journal.owner == txn:
                    self.env.journal.add_snapshot(self.namespace, key, k.mv_size, out, v.mv_size)
            if explicit:
                if rc == MDB_MAP_FULL:
                    self.env.fail_explicit_txn()
                    self.env.grow_after_full()
                    raise StoreFullError("store ran out of map space inside a transaction; rolled back")
                if rc:
                    raise_lmdb(rc, "snapshot write")
                return
            if rc:
                self.env._abort(txn)
                if rc == MDB_MAP_FULL:
                    self.env.grow_after_full()
                    continue
                raise_lmdb(rc, "snapshot write")
            try:
                self.env._commit(txn)
            except _MapFull:
                self.env.grow_after_full()
                continue
            return

    def latest_snapshot(self, str actor_id):
        """(version, timestamp_ns, state bytes, raw) of the highest snapshot, or None."""
        cdef MDB_txn *txn
        cdef MDB_cursor *cur = NULL
        cdef unsigned char key[KEY_MAX]
        cdef MDB_val k, v
        cdef int rc
        cdef const char *a
        cdef Py_ssize_t n
        cdef const unsigned char *p
        a = PyUnicode_AsUTF8AndSize(actor_id, &n)
        owned = self.read_txn(&txn)
        try:
            rc = mdb_cursor_open(txn, self.snap, &cur)
            if rc:
                raise_lmdb(rc, "cursor")
            k.mv_size = pack_actor_key(key, a, n, 0xFFFFFFFFFFFFFFFF)
            k.mv_data = key
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
            if rc == MDB_NOTFOUND:
                rc = mdb_cursor_get(cur, &k, &v, MDB_LAST)
            elif rc == 0:
                rc = mdb_cursor_get(cur, &k, &v, MDB_PREV)
            if rc == MDB_NOTFOUND:
                return None
            if rc:
                raise_lmdb(rc, "snapshot read")
            if k.mv_size != <size_t>(n + 9) or memcmp(k.mv_data, key, n + 1) != 0:
                return None
            p = <const unsigned char *>v.mv_data
            if (v.mv_size < SNAP_HDR or p[4] != 1 or v.mv_size != SNAP_HDR + af_get_u32le(p + 24)
                    or af_crc32c(0, p + 4, v.mv_size - 4) != af_get_u32le(p)
                    or p[5] & ~FLAG_RAW or af_get_u16le(p + 6) != 0 or <int64_t>af_get_u64le(p + 8) < 1
                    or af_get_u64le(p + 8) != af_get_u64be(<const unsigned char *>k.mv_data + n + 1)):
                raise CorruptRecordError(f"snapshot of actor {actor_id!r} is damaged")
            return (<long long>af_get_u64le(p + 8), <long long>af_get_u64le(p + 16),
                    PyBytes_FromStringAndSize(<const char *>p + SNAP_HDR, v.mv_size - SNAP_HDR),
                    (p[5] & FLAG_RAW) != 0)
        finally:
            if cur != NULL:
                mdb_cursor_close(cur)
            if owned:
                self.env._abort(txn)

    def stats(self):
        """Entry counts of this namespace: events, actors' index entries, snapshots."""
        cdef MDB_txn *txn
        cdef MDB_stat st
        out = {}
        owned = self.read_txn(&txn)
        try:
            for name, dbi in (("events", self.log), ("index_entries", self.idx), ("snapshots", self.snap)):
                mdb_stat(txn, dbi, &st)
                out[name] = st.ms_entries
        finally:
            if owned:
                self.env._abort(txn)
        return out


    def count_actors(self):
        """The number of distinct actors in this namespace's index (one scan of its keys,
        without the GIL)."""
        cdef MDB_txn *txn
        cdef MDB_cursor *cur = NULL
        cdef MDB_val k, v
        cdef int rc
        cdef unsigned char prev[KEY_MAX]
        cdef size_t prev_n = 0
        cdef long long actors = 0
        owned = self.read_txn(&txn)
        try:
            rc = mdb_cursor_open(txn, self.idx, &cur)
            if rc:
                raise_lmdb(rc, "cursor")
            with nogil:
                rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)
                while rc == 0:
                    # the actor prefix: its length byte and its bytes (the key less its version)
                    if k.mv_size < 9 or k.mv_size > KEY_MAX or k.mv_size - 8 != prev_n \
                            or memcmp(k.mv_data, prev, prev_n) != 0:
                        actors += 1
                        prev_n = k.mv_size - 8 if 9 <= k.mv_size <= KEY_MAX else 0
                        memcpy(prev, k.mv_data, prev_n)
                    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)
            if rc != MDB_NOTFOUND:
                raise_lmdb(rc, "index read")
            return actors
        finally:
            if cur != NULL:
                mdb_cursor_close(cur)
            if owned:
                self.env._abort(txn)


