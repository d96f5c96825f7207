"""The nats-server test fixture itself: kill (SIGKILL by pid) and restart (same port, same store)."""

from __future__ import annotations

import asyncio
import os

import pytest

nats = pytest.importorskip("nats", reason="nats-py not installed: pip install 'aether_fast[nats]'")


async def _stream_messages(url: str) -> int:
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=1)
    try:
        return (await nc.jetstream().stream_info("FIXTURE")).state.messages
    finally:
        await nc.close()


async def _store_two(url: str) -> None:
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=1)
    try:
        js = nc.jetstream()
        await js.add_stream(name="FIXTURE", subjects=["fixture.>"])
        for i in range(2):
            await js.publish(f"fixture.{i}", b"x")
    finally:
        await nc.close()


def test_kill_and_restart_keep_port_and_jetstream_store(nats_server):
    assert nats_server.monitor("/varz")["jetstream"]["config"]["store_dir"].startswith(nats_server.store_dir)
    asyncio.run(asyncio.wait_for(_store_two(nats_server.url), 30))
    port, pid = nats_server.port, nats_server.pid

    nats_server.kill()
    assert nats_server.pid is None and not nats_server.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)                     # gone (and reaped)

    nats_server.restart()
    assert nats_server.port == port and nats_server.pid != pid and nats_server.running
    assert asyncio.run(asyncio.wait_for(_stream_messages(nats_server.url), 30)) == 2

    nats_server.restart()                   # a graceful restart of a running server
    assert nats_server.port == port
    assert asyncio.run(asyncio.wait_for(_stream_messages(nats_server.url), 30)) == 2


def test_stop_removes_its_own_store_dir():
    from support.nats_server import NatsServer, require_nats

    with NatsServer(jetstream=True, binary=require_nats()) as server:
        store = server.store_dir
        assert store is not None and os.path.isdir(store)
    assert not os.path.exists(store)


def test_a_server_that_cannot_start_leaves_nothing_behind():
    from support.nats_server import NatsServer, require_nats

    require_nats()
    server = NatsServer(jetstream=True, extra_args=("--no-such-flag",))
    with pytest.raises(RuntimeError, match="did not start"):
        server.start()
    assert server.store_dir is None and not server.running
