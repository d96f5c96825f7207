"""Group commit: concurrent appends of one LMDB environment share write transactions.

Every append joins a queue. The caller that finds no leader becomes the leader: it takes
the queued requests (its own first, up to ``max_group``), writes them in one transaction
with one commit, hands each caller its own positions or its own error, wakes the
subscriptions once, and passes the lead to the head of the queue. A lone writer is never
delayed; under contention the leader waits up to ``gather`` seconds for as many callers
as the recent groups had (woken once they are there, not at each arrival), so that
groups stay full: with N threads each saving one event at a time, a full group of N
costs one commit where groups that split in two cost two.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable

from .. import _native
from ..errors import VersionConflictError

# upper bounds (seconds) of the commit-latency histogram buckets; the last bucket is +Inf
COMMIT_SECONDS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# upper bounds of the group-size histogram buckets (requests per transaction)
GROUP_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class CommitStats:
    """Counters of the appends of one environment, kept by its GroupCommitter: a few
    integer updates per transaction, read by ``LmdbEventStore.metrics()``."""

    __slots__ = ("commit_buckets", "commit_seconds", "commits", "conflicts", "events", "failures",
                 "group_buckets", "requests")

    def __init__(self) -> None:
        self.commits = 0          # group transactions committed (or failed)
        self.requests = 0         # append calls answered (inside explicit transactions too)
        self.events = 0           # events stored
        self.conflicts = 0        # append calls refused with VersionConflictError
        self.failures = 0         # append calls failed with any other error
        self.commit_seconds = 0.0
        self.commit_buckets = [0] * (len(COMMIT_SECONDS_BUCKETS) + 1)
        self.group_buckets = [0] * (len(GROUP_SIZE_BUCKETS) + 1)

    def record(self, results: list, seconds: float | None) -> None:
        """The outcomes of append calls: one committed group that took ``seconds``, or
        (``seconds`` None) one append inside an explicit transaction, counted when written."""
        if seconds is not None:
            self.commits += 1
            self.commit_seconds += seconds
            self.commit_buckets[bisect_left(COMMIT_SECONDS_BUCKETS, seconds)] += 1
            self.group_buckets[bisect_left(GROUP_SIZE_BUCKETS, len(results))] += 1
        self.requests += len(results)
        for result in results:
            if isinstance(result, list):
                self.events += len(result)
            elif isinstance(result, VersionConflictError):
                self.conflicts += 1
            else:
                self.failures += 1


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
        gather_slice: float = 0.0003,
        rounds: int = 1,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._env = env
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[_Request] = deque()
        self._busy = False
        self._want = 0                                # queued requests the gathering leader waits for
        self._recent: deque[int] = deque(maxlen=4)   # sizes of the last groups
        self.max_group = max_group
        self.gather = gather
        self.gather_slice = gather_slice
        if rounds < 1 or max_group < 1:
            raise ValueError(f"rounds and max_group must be >= 1, got {rounds} and {max_group}")
        self.rounds = rounds
        self.on_commit = on_commit
        self.stats = CommitStats()

    def append(self, log: _native.NativeLog, events: list, kind: int, expected: int, max_bytes: int) -> list[int]:
        if self._env.owns_transaction():      # inside transaction(): that transaction holds the writer lock
            try:
                positions = log.append(events, kind, expected, max_bytes)
            except Exception as e:
                self.stats.record([e], None)
                raise
            self.stats.record([positions], None)
            return positions
        request = _Request(log, events, kind, expected, max_bytes)
        with self._cond:
            self._queue.append(request)
            lead = not self._busy
            self._busy = True
            if len(self._queue) >= self._want:
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
                    self._want = target      # arrivals wake the leader only once it has enough
                    while len(self._queue) < target:
                        queued = len(self._queue)
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(min(left, self.gather_slice))
                        if len(self._queue) == queued:     # a quiet slice: nobody else is coming
                            break
                    self._want = 0
                    batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_group))]
                    self._recent.append(len(batch) + (0 if own.result is None else 1))
                    if not batch:
                        self._busy = False
                        return
                started = time.perf_counter()
                try:
                    results = self._env.append_group(
                        [(r.log, r.events, r.kind, r.expected, r.max_bytes) for r in batch]
                    )
                except Exception as e:  # noqa: BLE001 -- the transaction failed: every caller in it gets it
                    results = [e] * len(batch)
                self.stats.record(results, time.perf_counter() - started)
                for request, result in zip(batch, results):
                    request.result = result
                    self._hand(request, own)
                batch = []
                if self.on_commit is not None:
                    self.on_commit()
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


def cumulative(bounds: Iterable[float], counts: list[int]) -> tuple[tuple[float, int], ...]:
    """Per-bucket counts (the last one above every bound) as Prometheus cumulative buckets."""
    out, total = [], 0
    for bound, count in zip([*bounds, float("inf")], counts):
        total += count
        out.append((float(bound), total))
    return tuple(out)
