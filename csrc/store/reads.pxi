# What the log's reads hand out: projected objects, the chunked log iterator, and
# buffers of native memory (NativeBuffer). Included by _native.pyx, after log.pxi.

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
