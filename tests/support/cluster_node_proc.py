"""One cluster node in its own process, for the fault tests (killed with SIGKILL by them).

    python cluster_node_proc.py NODE_ID RECORD_FILE URLS CONFIG_JSON

URLS (comma-separated) are tried in their order, so a test knows which server a node is on.

Appends one JSON line per fact to RECORD_FILE, each in one unbuffered O_APPEND write (so a
SIGKILL never leaves half a line): ``started``; ``became_leader`` / ``lost_leadership`` /
``new_leader`` with ``term``; ``assignment`` with ``revision`` and the node's ``owned``
shards after each assignment it applies. Every line has ``t`` (wall clock), ``node`` and
``pid``. SIGTERM stops the node gracefully (``stopped`` is the last line then).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

import nats

from aether_fast import EventBus
from aether_fast.nats.cluster import CLUSTER_NAMESPACE, SHARDS_REBALANCED, ClusterConfig, ClusterNode


def main(node_id: str, record_file: str, urls: str, config_json: str) -> None:
    fd = os.open(record_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def record(kind: str, **fields: object) -> None:
        line = {"t": time.time(), "node": node_id, "pid": os.getpid(), "kind": kind, **fields}
        os.write(fd, json.dumps(line).encode() + b"\n")

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        nc = await nats.connect(urls.split(","), max_reconnect_attempts=-1, reconnect_time_wait=0.1,
                                connect_timeout=2, dont_randomize=True)   # the first URL first
        bus = EventBus()
        node = ClusterNode(
            nc, node_id, config=ClusterConfig(**json.loads(config_json)), bus=bus,
            on_became_leader=lambda term: record("became_leader", term=term),
            on_lost_leadership=lambda term: record("lost_leadership", term=term),
            on_new_leader=lambda leader, term: record("new_leader", leader=leader, term=term),
        )
        bus.subscribe(CLUSTER_NAMESPACE, event_types=[SHARDS_REBALANCED], callback=lambda e: record(
            "assignment", revision=e.data["revision"], owned=sorted(node.owned_shards)))
        async with node:
            record("started")
            await stop.wait()
        record("stopped")
        await nc.close()

    asyncio.run(run())


if __name__ == "__main__":
    main(*sys.argv[1:5])
