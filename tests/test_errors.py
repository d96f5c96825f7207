"""The one error tree: every error class of aether_fast lives in aether_fast.errors, is
exported from aether_fast, and the modules that raise it re-export that same class, so the
old import paths (``from aether_fast.bus import BusClosedError``) keep working."""

from __future__ import annotations

import importlib
import pickle
import pkgutil
import subprocess
import sys

import pytest

import aether_fast
from aether_fast import errors

# the errors that were defined in the module that raises them, and still import from there
REEXPORTED = {
    "aether_fast.store.admin": ["ImportRefusedError"],
    "aether_fast.bus": [
        "BusClosedError", "ReceiveTimeoutError", "SubscriberOverflowError", "PublishTimeoutError"],
    "aether_fast.nats.cluster": ["ClusterError", "ClusterConfigError"],
    "aether_fast.nats.jetstream": ["AtomicBatchUnsupportedError", "TransactionConflictError"],
    "aether_fast.nats.bus": ["NatsBusError", "NatsAccessError", "MalformedMessageError"],
    "aether_fast._native": ["EmptyRingError"],
    "aether_fast.ring": ["EmptyRingError"],
}

# each moved class with its bases as they were before the move
BASES = {
    "ImportRefusedError": (errors.InvalidInputError,),
    "BusClosedError": (errors.AetherError,),
    "ReceiveTimeoutError": (errors.AetherError, TimeoutError),
    "SubscriberOverflowError": (errors.AetherError,),
    "PublishTimeoutError": (errors.SubscriberOverflowError, TimeoutError),
    "ClusterError": (errors.AetherError,),
    "ClusterConfigError": (errors.ClusterError,),
    "AtomicBatchUnsupportedError": (errors.StorageError,),
    "TransactionConflictError": (errors.AetherError,),
    "NatsBusError": (errors.AetherError,),
    "NatsAccessError": (errors.NatsBusError,),
    "MalformedMessageError": (errors.InvalidInputError,),
    "EmptyRingError": (errors.AetherError, LookupError),
}

# errors that are not part of the library's tree: the CLI's own usage error, never raised by the API
OUTSIDE_THE_TREE = {"aether_fast.__main__.CommandError"}


@pytest.mark.parametrize(("module", "name"), [(m, n) for m, names in REEXPORTED.items() for n in names])
def test_an_old_import_path_gives_the_class_of_the_error_tree(module, name):
    if module == "aether_fast.nats.cluster":
        pytest.importorskip("nats", reason="aether_fast.nats.cluster needs nats-py: pip install nats-py")
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)
    assert getattr(aether_fast, name) is getattr(errors, name)


@pytest.mark.parametrize("name", sorted(BASES))
def test_a_moved_error_keeps_its_bases(name):
    cls = getattr(errors, name)
    assert cls.__bases__ == BASES[name]
    assert cls.__module__ == "aether_fast.errors"


def test_every_error_of_the_tree_is_exported_and_rooted_at_aether_error():
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.AetherError), name
        assert name in aether_fast.__all__ and getattr(aether_fast, name) is cls, name


def test_no_module_of_the_package_defines_an_error_of_its_own():
    """Private exceptions (``_Transient``, ...) are internal signals caught in their module."""
    pytest.importorskip("nats", reason="aether_fast.nats.cluster needs nats-py: pip install nats-py")
    strays = set()
    for info in pkgutil.walk_packages(aether_fast.__path__, "aether_fast."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, BaseException)
                    and not value.__name__.startswith("_") and value.__module__.startswith("aether_fast.")
                    and value.__module__ != "aether_fast.errors"):
                strays.add(f"{value.__module__}.{value.__qualname__}")
    assert strays == OUTSIDE_THE_TREE


@pytest.mark.parametrize("error", [
    errors.ImportRefusedError("bad JSON", 7, 3),
    errors.SubscriberOverflowError("full", "tenant-a"),
    errors.PublishTimeoutError("no room", "tenant-a"),
    errors.NatsAccessError("denied", "aether.events.x", "x"),
], ids=lambda e: type(e).__name__)
def test_a_moved_error_with_fields_pickles_with_them(error):
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error) and str(back) == str(error)
    assert vars(back) == vars(error)


def test_the_error_tree_and_its_nats_errors_need_no_nats_py():
    """Without nats-py, the cluster and NATS errors still import (and the cluster module
    alone says what to install)."""
    code = (
        "import sys; sys.modules['nats'] = None\n"
        "import aether_fast\n"
        "from aether_fast import ClusterConfigError, NatsAccessError\n"
        "from aether_fast.errors import ClusterError\n"
        "assert issubclass(ClusterConfigError, ClusterError)\n"
        "assert issubclass(NatsAccessError, aether_fast.AetherError)\n"
        "try:\n"
        "    import aether_fast.nats.cluster\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "needs nats-py" in done.stdout
