# The LMDB environment of a store path: open, meta and format check, transactions, map
# growth, readers, copies, fork safety. Included by _native.pyx, before log.pxi.
#
#
# log  key: position u64 BE (1-based, gapless)          value: event record
# idx  key: u8 len | actor id | version u64 BE           value: position u64 LE
# snap key: u8 len | actor id | version u64 BE           value: snapshot record
#
# A snapshot record: u32 crc32c of [4:] | u8 format 1 | u8 flags (1 raw) | u16 0 |
#                    i64 version | i64 timestamp ns | u32 state length | state

import threading as _threading
import weakref as _weakref

from aether_fast.errors import StoreNotFoundError

cdef enum:
    META_OK = 1
    META_MISSING = 2
    META_BEHIND = 3
    KEY_MAX = 1 + 255 + 8
    SNAP_HDR = 28
    READ_CHUNK = 1024

STORE_FORMAT = b"1"
DURABILITY_FLAGS = {"sync": 0, "metasync": MDB_NOMETASYNC, "nosync": MDB_NOSYNC}
EXPECT_ANY, EXPECT_NO_STREAM, EXPECT_EXISTS, EXPECT_EXACT = 0, 1, 2, 3
_EXPECT_NAMES = ("any", "no_stream", "exists")

cdef object _all_envs = _weakref.WeakSet()


def _mark_forked():
    cdef NativeEnv e
    for env in list(_all_envs):
        e = <NativeEnv>env
        e.forked = True
        e.wtxn = NULL          # the parent's transaction: never committed nor aborted here
        e.wtxn_owner = 0
        e.failed_threads = set()


_os.register_at_fork(after_in_child=_mark_forked)


class _MapFull(Exception):
    """Internal: a write ran out of map space; the caller grows the map and retries."""


def _in_own_thread(fn, *args):
    """``fn(*args)`` run in a short-lived thread, for the read transactions of opening: LMDB
    ties a reader slot to each thread that reads until the thread ends, and opening a
    store must not take one of ``max_readers`` for the caller's thread."""
    outcome = []

    def run():
        try:
            outcome.append((True, fn(*args)))
        except BaseException as e:
            outcome.append((False, e))

    thread = _threading.Thread(target=run, name="aether-fast-open", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if ok:
        return value
    raise value


cdef int raise_lmdb(int rc, str what) except -1:
    msg = f"LMDB {what} failed: {mdb_strerror(rc).decode('utf-8', 'replace')}"
    if rc == MDB_MAP_FULL:
        raise _MapFull(msg)
    if rc == MDB_CORRUPTED or rc == MDB_INVALID or rc == MDB_VERSION_MISMATCH:
        raise IncompatibleFormatError(msg)
    if rc == MDB_DBS_FULL:
        raise StorageError(msg + " (too many namespaces: raise max_namespaces)", rc)
    if rc == MDB_READERS_FULL:
        raise StorageError(msg + " (too many concurrent readers: raise max_readers)", rc)
    if rc == ENOSPC or rc == EDQUOT:
        raise StoreFullError(msg + " (the file system is full: free space, then retry; "
                             "nothing of this write was kept)", rc)
    raise StorageError(msg, rc)


cdef bint _file_system_full(str path):
    """True when the file system holding ``path`` has less than 1 MiB left for writes."""
    try:
        st = _os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (1 << 20)


cdef inline size_t pack_actor_key(unsigned char *key, const char *actor, Py_ssize_t n,
                                  uint64_t version) noexcept nogil:
    key[0] = <unsigned char>n
    memcpy(key + 1, actor, n)
    af_put_u64be(key + 1 + n, version)
    return 1 + n + 8


cdef class NativeEnv:
    """One LMDB environment (a directory) opened in this process."""

    cdef MDB_env *env
    cdef readonly str path
    cdef readonly bint closed
    cdef readonly bint forked
    cdef readonly str durability
    cdef int active            # transactions in flight in this process (guarded by the GIL)
    cdef bint resizing
    cdef MDB_txn *wtxn         # the explicit transaction, if one is open
    cdef unsigned long wtxn_owner
    cdef set failed_threads    # threads whose explicit transaction was rolled back by an error
    cdef MDB_dbi meta
    cdef dict dbis
    cdef object dbi_lock       # mdb_dbi_open may run in one transaction at a time per process
    cdef readonly unsigned int max_namespaces
    cdef readonly unsigned int max_readers
    cdef readonly Journal journal     # None: the LMDB engine (LMDB's own flushes are the durability)
    cdef object __weakref__

    def __cinit__(self):
        self.env = NULL
        self.closed = True

    def __init__(self, str path, *, size_t map_size, str durability, unsigned int max_namespaces,
                 unsigned int max_readers, bint create=True, str engine=None,
                 size_t segment_bytes=DEFAULT_SEGMENT_BYTES):
        cdef unsigned int flags = DURABILITY_FLAGS[durability]
        cdef bint journaled = has_journal(path)
        cdef bint rebuild = False
        lock_fd = -1
        self.path = path
        self.durability = durability
        self.dbis = {}
        self.dbi_lock = _threading.RLock()
        self.failed_threads = set()
        self.max_namespaces = max_namespaces
        self.journal = None
        if engine == "journal" or journaled:
            flags = MDB_NOSYNC             # LMDB is derived state; the journal is flushed instead
        if journaled:
            lock_fd = lock_journal(path)   # one process at a time decides on a rebuild
            rebuild = journal_needs_rebuild(path)
            if rebuild:                    # a machine crash may have torn the LMDB file
                for name in ("data.mdb", "lock.mdb"):
                    if _os.path.exists(_os.path.join(path, name)):
                        _os.unlink(_os.path.join(path, name))
        try:
            self._open_env(path, flags, map_size, max_readers, create, engine, journaled, rebuild,
                           durability, segment_bytes)
        finally:
            if lock_fd >= 0:
                unlock_journal(lock_fd)

    cdef int _open_env(self, str path, unsigned int flags, size_t map_size, unsigned int max_readers,
                       bint create, str engine, bint journaled, bint rebuild, str durability,
                       size_t segment_bytes) except -1:
        cdef bytes bpath = _os.fsencode(path)
        cdef const char *cpath = bpath
        cdef int rc
        cdef int dead = 0
        rc = mdb_env_create(&self.env)
        if rc:
            raise_lmdb(rc, "env create")
        mdb_env_set_mapsize(self.env, map_size)
        mdb_env_set_maxdbs(self.env, 1 + 3 * self.max_namespaces)
        mdb_env_set_maxreaders(self.env, max_readers)
        with nogil:
            rc = mdb_env_open(self.env, cpath, flags, 0o644)
        if rc:
            mdb_env_close(self.env)
            self.env = NULL
            raise_lmdb(rc, f"open of {path!r}")
        mdb_env_get_maxreaders(self.env, &self.max_readers)   # the lock file's, if it existed
        mdb_reader_check(self.env, &dead)     # reader slots left by processes that were killed
        self.closed = False
        _all_envs.add(self)
        try:
            # an existing store is checked in a read transaction: no wait for another
            # process's long write transaction; only a new store takes the writer lock
            state = _in_own_thread(self._read_meta)
            if state == META_MISSING and not create and not rebuild:
                raise StoreNotFoundError(f"no store at {path!r}: it holds an empty LMDB environment")
            if state != META_OK:
                self._open_meta(True)
            if engine == "journal" and not journaled and state != META_MISSING:
                raise IncompatibleFormatError(
                    f"store at {path!r} uses the lmdb engine; the journal engine is chosen when a store "
                    "is created: export it and import it into a new store opened with engine='journal'")
            if journaled or engine == "journal":
                self.journal = Journal(path, durability, segment_bytes, True)
                self.recover(rebuild)
        except BaseException:
            self.close()
            raise
        return 0

    def _read_meta(self):
        return self._open_meta(False)

    cdef int _open_meta(self, bint write) except -1:
        """Open the meta sub-database and check the store format. Without ``write``, in a
        read transaction: META_MISSING when the store has no meta record yet (it must be
        written), META_BEHIND when the last commit on disk is not visible yet (a writer
        died inside its commit; the next writer lock recovers it). With ``write``, the
        record is created when missing."""
        cdef MDB_envinfo info
        cdef MDB_txn *txn
        cdef MDB_val k, v
        cdef MDB_stat st
        cdef MDB_dbi main
        cdef int rc
        self._begin(&txn, 0 if write else MDB_RDONLY)
        try:
            mdb_env_info(self.env, &info)
            if not write and info.me_last_txnid > mdb_txn_id(txn):
                self._abort(txn)
                return META_BEHIND
            rc = mdb_dbi_open(txn, NULL, 0, &main)   # the main DB lists the named DBs
            if rc == 0:
                rc = mdb_stat(txn, main, &st)
            if rc:
                raise_lmdb(rc, "stat")
            name = b"__meta__"
            k.mv_data = <void *><const char *>name
            k.mv_size = len(name)
            rc = mdb_get(txn, main, &k, &v)
            if rc == MDB_NOTFOUND and st.ms_entries:
                raise IncompatibleFormatError(f"{self.path!r} is an LMDB environment but not an aether_fast store")
            if rc == MDB_NOTFOUND and not write:
                self._abort(txn)
                return META_MISSING
            rc = mdb_dbi_open(txn, "__meta__", MDB_CREATE if write else 0, &self.meta)
            if rc:
                raise_lmdb(rc, "open meta")
            name = b"format"
            k.mv_data = <void *><const char *>name
            k.mv_size = len(name)
            rc = mdb_get(txn, self.meta, &k, &v)
            if rc == MDB_NOTFOUND and not write:
                self._abort(txn)
                return META_MISSING
            if rc == MDB_NOTFOUND:
                fmt = STORE_FORMAT
                v.mv_data = <void *><const char *>fmt
                v.mv_size = len(fmt)
                rc = mdb_put(txn, self.meta, &k, &v, 0)
                if rc:
                    raise_lmdb(rc, "write meta")
                created = str(_time_ns()).encode()
                name = b"created_ns"
                k.mv_data = <void *><const char *>name
                k.mv_size = len(name)
                v.mv_data = <void *><const char *>created
                v.mv_size = len(created)
                rc = mdb_put(txn, self.meta, &k, &v, 0)
                if rc:
                    raise_lmdb(rc, "write meta")
            elif rc:
                raise_lmdb(rc, "read meta")
            elif PyBytes_FromStringAndSize(<const char *>v.mv_data, v.mv_size) != STORE_FORMAT:
                found = PyBytes_FromStringAndSize(<const char *>v.mv_data, v.mv_size)
                raise IncompatibleFormatError(
                    f"{self.path!r} has store format {found!r}; this aether_fast reads format {STORE_FORMAT!r}")
        except BaseException:
            self._abort(txn)
            raise
        self._commit(txn)      # also a read transaction: LMDB keeps the meta handle only on commit
        return META_OK

    def __dealloc__(self):
        # A forked child must not close the parent's environment (it would clear the
        # parent's reader slots); the memory is left to the process exit.
        if self.env != NULL and not self.forked and self.active == 0:
            mdb_env_close(self.env)
        self.env = NULL

    # -- transactions ----------------------------------------------------------------

    cdef int check(self) except -1:
        if self.closed:
            raise StoreClosedError(f"store at {self.path!r} is closed")
        if self.forked:
            raise StoreForkedError(
                f"store at {self.path!r} was opened before fork(); open it again in the child process")
        return 0

    cdef int _begin(self, MDB_txn **txn, unsigned int flags) except -1:
        cdef int rc, dead = 0
        cdef int full_tries = 0
        while True:
            self.check()
            if self.resizing:
                self._wait_resize()
                continue
            self.active += 1
            with nogil:
                rc = mdb_txn_begin(self.env, NULL, flags, txn)
            if rc == MDB_MAP_RESIZED:      # another process grew the map: adopt its size
                self.active -= 1
                self._grow(0)
                continue
            if rc == MDB_READERS_FULL and full_tries < 100:
                # free the slots of dead processes, and give threads that just ended (e.g.
                # an open's helper) a moment to release theirs, then retry
                self.active -= 1
                if full_tries:
                    with nogil:
                        usleep(1000)
                full_tries += 1
                mdb_reader_check(self.env, &dead)
                continue
            if rc:
                self.active -= 1
                if rc == MDB_READERS_FULL:
                    raise StorageError(
                        f"store at {self.path!r}: all {self.max_readers} reader slots are taken (threads and "
                        "processes reading it); open it with a larger max_readers (applies when no "
                        "process has it open)", rc)
                raise_lmdb(rc, "begin transaction")
            if self.journal is not None and not (flags & MDB_RDONLY) and self.journal_begin(txn[0]):
                continue               # frames of a writer that died were indexed: begin again
            return 0

    cdef int _commit(self, MDB_txn *txn) except -1:
        cdef int rc
        cdef bint framed = self.journal is not None and self.journal.owner == txn
        if framed:
            try:
                self.journal.write_frame(txn, self.meta)
            except BaseException:
                self.journal.reset()
                self._abort(txn)
                raise
        with nogil:
            rc = mdb_txn_commit(txn)
        self.active -= 1
        if framed:
            if rc and self.journal.count:   # LMDB refused the commit: take the frame back
                self.journal._erase(self.journal.off - ((self.journal.pending.len + 7) & ~(<size_t>7)),
                                    (self.journal.pending.len + 7) & ~(<size_t>7))
            self.journal.reset()
        if rc == EIO and _file_system_full(self.path):   # LMDB's word for a write cut short
            rc = ENOSPC
        if rc:
            raise_lmdb(rc, "commit")
        return 0

    cdef void _abort(self, MDB_txn *txn) noexcept:
        if self.journal is not None and self.journal.owner == txn:
            self.journal.reset()
        mdb_txn_abort(txn)
        self.active -= 1

    cdef int _wait_resize(self) except -1:
        while self.resizing:
            with nogil:
                usleep(200)
        return 0

    cdef int _grow(self, size_t min_size) except -1:
        """Grow the map to at least ``min_size`` (0: adopt the size on disk). No transaction
        of this process may be open, so wait for those in flight."""
        cdef MDB_envinfo info
        cdef int rc, waited = 0
        cdef size_t target = 0
        if self.resizing:
            return self._wait_resize()
        self.resizing = True
        try:
            while self.active > 0:
                if waited > 150000:   # 30 s
                    raise StoreFullError(
                        f"store at {self.path!r} needs a bigger map but transactions stay open in this process")
                with nogil:
                    usleep(200)
                waited += 1
            if min_size:
                mdb_env_info(self.env, &info)
                # double, by at least 64 MiB (the file is sparse: unused map costs no disk)
                target = max(info.me_mapsize * 2, info.me_mapsize + (64 << 20))
                while target < min_size:
                    target *= 2
            rc = mdb_env_set_mapsize(self.env, target)
            if rc:
                raise_lmdb(rc, "map resize")
        finally:
            self.resizing = False
        return 0

    cdef int grow_after_full(self) except -1:
        cdef MDB_envinfo info
        mdb_env_info(self.env, &info)
        return self._grow(info.me_mapsize + 1)

    cdef inline bint in_explicit_txn(self) except -1:
        """True in the thread that holds the explicit transaction. After that transaction
        was rolled back by an error, its thread gets an error until the block ends, so
        that no later write of the block commits on its own."""
        self.check()
        cdef unsigned long me = PyThread_get_thread_ident()
        if self.wtxn != NULL and self.wtxn_owner == me:
            return True
        if self.failed_threads and me in self.failed_threads:
            raise AetherError(
                "this thread's transaction was rolled back after an error; leave the "
                "`with store.transaction()` block before writing again")
        return False

    cdef int read_txn(self, MDB_txn **txn) except -1:
        """A read transaction, or this thread's explicit write transaction (read your writes).
        Return 1 when the caller must end it with ``_abort``."""
        if self.in_explicit_txn():
            txn[0] = self.wtxn
            return 0
        self._begin(txn, MDB_RDONLY)
        return 1

    def begin_transaction(self):
        """Open this thread's explicit write transaction (see ``LmdbEventStore.transaction``)."""
        if self.in_explicit_txn():
            raise AetherError("a transaction is already open in this thread; transactions do not nest")
        cdef MDB_txn *txn
        self._begin(&txn, 0)
        self.wtxn = txn
        self.wtxn_owner = PyThread_get_thread_ident()

    def end_transaction(self, bint commit):
        """Commit or roll back this thread's explicit transaction."""
        self.check()
        cdef unsigned long me = PyThread_get_thread_ident()
        cdef MDB_txn *txn
        if self.wtxn == NULL or self.wtxn_owner != me:
            failed = me in self.failed_threads
            self.failed_threads.discard(me)
            if commit:
                raise AetherError("no transaction is open in this thread"
                                  + (" (it was rolled back after an error)" if failed else ""))
            return
        txn = self.wtxn
        self.wtxn = NULL
        self.wtxn_owner = 0
        if not commit:
            self._abort(txn)
            return
        try:
            self._commit(txn)
        except _MapFull:
            self.grow_after_full()
            raise StoreFullError(
                f"store at {self.path!r} ran out of map space committing a transaction; it was "
                "rolled back and the map has grown: run it again") from None

    cdef int fail_explicit_txn(self) except -1:
        """A write inside the explicit transaction failed midway: roll all of it back."""
        cdef MDB_txn *txn = self.wtxn
        self.wtxn = NULL
        self.failed_threads.add(self.wtxn_owner)
        self.wtxn_owner = 0
        self._abort(txn)
        return 0

    def owns_transaction(self):
        """True when the calling thread holds the explicit transaction."""
        return self.in_explicit_txn()

    def append_group(self, list requests):
        """Append independent batches, each ``(log, events, expect_kind, expected,
        max_event_bytes)``, in one write transaction and one commit (group commit). Each
        request gets its own positions or its own exception: a failed check in one leaves
        the others untouched."""
        cdef MDB_txn *txn
        cdef Rec *recs
        cdef NativeLog log
        cdef Py_ssize_t i, broken
        results = [None] * len(requests)
        live = list(range(len(requests)))
        while live:
            self._begin(&txn, 0)
            broken = -1
            try:
                for i in live:
                    log, events, kind, expected, max_bytes = requests[i]
                    recs = NULL
                    try:
                        recs = log._prepare(events, max_bytes)
                        results[i] = log._append_in(txn, recs, events, kind, expected)
                    except (VersionConflictError, CorruptRecordError, InvalidInputError, InvalidTypeError) as e:
                        results[i] = e     # raised by the checks, before this request wrote anything
                    except _MapFull:
                        raise
                    except Exception as e:
                        results[i] = e
                        broken = i
                        break
                    finally:
                        PyMem_Free(recs)
            except _MapFull:
                self._abort(txn)
                self.grow_after_full()
                continue
            except BaseException:
                self._abort(txn)
                raise
            if broken >= 0:        # a write failed midway: drop that request, redo the others
                self._abort(txn)
                live.remove(broken)
                continue
            try:
                self._commit(txn)
            except _MapFull:
                self.grow_after_full()
                continue
            except Exception as e:
                for i in live:
                    results[i] = e
            break
        return results

    # -- namespaces --------------------------------------------------------------------

    def open_log(self, str namespace, bint create=True):
        """The native log of one namespace, or None when it does not exist and ``create``
        is off. An existing namespace is opened in a read transaction (no wait for a
        writer); a new one's sub-databases are created in a write transaction."""
        self.check()
        dbis = self.dbis.get(namespace)
        if dbis is None:
            dbis = self._open_dbis(namespace, create)
            if dbis is None:
                return None
        cdef NativeLog log = NativeLog.__new__(NativeLog)
        log.env = self
        log.namespace = namespace
        log.log, log.idx, log.snap = dbis
        return log

    cdef object _open_dbis(self, str namespace, bint create):
        """The (log, idx, snap) handles of a namespace not yet opened in this process, or
        None when it is missing and ``create`` is off."""
        if self.in_explicit_txn():
            raise AetherError("open namespaces before starting a transaction")
        with self.dbi_lock:            # LMDB: one transaction at a time may call mdb_dbi_open
            self.check()
            dbis = self.dbis.get(namespace)
            if dbis is not None:           # another thread opened it meanwhile
                return dbis
            if len(self.dbis) >= self.max_namespaces:
                raise StorageError(
                    f"cannot open namespace {namespace!r}: this store was opened with max_namespaces="
                    f"{self.max_namespaces}")
            dbis = _in_own_thread(self._read_dbis, namespace)
            if dbis is None and create:
                dbis = self._try_open_dbis(namespace, True)
            if dbis is not None:
                self.dbis[namespace] = dbis
            return dbis

    def _read_dbis(self, str namespace):
        return self._try_open_dbis(namespace, False)

    cdef object _try_open_dbis(self, str namespace, bint write):
        """Open (``write``: create) a namespace's handles in one transaction, committed (also
        a read transaction: LMDB keeps the handles only on commit); None when a read finds
        it missing. The caller holds ``dbi_lock``."""
        cdef MDB_txn *txn
        cdef MDB_dbi d
        cdef int rc
        cdef list out = []
        self._begin(&txn, 0 if write else MDB_RDONLY)
        try:
            for part in ("log", "idx", "snap"):
                name = f"{namespace}/{part}".encode()
                rc = mdb_dbi_open(txn, name, MDB_CREATE if write else 0, &d)
                if rc == MDB_NOTFOUND and not write:
                    self._abort(txn)
                    return None
                if rc:
                    raise_lmdb(rc, f"open of namespace {namespace!r}")
                out.append(d)
            if write and self.journal is not None and self.journal.owner == txn:
                self.journal.add_namespace(namespace)
        except BaseException:
            self._abort(txn)
            raise
        self._commit(txn)
        return tuple(out)

    def namespaces(self):
        """Names of the namespaces stored in this environment."""
        self.check()
        cdef MDB_txn *txn
        cdef MDB_cursor *cur
        cdef MDB_val k, v
        cdef int rc
        found = []
        owned = self.read_txn(&txn)
        try:
            rc = mdb_cursor_open(txn, 1, &cur)
            if rc:
                raise_lmdb(rc, "cursor")
            rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)
            while rc == 0:
                name = PyBytes_FromStringAndSize(<const char *>k.mv_data, k.mv_size).decode("utf-8", "replace")
                if name.endswith("/log"):
                    found.append(name[:len(name) - 4])
                rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)
            mdb_cursor_close(cur)
        finally:
            if owned:
                self._abort(txn)
        return found

    # -- the journal engine (journal.pxi) -------------------------------------------------

    cdef tuple _journal_end(self, MDB_txn *txn):
        """(segment, offset, next sequence) after the last frame LMDB has indexed."""
        cdef MDB_val k, v
        k.mv_data = <void *><const char *>_END_KEY
        k.mv_size = _END_KEY_LEN
        rc = mdb_get(txn, self.meta, &k, &v)
        if rc == MDB_NOTFOUND:
            return (0, 0, 1)
        if rc:
            raise_lmdb(rc, "journal end")
        p = <const unsigned char *>v.mv_data
        return (af_get_u64le(p), af_get_u64le(p + 8), af_get_u64le(p + 16))

    cdef bint journal_begin(self, MDB_txn *txn) except -1:
        """At a write transaction's begin: index the frames past LMDB's end (a writer died
        after its flush), committing them, and return True (begin again); else take the
        journal for this transaction and return False."""
        seg, off, seq = self._journal_end(txn)
        if self.journal.next_frame(seg, off, seq) is None:
            self.journal.begin(txn, seg, off, seq)
            return False
        if not self.dbi_lock.acquire(False):  # another thread of ours opens a namespace: let it
            self._abort(txn)
            with nogil:
                usleep(200)
            return True
        try:
            self._apply_frames(txn, seg, off, seq)
        except BaseException:
            self.dbi_lock.release()
            self._abort(txn)
            raise
        self._commit(txn)                    # not the journal's transaction: no frame written
        self.dbi_lock.release()
        return True

    cdef long long _apply_frames(self, MDB_txn *txn, uint64_t seg, uint64_t off, uint64_t seq) except -1:
        """Index every frame from (seg, off, seq) on into LMDB; the count. Holds dbi_lock."""
        cdef long long frames = 0
        cdef unsigned char end[24]
        cdef MDB_val k, v
        found = self.journal.next_frame(seg, off, seq)
        while found is not None:
            frame, seg, off = found
            self._apply_frame(txn, frame)
            off += len(frame)
            seq += 1
            frames += 1
            found = self.journal.next_frame(seg, off, seq)
        af_put_u64le(end, seg)
        af_put_u64le(end + 8, off)
        af_put_u64le(end + 16, seq)
        k.mv_data = <void *><const char *>_END_KEY
        k.mv_size = _END_KEY_LEN
        v.mv_data = end
        v.mv_size = 24
        rc = mdb_put(txn, self.meta, &k, &v, 0)
        if rc:
            raise_lmdb(rc, "journal end")
        return frames

    cdef tuple _recovery_dbis(self, MDB_txn *txn, str namespace):
        cdef MDB_dbi d
        out = []
        for part in ("log", "idx", "snap"):
            rc = mdb_dbi_open(txn, f"{namespace}/{part}".encode(), MDB_CREATE, &d)
            if rc:
                raise_lmdb(rc, f"open of namespace {namespace!r}")
            out.append(d)
        return tuple(out)

    cdef int _apply_frame(self, MDB_txn *txn, bytes frame) except -1:
        cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(frame)
        cdef const unsigned char *rec
        cdef size_t at = J_HDR, n, nn, kn
        cdef uint32_t i, count = af_get_u32le(p + 12)
        cdef unsigned char key[KEY_MAX]
        cdef unsigned char pk[8]
        cdef uint64_t pos, last
        cdef MDB_val k, v
        cdef MDB_cursor *cur
        cdef MDB_dbi log, idx, snap
        cdef int rc, kind
        for i in range(count):
            kind = p[at]
            nn = af_get_u16le(p + at + 1)
            namespace = PyUnicode_DecodeUTF8(<const char *>p + at + 3, nn, NULL)
            at += 3 + nn
            log, idx, snap = self._recovery_dbis(txn, namespace)
            if kind == J_EVENT:
                pos = af_get_u64le(p + at)
                n = af_get_u32le(p + at + 8)
                rec = p + at + 12
                at += 12 + n
                rc = mdb_cursor_open(txn, log, &cur)
                if rc:
                    raise_lmdb(rc, "cursor")
                rc = mdb_cursor_get(cur, &k, &v, MDB_LAST)
                last = af_get_u64be(<const unsigned char *>k.mv_data) if rc == 0 else 0
                mdb_cursor_close(cur)
                if pos <= last:
                    continue                 # indexed already
                af_put_u64be(pk, pos)
                k.mv_data = pk
                k.mv_size = 8
                v.mv_data = <void *>rec
                v.mv_size = n
                rc = mdb_put(txn, log, &k, &v, MDB_APPEND)
                if rc:
                    raise_lmdb(rc, "journal recovery")
                k.mv_size = pack_actor_key(
                    key, <const char *>rec + 40 + af_get_u16le(rec + 24) + af_get_u16le(rec + 6),
                    af_get_u16le(rec + 26), <uint64_t>af_get_u64le(rec + 8))
                k.mv_data = key
                af_put_u64le(pk, pos)
                v.mv_data = pk
                v.mv_size = 8
                rc = mdb_put(txn, idx, &k, &v, 0)
            elif kind == J_SNAPSHOT:
                kn = af_get_u16le(p + at)
                k.mv_data = <void *>(p + at + 2)
                k.mv_size = kn
                n = af_get_u32le(p + at + 2 + kn)
                v.mv_data = <void *>(p + at + 2 + kn + 4)
                v.mv_size = n
                at += 2 + kn + 4 + n
                rc = mdb_put(txn, snap, &k, &v, 0)
            else:
                rc = 0
            if rc:
                raise_lmdb(rc, "journal recovery")
        return 0

    cdef int recover(self, bint rebuild) except -1:
        """At open: index the frames past LMDB's end (all of them after a rebuild); after a
        rebuild, flush LMDB and mark the journal clean."""
        cdef MDB_txn *txn
        cdef int rc
        with self.dbi_lock:
            self._begin(&txn, MDB_RDONLY)
            try:
                seg, off, seq = self._journal_end(txn)
            finally:
                self._abort(txn)
            if self.journal.next_frame(seg, off, seq) is not None:
                self._begin(&txn, 0)          # indexes them (journal_begin), then begins again
                self._abort(txn)
        if rebuild:
            self.checkpoint()
        return 0

    def checkpoint(self):
        """Flush the LMDB file and mark the journal clean up to its end, holding the writer
        lock (no commit between the flush and the mark)."""
        cdef MDB_txn *txn
        cdef int rc
        self._begin(&txn, 0)
        try:
            self.journal.sync()
            with nogil:
                rc = mdb_env_sync(self.env, 1)
            if rc:
                raise_lmdb(rc, "sync")
            self.journal.mark_clean()
        finally:
            self._abort(txn)
        self.journal.wrote = False

    # -- lifecycle and info --------------------------------------------------------------

    def info(self):
        """Map size and usage, reader slots, last transaction id."""
        self.check()
        cdef MDB_envinfo info
        cdef MDB_stat st
        mdb_env_info(self.env, &info)
        mdb_env_stat(self.env, &st)
        return {"map_size": info.me_mapsize, "used_bytes": (info.me_last_pgno + 1) * st.ms_psize,
                "max_readers": info.me_maxreaders, "readers": info.me_numreaders,
                "last_txn_id": info.me_last_txnid, "page_size": st.ms_psize}

    def sync(self):
        """Flush to disk (useful after writes in the 'metasync' and 'nosync' modes)."""
        self.check()
        cdef int rc
        if self.journal is not None:
            self.checkpoint()
            return
        with nogil:
            rc = mdb_env_sync(self.env, 1)
        if rc:
            raise_lmdb(rc, "sync")

    def copy_to(self, str dest, bint compact):
        """Write a consistent copy of the whole environment into the existing empty
        directory ``dest`` (LMDB's hot copy: it reads one snapshot while writers go on).
        ``compact`` leaves out free pages and renumbers the rest (slower, smaller copy).
        The GIL is released during the copy."""
        self.check()
        if self.wtxn != NULL and self.wtxn_owner == PyThread_get_thread_ident():
            raise AetherError("cannot copy the store from inside its own transaction; copy after it ends")
        cdef bytes bdest = _os.fsencode(dest)
        cdef const char *cdest = bdest
        cdef unsigned int flags = MDB_CP_COMPACT if compact else 0
        cdef int rc
        self.active += 1           # close() waits for the copy to end
        try:
            with nogil:
                rc = mdb_env_copy2(self.env, cdest, flags)
        finally:
            self.active -= 1
        if rc:
            raise_lmdb(rc, f"copy to {dest!r}")

    def close(self):
        """Close the environment; open transactions of this thread are rolled back."""
        if self.closed:
            return
        if self.forked:
            self.closed = True
            return
        if self.wtxn != NULL:
            if self.wtxn_owner != PyThread_get_thread_ident():
                raise AetherError("cannot close the store while another thread holds a transaction")
            self.fail_explicit_txn()
        if self.journal is not None and self.journal.wrote and self.active == 0:
            try:
                self.checkpoint()     # a clean state: no rebuild after the next reboot
            except AetherError:
                pass                  # the journal stays the truth; the next open recovers
        self.closed = True
        cdef int waited = 0
        while self.active > 0 and waited < 150000:
            with nogil:
                usleep(200)
            waited += 1
        if self.active == 0 and self.env != NULL:
            mdb_env_close(self.env)
            self.env = NULL
        if self.journal is not None:
            self.journal.close()


