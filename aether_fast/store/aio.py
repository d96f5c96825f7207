"""asyncio face of the LMDB store: the same methods as awaitables.

Every call that can block (LMDB's writer lock, fsync, long reads) runs on a small thread
pool, so the event loop never waits; concurrent awaits from many tasks meet in the store's
group commit. A call cannot be interrupted halfway: cancelling an await lets the call
underneath finish, then raises CancelledError, so when the cancelled await ends the write
has happened completely (or failed as a whole); retrying it with the same event ids is
idempotent (it returns the original positions).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from ..model import ActorSnapshot, ColumnarEvents, Event, ExpectedVersion, ReplayResult
from .lmdb import LmdbEventStore
from .subscription import Subscription

if TYPE_CHECKING:
    from typing_extensions import Self

T = TypeVar("T")


class AsyncLmdbEventStore:
    """Wraps an LmdbEventStore (opened with the same arguments) for asyncio code."""

    def __init__(self, path: Any, *, workers: int = 8, **options: Any) -> None:
        self.store = LmdbEventStore(path, **options)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aether-fast")

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            while not call.done():        # settle the outcome before reporting the cancel
                try:
                    await asyncio.wait([call])
                except asyncio.CancelledError:
                    continue
            raise

    async def save_event(self, event: Event) -> int:
        return await self._run(self.store.save_event, event)

    async def append(
        self, actor_id: str, events: Sequence[Event], *, expected_version: ExpectedVersion = "any"
    ) -> list[int]:
        return await self._run(self.store.append, actor_id, events, expected_version=expected_version)

    async def transact(self, work: Callable[[LmdbEventStore], T]) -> T:
        """Run ``work(store)`` inside ``store.transaction()`` on one pool thread (a
        transaction belongs to one thread, so it cannot span awaits)."""

        def run() -> T:
            with self.store.transaction():
                return work(self.store)

        return await self._run(run)

    async def get_events(self, actor_id: str, from_version: int = 1) -> list[Event]:
        return await self._run(self.store.get_events, actor_id, from_version)

    async def get_events_with_errors(self, actor_id: str, from_version: int = 1) -> ReplayResult:
        return await self._run(self.store.get_events_with_errors, actor_id, from_version)

    async def get_latest_version(self, actor_id: str) -> int:
        return await self._run(self.store.get_latest_version, actor_id)

    async def last_position(self) -> int:
        return await self._run(self.store.last_position)

    async def read_columns(self, actor_id: str | None = None, **kwargs: Any) -> ColumnarEvents:
        return await self._run(self.store.read_columns, actor_id, **kwargs)

    async def read_all(self, from_position: int = 1, limit: int | None = None) -> AsyncIterator[Event]:
        """The global log; chunks are read on the pool."""
        iterator = self.store.read_all(from_position, limit)
        while True:
            chunk = await self._run(_take, iterator, 1024)
            for event in chunk:
                yield event
            if len(chunk) < 1024:
                return

    def subscribe(
        self, from_position: int = 1, *, event_types: Iterable[str] | None = None, poll_interval: float = 0.001
    ) -> Subscription:
        """A catch-up subscription; use it with ``async for``."""
        return self.store.subscribe(from_position, event_types=event_types, poll_interval=poll_interval)

    async def save_snapshot(self, snapshot: ActorSnapshot) -> None:
        await self._run(self.store.save_snapshot, snapshot)

    async def get_latest_snapshot(self, actor_id: str) -> ActorSnapshot | None:
        return await self._run(self.store.get_latest_snapshot, actor_id)

    async def close(self) -> None:
        """Wait for calls in flight, then close the store."""
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown, True)
        self.store.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _take(iterator, n: int) -> list:
    out = []
    for event in iterator:
        out.append(event)
        if len(out) == n:
            break
    return out
