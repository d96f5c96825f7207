# NATS-style pattern matching (used by the bus in bus.pxi). Included by _native.pyx.
#
# PatternIndex holds compiled patterns in a token trie whose edges live in one
# open-addressing hash table keyed by (parent node, token hash + bytes), plus a dict of the
# patterns (pattern -> targets) that alone answers while no pattern has a wildcard.
# match(subject) is one METH_O call: the subject (an ASCII str's own buffer) is tokenized and
# hashed once, 8 bytes at a time, then the whole trie is walked depth-first ('*' and '>'
# branches included) with no Python object made; only then is the result made: the matched
# target lists, as node codes, are looked up among the interned result tuples (one per
# matched set, dropped by any change of the index), else one tuple is built and interned.
# Nothing is cached by subject: every call walks the trie.

from cpython.dict cimport PyDict_GetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.mem cimport PyMem_Realloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.stdint cimport int32_t
from libc.string cimport memchr, memset

from aether_fast.errors import InvalidNamespaceError

MAX_PATTERN_BYTES = 255
cdef enum:
    _MAX_PATTERN = 255                   # bytes; so at most 128 tokens
    _MAX_DEPTH = 128
    _STACK = 2 * _MAX_DEPTH + 4
    _HITS = 64                           # matched lists a walk gathers on the stack
    _RESULTS = 256                       # slots of interned results (2-way: pairs of slots)
    _RESULT_KEY = 8                      # matched lists of the largest interned result


# -- single patterns ----------------------------------------------------------------------

cdef extern from *:
    """
    #include <string.h>
    /* 8 bytes as a little-endian word, in one load (byte order fixed on big-endian) */
    static inline uint64_t af_match_load64(const char *p) {
        uint64_t w;
        memcpy(&w, p, 8);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        w = __builtin_bswap64(w);
    #endif
        return w;
    }
    """
    uint64_t _load64 "af_match_load64"(const char *p) nogil
    int _ctz64 "__builtin_ctzll"(unsigned long long x) nogil


cdef inline uint64_t _word_at(const char *base, Py_ssize_t total, Py_ssize_t pos) noexcept nogil:
    """The 8 bytes of ``base[:total]`` from ``pos`` (< total) as a little-endian word, zeros
    past ``total``; never reads outside ``base[:total]``, and without a loop when total >= 8."""
    cdef uint64_t w
    cdef Py_ssize_t i
    if pos + 8 <= total:
        return _load64(base + pos)
    if total >= 8:   # the last 8 bytes, shifted down to start at pos
        return _load64(base + total - 8) >> (8 * (pos + 8 - total))
    w = 0
    i = total
    while i > pos:
        i -= 1
        w = (w << 8) | <unsigned char>base[i]
    return w


cdef inline uint64_t _tok_word(const char *base, Py_ssize_t total, Py_ssize_t pos, Py_ssize_t n) noexcept nogil:
    """The first (up to 8) bytes of the token ``base[pos:pos + n]``, as a little-endian word."""
    if n == 0:
        return 0
    if n >= 8:
        return _word_at(base, total, pos)
    return _word_at(base, total, pos) & (0xFFFFFFFFFFFFFFFFULL >> (64 - 8 * n))


cdef inline uint64_t _tok_hash(const char *base, Py_ssize_t total, Py_ssize_t pos, Py_ssize_t n) noexcept nogil:
    """A fast 64-bit hash of the token ``base[pos:pos + n]`` (inside ``base[:total]``), 8
    bytes at a time, well mixed in every bit."""
    cdef uint64_t h = 0x9E3779B97F4A7C15ULL ^ <uint64_t>n
    while n >= 8:
        h = (h ^ _load64(base + pos)) * 0xFF51AFD7ED558CCDULL
        h ^= h >> 32
        pos += 8
        n -= 8
    if n:
        h ^= _tok_word(base, total, pos, n)
    h *= 0xC4CEB9FE1A85EC53ULL
    h ^= h >> 29
    h *= 0xBF58476D1CE4E5B9ULL
    h ^= h >> 32
    return h


cdef inline bint _same(const char *a, const char *b, Py_ssize_t n) noexcept nogil:
    """Whether n bytes are equal (inline: tokens are short, a libc call costs more)."""
    cdef uint64_t x, y
    while n >= 8:
        memcpy(&x, a, 8)
        memcpy(&y, b, 8)
        if x != y:
            return False
        a += 8
        b += 8
        n -= 8
    while n:
        n -= 1
        if a[n] != b[n]:
            return False
    return True


cdef inline Py_ssize_t _token_end(const char *s, Py_ssize_t pos, Py_ssize_t n) noexcept nogil:
    """The index of the next '.' at or after ``pos``, or ``n``."""
    while pos < n and s[pos] != 46:
        pos += 1
    return pos


cdef inline Py_ssize_t _dot_end(const char *s, Py_ssize_t pos, Py_ssize_t n) noexcept nogil:
    """``_token_end``, 8 bytes at a time (the bytes past ``n`` read as zeros, not dots)."""
    cdef uint64_t x, m
    while pos < n:
        x = _word_at(s, n, pos) ^ 0x2E2E2E2E2E2E2E2EULL
        m = (x - 0x0101010101010101ULL) & ~x & 0x8080808080808080ULL   # the first 0 byte is exact
        if m:
            return pos + (_ctz64(m) >> 3)
        pos += 8
    return n


cdef inline uint64_t _salt(int32_t node) noexcept nogil:
    """A random-looking 64-bit value per trie node (splitmix64), xor-ed into token hashes."""
    cdef uint64_t z = (<uint64_t>node + 1) * 0x9E3779B97F4A7C15ULL
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline bint _is_space(unsigned char c) noexcept nogil:
    return c == 32 or (9 <= c <= 13)


cdef const char *_utf8(object text, Py_ssize_t *n, str what) except NULL:
    if type(text) is not str:
        raise InvalidTypeError(f"{what} must be a str, got {type(text).__name__}: {_short_repr(text)}")
    return PyUnicode_AsUTF8AndSize(text, n)


cdef int _check_pattern(object pattern, const char *p, Py_ssize_t n) except -1:
    """NATS token rules: non-empty tokens, '*' and '>' whole tokens, '>' last, no whitespace."""
    cdef Py_ssize_t i, start = 0, tok = 1
    cdef unsigned char c
    if n == 0:
        raise InvalidNamespaceError("pattern must not be empty")
    if n > _MAX_PATTERN:
        raise InvalidNamespaceError(
            f"pattern is {n} bytes in UTF-8, over the limit of {_MAX_PATTERN}: {_short_repr(pattern)}")
    for i in range(n + 1):
        c = <unsigned char>p[i] if i < n else 46
        if c == 46:   # '.'
            if i == start:
                raise InvalidNamespaceError(
                    f"invalid pattern {pattern!r}: token {tok} is empty (no leading, trailing or double dots)")
            if i - start > 1 or (p[start] != 42 and p[start] != 62):
                if memchr(p + start, 42, i - start) != NULL or memchr(p + start, 62, i - start) != NULL:
                    raise InvalidNamespaceError(
                        f"invalid pattern {pattern!r}: wildcards '*' and '>' must be whole tokens")
            elif p[start] == 62 and i != n:
                raise InvalidNamespaceError(f"invalid pattern {pattern!r}: '>' may only be the last token")
            start = i + 1
            tok += 1
        elif _is_space(c):
            raise InvalidNamespaceError(f"invalid pattern {pattern!r}: whitespace is not allowed")
    return 0


cdef bint _pattern_matches(const char *p, Py_ssize_t pn, const char *s, Py_ssize_t sn) noexcept nogil:
    """Whether subject ``s`` matches the (valid) pattern ``p``, token by token."""
    cdef Py_ssize_t pi = 0, si = 0, pe, se
    while True:
        pe = _token_end(p, pi, pn)
        if pe - pi == 1 and p[pi] == 62:          # '>': one or more tokens remain
            return True
        se = _token_end(s, si, sn)
        if not (pe - pi == 1 and p[pi] == 42):    # literal token
            if pe - pi != se - si or not _same(p + pi, s + si, pe - pi):
                return False
        if pe == pn:
            return se == sn
        if se == sn:
            return False
        pi = pe + 1
        si = se + 1


def check_pattern(pattern):
    """``pattern`` if it follows the NATS token rules (see PatternIndex), else InvalidNamespaceError."""
    cdef Py_ssize_t n
    cdef const char *p = _utf8(pattern, &n, "pattern")
    _check_pattern(pattern, p, n)
    return pattern


def match_pattern(pattern, subject):
    """Whether ``subject`` (split on '.') matches the NATS-style ``pattern``."""
    cdef Py_ssize_t pn, sn
    cdef const char *p = _utf8(pattern, &pn, "pattern")
    cdef const char *s = _utf8(subject, &sn, "subject")
    _check_pattern(pattern, p, pn)
    return _pattern_matches(p, pn, s, sn)


# -- many patterns: exact-name dict + token trie ---------------------------------------------

cdef struct _Node:
    uint64_t salt
    int32_t star       # child through '*', -1 if none
    int32_t nlit       # literal children
    int32_t nhere      # targets of patterns ending here
    int32_t ngt        # targets of patterns ending here with '>'


cdef struct _Edge:
    uint64_t hash      # token hash
    uint64_t word      # the token's first (up to 8) bytes, little-endian (see _tok_word)
    int32_t parent     # -1: free slot
    int32_t child
    uint32_t off       # token bytes in the arena
    uint32_t n


cdef struct _ResultKey:    # the matched lists of one interned result
    int32_t nhits          # 0: a free slot
    int32_t hits[_RESULT_KEY]


@cython.final
cdef class PatternIndex:
    """Compiled NATS-style patterns, each with a target object; ``match(subject)`` returns
    the targets of every pattern that matches, in one call.

    Subjects and patterns are split on ``.`` into tokens. In a pattern, ``*`` matches
    exactly one token, ``>`` one or more trailing tokens (only last); other tokens match
    only themselves, so a pattern without wildcards matches only the subject equal to it.
    Patterns are checked when added: non-empty tokens, wildcards only as whole tokens, no
    whitespace, at most 255 UTF-8 bytes. A subject is not checked (an empty token in it is
    just a token that only ``*`` and ``>`` match).

    ``match`` returns one shared tuple per matched set: two subjects matched by the same
    patterns (and the same subject twice) get the same tuple object until the index changes.
    """

    cdef dict _patterns       # pattern -> [target, ...] (the lists the trie nodes point at)
    cdef Py_ssize_t _nwild    # patterns with a wildcard
    cdef Py_ssize_t _depth    # tokens of the longest pattern
    cdef Py_ssize_t _targets
    cdef unsigned long long _mutations   # bumped by every change (see _result)
    # interned results: the tuple of a matched set of lists, found again by those lists
    # after the whole walk of a later match (never by the subject); dropped by any change
    cdef list _results                   # _RESULTS tuples or None; None: none interned
    cdef _ResultKey *_result_keys        # their keys (read only while _results is a list)
    cdef Py_ssize_t _removed  # wildcard targets removed since the trie was built
    # trie nodes (0 = root)
    cdef _Node *_node
    cdef list _here           # per node: list of targets of patterns ending there, or None
    cdef list _gt             # per node: list of targets of patterns ending there with '>'
    cdef Py_ssize_t _nodes, _node_cap
    # edges (parent, token) -> child
    cdef _Edge *_edges
    cdef Py_ssize_t _edge_count, _edge_cap
    cdef char *_arena
    cdef Py_ssize_t _arena_len, _arena_cap

    def __cinit__(self):
        self._patterns = {}
        self._reset()

    def __dealloc__(self):
        PyMem_Free(self._node)
        PyMem_Free(self._edges)
        PyMem_Free(self._arena)
        PyMem_Free(self._result_keys)

    cdef _reset(self):
        self._changed()
        PyMem_Free(self._node)
        PyMem_Free(self._edges)
        PyMem_Free(self._arena)
        self._node = NULL
        self._edges = NULL
        self._arena = NULL
        self._nodes = self._node_cap = self._edge_count = self._edge_cap = 0
        self._arena_len = self._arena_cap = 0
        self._here = []
        self._gt = []
        self._removed = 0
        self._depth = 0
        self._grow_edges(16)
        self._new_node()

    cdef int _grow_edges(self, Py_ssize_t cap) except -1:
        cdef _Edge *old = self._edges
        cdef Py_ssize_t old_cap = self._edge_cap, i, j, mask = cap - 1
        cdef _Edge *table = <_Edge *>PyMem_Malloc(cap * sizeof(_Edge))
        if table == NULL:
            raise MemoryError()
        for i in range(cap):
            table[i].parent = -1
        for i in range(old_cap):
            if old[i].parent >= 0:
                j = <Py_ssize_t>((old[i].hash ^ self._node[old[i].parent].salt) & <uint64_t>mask)
                while table[j].parent >= 0:
                    j = (j + 1) & mask
                table[j] = old[i]
        PyMem_Free(old)
        self._edges = table
        self._edge_cap = cap
        return 0

    cdef int32_t _new_node(self) except -1:
        cdef Py_ssize_t cap
        if self._nodes == self._node_cap:
            cap = 2 * self._node_cap if self._node_cap else 16
            if cap > 0x7FFFFFFF:
                raise MemoryError()
            self._node = <_Node *>_realloc(self._node, cap * sizeof(_Node))
            self._node_cap = cap
        cdef int32_t node = <int32_t>self._nodes
        self._node[node].salt = _salt(node)
        self._node[node].star = -1
        self._node[node].nlit = 0
        self._node[node].nhere = 0
        self._node[node].ngt = 0
        self._here.append(None)
        self._gt.append(None)
        self._nodes += 1
        return node

    cdef inline int32_t _child(self, int32_t parent, const char *tok, Py_ssize_t n, uint64_t h) noexcept:
        cdef Py_ssize_t mask = self._edge_cap - 1
        cdef Py_ssize_t j = <Py_ssize_t>((h ^ self._node[parent].salt) & <uint64_t>mask)
        cdef _Edge *e
        while True:
            e = &self._edges[j]
            if e.parent < 0:
                return -1
            if e.hash == h and e.parent == parent and e.n == n and _same(self._arena + e.off, tok, n):
                return e.child
            j = (j + 1) & mask

    cdef int32_t _add_child(self, int32_t parent, const char *tok, Py_ssize_t n, uint64_t h,
                            uint64_t word) except -1:
        cdef int32_t child = self._child(parent, tok, n, h)
        if child >= 0:
            return child
        if 4 * (self._edge_count + 1) > self._edge_cap:   # load <= 1/4: short probes
            self._grow_edges(2 * self._edge_cap)
        if self._arena_len + n > self._arena_cap:
            self._arena_cap = max(2 * self._arena_cap, self._arena_len + n, 256)
            self._arena = <char *>_realloc(self._arena, self._arena_cap)
        memcpy(self._arena + self._arena_len, tok, n)
        child = self._new_node()
        cdef Py_ssize_t mask = self._edge_cap - 1
        cdef Py_ssize_t j = <Py_ssize_t>((h ^ self._node[parent].salt) & <uint64_t>mask)
        while self._edges[j].parent >= 0:
            j = (j + 1) & mask
        self._edges[j].hash = h
        self._edges[j].word = word
        self._edges[j].parent = parent
        self._edges[j].child = child
        self._edges[j].off = <uint32_t>self._arena_len
        self._edges[j].n = <uint32_t>n
        self._arena_len += n
        self._edge_count += 1
        self._node[parent].nlit += 1
        return child

    cdef int32_t _walk(self, const char *p, Py_ssize_t n, bint create, bint *gt) except -2:
        """The node where pattern ``p`` ends (-1 if absent and not ``create``); ``gt`` tells
        whether it ends with '>' (the node is then the one before that token)."""
        cdef int32_t node = 0, star
        cdef Py_ssize_t start = 0, end
        cdef const char *q
        gt[0] = False
        while True:
            q = <const char *>memchr(p + start, 46, n - start)
            end = n if q == NULL else q - p
            if end - start == 1 and p[start] == 62:
                gt[0] = True
                return node
            if end - start == 1 and p[start] == 42:
                if self._node[node].star < 0:
                    if not create:
                        return -1
                    star = self._new_node()   # may move self._node: assign after
                    self._node[node].star = star
                node = self._node[node].star
            elif create:
                node = self._add_child(node, p + start, end - start, _tok_hash(p, n, start, end - start),
                                       _tok_word(p, n, start, end - start))
            else:
                node = self._child(node, p + start, end - start, _tok_hash(p, n, start, end - start))
                if node < 0:
                    return -1
            if end == n:
                return node
            start = end + 1

    cdef _insert_trie(self, str pattern, list targets):
        """Point the node where ``pattern`` ends at ``targets`` (the list in ``_patterns``)."""
        cdef Py_ssize_t n
        cdef bint gt
        cdef const char *p = PyUnicode_AsUTF8AndSize(pattern, &n)
        cdef int32_t node = self._walk(p, n, True, &gt)
        if gt:
            self._gt[node] = targets
            self._node[node].ngt = <int32_t>len(targets)
        else:
            self._here[node] = targets
            self._node[node].nhere = <int32_t>len(targets)
        cdef Py_ssize_t i, depth = 1
        for i in range(n):
            if p[i] == 46:
                depth += 1
        if depth > self._depth:
            self._depth = depth

    def add(self, pattern, target):
        """Compile ``pattern`` (checked) and add ``target`` to the objects it yields."""
        cdef Py_ssize_t n
        cdef const char *p = _utf8(pattern, &n, "pattern")
        _check_pattern(pattern, p, n)
        self._changed()
        lst = self._patterns.get(pattern)
        if lst is None:
            lst = self._patterns[pattern] = [target]
            if memchr(p, 42, n) != NULL or memchr(p, 62, n) != NULL:
                self._nwild += 1
        else:
            (<list>lst).append(target)
        self._insert_trie(pattern, <list>lst)
        self._targets += 1

    def remove(self, pattern, target):
        """Remove one ``target`` added with ``pattern``; False if there is none."""
        cdef Py_ssize_t n
        cdef bint gt
        cdef const char *p = _utf8(pattern, &n, "pattern")
        cdef int32_t node
        lst = self._patterns.get(pattern)
        if lst is None or target not in <list>lst:
            return False
        (<list>lst).remove(target)
        self._changed()
        self._targets -= 1
        node = self._walk(p, n, False, &gt)
        if gt:
            self._node[node].ngt = <int32_t>len(<list>lst)
        else:
            self._node[node].nhere = <int32_t>len(<list>lst)
        if not lst:
            del self._patterns[pattern]
            if gt:
                self._gt[node] = None
            else:
                self._here[node] = None
            if memchr(p, 42, n) != NULL or memchr(p, 62, n) != NULL:
                self._nwild -= 1
            self._removed += 1
            if self._removed > 64 and self._removed > len(self._patterns):
                self._rebuild()
        return True

    cdef _rebuild(self):
        """A fresh trie of the live patterns (drops the nodes of removed ones)."""
        self._reset()
        for pattern, targets in self._patterns.items():
            self._insert_trie(pattern, targets)

    def clear(self):
        self._patterns.clear()
        self._nwild = 0
        self._targets = 0
        self._reset()

    def __len__(self):
        return self._targets

    def targets(self):
        """Every target, once per pattern it was added with."""
        out = []
        for lst in self._patterns.values():
            out.extend(<list>lst)
        return out

    @property
    def nodes(self):
        """Trie nodes (for tests of the compaction)."""
        return self._nodes

    # binding=False and no keywords: a plain METH_O method (the cheapest call CPython has)
    @cython.binding(False)
    @cython.always_allow_keywords(False)
    def match(self, subject):
        """The targets of every pattern matching ``subject`` (a str split on '.'), as a
        tuple: once per pattern a target was added with, in no particular order."""
        return self._match(subject)

    cdef tuple _match(self, subject):
        cdef Py_ssize_t n
        cdef const char *s = _subject_utf8(subject, &n)
        cdef PyObject *hit
        if self._nwild == 0:   # exact patterns only: one dict lookup
            hit = PyDict_GetItem(self._patterns, subject)
            return () if hit == NULL else tuple(<list>hit)
        return self._match_trie(s, n)

    cdef tuple _match_trie(self, const char *s, Py_ssize_t n):
        """The whole walk of the trie, then the result: the interned tuple of this matched
        set if there is one, else a new one (interned for the next time)."""
        cdef _Tokens t
        cdef _Trie trie
        cdef int32_t stack_hits[_HITS]
        cdef int32_t *hits = stack_hits
        cdef Py_ssize_t nhits
        cdef unsigned long long mutations = self._mutations
        _tokenize(s, n, self._depth, &t)
        trie.node = self._node
        trie.edges = self._edges
        trie.arena = self._arena
        trie.mask = <uint64_t>(self._edge_cap - 1)
        nhits = _walk_trie(&trie, s, &t, self._depth, hits, _HITS)
        if nhits == 0:
            return ()
        if nhits < 0:   # more matched lists than the stack holds: a node is matched at most once
            hits = <int32_t *>PyMem_Malloc(self._nodes * sizeof(int32_t))
            if hits == NULL:
                raise MemoryError()
            try:
                nhits = _walk_trie(&trie, s, &t, self._depth, hits, self._nodes)
                return self._result(hits, nhits, mutations, s, n)
            finally:
                PyMem_Free(hits)
        return self._result(hits, nhits, mutations, s, n)

    cdef tuple _result(self, const int32_t *hits, Py_ssize_t nhits, unsigned long long mutations,
                       const char *s, Py_ssize_t n):
        """The tuple of the targets of the matched lists ``hits`` (codes: node << 1 | '>'),
        found by a walk of the index as it was at ``mutations``."""
        cdef uint64_t key = _hits_key(hits, nhits)
        cdef Py_ssize_t slot = -1, i, j, total = 0, k = 0
        cdef PyObject *lst
        cdef PyObject *old
        cdef tuple out
        if nhits <= _RESULT_KEY:
            slot = <Py_ssize_t>(key & (_RESULTS - 1))
            if self._results is not None:
                if _same_hits(&self._result_keys[slot], hits, nhits):
                    return <tuple>PyList_GET_ITEM(self._results, slot)
                if _same_hits(&self._result_keys[slot ^ 1], hits, nhits):
                    return <tuple>PyList_GET_ITEM(self._results, slot ^ 1)
                if self._result_keys[slot].nhits and not self._result_keys[slot ^ 1].nhits:
                    slot ^= 1
            else:
                self._start_results()
        # the lists are borrowed; making an object may run the garbage collector, whose
        # finalizers could change the index (and free them): then match again
        if self._mutations != mutations:
            return self._match_trie(s, n)
        for i in range(nhits):
            total += self._node[hits[i] >> 1].ngt if hits[i] & 1 else self._node[hits[i] >> 1].nhere
        out = PyTuple_New(total)
        if self._mutations != mutations:
            return self._match_trie(s, n)
        for j in range(nhits):
            lst = PyList_GET_ITEM(self._gt if hits[j] & 1 else self._here, hits[j] >> 1)
            for i in range(PyList_GET_SIZE(<object>lst)):
                item = <object>PyList_GET_ITEM(<object>lst, i)
                Py_INCREF(item)
                PyTuple_SET_ITEM(out, k, item)
                k += 1
        if slot >= 0 and self._results is not None:
            self._result_keys[slot].nhits = <int32_t>nhits
            memcpy(self._result_keys[slot].hits, hits, nhits * sizeof(int32_t))
            old = PyList_GET_ITEM(self._results, slot)
            Py_INCREF(out)
            _results_set(self._results, slot, <PyObject *>out)
            _result_decref(old)   # last: freeing it may run a finalizer (which would clear the results)
        return out

    cdef _changed(self):
        """Every change: bump the mutation count and drop the interned results."""
        self._mutations += 1
        self._results = None

    cdef int _start_results(self) except -1:
        """No interned result yet, in a list of free slots."""
        results = [None] * _RESULTS   # first: making it may run a finalizer that matches
        if self._result_keys == NULL:
            self._result_keys = <_ResultKey *>PyMem_Malloc(_RESULTS * sizeof(_ResultKey))
            if self._result_keys == NULL:
                raise MemoryError()
        memset(self._result_keys, 0, _RESULTS * sizeof(_ResultKey))
        self._results = results
        return 0


cdef extern from "Python.h":
    bint _subject_is_ascii "PyUnicode_IS_COMPACT_ASCII"(object o)
    const void *_subject_data "PyUnicode_DATA"(object o)
    Py_ssize_t _subject_len "PyUnicode_GET_LENGTH"(object o)
    void _results_set "PyList_SET_ITEM"(object lst, Py_ssize_t i, PyObject *item)
    void _result_decref "Py_DECREF"(PyObject *o)


cdef inline const char *_subject_utf8(object subject, Py_ssize_t *n) except NULL:
    """The UTF-8 bytes of a str subject; an ASCII str's own buffer, read without a call."""
    if type(subject) is str and _subject_is_ascii(subject):
        n[0] = _subject_len(subject)
        return <const char *>_subject_data(subject)
    return _utf8(subject, n, "subject")


cdef struct _Trie:     # the arrays of a PatternIndex, for a walk without the object
    const _Node *node
    const _Edge *edges
    const char *arena
    uint64_t mask


cdef inline int32_t _trie_child(const _Trie *tr, int32_t parent, const char *tok, Py_ssize_t n,
                                uint64_t h, uint64_t word) noexcept nogil:
    cdef Py_ssize_t j = <Py_ssize_t>((h ^ tr.node[parent].salt) & tr.mask)
    cdef const _Edge *e
    while True:
        e = &tr.edges[j]
        if e.parent < 0:
            return -1
        if (e.hash == h and e.parent == parent and e.n == n and e.word == word
                and (n <= 8 or _same(tr.arena + e.off + 8, tok + 8, n - 8))):
            return e.child
        j = (j + 1) & <Py_ssize_t>tr.mask


cdef Py_ssize_t _walk_trie(const _Trie *tr, const char *s, const _Tokens *t, Py_ssize_t keep,
                           int32_t *hits, Py_ssize_t cap) noexcept nogil:
    """Depth-first walk of the trie over the subject's tokens ('*' and '>' included): the
    matched target lists as codes (node << 1 | 1 if through '>') in ``hits``, and their
    number, or -1 if there are more than ``cap``."""
    cdef int32_t st_node[_STACK]
    cdef int32_t st_tok[_STACK]
    cdef Py_ssize_t sp = 1, i, nhits = 0, ntok = t.ntok
    cdef int32_t node, child, code
    cdef const _Node *nd
    st_node[0] = 0
    st_tok[0] = 0
    while sp:
        sp -= 1
        node = st_node[sp]
        i = st_tok[sp]
        nd = &tr.node[node]
        code = -1
        if i == ntok:
            if nd.nhere:
                code = node << 1
        elif nd.ngt:
            code = (node << 1) | 1
        if code >= 0:
            if nhits == cap:
                return -1
            hits[nhits] = code
            nhits += 1
        if i == ntok or i > keep:
            continue
        if nd.nlit:
            child = _trie_child(tr, node, s + t.start[i], t.len[i], t.hash[i], t.word[i])
            if child >= 0:
                st_node[sp] = child
                st_tok[sp] = <int32_t>(i + 1)
                sp += 1
        if nd.star >= 0:
            st_node[sp] = nd.star
            st_tok[sp] = <int32_t>(i + 1)
            sp += 1
    return nhits


cdef inline uint64_t _hits_key(const int32_t *hits, Py_ssize_t nhits) noexcept nogil:
    cdef uint64_t h = <uint64_t>nhits
    cdef Py_ssize_t i
    for i in range(nhits):
        h = (h ^ <uint32_t>hits[i]) * 0x9E3779B97F4A7C15ULL
    return h ^ (h >> 29)


cdef inline bint _same_hits(const _ResultKey *key, const int32_t *hits, Py_ssize_t nhits) noexcept nogil:
    cdef Py_ssize_t i
    if key.nhits != nhits:
        return False
    for i in range(nhits):
        if key.hits[i] != hits[i]:
            return False
    return True


cdef struct _Tokens:
    Py_ssize_t ntok                      # tokens in the subject (all counted)
    Py_ssize_t start[_MAX_DEPTH + 1]     # the first ones (no pattern is deeper)
    Py_ssize_t len[_MAX_DEPTH + 1]
    uint64_t hash[_MAX_DEPTH + 1]
    uint64_t word[_MAX_DEPTH + 1]        # first bytes (see _tok_word)


cdef inline void _tokenize(const char *s, Py_ssize_t n, Py_ssize_t keep, _Tokens *t) noexcept:
    """Split ``s`` on '.': the bounds and hashes of its first ``keep`` + 1 tokens, and their count."""
    cdef Py_ssize_t pos = 0, end, ntok = 0
    while True:
        end = _dot_end(s, pos, n)
        if ntok <= keep:
            t.start[ntok] = pos
            t.len[ntok] = end - pos
            t.hash[ntok] = _tok_hash(s, n, pos, end - pos)
            t.word[ntok] = _tok_word(s, n, pos, end - pos)
        ntok += 1
        if end == n:
            break
        pos = end + 1
    t.ntok = ntok


cdef void *_realloc(void *p, size_t size) except NULL:
    cdef void *q = PyMem_Realloc(p, size)
    if q == NULL:
        raise MemoryError()
    return q
