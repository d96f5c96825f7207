"""Group commit: concurrent appends share one transaction, each keeping its own outcome."""

from __future__ import annotations

import threading

import pytest
from support.group_commit import ev, run_queued, wait_for

from aether_fast import InvalidInputError, LmdbEventStore, VersionConflictError


def test_queued_appends_share_one_transaction(tmp_path):
    with LmdbEventStore(tmp_path / "s") as store:
        txn_before = store.info()["last_txn_id"]
        results = run_queued(store, [lambda a=a: store.save_event(ev(f"a{a}", 1)) for a in range(8)])
        assert sorted(results) == list(range(1, 9))
        # the first caller's own write (it was blocked on the lock), then one group of 7
        assert store._committer.stats.commits == 2
        assert store._committer.stats.requests == 8
        # the empty holder transaction commits nothing: two commits in all
        assert store.info()["last_txn_id"] - txn_before == 2
        assert [e.position for e in store.read_all()] == list(range(1, 9))


def test_subscribers_are_woken_once_per_committed_group(tmp_path):
    with LmdbEventStore(tmp_path / "s") as store:
        generation = store._notifier.generation
        run_queued(store, [lambda a=a: store.save_event(ev(f"a{a}", 1)) for a in range(8)])
        # two groups (the first caller alone, then 7): two wake-ups, plus the holder's
        # empty transaction; not one per call
        assert store._committer.stats.commits == 2
        assert store._notifier.generation - generation == 3
        sub = store.subscribe(1)
        assert [sub.next(timeout=5).position for _ in range(8)] == list(range(1, 9))
        sub.stop()


def test_a_conflict_in_a_group_fails_only_its_request(tmp_path):
    with LmdbEventStore(tmp_path / "s") as store:
        store.save_event(ev("taken", 1))
        calls = [
            lambda: store.save_event(ev("first", 1)),
            lambda: store.save_event(ev("x", 1)),
            lambda: store.save_event(ev("taken", 1)),                     # conflict
            lambda: store.append("y", [ev("y", 1), ev("y", 2)], expected_version=5),  # conflict
            lambda: store.save_event(ev("big", 1, data=b"x" * 200)),
            lambda: store.append("z", [ev("z", 1), ev("z", 2)], expected_version="no_stream"),
        ]
        store.max_event_bytes = 150   # the "big" request fails its size check, in the group
        results = run_queued(store, calls)
        assert isinstance(results[2], VersionConflictError) and results[2].current_version == 1
        assert isinstance(results[3], VersionConflictError) and results[3].expected_version == 5
        assert isinstance(results[4], InvalidInputError)
        written = [r for i, r in enumerate(results) if i not in (2, 3, 4)]
        flat = sorted(p for r in written for p in (r if isinstance(r, list) else [r]))
        assert flat == list(range(2, 2 + len(flat)))
        assert store.get_latest_version("y") == 0
        assert store.get_latest_version("big") == 0
        assert [e.version for e in store.get_events("z")] == [1, 2]
        assert store.get_latest_version("x") == 1


def test_same_version_race_through_groups(tmp_path):
    """Many threads racing on one actor's version through group commit: one winner each round."""
    with LmdbEventStore(tmp_path / "s") as store:
        for version in range(1, 6):
            barrier = threading.Barrier(16)
            outcomes: list = []

            def racer(v=version, barrier=barrier, outcomes=outcomes):
                barrier.wait()
                try:
                    outcomes.append(store.save_event(ev("hot", v)))
                except VersionConflictError:
                    outcomes.append("conflict")

            threads = [threading.Thread(target=racer) for _ in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            assert outcomes.count("conflict") == 15
        assert [e.version for e in store.get_events("hot")] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("durability", ["sync", "nosync"])
def test_many_threads_every_append_lands_once(tmp_path, durability):
    with LmdbEventStore(tmp_path / "s", durability=durability) as store:
        def writer(w):
            for v in range(1, 41):
                store.save_event(ev(f"w{w}", v))

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert store.last_position() == 320
        assert [e.position for e in store.read_all()] == list(range(1, 321))
        for w in range(8):
            assert [e.version for e in store.get_events(f"w{w}")] == list(range(1, 41))


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt during the test, even when the test run was started
    with SIGINT ignored (as a shell does for a command run in the background)."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_an_interrupted_queued_caller_is_withdrawn_and_nothing_is_stuck(tmp_path, sigint_raises):
    import os
    import signal

    with LmdbEventStore(tmp_path / "s") as store:
        held, release = threading.Event(), threading.Event()

        def holder():
            with store.transaction():
                held.set()
                release.wait(10)

        h = threading.Thread(target=holder)
        h.start()
        held.wait(10)
        first = threading.Thread(target=lambda: store.save_event(ev("first", 1)))
        first.start()                                   # leads, blocked on the writer lock
        wait_for(lambda: store._committer._busy)

        def interrupt_when_queued():
            wait_for(lambda: len(store._committer._queue) == 1)
            os.kill(os.getpid(), signal.SIGINT)        # a real signal wakes the blocked wait

        threading.Thread(target=interrupt_when_queued).start()
        with pytest.raises(KeyboardInterrupt):
            store.save_event(ev("interrupted", 1))      # queued as a follower, then interrupted
        assert len(store._committer._queue) == 0        # withdrawn
        release.set()
        h.join(10)
        first.join(10)
        assert store.save_event(ev("after", 1)) == 2    # the committer is not stuck
        assert store.get_latest_version("interrupted") == 0
        assert [e.actor_id for e in store.read_all()] == ["first", "after"]


def test_group_size_is_bounded_by_the_store_option(tmp_path):
    with LmdbEventStore(tmp_path / "s", group_max=3, group_gather=0) as store:
        results = run_queued(store, [lambda a=a: store.save_event(ev(f"a{a}", 1)) for a in range(8)])
        assert sorted(results) == list(range(1, 9))
        # the first caller alone, then the 7 queued ones in groups of at most 3
        assert store._committer.stats.requests == 8 and store._committer.stats.commits == 4


@pytest.mark.parametrize("options", [{"group_max": 0}, {"group_gather": -1}, {"group_gather": "1"}])
def test_bad_group_options(tmp_path, options):
    with pytest.raises((InvalidInputError, TypeError)):
        LmdbEventStore(tmp_path / "s", **options)
