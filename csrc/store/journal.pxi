# The journal: the durable truth of a store created with engine="journal". Included by
# _native.pyx, after env.pxi (NativeEnv calls it at each write transaction's begin and commit).
#
# Each write transaction that changes the store appends one frame to the journal with one
# write and (durability "sync" or "metasync") one fdatasync, then commits the LMDB
# environment, which is opened with MDB_NOSYNC: LMDB holds derived state (the log records,
# the per-actor index, snapshots, namespaces) and is rebuilt from the journal when a machine
# crash may have left it torn. The version check still runs inside the LMDB write
# transaction, whose lock is the writer lock across threads and processes.
#
# journal/seg-NNNNNNNNNNNN  segments, pre-allocated and zero-filled (a flush writes data,
#                           not file metadata); a frame never spans two segments
# journal/state             one 512-byte sector: clean or dirty, the end a clean LMDB
#                           covers, and the boot id of the last writer
#
# frame:  0 u32 magic "AFJ1"   4 u32 crc32c of [8:len]   8 u32 len (multiple of 8)
#        12 u32 entries       16 u64 sequence number (1, 2, ...)   24 u64 0
#        32 entries, then zero padding to len
# entry:  u8 kind, u16 namespace length, namespace, then
#         event:     u64 position, u32 length, the event record (as in the log)
#         snapshot:  u16 key length, the snapshot key, u32 length, the snapshot record
#         namespace: nothing (a namespace was created)
# state:  0 u32 magic "AFJS"   4 u32 crc32c of [8:128]   8 u32 dirty   16 u64 segment
#        24 u64 offset   32 u64 next sequence number   40 boot id (NUL-padded, 64 bytes)
#
# The end of the journal (segment, offset, next sequence number) is also kept in LMDB's
# meta (key "journal_end"), written in the transaction whose frame it follows. A frame
# found past that end belongs to a writer that died after its flush and before its LMDB
# commit: the next write transaction (or the next open) indexes it, so it is kept.
# A frame that does not check (torn, half written, zeros) ends the journal.

from posix.types cimport off_t
from posix.unistd cimport fdatasync, pread, pwrite
from posix.unistd cimport close as _c_close

cdef extern from "<fcntl.h>" nogil:
    int _c_open "open"(const char *path, int flags, int mode)
    enum: O_RDWR, O_CREAT, O_CLOEXEC, O_RDONLY, O_DSYNC

cdef extern from "<sys/file.h>" nogil:
    int flock(int fd, int operation)
    enum: LOCK_EX, LOCK_UN

cdef enum:
    J_MAGIC = 0x314A4641       # "AFJ1"
    J_STATE_MAGIC = 0x534A4641 # "AFJS"
    J_HDR = 32
    J_STATE_BYTES = 512
    J_EVENT = 1
    J_SNAPSHOT = 2
    J_NAMESPACE = 3

JOURNAL_DIR = "journal"
DEFAULT_SEGMENT_BYTES = 64 << 20
cdef const char *_END_KEY = "journal_end"
cdef size_t _END_KEY_LEN = 11


def boot_id():
    """This boot's id (Linux); AETHER_FAST_BOOT_ID overrides it (the power-loss tests)."""
    override = _os.environ.get("AETHER_FAST_BOOT_ID")
    if override:
        return override.encode()[:64]
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            return f.read().strip()[:64]
    except OSError:
        return b""


def has_journal(str path):
    """True when the store at ``path`` uses the journal engine."""
    return _os.path.exists(_os.path.join(path, JOURNAL_DIR, "state"))


cdef class Journal:
    """The segment files of one store path, as this process writes and recovers them."""

    cdef readonly str dir
    cdef readonly size_t segment_bytes
    cdef bint flush                 # each frame on disk before its commit (the fd is O_DSYNC)
    cdef int fd                     # the open segment, -1 if none
    cdef uint64_t fd_seg
    cdef uint64_t fd_size
    cdef int state_fd
    cdef bytes boot
    cdef af_buf pending             # the frame being built: header room, then entries
    cdef uint32_t count
    cdef MDB_txn *owner             # the write transaction the entries belong to
    cdef readonly uint64_t seg, off, seq   # the end, as of the owner's begin
    cdef readonly long long frames_written
    cdef bint wrote

    def __cinit__(self):
        self.fd = -1
        self.state_fd = -1
        self.pending.data = NULL
        self.pending.len = 0
        self.pending.cap = 0

    def __init__(self, str path, str durability, size_t segment_bytes, bint create):
        self.dir = _os.path.join(path, JOURNAL_DIR)
        self.segment_bytes = segment_bytes
        self.flush = durability != "nosync"
        self.boot = boot_id()
        state = _os.path.join(self.dir, "state")
        if create and not _os.path.exists(state):
            _os.makedirs(self.dir, exist_ok=True)
            tmp = state + ".tmp"
            fd = _os.open(tmp, _os.O_RDWR | _os.O_CREAT | _os.O_TRUNC, 0o644)
            try:
                _os.write(fd, self._state_bytes(True, 0, 0, 1))   # dirty: LMDB is not flushed yet
                _os.fsync(fd)
            finally:
                _os.close(fd)
            _os.rename(tmp, state)
            _fsync_dir(self.dir)
            _fsync_dir(path)
        self.state_fd = _os.open(state, _os.O_RDWR | _os.O_CLOEXEC)

    def __dealloc__(self):
        if self.fd >= 0:
            _c_close(self.fd)
        if self.state_fd >= 0:
            _c_close(self.state_fd)
        af_buf_free(&self.pending)

    cdef void close(self) noexcept:
        if self.fd >= 0:
            _c_close(self.fd)
            self.fd = -1
        if self.state_fd >= 0:
            _c_close(self.state_fd)
            self.state_fd = -1

    # -- the state sector --------------------------------------------------------------

    cdef bytes _state_bytes(self, bint dirty, uint64_t seg, uint64_t off, uint64_t seq):
        cdef unsigned char buf[J_STATE_BYTES]
        memset(buf, 0, J_STATE_BYTES)
        af_put_u32le(buf, J_STATE_MAGIC)
        af_put_u32le(buf + 8, 1 if dirty else 0)
        af_put_u64le(buf + 16, seg)
        af_put_u64le(buf + 24, off)
        af_put_u64le(buf + 32, seq)
        memcpy(buf + 40, PyBytes_AS_STRING(self.boot), len(self.boot))
        af_put_u32le(buf + 4, af_crc32c(0, buf + 8, 120))
        return PyBytes_FromStringAndSize(<const char *>buf, J_STATE_BYTES)

    def read_state(self):
        """(dirty, boot id, (segment, offset, sequence)), or None when the sector does not check."""
        data = _os.pread(self.state_fd, J_STATE_BYTES, 0)
        return _parse_state(data)

    cdef int _write_state(self, bint dirty, uint64_t seg, uint64_t off, uint64_t seq) except -1:
        data = self._state_bytes(dirty, seg, off, seq)
        cdef const char *p = data
        cdef ssize_t n
        cdef int rc = 0
        with nogil:
            n = pwrite(self.state_fd, p, J_STATE_BYTES, 0)
            if n == J_STATE_BYTES:
                rc = fdatasync(self.state_fd)
        if n != J_STATE_BYTES or rc:
            raise StorageError(f"journal state write failed in {self.dir!r}", EIO)
        return 0

    cdef int mark_dirty(self) except -1:
        """Before a frame: the state must say dirty (the LMDB file may go ahead of its last sync)."""
        cdef unsigned char head[12]
        cdef ssize_t n
        with nogil:
            n = pread(self.state_fd, head, 12, 0)
        if n == 12 and af_get_u32le(head) == J_STATE_MAGIC and af_get_u32le(head + 8) == 1:
            return 0
        return self._write_state(True, 0, 0, 0)

    cdef int mark_clean(self) except -1:
        """After an LMDB sync, holding the writer lock: LMDB covers the journal up to its end."""
        return self._write_state(False, self.seg, self.off, self.seq)

    # -- segments ------------------------------------------------------------------------

    cdef str _segment_path(self, uint64_t seg):
        return _os.path.join(self.dir, f"seg-{seg:012d}")

    cdef int _open_segment(self, uint64_t seg, size_t need) except -1:
        """Make ``seg`` the open segment; created (zero-filled, at least ``need`` bytes) when missing."""
        cdef bytes bpath
        if self.fd >= 0 and self.fd_seg == seg:
            return 0
        if self.fd >= 0:
            _c_close(self.fd)
            self.fd = -1
        path = self._segment_path(seg)
        if not _os.path.exists(path):
            _create_segment(self.dir, path, max(self.segment_bytes, need))
        bpath = _os.fsencode(path)
        # sync: O_DSYNC makes each frame's write its own flush (one call, not write + fdatasync)
        self.fd = _c_open(bpath, O_RDWR | O_CLOEXEC | (O_DSYNC if self.flush else 0), 0)
        if self.fd < 0:
            raise StorageError(f"cannot open journal segment {path!r}", EIO)
        self.fd_seg = seg
        self.fd_size = _os.fstat(self.fd).st_size
        return 0

    cdef bint _segment_exists(self, uint64_t seg):
        return _os.path.exists(self._segment_path(seg))

    # -- the frame of one write transaction ------------------------------------------------

    cdef int begin(self, MDB_txn *txn, uint64_t seg, uint64_t off, uint64_t seq) except -1:
        self.owner = txn
        self.seg = seg
        self.off = off
        self.seq = seq
        self.pending.len = 0
        self.count = 0
        return 0

    cdef int reset(self) noexcept:
        self.owner = NULL
        self.pending.len = 0
        self.count = 0
        return 0

    cdef unsigned char *_entry(self, int kind, str namespace, size_t extra) except NULL:
        """Room for one entry of ``extra`` bytes after its kind and namespace."""
        cdef Py_ssize_t nn
        cdef const char *ns = PyUnicode_AsUTF8AndSize(namespace, &nn)
        cdef unsigned char *p
        if self.pending.len == 0:
            if af_buf_reserve(&self.pending, J_HDR):
                raise MemoryError()
            memset(self.pending.data, 0, J_HDR)
            self.pending.len = J_HDR
        if af_buf_reserve(&self.pending, 3 + nn + extra):
            raise MemoryError()
        p = self.pending.data + self.pending.len
        p[0] = <unsigned char>kind
        af_put_u16le(p + 1, <uint16_t>nn)
        memcpy(p + 3, ns, nn)
        self.pending.len += 3 + nn + extra
        self.count += 1
        return p + 3 + nn

    cdef int add_event(self, str namespace, uint64_t position, const unsigned char *rec, size_t n) except -1:
        cdef unsigned char *p = self._entry(J_EVENT, namespace, 12 + n)
        af_put_u64le(p, position)
        af_put_u32le(p + 8, <uint32_t>n)
        memcpy(p + 12, rec, n)
        return 0

    cdef int add_snapshot(self, str namespace, const unsigned char *key, size_t kn,
                          const unsigned char *rec, size_t n) except -1:
        cdef unsigned char *p = self._entry(J_SNAPSHOT, namespace, 2 + kn + 4 + n)
        af_put_u16le(p, <uint16_t>kn)
        memcpy(p + 2, key, kn)
        af_put_u32le(p + 2 + kn, <uint32_t>n)
        memcpy(p + 2 + kn + 4, rec, n)
        return 0

    cdef int add_namespace(self, str namespace) except -1:
        self._entry(J_NAMESPACE, namespace, 0)
        return 0

    cdef int write_frame(self, MDB_txn *txn, MDB_dbi meta) except -1:
        """Write this transaction's frame (one write, one flush) and record the new end in
        LMDB's meta, inside ``txn``; nothing when the transaction changed nothing."""
        cdef size_t total
        cdef ssize_t n = 0
        cdef int rc = 0
        cdef uint64_t at
        cdef unsigned char *buf
        cdef MDB_val k, v
        cdef unsigned char end[24]
        if self.count == 0:
            return 0
        total = (self.pending.len + 7) & ~(<size_t>7)
        if af_buf_reserve(&self.pending, total - self.pending.len):
            raise MemoryError()
        memset(self.pending.data + self.pending.len, 0, total - self.pending.len)
        self.mark_dirty()
        self._open_segment(self.seg, total)
        if self.off + total > self.fd_size:        # a frame never spans two segments
            self.seg += 1
            self.off = 0
            self._open_segment(self.seg, total)
        buf = self.pending.data
        af_put_u32le(buf, J_MAGIC)
        af_put_u32le(buf + 8, <uint32_t>total)
        af_put_u32le(buf + 12, self.count)
        af_put_u64le(buf + 16, self.seq)
        af_put_u64le(buf + 24, 0)
        af_put_u32le(buf + 4, af_crc32c(0, buf + 8, total - 8))
        at = self.off
        af_put_u64le(end, self.seg)
        af_put_u64le(end + 8, at + total)
        af_put_u64le(end + 16, self.seq + 1)
        k.mv_data = <void *><const char *>_END_KEY
        k.mv_size = _END_KEY_LEN
        v.mv_data = end
        v.mv_size = 24
        rc = mdb_put(txn, meta, &k, &v, 0)
        if rc:
            raise_lmdb(rc, "journal end")
        with nogil:
            n = pwrite(self.fd, buf, total, <off_t>at)      # O_DSYNC when flushing: on disk now
        if n != <ssize_t>total or rc:
            self._erase(at, total)
            raise StorageError(f"journal write failed in {self.dir!r}: the commit was rolled back", EIO)
        self.off = at + total
        self.seq += 1
        self.frames_written += 1
        self.wrote = True
        return 0

    cdef void _erase(self, uint64_t at, size_t total) noexcept:
        """Zero a frame whose write or flush failed, so that no later reader takes it."""
        cdef unsigned char zeros[4096]
        cdef size_t done = 0, step
        memset(zeros, 0, 4096)
        with nogil:
            while done < total:
                step = total - done if total - done < 4096 else 4096
                if pwrite(self.fd, zeros, step, <off_t>(at + done)) <= 0:
                    break
                done += step
            fdatasync(self.fd)

    cdef int sync(self) except -1:
        """Flush every segment (the frames of the 'nosync' mode, of any process)."""
        for name in self.segments():
            fd = _os.open(_os.path.join(self.dir, name), _os.O_RDWR | _os.O_CLOEXEC)
            try:
                _os.fdatasync(fd)
            except OSError as e:
                raise StorageError(f"journal flush failed in {self.dir!r}: {e}", EIO) from e
            finally:
                _os.close(fd)
        return 0

    # -- reading frames back ---------------------------------------------------------------

    cdef object next_frame(self, uint64_t seg, uint64_t off, uint64_t seq):
        """The frame at (seg, off) with sequence ``seq`` as bytes, or at the start of the next
        segment; (frame bytes, its segment, its offset), or None at the end of the journal."""
        cdef unsigned char head[J_HDR]
        cdef ssize_t n
        cdef uint32_t total
        cdef uint64_t s, o
        for s, o in ((seg, off), (seg + 1, 0)):
            if not (self.fd >= 0 and self.fd_seg == s) and not self._segment_exists(s):
                continue
            self._open_segment(s, 0)
            if o + J_HDR > self.fd_size:
                continue
            with nogil:
                n = pread(self.fd, head, J_HDR, <off_t>o)
            if n != J_HDR or af_get_u32le(head) != J_MAGIC or af_get_u64le(head + 16) != seq:
                continue
            total = af_get_u32le(head + 8)
            if total < J_HDR or o + total > self.fd_size:
                continue
            frame = _os.pread(self.fd, total, o)
            if len(frame) != total or af_crc32c(0, <const unsigned char *>PyBytes_AS_STRING(frame) + 8,
                                                total - 8) != af_get_u32le(head + 4):
                continue
            return frame, s, o
        return None

    def segments(self):
        """The segment files, in order."""
        return sorted(f for f in _os.listdir(self.dir) if f.startswith("seg-"))


def _parse_state(bytes data):
    cdef const unsigned char *p
    if len(data) < 128:
        return None
    p = <const unsigned char *>PyBytes_AS_STRING(data)
    if af_get_u32le(p) != J_STATE_MAGIC or af_crc32c(0, p + 8, 120) != af_get_u32le(p + 4):
        return None
    boot = PyBytes_FromStringAndSize(<const char *>p + 40, 64).rstrip(b"\0")
    return (af_get_u32le(p + 8) == 1, boot, (af_get_u64le(p + 16), af_get_u64le(p + 24), af_get_u64le(p + 32)))


def journal_needs_rebuild(str path):
    """True when the store's LMDB file may be torn: its journal state is dirty (or does not
    check) and was written under another boot (a machine crash since)."""
    state_path = _os.path.join(path, JOURNAL_DIR, "state")
    with open(state_path, "rb") as f:
        state = _parse_state(f.read(J_STATE_BYTES))
    if state is None:
        return True
    dirty, boot, _ = state
    return dirty and boot != boot_id()


def lock_journal(str path):
    """An exclusive lock on the journal state (held while a process recovers the store);
    the fd to pass to unlock_journal."""
    cdef int fd = _os.open(_os.path.join(path, JOURNAL_DIR, "state"), _os.O_RDONLY | _os.O_CLOEXEC)
    with nogil:
        flock(fd, LOCK_EX)
    return fd


def unlock_journal(int fd):
    flock(fd, LOCK_UN)
    _os.close(fd)


def _create_segment(str directory, str path, size_t size):
    """A zero-filled segment file of ``size`` bytes, flushed, then named (rename + dir flush)."""
    tmp = path + ".tmp"
    fd = _os.open(tmp, _os.O_RDWR | _os.O_CREAT | _os.O_TRUNC | _os.O_CLOEXEC, 0o644)
    try:
        chunk = bytes(1 << 20)
        left = size
        while left > 0:
            left -= _os.write(fd, chunk[:min(left, len(chunk))])
        _os.fsync(fd)
    finally:
        _os.close(fd)
    _os.rename(tmp, path)
    _fsync_dir(directory)


def _fsync_dir(str directory):
    fd = _os.open(directory, _os.O_RDONLY)
    try:
        _os.fsync(fd)
    finally:
        _os.close(fd)
