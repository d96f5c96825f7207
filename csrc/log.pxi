# The LMDB event log: one environment per store path, one set of sub-databases per
# namespace (log, idx, snap). Included by _native.pyx.
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
    cdef object __weakref__

    def __cinit__(self):
        self.env = NULL
        self.closed = True

    def __init__(self, str path, *, size_t map_size, str durability, unsigned int max_namespaces,
                 unsigned int max_readers, bint create=True):
        cdef unsigned int flags = DURABILITY_FLAGS[durability]
        cdef bytes bpath = _os.fsencode(path)
        cdef const char *cpath = bpath
        cdef int rc
        cdef int dead = 0
        self.path = path
        self.durability = durability
        self.dbis = {}
        self.dbi_lock = _threading.Lock()
        self.failed_threads = set()
        self.max_namespaces = max_namespaces
        rc = mdb_env_create(&self.env)
        if rc:
            raise_lmdb(rc, "env create")
        mdb_env_set_mapsize(self.env, map_size)
        mdb_env_set_maxdbs(self.env, 1 + 3 * max_namespaces)
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
            if state == META_MISSING and not create:
                raise StoreNotFoundError(f"no store at {path!r}: it holds an empty LMDB environment")
            if state != META_OK:
                self._open_meta(True)
        except BaseException:
            self.close()
            raise

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
            return 0

    cdef int _commit(self, MDB_txn *txn) except -1:
        cdef int rc
        with nogil:
            rc = mdb_txn_commit(txn)
        self.active -= 1
        if rc == EIO and _file_system_full(self.path):   # LMDB's word for a write cut short
            rc = ENOSPC
        if rc:
            raise_lmdb(rc, "commit")
        return 0

    cdef void _abort(self, MDB_txn *txn) noexcept:
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
        self.closed = True
        cdef int waited = 0
        while self.active > 0 and waited < 150000:
            with nogil:
                usleep(200)
            waited += 1
        if self.active == 0 and self.env != NULL:
            mdb_env_close(self.env)
            self.env = NULL


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


cdef object _rec_project(const unsigned char *p, long long position, Projection projection, str actor_id):
    """The projection's object of a record that passed ``rec_check`` (its metadata is not
    decoded); text that is not UTF-8 raises CorruptRecordError."""
    cdef size_t typ_n = af_get_u16le(p + 6), id_n = af_get_u16le(p + 24)
    cdef size_t actor_n = af_get_u16le(p + 26), cmd_n = af_get_u16le(p + 28)
    cdef size_t meta_n = af_get_u32le(p + 32), data_n = af_get_u32le(p + 36)
    cdef const unsigned char *q = p + HDR + id_n
    try:
        projection.last_type = event_type = _text(q, typ_n, projection.last_type)
    except UnicodeDecodeError as e:
        raise CorruptRecordError(f"record text is not UTF-8 ({e.reason})", position) from None
    q += typ_n + actor_n + cmd_n + meta_n
    return projection.build(actor_id, <long long>af_get_u64le(p + 8), event_type,
                            PyBytes_FromStringAndSize(<const char *>q, data_n), position)


cdef class LogIterator:
    """Iterates the global log in chunks, each read in its own short read transaction
    (positions are immutable, so the chunks join without gaps)."""

    cdef NativeLog log
    cdef list chunk
    cdef Py_ssize_t i
    cdef long long next_position
    cdef long long remaining      # -1: no limit
    cdef bint done

    def __iter__(self):
        return self

    def __next__(self):
        cdef Py_ssize_t n
        if self.i >= len(self.chunk):
            if self.done:
                raise StopIteration
            n = READ_CHUNK if self.remaining < 0 else min(<long long>READ_CHUNK, self.remaining)
            self.chunk = self.log.read_range(self.next_position, n, False)
            self.i = 0
            if len(self.chunk) < n or self.remaining == len(self.chunk):
                self.done = True
            if not self.chunk:
                raise StopIteration
            self.next_position = (<Event>self.chunk[len(self.chunk) - 1])._position + 1
            if self.remaining > 0:
                self.remaining -= len(self.chunk)
        ev = self.chunk[self.i]
        self.i += 1
        return ev


cdef class NativeBuffer:
    """A malloc'd buffer handed to numpy through the buffer protocol, without a copy."""

    cdef af_buf buf
    cdef Py_ssize_t shape[1]
    cdef Py_ssize_t strides[1]

    def __getbuffer__(self, Py_buffer *view, int flags):
        self.shape[0] = self.buf.len
        self.strides[0] = 1
        view.buf = self.buf.data
        view.len = self.buf.len
        view.readonly = 0
        view.itemsize = 1
        view.format = NULL
        if flags & PyBUF_FORMAT:
            view.format = b"B"
        view.ndim = 1
        view.shape = self.shape
        view.strides = self.strides
        view.suboffsets = NULL
        view.internal = NULL
        view.obj = self

    def __releasebuffer__(self, Py_buffer *view):
        pass

    def __dealloc__(self):
        af_buf_free(&self.buf)


cdef object _take_buf(af_buf *b):
    """Move ``b``'s memory into a NativeBuffer (``b`` is left empty)."""
    if b.len == 0:
        return b""
    cdef NativeBuffer out = NativeBuffer.__new__(NativeBuffer)
    out.buf = b[0]
    b.data = NULL
    b.len = b.cap = 0
    return out


cdef list _interned(af_intern *t):
    cdef const uint64_t *offs = <const uint64_t *>t.offsets.data
    try:
        return [PyUnicode_DecodeUTF8(<const char *>t.bytes.data + offs[i], offs[i + 1] - offs[i], NULL)
                for i in range(t.count)]
    except UnicodeDecodeError as e:
        raise CorruptRecordError(f"record text is not UTF-8 ({e.reason})") from None
