"""Shared fixtures: one fresh store of each kind, and a ``store`` fixture over both kinds.

``store`` is parametrized over ``"memory"`` and ``"lmdb"``; it drives the conformance
class in ``test_store_conformance.py``. Another store (e.g. JetStream) runs the same
tests by subclassing ``StoreConformance`` and overriding ``store`` in its class.
"""

from __future__ import annotations

import pytest
from support.nats_server import nats_server  # noqa: F401  (the fixture, for every test module)

from aether_fast import InMemoryEventStore, LmdbEventStore

STORE_KINDS = ("memory", "lmdb")


@pytest.fixture
def memory_store():
    store = InMemoryEventStore()
    yield store
    store.close()


@pytest.fixture
def lmdb_store(tmp_path):
    store = LmdbEventStore(tmp_path / "store")
    yield store
    store.close()


@pytest.fixture(params=STORE_KINDS)
def store(request):
    """A fresh, empty store of each kind in turn (closed at teardown)."""
    return request.getfixturevalue(f"{request.param}_store")
