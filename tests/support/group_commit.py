"""Helpers of the group-commit tests: events, waiting, and calls queued behind a held writer lock."""

from __future__ import annotations

import threading
import time

from aether_fast import Event, LmdbEventStore


def ev(actor: str, version: int, **kw) -> Event:
    return Event(event_type="T", actor_id=actor, version=version, **kw)


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.001)


def run_queued(store: LmdbEventStore, calls: list) -> list:
    """Hold the writer lock in a transaction of another thread, start ``calls`` in threads,
    wait until all but the first (which writes alone, blocked on the lock) are queued,
    then release: the queued calls must be written as one group."""
    results: list = [None] * len(calls)
    held = threading.Event()
    release = threading.Event()

    def holder():
        with store.transaction():
            held.set()
            release.wait(10)

    def call(i):
        try:
            results[i] = calls[i]()
        except Exception as e:  # noqa: BLE001 -- the outcome is what the test checks
            results[i] = e

    h = threading.Thread(target=holder)
    h.start()
    held.wait(10)
    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(calls))]
    threads[0].start()
    wait_for(lambda: store._committer._busy)
    for t in threads[1:]:
        t.start()
    wait_for(lambda: len(store._committer._queue) == len(calls) - 1)
    release.set()
    for t in [h, *threads]:
        t.join(10)
    return results
