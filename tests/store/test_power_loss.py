"""Power-loss proof: every durability mode of both engines on simulated crash states.

The harness (``tests/support/powerloss``) records each workload's writes and flushes with
an LD_PRELOAD recorder, builds the store directories a power loss could leave (unflushed
writes kept or dropped per 512-byte sector) and opens each in a new process as after a
reboot. CI runs a bounded sample (seeded); AETHER_POWER_LOSS_POINTS (crash points per
workload, default 12) and AETHER_POWER_LOSS_SUBSETS (random sector subsets per point beyond
the all/none states, default 1) and AETHER_POWER_LOSS_SEED make a longer or another run.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from support.powerloss import harness
from support.powerloss.harness import SECTOR, WORKLOADS, FileState, _apply, states_of

POINTS = int(os.environ.get("AETHER_POWER_LOSS_POINTS", "12"))
SUBSETS = int(os.environ.get("AETHER_POWER_LOSS_SUBSETS", "1"))
SEED = int(os.environ.get("AETHER_POWER_LOSS_SEED", "20261205"))

if shutil.which(os.environ.get("CC", "cc")) is None:
    pytest.fail("the power-loss recorder needs a C compiler (cc): apt-get install gcc", pytrace=False)


@pytest.fixture(scope="module")
def recorder():
    with tempfile.TemporaryDirectory() as tmp:
        yield harness.build_recorder(Path(tmp))


def run(engine, durability, workload, recorder, **kw):
    tally = harness.run(engine, durability, workload, seed=SEED, points=POINTS, subsets=SUBSETS,
                        recorder=recorder, **kw)
    print(f"power loss {engine}/{durability}/{workload}: {tally.row()}")
    assert tally.states > 0
    return tally


@pytest.mark.parametrize("workload", WORKLOADS)
@pytest.mark.parametrize(("engine", "durability"), [("lmdb", "sync"), ("journal", "sync"), ("journal", "metasync")])
def test_durable_modes_lose_nothing_in_any_crash_state(engine, durability, workload, recorder):
    tally = run(engine, durability, workload, recorder)
    assert (tally.lost, tally.partial, tally.invented, tally.unverified) == (0, 0, 0, 0), tally.messages
    killed = sum(n for error, n in tally.errors.items() if error.startswith("SIG"))
    assert tally.unopened == killed, tally.messages
    if killed and engine == "lmdb":
        pytest.xfail(f"OPEN BUG (issue 15): {killed} crash state(s) of the LMDB engine's sync mode crashed the "
                     f"opening process ({dict(tally.errors)}); seen in about 1 run of 10, not yet reproduced "
                     "on purpose; nothing acknowledged was missing from the states that opened")
    assert tally.unopened == 0, tally.messages


@pytest.mark.parametrize("workload", WORKLOADS)
def test_lmdb_metasync_may_lose_the_last_commits_but_never_corrupts(workload, recorder):
    tally = run("lmdb", "metasync", workload, recorder)
    assert (tally.partial, tally.unopened, tally.invented, tally.unverified) == (0, 0, 0, 0), tally.messages


@pytest.mark.parametrize("workload", WORKLOADS)
def test_journal_nosync_keeps_a_whole_prefix(workload, recorder):
    """Recent commits may be lost; what is left always opens, whole batches, no gap."""
    tally = run("journal", "nosync", workload, recorder)
    assert (tally.partial, tally.unopened, tally.invented, tally.unverified) == (0, 0, 0, 0), tally.messages


@pytest.mark.parametrize("workload", WORKLOADS)
def test_lmdb_nosync_may_refuse_to_open_but_what_opens_is_whole(workload, recorder):
    """LMDB without flushes: a crash can leave a store that does not open (a torn meta page
    or tree); the states that open hold whole batches and no invented event."""
    tally = run("lmdb", "nosync", workload, recorder)
    assert (tally.partial, tally.invented) == (0, 0), tally.messages
    assert set(tally.errors) <= {"IncompatibleFormatError", "StorageError", "CorruptRecordError", "StoreNotFoundError",
                                 "SIGBUS",
                                 "SIGSEGV"}, tally.errors


@pytest.mark.parametrize("engine", ["lmdb", "journal"])
def test_the_checker_catches_a_store_that_skips_its_flushes(engine, recorder):
    """The recorder's broken variant drops every fsync and O_DSYNC: `sync` then fails."""
    tally = run(engine, "sync", "single", recorder, drop_fsync=True)
    assert tally.lost + tally.unopened > 0, tally.row()


def test_small_traces_enumerate_every_sector_subset():
    files, names = {}, {}
    for op in [("P", 1, 0, "/nonexistent/f"), ("W", 1, 0, b"A" * 1024), ("F", 1, 0), ("W", 1, 512, b"B" * 1024)]:
        _apply(op, files, names)
    states = [s["/nonexistent/f"] for s in states_of(files, random.Random(0), 0)]
    assert len(states) == 4                                   # 2 unflushed sectors: 2**2 states
    a, b = b"A" * SECTOR, b"B" * SECTOR
    assert sorted(states) == sorted([a + a, a + b, a + a + b, a + b + b])   # torn and out of order alike


def test_a_flush_makes_earlier_writes_durable_and_later_ones_not():
    files, names = {}, {}
    for op in [("P", 1, 0, "/nonexistent/f"), ("W", 1, 0, b"x" * 100), ("F", 1, 0), ("W", 1, 100, b"y" * 10)]:
        _apply(op, files, names)
    assert isinstance(files["/nonexistent/f"], FileState)
    states = {s["/nonexistent/f"] for s in states_of(files, random.Random(0), 0)}
    assert states == {b"x" * 100, b"x" * 100 + b"y" * 10}


def test_a_shared_writable_mapping_of_a_data_file_is_refused():
    trace = harness.Trace([("P", 1, 0, "/nonexistent/data.mdb"), ("X", 1, 0)], Path("/nonexistent"))
    with pytest.raises(RuntimeError, match="shared writable mmap"):
        list(harness.crash_states(trace, random.Random(0), 1, 0))
