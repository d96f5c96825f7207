# Consistent hash ring (the fast path behind aether_fast/ring.py). Included by _native.pyx.
#
# Hash: MurmurHash3 x86_32 (murmur3.h), seed 0, of the key's UTF-8 bytes (bytes keys as they
# are). Virtual node i (0-based) of node N sits at murmur3(UTF-8 of f"{N}-{i}"), the scheme
# of uhashring with an mmh3 hash function. A key belongs to the first virtual node
# clockwise strictly after its hash, wrapping past 2**32 - 1 to the first point (bisect_right,
# as uhashring). Where virtual nodes of two nodes share a point, the node whose id is smaller
# in UTF-8 byte order holds it, so the answer never depends on the order nodes were added.
#
# Lookup: the sorted points are split into 2**bits buckets by their top bits (about two
# buckets per point); a bucket index gives the first candidate point, then a fixed number
# of branch-free steps (the most points of any bucket, a handful) reach the owner, with no
# binary search and no mispredicted branch. The table is an immutable object replaced on
# every change (with the GIL held), so a lookup that released the GIL keeps a consistent
# ring even while another thread adds or removes a node.

from cpython.bytes cimport PyBytes_Check
from cpython.exc cimport PyErr_Clear
from cpython.list cimport PyList_CheckExact, PyList_GET_SIZE
from cpython.object cimport PyObject
from cpython.sequence cimport PySequence_Fast_ITEMS
from cpython.tuple cimport PyTuple_GET_ITEM
from cpython.unicode cimport PyUnicode_Check
from libc.stddef cimport ptrdiff_t
from libc.stdint cimport int32_t
from libc.stdlib cimport free, malloc, qsort

from aether_fast.errors import EmptyRingError

cdef extern from *:
    void __builtin_prefetch(const void *p) nogil

cdef extern from "Python.h":
    # Without Cython's exception check: NULL (a lone surrogate) becomes InvalidInputError.
    const char *_utf8_or_null "PyUnicode_AsUTF8AndSize"(object s, Py_ssize_t *size)
    # The batch gather works on borrowed pointers, without Cython's reference counting.
    bint _is_exact_str "PyUnicode_CheckExact"(PyObject *o)
    bint _is_compact_ascii "PyUnicode_IS_COMPACT_ASCII"(PyObject *o)
    void *_str_data "PyUnicode_DATA"(PyObject *o)
    Py_ssize_t _str_len "PyUnicode_GET_LENGTH"(PyObject *o)
    void _incref "Py_INCREF"(PyObject *o)
    void _decref "Py_DECREF"(PyObject *o)


cdef enum:
    _RING_CHUNK = 256        # keys gathered with the GIL (their objects stay in L1), then hashed without it
    _RING_MAX_BITS = 20
    _RING_BUCKETS_PER_POINT = 2
    _RING_PREFETCH = 16      # keys ahead whose object is fetched into the cache during the gather


cdef struct _Table:
    Py_ssize_t n             # points
    uint32_t *points         # sorted ascending
    int32_t *owners          # node index (into the table's names) of each point
    uint32_t *start          # per bucket: index of the first point >= the bucket's lowest hash
    int shift                # 32 - bits
    int steps                # the most points in one bucket


cdef inline int32_t _ring_find(const _Table *t, uint32_t h) noexcept nogil:
    """The owner of hash ``h``: the first point strictly greater than ``h``, wrapping.

    At most ``steps`` points of h's bucket are <= h, so ``steps`` branch-free steps from the
    bucket's first point reach the answer; past the last point, ``steps + 1`` padding
    points (0xFFFFFFFF, owned by the first point's node) make the wrap-around."""
    cdef Py_ssize_t i = t.start[h >> t.shift]
    cdef int s
    for s in range(t.steps):
        i += t.points[i] <= h
    return t.owners[i]


cdef int _cmp_u64(const void *a, const void *b) noexcept nogil:
    cdef uint64_t x = (<const uint64_t *>a)[0]
    cdef uint64_t y = (<const uint64_t *>b)[0]
    return (x > y) - (x < y)


@cython.final
cdef class _RingTable:
    """One immutable state of a ring: its node ids and its sorted points."""

    cdef _Table t
    cdef tuple names

    def __dealloc__(self):
        free(self.t.points)
        free(self.t.owners)
        free(self.t.start)


cdef _RingTable _build_table(list names, list points):
    """The table of nodes ``names`` (insertion order) with their packed uint32 points."""
    cdef _RingTable tab = _RingTable.__new__(_RingTable)
    tab.names = tuple(names)
    cdef Py_ssize_t k = len(names), total = 0, i, j, m, pos = 0
    for i in range(k):
        total += PyBytes_GET_SIZE(points[i]) // 4
    if total == 0:
        return tab
    order = sorted(range(k), key=[(<str>name).encode() for name in names].__getitem__)
    cdef list rank_of = [0] * k
    for i in range(k):
        rank_of[order[i]] = i
    cdef uint64_t *entries = <uint64_t *>malloc(total * sizeof(uint64_t))
    cdef int32_t *index_of_rank = <int32_t *>malloc(k * sizeof(int32_t))
    cdef int bits = 4
    while bits < _RING_MAX_BITS and (<Py_ssize_t>1 << bits) < _RING_BUCKETS_PER_POINT * total:
        bits += 1
    cdef Py_ssize_t buckets = <Py_ssize_t>1 << bits, padded = 2 * total + 1     # steps <= total
    tab.t.points = <uint32_t *>malloc(padded * sizeof(uint32_t))
    tab.t.owners = <int32_t *>malloc(padded * sizeof(int32_t))
    tab.t.start = <uint32_t *>malloc(buckets * sizeof(uint32_t))
    if entries == NULL or index_of_rank == NULL or tab.t.points == NULL or tab.t.owners == NULL \
            or tab.t.start == NULL:
        free(entries)
        free(index_of_rank)
        raise MemoryError()
    cdef const uint32_t *p
    cdef uint64_t rank
    cdef uint64_t lo
    for i in range(k):
        index_of_rank[<Py_ssize_t>rank_of[i]] = <int32_t>i
        p = <const uint32_t *>PyBytes_AS_STRING(points[i])
        m = PyBytes_GET_SIZE(points[i]) // 4
        rank = <uint64_t>rank_of[i]
        for j in range(m):
            entries[pos] = (<uint64_t>p[j] << 32) | rank
            pos += 1
    # The GIL stays held: a change of the ring is atomic for other threads.
    qsort(entries, total, sizeof(uint64_t), _cmp_u64)
    for i in range(total):
        tab.t.points[i] = <uint32_t>(entries[i] >> 32)
        tab.t.owners[i] = index_of_rank[entries[i] & 0xFFFFFFFFULL]
    tab.t.n = total
    tab.t.shift = 32 - bits
    tab.t.steps = 0
    j = 0
    for i in range(buckets):
        lo = <uint64_t>i << tab.t.shift
        m = j
        while j < total and tab.t.points[j] < lo:
            j += 1
        tab.t.start[i] = <uint32_t>j
        if i > 0 and j - m > tab.t.steps:
            tab.t.steps = <int>(j - m)
    if total - j > tab.t.steps:
        tab.t.steps = <int>(total - j)
    for i in range(total, total + tab.t.steps + 1):
        tab.t.points[i] = 0xFFFFFFFF
        tab.t.owners[i] = tab.t.owners[0]
    free(entries)
    free(index_of_rank)
    return tab


cdef const char *_key_utf8(object key, Py_ssize_t *size, Py_ssize_t index) except NULL:
    """The bytes of a ring key (a str as UTF-8, bytes as they are); ``index`` >= 0 names
    the key's place in a batch in the error message."""
    cdef const char *p
    if _is_exact_str(<PyObject *>key) and _is_compact_ascii(<PyObject *>key):    # its bytes are its UTF-8
        size[0] = _str_len(<PyObject *>key)
        return <const char *>_str_data(<PyObject *>key)
    if PyUnicode_Check(key):
        p = _utf8_or_null(key, size)
        if p != NULL:
            return p
        PyErr_Clear()
        where = "" if index < 0 else f" (keys[{index}])"
        raise InvalidInputError(f"ring key{where} {key!r:.80} is not valid text: it has a lone surrogate, "
                                "which UTF-8 cannot encode")
    if PyBytes_Check(key):
        size[0] = PyBytes_GET_SIZE(key)
        return PyBytes_AS_STRING(key)
    where = "ring key" if index < 0 else f"keys[{index}]"
    raise InvalidTypeError(f"{where} must be str or bytes, got {type(key).__name__}: {key!r:.80}")


cdef void _hash_chunk(const char **ptrs, const Py_ssize_t *lens, Py_ssize_t m, uint32_t seed,
                      const _Table *t, uint32_t *out) noexcept nogil:
    """out[j] = murmur3(key j, seed), or the owner index of key j when ``t`` is a table."""
    cdef Py_ssize_t j
    if t == NULL:
        for j in range(m):
            out[j] = af_murmur3_32(ptrs[j], <size_t>lens[j], seed)
    else:
        for j in range(m):
            out[j] = <uint32_t>_ring_find(t, af_murmur3_32(ptrs[j], <size_t>lens[j], 0))


cdef int _fill_seq(object seq, uint32_t seed, const _Table *t, uint32_t[::1] out) except -1:
    """``_hash_chunk`` over a list or tuple of str/bytes keys, chunk by chunk: the keys of a
    chunk are gathered (and held) with the GIL, then hashed without it."""
    cdef bint is_list = PyList_CheckExact(seq)
    cdef Py_ssize_t n = out.shape[0], start = 0, m, j, held
    cdef const char *ptrs[_RING_CHUNK]
    cdef Py_ssize_t lens[_RING_CHUNK]
    cdef PyObject *objs[_RING_CHUNK]
    cdef PyObject *obj
    cdef PyObject **items
    while start < n:
        if is_list and PyList_GET_SIZE(seq) != n:
            raise RuntimeError("the list of keys changed size during the lookup")
        m = min(<Py_ssize_t>_RING_CHUNK, n - start)
        held = 0
        items = PySequence_Fast_ITEMS(seq) + start      # re-read: a list may have moved its array
        try:
            for j in range(m):
                if j + _RING_PREFETCH < m:
                    __builtin_prefetch(items[j + _RING_PREFETCH])
                obj = items[j]
                if _is_exact_str(obj) and _is_compact_ascii(obj):     # as in _key_utf8, inlined
                    ptrs[j] = <const char *>_str_data(obj)
                    lens[j] = _str_len(obj)
                else:
                    ptrs[j] = _key_utf8(<object>obj, &lens[j], start + j)
                _incref(obj)
                objs[j] = obj
                held += 1
            with nogil:
                _hash_chunk(ptrs, lens, m, seed, t, &out[start])
        finally:
            for j in range(held):
                _decref(objs[j])
        start += m
    return 0


cdef Py_ssize_t _fill_fixed(const unsigned char *data, Py_ssize_t n, Py_ssize_t itemsize, bint ucs4,
                            unsigned char *scratch, uint32_t seed, const _Table *t,
                            uint32_t *out) noexcept nogil:
    """``_hash_chunk`` over a numpy 'S' (bytes) or 'U' (UCS-4) array's items, without their
    trailing NULs (numpy's own reading of them); the index of an item that UTF-8 cannot
    encode, else -1."""
    cdef Py_ssize_t i, size, chars
    cdef ptrdiff_t utf8
    cdef const unsigned char *item
    cdef const uint32_t *codes
    cdef uint32_t h
    for i in range(n):
        item = data + i * itemsize
        if ucs4:
            codes = <const uint32_t *>item
            chars = itemsize // 4
            while chars > 0 and codes[chars - 1] == 0:
                chars -= 1
            utf8 = af_ucs4_to_utf8(codes, <size_t>chars, scratch)
            if utf8 < 0:
                return i
            h = af_murmur3_32(scratch, <size_t>utf8, seed if t == NULL else 0)
        else:
            size = itemsize
            while size > 0 and item[size - 1] == 0:
                size -= 1
            h = af_murmur3_32(item, <size_t>size, seed if t == NULL else 0)
        out[i] = h if t == NULL else <uint32_t>_ring_find(t, h)
    return -1


cdef int _fill_array(const unsigned char[::1] raw, Py_ssize_t itemsize, bint ucs4, uint32_t seed,
                     const _Table *t, uint32_t[::1] out) except -1:
    cdef Py_ssize_t n = out.shape[0], bad
    if n == 0:
        return 0
    if raw.shape[0] != n * itemsize:
        raise InvalidInputError(f"{raw.shape[0]} bytes of key data for {n} keys of {itemsize} bytes")
    cdef unsigned char *scratch = <unsigned char *>malloc(itemsize + 1)
    if scratch == NULL:
        raise MemoryError()
    with nogil:
        bad = _fill_fixed(&raw[0], n, itemsize, ucs4, scratch, seed, t, &out[0])
    free(scratch)
    if bad >= 0:
        raise InvalidInputError(f"keys[{bad}] is not valid text: it has a lone surrogate or a code point "
                                "above U+10FFFF, which UTF-8 cannot encode")
    return 0


cdef uint32_t _seed(object seed) except? 0:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidTypeError(f"seed must be an int, got {type(seed).__name__}: {seed!r:.80}")
    if not 0 <= seed <= 0xFFFFFFFF:
        raise InvalidInputError(f"seed must be in 0..2**32-1, got {seed}")
    return <uint32_t>seed


def murmur3_32(key, seed=0):
    """MurmurHash3 x86_32 of ``key`` (a str as UTF-8, or bytes) as an unsigned int; the same
    as ``mmh3.hash(key, seed, signed=False)``."""
    cdef Py_ssize_t n
    cdef const char *p = _key_utf8(key, &n, -1)
    return af_murmur3_32(p, <size_t>n, _seed(seed))


def _murmur3_seq(seq, seed, uint32_t[::1] out):
    """Fills ``out`` with murmur3_32 of each key of a list or tuple."""
    _fill_seq(seq, _seed(seed), NULL, out)


def _murmur3_array(const unsigned char[::1] raw, Py_ssize_t itemsize, bint ucs4, seed, uint32_t[::1] out):
    """Fills ``out`` with murmur3_32 of each item of a numpy 'S' or 'U' array's raw bytes."""
    _fill_array(raw, itemsize, ucs4, _seed(seed), NULL, out)


cdef class HashRing:
    """The native consistent hash ring; aether_fast.ring.HashRing adds the checked API.

    Nodes keep the order they were added in (``nodes``); owner indices point into it.
    """

    cdef list _names            # node ids, in the order they were added
    cdef list _points           # per node: its points, packed native uint32
    cdef list _weights          # per node: its weight
    cdef dict _index            # node id -> position in _names
    cdef _RingTable _table

    def __cinit__(self, *args, **kwargs):
        self._names = []
        self._points = []
        self._weights = []
        self._index = {}
        self._table = _build_table([], [])

    def _insert(self, str node_id, Py_ssize_t count, double weight):
        """Adds a node with ``count`` virtual nodes (its id must be new)."""
        if node_id in self._index:
            raise InvalidInputError(f"node {node_id!r} is already on the ring")
        cdef bytes prefix = (node_id + "-").encode()
        cdef bytearray packed = bytearray(4 * count)
        cdef uint32_t *p = <uint32_t *><char *>packed
        cdef Py_ssize_t i
        cdef bytes key
        for i in range(count):
            key = prefix + str(i).encode()
            p[i] = af_murmur3_32(PyBytes_AS_STRING(key), <size_t>PyBytes_GET_SIZE(key), 0)
        names = self._names + [node_id]
        points = self._points + [bytes(packed)]
        table = _build_table(names, points)
        self._names, self._points, self._table = names, points, table
        self._weights.append(weight)
        self._index[node_id] = len(names) - 1

    def _delete(self, str node_id):
        """Removes a node (it must be on the ring)."""
        cdef Py_ssize_t at = self._index[node_id]
        names = self._names[:at] + self._names[at + 1:]
        points = self._points[:at] + self._points[at + 1:]
        table = _build_table(names, points)
        self._names, self._points, self._table = names, points, table
        del self._weights[at]
        self._index = {name: i for i, name in enumerate(names)}

    def _node_info(self, str node_id):
        """(weight, virtual node count) of a node on the ring."""
        cdef Py_ssize_t at = self._index[node_id]
        return self._weights[at], PyBytes_GET_SIZE(self._points[at]) // 4

    @property
    def nodes(self):
        """The node ids, in the order they were added (owner indices point into it)."""
        return self._table.names

    def __len__(self):
        return len(self._names)

    def __contains__(self, node_id):
        return node_id in self._index

    def owner(self, key):
        """The node id that owns ``key`` (str or bytes)."""
        cdef Py_ssize_t n
        cdef const char *p = _key_utf8(key, &n, -1)
        cdef _RingTable tab = self._table
        if tab.t.n == 0:
            raise EmptyRingError(f"the ring has no node to own {key!r:.80}")
        return <object>PyTuple_GET_ITEM(tab.names, _ring_find(&tab.t, af_murmur3_32(p, <size_t>n, 0)))

    def owner_index(self, key):
        """The position in ``nodes`` of the node that owns ``key`` (str or bytes)."""
        cdef Py_ssize_t n
        cdef const char *p = _key_utf8(key, &n, -1)
        cdef _RingTable tab = self._table
        if tab.t.n == 0:
            raise EmptyRingError(f"the ring has no node to own {key!r:.80}")
        return _ring_find(&tab.t, af_murmur3_32(p, <size_t>n, 0))

    cdef _RingTable _nonempty(self):
        cdef _RingTable tab = self._table
        if tab.t.n == 0:
            raise EmptyRingError("the ring has no node to own the keys")
        return tab

    def _owners_seq(self, seq, uint32_t[::1] out):
        """Fills ``out`` (int32 viewed as uint32) with the owner index of each key of a list
        or tuple; the node ids those indices point into."""
        cdef _RingTable tab = self._nonempty()
        _fill_seq(seq, 0, &tab.t, out)
        return tab.names

    def _owners_array(self, const unsigned char[::1] raw, Py_ssize_t itemsize, bint ucs4, uint32_t[::1] out):
        """As ``_owners_seq`` for the raw bytes of a numpy 'S' or 'U' array."""
        cdef _RingTable tab = self._nonempty()
        _fill_array(raw, itemsize, ucs4, 0, &tab.t, out)
        return tab.names

    def _table_arrays(self):
        """(points, owner indices, node ids) of the current table: packed uint32, packed int32."""
        cdef _RingTable tab = self._table
        if tab.t.n == 0:
            return b"", b"", tab.names
        return (PyBytes_FromStringAndSize(<const char *>tab.t.points, tab.t.n * 4),
                PyBytes_FromStringAndSize(<const char *>tab.t.owners, tab.t.n * 4), tab.names)
