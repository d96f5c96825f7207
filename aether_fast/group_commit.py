"""Group commit: concurrent appends of one LMDB environment share write transactions.

The first caller with nothing queued writes alone, at once (no added latency). Callers
that arrive while a commit is in flight queue up; when it ends, the head of the queue
leads: it writes the queued requests (up to ``max_group``) in one transaction with one
fsync, hands each caller its own positions or its own error, and passes the lead on.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from . import _native


class _Request:
    __slots__ = ("events", "expected", "kind", "lead", "log", "max_bytes", "ready", "result")

    def __init__(self, log, events, kind, expected, max_bytes) -> None:
        self.log = log
        self.events = events
        self.kind = kind
        self.expected = expected
        self.max_bytes = max_bytes
        self.ready = threading.Event()
        self.result: object = None
        self.lead = False


class GroupCommitter:
    """Gathers the appends of one environment (all its namespaces) into groups.

    ``max_group`` bounds the requests in one transaction; ``window`` (seconds, default 0)
    lets a leader wait that long for more requests when its group is not full.
    """

    def __init__(self, env: _native.NativeEnv, *, max_group: int = 512, window: float = 0.0) -> None:
        self._env = env
        self._lock = threading.Lock()
        self._queue: deque[_Request] = deque()
        self._busy = False
        self.max_group = max_group
        self.window = window
        self.groups = 0          # transactions committed by leaders of queued requests
        self.grouped = 0         # requests written in those transactions

    def append(self, log: _native.NativeLog, events: list, kind: int, expected: int, max_bytes: int) -> list[int]:
        if self._env.owns_transaction():      # inside transaction(): that transaction holds the writer lock
            return log.append(events, kind, expected, max_bytes)
        with self._lock:
            if not self._busy:
                self._busy = True
                request = None
            else:
                request = _Request(log, events, kind, expected, max_bytes)
                self._queue.append(request)
        if request is None:
            try:
                return log.append(events, kind, expected, max_bytes)
            finally:
                self._pass_lead()
        request.ready.wait()
        if request.lead:
            self._lead()
        if isinstance(request.result, BaseException):
            raise request.result
        return request.result

    def _pass_lead(self) -> None:
        with self._lock:
            if not self._queue:
                self._busy = False
                return
            head = self._queue[0]
        head.lead = True
        head.ready.set()

    def _lead(self) -> None:
        if self.window > 0 and len(self._queue) < self.max_group:
            time.sleep(self.window)
        with self._lock:
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_group))]
        try:
            results = self._env.append_group(
                [(r.log, r.events, r.kind, r.expected, r.max_bytes) for r in batch]
            )
        except BaseException as e:  # noqa: BLE001 -- the transaction failed: every waiting caller gets it
            results = [e] * len(batch)
        self.groups += 1
        self.grouped += len(batch)
        for request, result in zip(batch, results):
            request.result = result
            request.lead = False
        self._pass_lead()
        for request in batch:
            request.ready.set()
