"""NATS access control: the bus and the JetStream store against real nats-servers that
require credentials (a config file with users, an nkey and permissions; a token; TLS).

A user whose permissions deny one namespace's subjects gets NatsAccessError naming the
subject and namespace from the bus (at ``flush()``: core publishes are denied
asynchronously) and from the store (on the write), and an admin connection sees that
nothing was written; wrong credentials fail fast with NatsAccessError.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from aether_fast import Event
from aether_fast.nats.bus import NatsAccessError, NatsEventBus, permission_denial
from aether_fast.nats.jetstream import JetStreamConfig, JetStreamEventStore, SyncJetStreamEventStore

nats = pytest.importorskip("nats", reason="nats-py not installed: pip install 'aether_fast[nats]'")

from support.nats_server import NatsServer, require_nats

TEST_TIMEOUT = 30.0
WAIT = 10.0
ADMIN = {"user": "admin", "password": "admin-pw"}
BOB = {"user": "bob", "password": "bob-pw"}
# bob may publish anywhere but to the namespace "secret": its bus subject and its event stream
DENIED_BUS_SUBJECT = "aether.events.secret"
DENIED_STORE_SUBJECTS = "aether.store.secret_events.>"
DENIED_SUBSCRIPTION = "aether.events.private"      # and may not subscribe to "private"
CONFIG = JetStreamConfig(timeout=1.0, retry_for=10.0)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, TEST_TIMEOUT))


def ev(actor: str = "order-1", version: int = 1) -> Event:
    return Event(event_type="OrderPlaced", actor_id=actor, version=version, data={"n": version})


def nkey_user(tmp_path: Path) -> tuple[str, Path] | None:
    """(public key, seed file) of a new nkey user, or None without the nkeys package."""
    try:
        import nkeys
    except ImportError:
        return None
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(seed)
    return nkeys.from_seed(bytearray(seed)).public_key.decode(), seed_file


def write_config(tmp_path: Path, nkey_public: str | None) -> Path:
    bob_permissions = (f'permissions: {{publish: {{allow: [">"], deny: ["{DENIED_BUS_SUBJECT}", '
                       f'"{DENIED_STORE_SUBJECTS}"]}}, subscribe: {{allow: [">"], deny: ["{DENIED_SUBSCRIPTION}"]}}}}')
    users = [f'{{user: {ADMIN["user"]}, password: {ADMIN["password"]}}}',
             f'{{user: {BOB["user"]}, password: {BOB["password"]}, {bob_permissions}}}']
    if nkey_public is not None:
        users.append(f'{{nkey: {nkey_public}, {bob_permissions}}}')
    path = tmp_path / "auth.conf"
    path.write_text("authorization {\n  users = [\n    " + "\n    ".join(users) + "\n  ]\n}\n")
    return path


@pytest.fixture
def auth_server(tmp_path) -> Iterator[tuple[NatsServer, Path | None]]:
    """A JetStream server with users admin (everything), bob (password) and, with the
    nkeys package, an nkey user with bob's permissions; yields (server, nkey seed file)."""
    user = nkey_user(tmp_path)
    conf = write_config(tmp_path, None if user is None else user[0])
    server = NatsServer(jetstream=True, store_dir=tmp_path / "js", extra_args=("-c", str(conf)),
                        binary=require_nats())
    server.start()
    try:
        yield server, None if user is None else user[1]
    finally:
        server.stop()


def make_bus(url: str, **options: Any) -> NatsEventBus:
    return NatsEventBus(servers=url, connect_timeout=5, reconnect_time_wait=0.05, **options)


async def stored_messages(url: str, stream: str) -> int:
    """The number of messages in ``stream``, asked by the admin user."""
    nc = await nats.connect(url, connect_timeout=5, **ADMIN)
    try:
        return (await nc.jetstream().stream_info(stream)).state.messages
    finally:
        await nc.close()


def test_permission_denial_parses_nats_py_errors():
    assert permission_denial(Exception("nats: 'permissions violation for publish to \"aether.events.x\"'")) == (
        "publish", "aether.events.x")
    assert permission_denial(Exception("nats: permissions violation for subscription to \"a.>\"")) == (
        "subscription", "a.>")
    assert permission_denial(Exception("nats: slow consumer")) is None


def test_bus_publish_to_a_denied_namespace(auth_server):
    """The denied publish reaches nobody, is counted in publish_errors and raised by the
    next flush; the allowed namespace still works on the same connection."""
    server, _ = auth_server

    async def main() -> None:
        admin = await nats.connect(server.url, connect_timeout=5, **ADMIN)
        seen: list[str] = []
        got_marker = asyncio.Event()

        async def on_msg(msg: Any) -> None:
            seen.append(msg.subject)
            if msg.subject == "aether.events.open":
                got_marker.set()

        await admin.subscribe("aether.events.>", cb=on_msg)
        await admin.flush()
        async with make_bus(server.url, **BOB) as bus:
            local = await bus.subscribe("secret")
            await bus.publish("secret", ev())
            await bus.publish("open", ev())     # after the denied one: a marker for the admin
            with pytest.raises(NatsAccessError, match="aether.events.secret") as info:
                await bus.flush()
            assert info.value.namespace == "secret" and info.value.subject == DENIED_BUS_SUBJECT
            assert bus.metrics().publish_errors == {"secret": 1}
            await bus.flush()                   # each denial is reported once
            await asyncio.wait_for(got_marker.wait(), WAIT)
            assert seen == ["aether.events.open"]     # one connection's messages stay in order
            assert [e.version for e in local.drain()] == [1]   # local subscribers got it
        await admin.close()

    run(main())


def test_bus_subscription_to_a_denied_namespace(auth_server):
    """A denied subscription is counted in subscribe_errors and raised by the next flush;
    the bus keeps working for the namespaces it may use."""
    server, _ = auth_server

    async def main() -> None:
        async with make_bus(server.url, **BOB) as bus, make_bus(server.url, **ADMIN) as admin:
            await bus.subscribe("private")
            allowed = await bus.subscribe("open")
            with pytest.raises(NatsAccessError, match="subscription to 'aether.events.private'") as info:
                await bus.flush()
            assert info.value.namespace == "private"
            assert bus.metrics().subscribe_errors == {"private": 1}
            await admin.publish("open", ev())
            assert (await allowed.aget(timeout=WAIT)).actor_id == "order-1"

    run(main())


def test_store_write_to_a_denied_namespace(auth_server):
    """bob's store on the denied namespace raises NatsAccessError on save_event and append
    and stores nothing; its store on another namespace works."""
    server, _ = auth_server

    async def main() -> None:
        async with await JetStreamEventStore.open(server.url, namespace="secret", config=CONFIG, **BOB) as store:
            with pytest.raises(NatsAccessError, match="aether.store.secret_events.order-1") as info:
                await store.save_event(ev())
            assert info.value.namespace == "secret"
            if store.atomic_batches:
                with pytest.raises(NatsAccessError, match="namespace 'secret'"):
                    await store.append("order-2", [ev("order-2", 1), ev("order-2", 2)])
            assert await store.get_latest_version("order-1") == 0
        assert await stored_messages(server.url, "secret_events") == 0
        async with await JetStreamEventStore.open(server.url, namespace="open", config=CONFIG, **BOB) as store:
            assert await store.save_event(ev()) == 1
        assert await stored_messages(server.url, "open_events") == 1

    run(main())


def test_sync_store_write_to_a_denied_namespace(auth_server):
    server, _ = auth_server
    with SyncJetStreamEventStore(server.url, namespace="secret", config=CONFIG, **BOB) as store, \
            pytest.raises(NatsAccessError, match="secret_events"):
        store.save_event(ev())
    assert run(stored_messages(server.url, "secret_events")) == 0


def test_wrong_credentials_fail_fast(auth_server):
    """Refused credentials raise at once, even with the store's reconnect-forever default."""
    server, _ = auth_server
    wrong = {"user": "bob", "password": "wrong"}

    async def main() -> None:
        with pytest.raises(NatsAccessError, match="refused the credentials"):
            await make_bus(server.url, **wrong).connect()
        with pytest.raises(NatsAccessError, match="refused the credentials"):
            await JetStreamEventStore.open(server.url, namespace="open", config=CONFIG, **wrong)

    run(main())
    with pytest.raises(NatsAccessError, match="refused the credentials"):
        SyncJetStreamEventStore(server.url, namespace="open", config=CONFIG, token="not-a-user")


def test_nkey_seed_file(auth_server, tmp_path):
    """An nkey user (seed file through nats-py's ``nkeys_seed``) for the bus and the store;
    the same permissions apply; a seed the server does not know is refused."""
    server, seed_file = auth_server
    if seed_file is None:
        pytest.skip("the nkeys package is not installed (pip install nkeys): nkey authentication untestable")

    async def main() -> None:
        async with make_bus(server.url, nkeys_seed=str(seed_file)) as a, \
                make_bus(server.url, nkeys_seed=str(seed_file)) as b:
            sub = await b.subscribe("open")
            await b.flush()
            await a.publish("open", ev())
            assert (await sub.aget(timeout=WAIT)).actor_id == "order-1"
            await a.publish("secret", ev())
            with pytest.raises(NatsAccessError, match="aether.events.secret"):
                await a.flush()
        async with await JetStreamEventStore.open(server.url, namespace="nk", config=CONFIG,
                                                  nkeys_seed=str(seed_file)) as store:
            assert await store.save_event(ev()) == 1
        other = nkey_user(tmp_path / "other")
        assert other is not None
        with pytest.raises(NatsAccessError, match="refused the credentials"):
            await JetStreamEventStore.open(server.url, namespace="nk", config=CONFIG, nkeys_seed=str(other[1]))

    (tmp_path / "other").mkdir()
    run(main())


def test_store_with_a_token():
    with NatsServer(jetstream=True, extra_args=("--auth", "t0ken"), binary=require_nats()) as server:
        with SyncJetStreamEventStore(server.url, namespace="tok", config=CONFIG, token="t0ken") as store:
            event = ev()
            assert store.save_event(event) == 1
            assert [e.id for e in store.get_events("order-1")] == [event.id]
        with pytest.raises(NatsAccessError, match="refused the credentials"):
            SyncJetStreamEventStore(server.url, namespace="tok", config=CONFIG, token="nope")


def test_store_over_tls(tmp_path):
    """A server that requires TLS (a self-signed certificate made with the openssl CLI)."""
    binary = require_nats()
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    context = ssl.create_default_context(cafile=str(cert))
    args = ("--tls", "--tlscert", str(cert), "--tlskey", str(key))
    with NatsServer(jetstream=True, store_dir=tmp_path / "js", extra_args=args, monitor=True, binary=binary) as server, \
            SyncJetStreamEventStore(server.url, namespace="tls", config=CONFIG, tls=context) as store:
        assert store.save_event(ev()) == 1
        conns = server.monitor("/connz")["connections"]
        assert len(conns) == 1 and conns[0].get("tls_version"), conns
        assert store.get_latest_version("order-1") == 1
