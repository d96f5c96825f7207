"""Cross-node notices: a JetStreamEventStore given a NatsEventBus publishes ``EventStored``
on NATS, and a NatsEventBus in another process (another connection, another node id)
sees each notice, with the position the event was stored at."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from pathlib import Path

import pytest

from aether_fast.nats.bus import NatsEventBus
from aether_fast.nats.jetstream import JetStreamEventStore
from aether_fast.notifications import EventStored

pytest.importorskip("nats", reason="nats-py not installed: pip install 'aether_fast[nats]'")

ROOT = Path(__file__).resolve().parents[2]
TEST_TIMEOUT = 60.0
WAIT = 20.0

WRITER = textwrap.dedent("""
    import asyncio, sys
    from aether_fast import Event
    from aether_fast.nats.jetstream import JetStreamEventStore
    from aether_fast.nats.bus import NatsEventBus

    async def main(url):
        async with NatsEventBus(servers=url, connect_timeout=5) as bus:
            own = await bus.subscribe("orders", event_types=["EventStored"])
            store = await JetStreamEventStore.open(url, namespace="orders", bus=bus)
            await store.save_event(Event(event_type="OrderPlaced", actor_id="order-1", version=1, data={}))
            await store.save_event(Event(event_type="OrderPlaced", actor_id="order-2", version=1, data={}))
            if store.atomic_batches:
                await store.append("order-1", [Event(event_type="OrderPaid", actor_id="order-1", version=v, data={})
                                               for v in (2, 3)])
            else:
                for v in (2, 3):
                    await store.save_event(Event(event_type="OrderPaid", actor_id="order-1", version=v, data={}))
            await bus.flush()
            await store.close()
            print(len(own.drain()))     # the writer's own subscriber: each notice once

    asyncio.run(asyncio.wait_for(main(sys.argv[1]), 40))
""")


def test_event_stored_notices_reach_a_bus_in_another_process(nats_server):
    async def main() -> None:
        async with NatsEventBus(servers=nats_server.url, connect_timeout=5) as reader:
            notices = await reader.subscribe("orders", event_types=["EventStored"])
            await reader.flush()
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", WRITER, nats_server.url, cwd=ROOT, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), WAIT * 2)
            assert proc.returncode == 0, err.decode()
            assert out.decode().split() == ["4"]
            got = [EventStored.from_event(await notices.aget(timeout=WAIT)) for _ in range(4)]
            async with await JetStreamEventStore.open(nats_server.url, namespace="orders") as store:
                stored = [e async for e in store.read_all()]
            assert [(n.event_id, n.actor_id, n.version, n.position) for n in got] == [
                (e.id, e.actor_id, e.version, e.position) for e in stored]
            assert [n.position for n in got] == [1, 2, 3, 4]
            await reader.flush()
            assert notices.pending == 0 and reader.metrics().total("subscribe_errors") == 0

    asyncio.run(asyncio.wait_for(main(), TEST_TIMEOUT))
