"""Catch-up subscriptions: every event of a log from a position on, history then live.

A subscription reads the log in chunks from its position; once it has caught up it waits
for new commits: commits made through this process wake it at once, commits of other
processes are seen by polling (``poll_interval``, default 1 ms). Positions are gapless
and immutable, so it delivers every event once, in position order, with no gap.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from ..errors import CorruptRecordError, InvalidInputError, InvalidTypeError
from ..model import Event, check_position

if TYPE_CHECKING:
    from typing_extensions import Self

_CHUNK = 1024
_log = logging.getLogger("aether_fast.store.subscription")


class CommitNotifier:
    """Wakes the subscriptions of one environment when this process commits."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._listeners: set[Callable[[], None]] = set()
        self.generation = 0
        self.waiting = 0

    def notify(self) -> None:
        with self._cond:
            self.generation += 1        # always: a reader between its check and its wait sees it
            if self.waiting:
                self._cond.notify_all()
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # noqa: BLE001 -- a reader's trouble must not fail a committed write
                _log.warning("a subscription's wake-up failed", exc_info=True)

    def wait(self, generation: int, timeout: float) -> None:
        with self._cond:
            if self.generation == generation:
                self.waiting += 1
                try:
                    self._cond.wait(timeout)
                finally:
                    self.waiting -= 1

    def add_listener(self, listener: Callable[[], None]) -> None:
        self._listeners.add(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        self._listeners.discard(listener)


class Subscription:
    """Iterate events from ``from_position`` on: ``for event in sub`` blocks until the next
    event or ``stop()``; ``sub.next(timeout)`` returns None on timeout; ``async for``
    works too. ``position`` follows what was handed out: one past the last delivered (or
    filtered-out) event, so a consumer that stores it resumes without gap or repeat."""

    def __init__(
        self,
        read_range: Callable[[int, int], list[Event]],
        notifier: CommitNotifier,
        *,
        from_position: int = 1,
        event_types: Iterable[str] | None = None,
        poll_interval: float = 0.001,
    ) -> None:
        self._read_range = read_range
        self._notifier = notifier
        self.position = check_position(from_position, "from_position")
        self._read_position = self.position
        if event_types is not None:
            if isinstance(event_types, str):
                raise InvalidTypeError("event_types must be a collection of str, not one str")
            event_types = frozenset(event_types)
            if not all(isinstance(t, str) and t for t in event_types):
                raise InvalidInputError(f"event_types must be non-empty strings, got {sorted(map(repr, event_types))}")
        self._types = event_types
        if not isinstance(poll_interval, (int, float)) or not 0 < poll_interval <= 10:
            raise InvalidInputError(f"poll_interval must be in (0, 10] seconds, got {poll_interval!r}")
        self._poll = float(poll_interval)
        self._buffer: deque[Event] = deque()
        self._stopped = threading.Event()

    # -- reading ---------------------------------------------------------------------

    def _fill(self) -> bool:
        """Read one chunk into the buffer; False when caught up (nothing new)."""
        try:
            chunk = self._read_range(self._read_position, _CHUNK)
        except CorruptRecordError as e:   # deliver what precedes the damage; the next read raises
            if e.position is None or e.position <= self._read_position:
                raise
            chunk = self._read_range(self._read_position, e.position - self._read_position)
        if not chunk:
            return False
        self._read_position = chunk[-1].position + 1
        types = self._types
        self._buffer.extend(chunk if types is None else [e for e in chunk if e.event_type in types])
        if not self._buffer:        # all filtered out: nothing to deliver before the cursor
            self.position = self._read_position
        return True

    def _take(self) -> Event:
        event = self._buffer.popleft()
        self.position = event.position + 1
        return event

    def next(self, timeout: float | None = None) -> Event | None:
        """The next event, waiting up to ``timeout`` seconds (None: until stopped); None on
        timeout or after ``stop()``."""
        deadline = None if timeout is None else _now() + timeout
        while not self._stopped.is_set():
            if self._buffer:
                return self._take()
            generation = self._notifier.generation
            if self._fill():
                if deadline is not None and not self._buffer and _now() >= deadline:
                    return None
                continue
            wait = self._poll if deadline is None else min(self._poll, deadline - _now())
            if wait <= 0:
                return None
            self._notifier.wait(generation, wait)
        return None

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        event = self.next()
        if event is None:
            raise StopIteration
        return event

    def stop(self) -> None:
        """End the iteration (also from another thread)."""
        self._stopped.set()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- asyncio -----------------------------------------------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        event = await self.next_async()
        if event is None:
            raise StopAsyncIteration
        return event

    async def next_async(self, timeout: float | None = None) -> Event | None:
        """Like ``next`` without blocking the event loop: chunk reads are short native
        calls; waiting is an asyncio wait woken by this process's commits or the poll."""
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(woken.set)
            except RuntimeError:     # the loop has closed
                pass

        deadline = None if timeout is None else loop.time() + timeout
        self._notifier.add_listener(wake)
        try:
            while not self._stopped.is_set():
                if self._buffer:
                    return self._take()
                woken.clear()
                if self._fill():
                    if not self._buffer:           # a filtered-out chunk: let the loop run
                        await asyncio.sleep(0)
                        if deadline is not None and loop.time() >= deadline:
                            return None
                    continue
                wait = self._poll if deadline is None else min(self._poll, deadline - loop.time())
                if wait <= 0:
                    return None
                try:
                    await asyncio.wait_for(woken.wait(), wait)
                except asyncio.TimeoutError:
                    pass
            return None
        finally:
            self._notifier.remove_listener(wake)


_now = time.monotonic
