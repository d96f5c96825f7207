"""Catch-up subscriptions: history then live, in order, no gap, no duplicate, across processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from aether_fast import Event, InvalidInputError, InvalidTypeError, LmdbEventStore


def ev(actor: str, version: int, event_type: str = "T") -> Event:
    return Event(event_type=event_type, actor_id=actor, version=version, data={"v": version})


def test_history_then_live_in_order(tmp_path):
    with LmdbEventStore(tmp_path / "s") as store:
        store.append("a", [ev("a", v) for v in range(1, 1501)])      # more than one chunk
        sub = store.subscribe()

        def writer():
            for v in range(1, 201):
                store.save_event(ev("b", v))

        t = threading.Thread(target=writer)
        t.start()
        got = [sub.next(timeout=10) for _ in range(1700)]
        t.join()
        assert [e.position for e in got] == list(range(1, 1701))
        assert sub.next(timeout=0.01) is None          # nothing more, nothing repeated
        assert sub.position == 1701


def test_from_position_and_event_types(tmp_path):
    with LmdbEventStore(tmp_path / "s") as store:
        for v in range(1, 11):
            store.save_event(ev("a", v, "Odd" if v % 2 else "Even"))
        sub = store.subscribe(4, event_types={"Even"})
        got = []
        while (e := sub.next(timeout=0.01)) is not None:
            got.append(e)
        assert [e.version for e in got] == [4, 6, 8, 10]
        store.save_event(ev("a", 11, "Odd"))
        store.save_event(ev("a", 12, "Even"))
        assert sub.next(timeout=5).version == 12


def test_stop_ends_a_blocking_iteration(tmp_path):
    with LmdbEventStore(tmp_path / "s") as store:
        store.save_event(ev("a", 1))
        sub = store.subscribe()
        seen = []
        t = threading.Thread(target=lambda: seen.extend(sub))
        t.start()
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.001)
        sub.stop()
        t.join(10)
        assert not t.is_alive()
        assert [e.version for e in seen] == [1]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"from_position": 0}, InvalidInputError),
        ({"from_position": "1"}, InvalidTypeError),
        ({"event_types": "T"}, InvalidTypeError),
        ({"event_types": [""]}, InvalidInputError),
        ({"poll_interval": 0}, InvalidInputError),
    ],
)
def test_bad_arguments(tmp_path, kwargs, error):
    with LmdbEventStore(tmp_path / "s") as store:
        pos = kwargs.pop("from_position", 1)
        with pytest.raises(error):
            store.subscribe(pos, **kwargs)


def test_async_iteration_sees_history_and_live(tmp_path):
    async def main(store):
        store.save_event(ev("a", 1))
        sub = store.subscribe()
        got = []

        async def consume():
            async for e in sub:
                got.append(e.version)
                if len(got) == 5:
                    sub.stop()

        task = asyncio.create_task(consume())
        for v in range(2, 6):
            await asyncio.sleep(0)
            store.save_event(ev("a", v))
        await asyncio.wait_for(task, 10)
        return got

    with LmdbEventStore(tmp_path / "s") as store:
        assert asyncio.run(main(store)) == [1, 2, 3, 4, 5]


WRITER = textwrap.dedent(
    """
    import sys
    from aether_fast import Event, LmdbEventStore
    path, n = sys.argv[1], int(sys.argv[2])
    with LmdbEventStore(path) as store:
        for v in range(1, n + 1):
            store.save_event(Event(event_type="T", actor_id="remote", version=v))
    """
)


def test_sees_commits_of_another_process(tmp_path):
    path = tmp_path / "s"
    with LmdbEventStore(path) as store:
        sub = store.subscribe()
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "300"])
        got = [sub.next(timeout=30) for _ in range(300)]
        assert proc.wait(30) == 0
        assert [(e.actor_id, e.version, e.position) for e in got] == [
            ("remote", v, v) for v in range(1, 301)
        ]


CONSUMER = textwrap.dedent(
    """
    import sys
    from aether_fast import Event, LmdbEventStore
    source_path, out_path, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
    source = LmdbEventStore(source_path)
    out = LmdbEventStore(out_path)
    done = out.last_position()
    resume = 1
    if done:
        last = next(out.read_all(done))
        resume = int(last.metadata["sourcePosition"]) + 1
    print("resume", resume, flush=True)
    sub = source.subscribe(resume)
    for n, e in enumerate(sub):
        # the output and its checkpoint (the source position) commit together
        out.save_event(Event(event_type="Copied", actor_id="copy", version=e.position,
                             data=e.payload, metadata={"sourcePosition": str(e.position)}))
        if e.position == total:
            break
    """
)


def test_consumer_resumes_after_sigkill_without_gap_or_repeat(tmp_path):
    source_path, out_path = tmp_path / "source", tmp_path / "out"
    total = 3000
    with LmdbEventStore(source_path) as store:
        for start in range(1, total + 1, 100):
            store.append("src", [ev("src", v) for v in range(start, start + 100)])
    resumes = []
    with LmdbEventStore(out_path) as watch:   # the parent watches the output's progress
        for round_ in range(3):   # killed twice mid-way, then left to finish
            proc = subprocess.Popen(
                [sys.executable, "-c", CONSUMER, str(source_path), str(out_path), str(total)],
                stdout=subprocess.PIPE, text=True,
            )
            resumes.append(int(proc.stdout.readline().split()[1]))
            if round_ < 2:
                deadline = time.monotonic() + 30
                while watch.last_position() < (round_ + 1) * 500 and time.monotonic() < deadline:
                    time.sleep(0.002)
                os.kill(proc.pid, signal.SIGKILL)     # wherever it is
                proc.wait(10)
            else:
                assert proc.wait(60) == 0
        copied = list(watch.read_all())
    assert [int(e.metadata["sourcePosition"]) for e in copied] == list(range(1, total + 1))
    assert resumes[0] == 1 and 1 < resumes[1] < resumes[2] <= total


def test_position_follows_delivery_not_reading(tmp_path):
    """Resuming from ``position`` after any number of deliveries loses nothing."""
    with LmdbEventStore(tmp_path / "s") as store:
        store.append("a", [ev("a", v) for v in range(1, 11)])
        sub = store.subscribe()
        assert sub.next(timeout=1).position == 1
        assert sub.position == 2                      # not past the buffered chunk
        resumed = store.subscribe(sub.position)
        assert [resumed.next(timeout=1).version for _ in range(9)] == list(range(2, 11))
        filtered = store.subscribe(event_types={"Nothing"})
        assert filtered.next(timeout=0.05) is None
        assert filtered.position == 11                # skipped events count as handed out


def test_a_commit_between_check_and_wait_is_not_missed(tmp_path):
    """The notifier's generation moves on every commit, so a reader that checked just
    before a commit does not sleep a whole poll interval."""
    with LmdbEventStore(tmp_path / "s") as store:
        sub = store.subscribe(poll_interval=5.0)
        generation = store._notifier.generation
        store.save_event(ev("a", 1))                  # lands before the reader waits
        # it moved although nobody was waiting: a wait on the old generation returns at once
        assert store._notifier.generation == generation + 1
        assert sub.next(timeout=1).version == 1
