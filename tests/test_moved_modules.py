"""The module paths of before the subpackages still import, for one release: each warns
with a DeprecationWarning naming its new path and is the new module itself."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from aether_fast._moved import MOVED

NEEDS_NATS = {"aether_fast.cluster", "aether_fast.bench_nats_bus", "aether_fast.bench_jetstream"}
NEEDS_EVENTSOURCING = {"aether_fast.bench_eventsourcing"}


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_an_old_path_warns_and_is_the_new_module(old, new):
    if old in NEEDS_NATS:
        pytest.importorskip("nats", reason=f"{new} needs nats-py: pip install nats-py")
    if old in NEEDS_EVENTSOURCING:
        pytest.importorskip("eventsourcing", reason=f"{new} needs the eventsourcing library")
    code = (
        "import importlib, warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({new!r})\n"
        "assert old is new, (old, new)\n"
        "moved = [w for w in caught if issubclass(w.category, DeprecationWarning)]\n"
        f"assert len(moved) == 1 and {new!r} in str(moved[0].message), [str(w.message) for w in caught]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_from_import_of_an_old_module_name_gives_the_new_module():
    with pytest.warns(DeprecationWarning, match="aether_fast.store.lmdb"):
        from aether_fast import lmdb_store
    assert lmdb_store is importlib.import_module("aether_fast.store.lmdb")
    assert lmdb_store.LmdbEventStore.__module__ == "aether_fast.store.lmdb"


def test_an_unknown_module_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("aether_fast.no_such_module")
