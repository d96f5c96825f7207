"""Group commit: concurrent appends of one LMDB environment share write transactions.

Every append joins a queue. The caller that finds no leader becomes the leader: it takes
the queued requests (its own first, up to ``max_group``), writes them in one transaction
with one fsync, hands each caller its own positions or its own error, and goes on with
the requests queued meanwhile for a few groups before passing the lead to the head of the
queue. A lone writer is never delayed; under contention the leader waits up to ``gather``
seconds for as many callers as the recent groups had, so that groups stay full.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from . import _native


class _Request:
    __slots__ = ("events", "expected", "handed", "kind", "lead", "log", "max_bytes", "ready", "result")

    def __init__(self, log, events, kind, expected, max_bytes) -> None:
        self.log = log
        self.events = events
        self.kind = kind
        self.expected = expected
        self.max_bytes = max_bytes
        self.ready = threading.Lock()     # held until the result (or the lead) is handed over
        self.ready.acquire()
        self.result: object = None
        self.lead = False
        self.handed = False              # its result has been handed over


class GroupCommitter:
    """Gathers the appends of one environment (all its namespaces) into groups.

    ``max_group`` bounds the requests in one transaction; ``gather`` (seconds) bounds how
    long a leader waits for more callers after contention was seen, and it stops waiting
    after ``gather_slice`` seconds without an arrival; a leader writes at
    most ``rounds`` groups in a row (its own caller waits meanwhile) before handing over.
    """

    def __init__(
        self,
        env: _native.NativeEnv,
        *,
        max_group: int = 512,
        gather: float = 0.0005,
        gather_slice: float = 0.0001,
        rounds: int = 2,
    ) -> None:
        self._env = env
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[_Request] = deque()
        self._busy = False
        self._recent: deque[int] = deque(maxlen=4)   # sizes of the last groups
        self.max_group = max_group
        self.gather = gather
        self.gather_slice = gather_slice
        if rounds < 1 or max_group < 1:
            raise ValueError(f"rounds and max_group must be >= 1, got {rounds} and {max_group}")
        self.rounds = rounds
        self.groups = 0          # transactions written through the queue
        self.grouped = 0         # requests written in them

    def append(self, log: _native.NativeLog, events: list, kind: int, expected: int, max_bytes: int) -> list[int]:
        if self._env.owns_transaction():      # inside transaction(): that transaction holds the writer lock
            return log.append(events, kind, expected, max_bytes)
        request = _Request(log, events, kind, expected, max_bytes)
        with self._cond:
            self._queue.append(request)
            lead = not self._busy
            self._busy = True
            self._cond.notify()
        if not lead:
            lead = self._wait(request)
        if lead:
            self._lead(request)
        if isinstance(request.result, BaseException):
            raise request.result
        return request.result

    def _wait(self, request: _Request) -> bool:
        """Wait for a result or the lead (True). Interrupted (e.g. KeyboardInterrupt) while
        still queued, the request is withdrawn unwritten; once taken, it is seen through
        (written, or led) before the interruption is raised."""
        interrupted: BaseException | None = None
        while True:
            try:
                request.ready.acquire()
                break
            except BaseException as e:
                with self._cond:
                    if request in self._queue and not request.lead:
                        self._queue.remove(request)
                        raise
                interrupted = e
        if interrupted is not None:
            if request.lead:
                self._lead(request)
            raise interrupted
        return request.lead

    def _lead(self, own: _Request) -> None:
        """Write queued requests in up to ``rounds`` groups, then hand over or step down;
        whatever happens, no taken request is left without its result."""
        batch: list[_Request] = []
        try:
            for _ in range(self.rounds):
                with self._cond:
                    # under contention, wait (briefly) for as many callers as the recent groups had
                    target = max(self._recent, default=1) - (0 if own.result is None else 1)
                    deadline = time.monotonic() + self.gather
                    while len(self._queue) < target:
                        queued = len(self._queue)
                        left = deadline - time.monotonic()
                        # each arrival wakes the wait; a quiet slice means nobody else is coming
                        if left <= 0 or not self._cond.wait(min(left, self.gather_slice)) and len(self._queue) == queued:
                            break
                    batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_group))]
                    self._recent.append(len(batch) + (0 if own.result is None else 1))
                    if not batch:
                        self._busy = False
                        return
                try:
                    results = self._env.append_group(
                        [(r.log, r.events, r.kind, r.expected, r.max_bytes) for r in batch]
                    )
                except Exception as e:  # noqa: BLE001 -- the transaction failed: every caller in it gets it
                    results = [e] * len(batch)
                self.groups += 1
                self.grouped += len(batch)
                for request, result in zip(batch, results):
                    request.result = result
                    self._hand(request, own)
                batch = []
        except BaseException as e:
            for request in batch:              # taken but not handed back: they get the error
                if not request.handed:
                    request.result = e
                    self._hand(request, own)
            self._hand_over()
            raise
        self._hand_over()

    @staticmethod
    def _hand(request: _Request, own: _Request) -> None:
        request.handed = True
        if request is not own:
            request.ready.release()

    def _hand_over(self) -> None:
        """Pass the lead to the head of the queue, or step down when it is empty."""
        with self._cond:
            if not self._queue:
                self._busy = False
                return
            head = self._queue[0]
        head.lead = True
        head.ready.release()
