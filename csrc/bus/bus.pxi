# The delivery core of the local event bus. Included by _native.pyx, after match.pxi.
#
# NativeBus / BusSubscription deliver published events: per namespace a cached tuple of the
# subscriptions whose pattern matches it (recomputed after any subscribe or unsubscribe),
# then the event-type set and actor pattern of each, then a callback call or a push into a
# bounded ring buffer with the subscription's overflow policy.

import _thread
import asyncio as _asyncio
import logging as _logging
import time as _time_mod

cdef object _allocate_lock = _thread.allocate_lock
cdef object _monotonic = _time_mod.monotonic
cdef object _get_running_loop = _asyncio.get_running_loop
cdef object _bus_log = _logging.getLogger("aether_fast.bus")


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
            st.subs = self._index._match(namespace)
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
