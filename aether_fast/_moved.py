"""The module paths of before the subpackages, kept for one release (0.2) as aliases.

``import aether_fast.lmdb_store`` (or any old path below) still works: it warns with a
DeprecationWarning naming the new path and hands over the new module itself, so every
name, public or private, is the same object as at the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

MOVED = {
    "aether_fast.lmdb_store": "aether_fast.store.lmdb",
    "aether_fast.memory": "aether_fast.store.memory",
    "aether_fast.group_commit": "aether_fast.store.group_commit",
    "aether_fast.subscription": "aether_fast.store.subscription",
    "aether_fast.aio": "aether_fast.store.aio",
        "aether_fast._nats_server": "aether_fast.nats.server",
    "aether_fast.nats_bus": "aether_fast.nats.bus",
    "aether_fast.jetstream": "aether_fast.nats.jetstream",
    "aether_fast.cluster": "aether_fast.nats.cluster",
    "aether_fast.admin": "aether_fast.store.admin",
    "aether_fast.cli": "aether_fast.__main__",
    "aether_fast.bench_bus": "aether_fast.bench.bus",
    "aether_fast.bench_concurrency": "aether_fast.bench.concurrency",
    "aether_fast.bench_eventsourcing": "aether_fast.bench.eventsourcing",
    "aether_fast.bench_jetstream": "aether_fast.bench.jetstream",
    "aether_fast.bench_nats_bus": "aether_fast.bench.nats_bus",
    "aether_fast.bench_ring": "aether_fast.bench.ring",
    "aether_fast.bench_plot": "aether_fast.bench.plot",
}


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module path and loads it as the module at its new path."""

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} is deprecated and will be removed after 0.2: import {new}",
                      DeprecationWarning, stacklevel=_caller_level())
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """The new module is loaded already."""


def _caller_level() -> int:
    """The stack level of the first frame outside the import machinery (for the warning)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and (frame.f_code.co_filename.startswith("<frozen importlib")
                                 or frame.f_code.co_filename == __file__):
        frame, level = frame.f_back, level + 1
    return level


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
