# NATS-style pattern matching and the delivery core of the local event bus.
# Included by _native.pyx.
#
# PatternIndex holds compiled patterns in a token trie whose edges live in one
# open-addressing hash table keyed by (parent node, token hash + bytes), plus a dict of the
# patterns (pattern -> targets) that alone answers while no pattern has a wildcard.
# match(subject) is one call: the subject is tokenized and hashed once, then walked
# depth-first ('*' and '>' branches included); no Python object is made per token, and the
# result tuple is built once at the end.
#
# NativeBus / BusSubscription deliver published events: per namespace a cached tuple of the
# subscriptions whose pattern matches it (recomputed after any subscribe or unsubscribe),
# then the event-type set and actor pattern of each, then a callback call or a push into a
# bounded ring buffer with the subscription's overflow policy.

from cpython.dict cimport PyDict_GetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.mem cimport PyMem_Realloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.stdint cimport int32_t
from libc.string cimport memchr

import _thread
import asyncio as _asyncio
import logging as _logging
import time as _time_mod

from aether_fast.errors import InvalidNamespaceError

cdef object _allocate_lock = _thread.allocate_lock
cdef object _monotonic = _time_mod.monotonic
cdef object _get_running_loop = _asyncio.get_running_loop
cdef object _bus_log = _logging.getLogger("aether_fast.bus")

MAX_PATTERN_BYTES = 255
cdef enum:
    _MAX_PATTERN = 255                   # bytes; so at most 128 tokens
    _MAX_DEPTH = 128
    _STACK = 2 * _MAX_DEPTH + 4
    _HITS = 64                           # matched lists gathered before one result list is built


# -- single patterns ----------------------------------------------------------------------

cdef inline uint64_t _tok_hash(const char *p, Py_ssize_t n) noexcept nogil:
    """A fast 64-bit hash of a token, 8 bytes at a time, well mixed in every bit."""
    cdef uint64_t h = 0x9E3779B97F4A7C15ULL ^ <uint64_t>n
    cdef uint64_t w
    while n >= 8:
        memcpy(&w, p, 8)
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL
        h ^= h >> 32
        p += 8
        n -= 8
    if n:
        w = 0
        while n:   # byte by byte: a short memcpy here stalls on store forwarding
            n -= 1
            w = (w << 8) | <unsigned char>p[n]
        h ^= w
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
    int32_t parent     # -1: free slot
    int32_t child
    uint32_t off       # token bytes in the arena
    uint32_t n


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
    """

    cdef dict _patterns       # pattern -> [target, ...] (the lists the trie nodes point at)
    cdef Py_ssize_t _nwild    # patterns with a wildcard
    cdef Py_ssize_t _depth    # tokens of the longest pattern
    cdef Py_ssize_t _targets
    cdef unsigned long long _mutations   # bumped by every change (see _match_trie)
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

    cdef _reset(self):
        self._mutations += 1
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

    cdef int32_t _add_child(self, int32_t parent, const char *tok, Py_ssize_t n, uint64_t h) except -1:
        cdef int32_t child = self._child(parent, tok, n, h)
        if child >= 0:
            return child
        if 2 * (self._edge_count + 1) > self._edge_cap:
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
                node = self._add_child(node, p + start, end - start, _tok_hash(p + start, end - start))
            else:
                node = self._child(node, p + start, end - start, _tok_hash(p + start, end - start))
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
        self._mutations += 1
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
        self._mutations += 1
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

    cpdef tuple match(self, subject):
        """The targets of every pattern matching ``subject`` (a str split on '.'), as a
        tuple: once per pattern a target was added with, in no particular order."""
        cdef Py_ssize_t n
        cdef const char *s = _utf8(subject, &n, "subject")
        cdef PyObject *hit
        if self._nwild == 0:   # exact patterns only: one dict lookup
            hit = PyDict_GetItem(self._patterns, subject)
            return () if hit == NULL else tuple(<list>hit)
        return self._match_trie(s, n)

    cdef tuple _match_trie(self, const char *s, Py_ssize_t n):
        cdef _Tokens t
        cdef PyObject *hits[_HITS]
        cdef Py_ssize_t nhits = 0, total, i, j, k = 0
        cdef unsigned long long mutations
        cdef tuple out
        cdef list many
        _tokenize(s, n, self._depth, &t)
        total = self._walk_subject(s, &t, hits, &nhits, None)
        if total < 0:   # more matched lists than `hits` holds: gather into a list made first
            many = []
            self._walk_subject(s, &t, NULL, NULL, many)
            return tuple(many)
        if total == 0:
            return ()
        # `hits` are borrowed lists; making the tuple may run the garbage collector, whose
        # finalizers could change the index (and free them): then match again
        mutations = self._mutations
        out = PyTuple_New(total)
        if self._mutations != mutations:
            return self._match_trie(s, n)
        for j in range(nhits):
            for i in range(PyList_GET_SIZE(<object>hits[j])):
                item = <object>PyList_GET_ITEM(<object>hits[j], i)
                Py_INCREF(item)
                PyTuple_SET_ITEM(out, k, item)
                k += 1
        return out

    cdef Py_ssize_t _walk_subject(self, const char *s, _Tokens *t, PyObject **hits, Py_ssize_t *nhits,
                                  list out) except -2:
        """Depth-first walk of the trie over the subject's tokens. Without ``out``: the
        matched target lists go into ``hits`` (borrowed; no Python object is made) and the
        number of targets is returned, or -1 if there are more than _HITS lists. With
        ``out``: the targets are appended to it (which makes no GC-tracked object)."""
        cdef int32_t st_node[_STACK]
        cdef int32_t st_tok[_STACK]
        cdef Py_ssize_t sp = 1, i, total = 0, keep = self._depth
        cdef int32_t node, child
        cdef PyObject *lst
        st_node[0] = 0
        st_tok[0] = 0
        while sp:
            sp -= 1
            node = st_node[sp]
            i = st_tok[sp]
            lst = NULL
            if i == t.ntok:
                if self._node[node].nhere:
                    lst = PyList_GET_ITEM(self._here, node)
                    total += self._node[node].nhere
            elif self._node[node].ngt:
                lst = PyList_GET_ITEM(self._gt, node)
                total += self._node[node].ngt
            if lst != NULL:
                if out is not None:
                    out.extend(<list>lst)
                elif nhits[0] == _HITS:
                    return -1
                else:
                    hits[nhits[0]] = lst
                    nhits[0] += 1
            if i == t.ntok or i > keep:
                continue
            if self._node[node].nlit:
                child = self._child(node, s + t.start[i], t.len[i], t.hash[i])
                if child >= 0:
                    st_node[sp] = child
                    st_tok[sp] = <int32_t>(i + 1)
                    sp += 1
            child = self._node[node].star
            if child >= 0:
                st_node[sp] = child
                st_tok[sp] = <int32_t>(i + 1)
                sp += 1
        return total


cdef struct _Tokens:
    Py_ssize_t ntok                      # tokens in the subject (all counted)
    Py_ssize_t start[_MAX_DEPTH + 1]     # the first ones (no pattern is deeper)
    Py_ssize_t len[_MAX_DEPTH + 1]
    uint64_t hash[_MAX_DEPTH + 1]


cdef inline void _tokenize(const char *s, Py_ssize_t n, Py_ssize_t keep, _Tokens *t) noexcept:
    """Split ``s`` on '.': the bounds and hashes of its first ``keep`` + 1 tokens, and their count."""
    cdef Py_ssize_t pos = 0, end, ntok = 0
    while True:
        end = _token_end(s, pos, n)
        if ntok <= keep:
            t.start[ntok] = pos
            t.len[ntok] = end - pos
            t.hash[ntok] = _tok_hash(s + pos, end - pos)
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


# -- the bus's delivery core ---------------------------------------------------------------------

cdef enum:
    _BLOCK = 0
    _DROP_OLDEST = 1
    _DROP_NEWEST = 2
    _ERROR = 3

OVERFLOW_POLICIES = ("block", "drop_oldest", "drop_newest", "error")

# outcome of offering an event to a buffered subscription
cdef enum:
    _DELIVERED = 0
    _DROPPED = 1        # by drop_newest: counted, not an error
    _REFUSED = 2        # overflow="error", or "block" that would deadlock: counted, an error
    _TIMED_OUT = 3      # overflow="block" past its timeout: counted, an error
    _GONE = 4           # closed meanwhile: not delivered, not a drop


cdef object _bus_error(str name):
    from aether_fast import bus
    return getattr(bus, name)


def _resolve(fut):
    if not fut.done():
        fut.set_result(None)


cdef inline int _release_all(list locks) except -1:
    for lock in locks:
        lock.release()
    return 0


@cython.final
cdef class _NsState:
    """Per namespace: the matching subscriptions (cached) and the metrics counters."""
    cdef readonly str name
    cdef long long gen
    cdef tuple subs
    cdef readonly long long published, received, dropped, publish_errors, callback_errors

    def __cinit__(self, str name):
        self.name = name
        self.gen = -1
        self.subs = ()


cdef class NativeBus


cdef struct _Slot:
    PyObject *event
    PyObject *ns


@cython.final
cdef class BusSubscription:
    """A subscription to an EventBus (made by ``EventBus.subscribe``).

    Buffered (no callback): events wait in a ring buffer of ``buffer`` slots; read them with
    ``for event in sub`` (blocks; ends once closed and drained), ``sub.get(timeout)``,
    ``sub.iter(timeout)`` (ends after ``timeout`` seconds without an event), ``sub.drain()``,
    or ``async for event in sub`` / ``await sub.aget(timeout)`` (never blocks the loop).
    With ``with_namespace=True`` each item is ``(namespace, event)``.

    When the buffer is full, ``overflow`` decides: ``"block"`` makes the publisher wait up to
    ``block_timeout`` seconds for room (then the event is dropped for this subscription and
    ``publish`` raises PublishTimeoutError); ``"drop_oldest"`` / ``"drop_newest"`` drop one
    event; ``"error"`` drops the new event and ``publish`` raises SubscriberOverflowError.
    Every drop is counted in ``dropped`` and ``dropped_by_namespace``.

    With a callback, each matching event is passed to ``callback(event)`` (or
    ``callback(namespace, event)``) in the publisher's thread, during ``publish``: nothing is
    buffered or dropped, and a slow callback slows the publisher. An exception from the
    callback is logged (logger ``aether_fast.bus``) and counted in ``callback_errors``; it does
    not reach the publisher or the other subscribers.
    """

    cdef readonly str namespace_pattern
    cdef readonly frozenset event_types
    cdef readonly str actor_pattern
    cdef const char *_actor
    cdef Py_ssize_t _actor_n
    cdef readonly str overflow
    cdef int _policy
    cdef readonly Py_ssize_t buffer
    cdef readonly object callback
    cdef readonly bint with_namespace
    cdef double _block_timeout          # < 0: wait forever
    cdef _Slot *_ring                   # ring buffer, grown on demand up to `buffer` slots
    cdef Py_ssize_t _cap                # slots allocated
    cdef Py_ssize_t _head, _count
    cdef readonly long long received, dropped, callback_errors
    cdef dict _dropped_ns
    cdef readonly bint closed
    cdef list _readers                  # locks of threads waiting in get()
    cdef list _writers                  # locks of publishers waiting for room
    cdef list _async_waiters            # (loop, future, thread id) of waiting tasks
    cdef unsigned long _loop_thread     # thread of the event loop iterating it (0: none)
    cdef NativeBus _bus

    def __cinit__(self, str namespace_pattern, frozenset event_types, str actor_pattern,
                  str overflow, Py_ssize_t buffer, object callback, bint with_namespace,
                  object block_timeout):
        self.namespace_pattern = namespace_pattern
        self.event_types = event_types
        self.actor_pattern = actor_pattern
        if actor_pattern is not None:
            self._actor = PyUnicode_AsUTF8AndSize(actor_pattern, &self._actor_n)
            _check_pattern(actor_pattern, self._actor, self._actor_n)
        if overflow not in OVERFLOW_POLICIES:
            raise InvalidInputError(f"overflow must be one of {', '.join(OVERFLOW_POLICIES)}; got {overflow!r}")
        self.overflow = overflow
        self._policy = OVERFLOW_POLICIES.index(overflow)
        self.callback = callback
        self.with_namespace = with_namespace
        self._block_timeout = -1.0 if block_timeout is None else float(block_timeout)
        self._dropped_ns = {}
        self._readers = []
        self._writers = []
        self._async_waiters = []
        if callback is None:
            if buffer < 1:
                raise InvalidInputError(f"buffer must be >= 1, got {buffer}")
        self.buffer = buffer if callback is None else 0

    def __dealloc__(self):
        cdef Py_ssize_t i, j
        for i in range(self._count):
            j = (self._head + i) % self._cap
            Py_DECREF(<object>self._ring[j].event)
            Py_DECREF(<object>self._ring[j].ns)
        PyMem_Free(self._ring)

    def __repr__(self):
        state = "closed" if self.closed else ("callback" if self.callback is not None else
                                               f"{self._count}/{self.buffer} buffered")
        extra = ""
        if self.event_types is not None:
            extra += f", event_types={sorted(self.event_types)!r}"
        if self.actor_pattern is not None:
            extra += f", actor_pattern={self.actor_pattern!r}"
        return (f"BusSubscription({self.namespace_pattern!r}{extra}, overflow={self.overflow!r}, {state}, "
                f"received={self.received}, dropped={self.dropped})")

    @property
    def block_timeout(self):
        return None if self._block_timeout < 0 else self._block_timeout

    @property
    def pending(self):
        """Events buffered and not yet read."""
        return self._count

    def __len__(self):
        return self._count

    @property
    def dropped_by_namespace(self):
        """How many events of each namespace this subscription missed."""
        return dict(self._dropped_ns)

    # -- filters and delivery (publisher side) --

    cdef inline bint _accepts(self, Event ev):
        cdef Py_ssize_t n
        cdef const char *a
        if self.event_types is not None and ev.event_type not in self.event_types:
            return False
        if self._actor != NULL:
            a = PyUnicode_AsUTF8AndSize(ev.actor_id, &n)
            return _pattern_matches(self._actor, self._actor_n, a, n)
        return True

    cdef int _grow(self) except -1:
        """Double the ring (at least 16 slots, at most ``buffer``), oldest item first."""
        cdef Py_ssize_t k, cap = min(self.buffer, max(16, 2 * self._cap))
        cdef _Slot *ring = <_Slot *>PyMem_Malloc(cap * sizeof(_Slot))
        if ring == NULL:
            raise MemoryError()
        for k in range(self._count):
            ring[k] = self._ring[(self._head + k) % self._cap]
        PyMem_Free(self._ring)
        self._ring = ring
        self._cap = cap
        self._head = 0
        return 0

    cdef inline int _push(self, str ns, Event ev) except -1:
        """Append (the caller checked that ``_count < buffer``)."""
        if self._count == self._cap:
            self._grow()
        cdef Py_ssize_t i = self._head + self._count
        if i >= self._cap:
            i -= self._cap
        Py_INCREF(ev)
        Py_INCREF(ns)
        self._ring[i].event = <PyObject *>ev
        self._ring[i].ns = <PyObject *>ns
        self._count += 1
        self.received += 1
        if self._readers:
            readers = self._readers
            self._readers = []
            _release_all(readers)
        if self._async_waiters:
            self._wake_async()
        return 0

    cdef _wake_async(self):
        cdef unsigned long me = PyThread_get_thread_ident()
        waiters = self._async_waiters
        self._async_waiters = []
        for loop, fut, thread in waiters:
            if thread == me:
                _resolve(fut)
            else:
                try:
                    loop.call_soon_threadsafe(_resolve, fut)
                except RuntimeError:   # the loop is closed: nobody is waiting any more
                    pass

    cdef object _take(self):
        """The oldest buffered item (the buffer is not empty)."""
        cdef Py_ssize_t i = self._head
        ev = <object>self._ring[i].event
        ns = <object>self._ring[i].ns
        Py_DECREF(ev)
        Py_DECREF(ns)
        i += 1
        self._head = 0 if i == self._cap else i
        self._count -= 1
        if self._writers:
            writers = self._writers
            self._writers = []
            _release_all(writers)
        return (ns, ev) if self.with_namespace else ev

    cdef int _offer(self, _NsState st, Event ev, bint may_block) except -1:
        """Put ``ev`` in the buffer under the overflow policy; one of _DELIVERED, ..."""
        if self._count < self.buffer:
            self._push(st.name, ev)
            return _DELIVERED
        if self._policy == _DROP_NEWEST:
            self._bus._record_drop(self, st.name)
            return _DROPPED
        if self._policy == _DROP_OLDEST:
            ns = <object>self._ring[self._head].ns
            self._take()
            self._bus._record_drop(self, ns)
            self._push(st.name, ev)
            return _DELIVERED   # the new event is in; the dropped one was counted
        if self._policy == _ERROR:
            self._bus._record_drop(self, st.name)
            return _REFUSED
        if not may_block:
            self._bus._record_drop(self, st.name)
            return _TIMED_OUT
        if self._loop_thread == PyThread_get_thread_ident():
            self._bus._record_drop(self, st.name)
            return _REFUSED
        if not self._wait_room():
            if self.closed:
                return _GONE
            self._bus._record_drop(self, st.name)
            return _TIMED_OUT
        if self.closed:
            return _GONE
        self._push(st.name, ev)
        return _DELIVERED

    cdef bint _wait_room(self) except -1:
        """Wait (GIL released) until the buffer has room or the subscription closes; False on
        timeout or close."""
        deadline = None if self._block_timeout < 0 else _monotonic() + self._block_timeout
        while self._count >= self.buffer and not self.closed:
            remaining = -1 if deadline is None else deadline - _monotonic()
            if deadline is not None and remaining <= 0:
                return False
            lock = _allocate_lock()
            lock.acquire()
            self._writers.append(lock)
            if not lock.acquire(True, remaining):
                try:
                    self._writers.remove(lock)
                except ValueError:
                    pass
        return not self.closed

    # -- reading (consumer side) --

    def get(self, timeout=None):
        """The next event; waits up to ``timeout`` seconds (None: no limit). Raises
        ReceiveTimeoutError after the timeout, BusClosedError once closed and drained."""
        if self._count:
            return self._take()
        return self._get_wait(timeout)

    cdef object _get_wait(self, timeout):
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            if self._count:
                return self._take()
            if self.closed:
                raise _bus_error("BusClosedError")(
                    f"subscription to {self.namespace_pattern!r} is closed and has no event left")
            if self.callback is not None:
                raise InvalidInputError("a callback subscription has no buffer to read from")
            remaining = -1 if deadline is None else deadline - _monotonic()
            if deadline is not None and remaining <= 0:
                raise _bus_error("ReceiveTimeoutError")(
                    f"no event for subscription {self.namespace_pattern!r} within {timeout} s")
            lock = _allocate_lock()
            lock.acquire()
            self._readers.append(lock)
            if not lock.acquire(True, remaining):
                try:
                    self._readers.remove(lock)
                except ValueError:
                    pass

    def drain(self):
        """Every buffered event, without waiting (an empty list if there is none)."""
        out = []
        while self._count:
            out.append(self._take())
        return out

    def __iter__(self):
        return self

    def __next__(self):
        if self._count:
            return self._take()
        try:
            return self._get_wait(None)
        except _bus_error("BusClosedError"):
            raise StopIteration from None

    def iter(self, timeout):
        """Iterate, ending when no event arrives within ``timeout`` seconds or when the
        subscription is closed and drained."""
        closed_error = _bus_error("BusClosedError")
        timeout_error = _bus_error("ReceiveTimeoutError")
        while True:
            if self._count:
                yield self._take()
                continue
            try:
                item = self._get_wait(timeout)
            except (closed_error, timeout_error):
                return
            yield item

    def __aiter__(self):
        try:
            self._loop_thread = PyThread_get_thread_ident() if _get_running_loop() is not None else 0
        except RuntimeError:
            pass
        return self

    async def __anext__(self):
        if self._count:
            return self._take()
        return await self._anext_wait(False, None)

    async def _anext_wait(self, bint raise_closed, timeout):
        loop = _get_running_loop()
        me = PyThread_get_thread_ident()
        self._loop_thread = me
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._count:
                return self._take()
            if self.closed:
                if raise_closed:
                    raise _bus_error("BusClosedError")(
                        f"subscription to {self.namespace_pattern!r} is closed and has no event left")
                raise StopAsyncIteration
            if self.callback is not None:
                raise InvalidInputError("a callback subscription has no buffer to read from")
            if deadline is not None and loop.time() >= deadline:
                raise _bus_error("ReceiveTimeoutError")(
                    f"no event for subscription {self.namespace_pattern!r} within {timeout} s")
            fut = loop.create_future()
            entry = (loop, fut, me)
            self._async_waiters.append(entry)
            timer = None if deadline is None else loop.call_at(deadline, _resolve, fut)
            try:
                await fut
            finally:
                if timer is not None:
                    timer.cancel()
                try:
                    self._async_waiters.remove(entry)
                except ValueError:
                    pass

    async def aget(self, timeout=None):
        """The next event, awaited without blocking the loop; ReceiveTimeoutError after
        ``timeout`` seconds, BusClosedError once closed and drained."""
        if self._count:
            return self._take()
        return await self._anext_wait(True, timeout)

    # -- lifecycle --

    def close(self):
        """Unsubscribe (idempotent): no new event arrives; buffered ones can still be read,
        then iteration ends. Waiting readers and publishers are woken."""
        if self.closed:
            return
        self.closed = True
        if self._bus is not None:
            self._bus._detach(self)
        self._wake_all()

    unsubscribe = close

    cdef _wake_all(self):
        if self._readers:
            readers = self._readers
            self._readers = []
            _release_all(readers)
        if self._writers:
            writers = self._writers
            self._writers = []
            _release_all(writers)
        if self._async_waiters:
            self._wake_async()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


cdef class NativeBus:
    """The publish path of EventBus (see aether_fast.bus)."""

    cdef PatternIndex _index
    cdef dict _states            # namespace -> _NsState
    cdef long long _gen          # bumped by every subscribe / unsubscribe
    cdef readonly bint closed
    cdef dict _active            # pattern -> active subscriptions
    cdef object _validate

    def __cinit__(self, *args, **kwargs):
        from aether_fast.namespace import validate_namespace
        self._index = PatternIndex()
        self._states = {}
        self._active = {}
        self._validate = validate_namespace

    cdef _NsState _state(self, object namespace):
        cdef PyObject *hit = PyDict_GetItem(self._states, namespace) if type(namespace) is str else NULL
        cdef _NsState st
        if hit == NULL:
            self._validate(namespace)
            st = self._states.setdefault(namespace, _NsState(namespace))
        else:
            st = <_NsState>hit
        if self.closed:
            raise _bus_error("BusClosedError")("the event bus is closed")
        if st.gen != self._gen:
            st.subs = self._index.match(namespace)
            st.gen = self._gen
        return st

    def _attach(self, BusSubscription sub):
        if self.closed:
            raise _bus_error("BusClosedError")("the event bus is closed")
        self._index.add(sub.namespace_pattern, sub)
        sub._bus = self
        self._gen += 1
        self._active[sub.namespace_pattern] = self._active.get(sub.namespace_pattern, 0) + 1

    cdef _detach(self, BusSubscription sub):
        if self._index.remove(sub.namespace_pattern, sub):
            self._gen += 1
            left = self._active[sub.namespace_pattern] - 1
            if left:
                self._active[sub.namespace_pattern] = left
            else:
                del self._active[sub.namespace_pattern]

    cdef _record_drop(self, BusSubscription sub, str ns):
        sub.dropped += 1
        sub._dropped_ns[ns] = sub._dropped_ns.get(ns, 0) + 1
        st = self._states.get(ns)
        if st is not None:
            (<_NsState>st).dropped += 1

    cdef _callback_failed(self, BusSubscription sub, _NsState st, exc):
        sub.callback_errors += 1
        st.callback_errors += 1
        _bus_log.error("callback of subscription %r raised on an event of namespace %r", sub, st.name,
                       exc_info=exc)

    cdef int _deliver(self, BusSubscription sub, _NsState st, Event event, bint may_block) except -1:
        cdef int code
        if sub.callback is None:
            code = sub._offer(st, event, may_block)
            if code == _DELIVERED:
                st.received += 1
            return code
        sub.received += 1
        st.received += 1
        try:
            if sub.with_namespace:
                sub.callback(st.name, event)
            else:
                sub.callback(event)
        except Exception as exc:
            self._callback_failed(sub, st, exc)
        return _DELIVERED

    def publish(self, namespace, event):
        """Deliver ``event`` to every subscription of ``namespace`` whose filters accept it."""
        if not isinstance(event, Event):
            raise InvalidTypeError(f"publish takes an Event, got {type(event).__name__}: {_short_repr(event)}")
        cdef _NsState st = self._state(namespace)
        cdef BusSubscription sub
        cdef int code
        st.published += 1
        failures = None
        for s in st.subs:
            sub = <BusSubscription>s
            if sub.closed or not sub._accepts(<Event>event):
                continue
            code = self._deliver(sub, st, <Event>event, True)
            if code >= _REFUSED and code != _GONE:
                if failures is None:
                    failures = {}
                failures[sub] = (code, 1)
        if failures is not None:
            self._raise_failures(st, failures)

    def publish_many(self, namespace, events):
        """Deliver each of ``events`` (in order) as ``publish`` would. A subscription that
        times out under ``"block"`` is not waited for again in the same call."""
        cdef _NsState st
        cdef BusSubscription sub
        cdef Event event
        cdef int code
        cdef Py_ssize_t i
        if not isinstance(events, (list, tuple)):
            events = list(events)
        for i in range(len(events)):
            if not isinstance(events[i], Event):
                raise InvalidTypeError(f"events[{i}] is a {type(events[i]).__name__}, not an Event")
        st = self._state(namespace)
        failures = None
        for ev in events:
            event = <Event>ev
            st.published += 1
            for s in st.subs:
                sub = <BusSubscription>s
                if sub.closed or not sub._accepts(event):
                    continue
                code = self._deliver(sub, st, event, failures is None or sub not in failures)
                if code >= _REFUSED and code != _GONE:
                    if failures is None:
                        failures = {}
                    prev = failures.get(sub)
                    failures[sub] = (max(code, prev[0]), prev[1] + 1) if prev else (code, 1)
        if failures is not None:
            self._raise_failures(st, failures)

    cdef _raise_failures(self, _NsState st, dict failures):
        st.publish_errors += 1
        missed = {sub: count for sub, (code, count) in failures.items()}
        timed_out = [sub for sub, (code, count) in failures.items() if code == _TIMED_OUT]
        total = sum(missed.values())
        parts = "; ".join(f"{sub!r} missed {count}" for sub, count in missed.items())
        if timed_out:
            raise _bus_error("PublishTimeoutError")(
                f"publish to namespace {st.name!r}: {total} deliveries dropped after waiting for room: {parts}",
                st.name, missed)
        raise _bus_error("SubscriberOverflowError")(
            f"publish to namespace {st.name!r}: {total} deliveries refused by full buffers: {parts}",
            st.name, missed)

    def _close_all(self):
        """Close the bus and every subscription."""
        self.closed = True
        for sub in list(self._subscriptions()):
            (<BusSubscription>sub).close()

    def _subscriptions(self):
        return self._index.targets()

    def _counters(self):
        """Per namespace: (published, received, dropped, publish_errors, callback_errors)."""
        return {name: (st.published, st.received, st.dropped, st.publish_errors, st.callback_errors)
                for name, st in self._states.items()}

    def _active_subscriptions(self):
        return dict(self._active)
