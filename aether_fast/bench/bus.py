"""Side-by-side benchmark of the local event bus (``python -m aether_fast bench``).

- ``match``: one subject matched against 100 compiled patterns (exact, ``*`` and ``>``
  mixed), per call, native ``PatternIndex.match`` against a pure-Python token trie with the
  same exact-name dict fast path; subjects/s. Every native call walks the whole trie; its
  result is the tuple interned for the matched set (the 1,000 subjects have 127 distinct
  sets), where the Python trie builds a new list per call;
- ``fanout_callback``: N events published one by one to 10 callback subscriptions,
  against a plain Python loop calling the same 10 callbacks for each event;
- ``fanout_async``: N events published one by one to 10 subscriptions read with
  ``async for`` by 10 tasks, against 10 ``asyncio.Queue`` s fed with ``put_nowait`` and
  read with ``await q.get()``; in both the producer is a task on the same loop that
  yields every ``CHUNK`` events;
- ``publish_1000``: publishes to a bus with 1,000 subscriptions of which 10 match
  (callbacks), against an Aether-style bus in Python (exact-name dict, then every wildcard
  pattern checked per publish, then the filters).

Inputs are pre-built outside the timed regions; every figure is the median of the repeats.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
from collections.abc import Callable

from .._native import Event, PatternIndex
from ..bus import EventBus
from .common import Config, Row, alternate, measure, rate_row

SUBSCRIBERS = 10
CHUNK = 1000
PATTERNS = 100
SUBJECTS = 1000


# -- the pure-Python baselines --------------------------------------------------------------


class _PyNode:
    __slots__ = ("children", "gt", "here", "star")

    def __init__(self) -> None:
        self.children: dict[str, _PyNode] = {}
        self.star: _PyNode | None = None
        self.here: list[object] = []
        self.gt: list[object] = []


class PyTrieMatcher:
    """A pure-Python token trie with an exact-name dict: the baseline of the matcher."""

    def __init__(self) -> None:
        self.root = _PyNode()
        self.exact: dict[str, list[object]] = {}

    def add(self, pattern: str, target: object) -> None:
        if "*" not in pattern and ">" not in pattern:
            self.exact.setdefault(pattern, []).append(target)
            return
        node = self.root
        for token in pattern.split("."):
            if token == ">":
                node.gt.append(target)
                return
            if token == "*":
                if node.star is None:
                    node.star = _PyNode()
                node = node.star
            else:
                node = node.children.setdefault(token, _PyNode())
        node.here.append(target)

    def match(self, subject: str) -> list[object]:
        out = list(self.exact.get(subject, ()))
        tokens = subject.split(".")
        n = len(tokens)
        stack = [(self.root, 0)]
        while stack:
            node, i = stack.pop()
            if i == n:
                out.extend(node.here)
                continue
            if node.gt:
                out.extend(node.gt)
            child = node.children.get(tokens[i])
            if child is not None:
                stack.append((child, i + 1))
            if node.star is not None:
                stack.append((node.star, i + 1))
        return out


def py_pattern_matches(pattern: str, subject: str) -> bool:
    """One NATS-style pattern against one subject, token by token."""
    p = pattern.split(".")
    s = subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


class PyAetherBus:
    """Aether's local bus design in Python: exact subscribers by namespace, wildcard
    subscribers in a list checked one by one, then the filters; callbacks called inline."""

    def __init__(self) -> None:
        self.exact: dict[str, list[tuple]] = {}
        self.wildcard: list[tuple] = []

    def subscribe(self, pattern: str, callback: Callable[[Event], object], event_types=None,
                  actor_pattern=None) -> None:
        sub = (pattern, callback, frozenset(event_types) if event_types else None, actor_pattern)
        if "*" in pattern or ">" in pattern:
            self.wildcard.append(sub)
        else:
            self.exact.setdefault(pattern, []).append(sub)

    def publish(self, namespace: str, event: Event) -> None:
        for sub in self.exact.get(namespace, ()):
            self._deliver(sub, event)
        for sub in self.wildcard:
            if py_pattern_matches(sub[0], namespace):
                self._deliver(sub, event)

    @staticmethod
    def _deliver(sub: tuple, event: Event) -> None:
        _, callback, types, actor = sub
        if types is not None and event.event_type not in types:
            return
        if actor is not None and not py_pattern_matches(actor, event.actor_id):
            return
        callback(event)


# -- workloads -----------------------------------------------------------------------------------


def make_patterns(rng: random.Random) -> tuple[list[str], list[str]]:
    """100 patterns (40 exact, 30 with '*', 30 ending in '>') over tenants/streams/regions,
    and 1,000 subjects of 2 or 3 tokens, about a third of them matched by some pattern."""
    tenants = [f"tenant-{i:03d}" for i in range(60)]
    streams = ["orders", "billing", "users", "audit", "stock"]
    regions = ["eu", "us", "ap"]
    patterns: list[str] = []
    for i in range(40):
        patterns.append(f"{tenants[i]}.{streams[i % 5]}" + (f".{regions[i % 3]}" if i % 2 else ""))
    for i in range(30):
        patterns.append([f"{tenants[i + 20]}.*", f"*.{streams[i % 5]}", f"{tenants[i + 10]}.*.{regions[i % 3]}",
                         f"*.{streams[i % 5]}.{regions[i % 3]}"][i % 4])
    for i in range(30):
        patterns.append([f"{tenants[i + 30]}.>", f"{tenants[i]}.{streams[i % 5]}.>", f"*.{streams[i % 5]}.>"][i % 3])
    subjects = [
        f"{rng.choice(tenants + [f'other-{j}' for j in range(60)])}.{rng.choice(streams)}"
        + (f".{rng.choice(regions)}" if rng.random() < 0.5 else "")
        for _ in range(SUBJECTS)
    ]
    return patterns, subjects


def bench_match(cfg: Config) -> tuple[list[float], list[float], int]:
    rng = random.Random(4)
    patterns, subjects = make_patterns(rng)
    native, python = PatternIndex(), PyTrieMatcher()
    for i, p in enumerate(patterns):
        native.add(p, i)
        python.add(p, i)
    for s in subjects:
        assert sorted(native.match(s)) == sorted(python.match(s)), s
    rounds = max(1, cfg.events // SUBJECTS)
    work = subjects * rounds

    def run(match: Callable[[str], list]) -> Callable[[object], None]:
        def go(_: object) -> None:
            for s in work:
                match(s)
        return go

    ours, theirs = _paired(run(native.match), run(python.match), cfg.repeats)
    return ours, theirs, len(work)


def _paired(ours: Callable[[object], object], theirs: Callable[[object], object],
            repeats: int) -> tuple[list[float], list[float]]:
    """Both sides' seconds per repeat, interleaved after one warm-up each."""
    t_ours, t_theirs = alternate([lambda: measure(ours, 1), lambda: measure(theirs, 1)], repeats, warmup=1)
    return t_ours, t_theirs


def make_events(count: int) -> list[Event]:
    """``count`` events: a pool of 1,000 distinct events repeated (references)."""
    payload = os.urandom(100)
    pool = [Event(event_type="AccountCredited", actor_id=f"account-{i:04d}", version=1, data=payload)
            for i in range(1000)]
    return (pool * (count // len(pool) + 1))[:count]


def _counters(n: int) -> tuple[list[Callable[[Event], None]], list[list[int]]]:
    boxes = [[0] for _ in range(n)]

    def make(box: list[int]) -> Callable[[Event], None]:
        def callback(event: Event) -> None:
            box[0] += 1
        return callback

    return [make(box) for box in boxes], boxes


def bench_fanout_callback(cfg: Config, events: list[Event]) -> tuple[list[float], list[float]]:
    callbacks, boxes = _counters(SUBSCRIBERS)
    bus = EventBus()
    for cb in callbacks:
        bus.subscribe("bench.fanout", callback=cb)

    def ours(_: object) -> None:
        publish = bus.publish
        for ev in events:
            publish("bench.fanout", ev)

    def theirs(_: object) -> None:
        for ev in events:
            for cb in callbacks:
                cb(ev)

    t_ours, t_theirs = _paired(ours, theirs, cfg.repeats)
    expected = 2 * (cfg.repeats + 1) * len(events)
    assert all(box[0] == expected for box in boxes), (boxes, expected)
    bus.close()
    return t_ours, t_theirs


async def _async_bus(events: list[Event]) -> None:
    bus = EventBus(buffer=2 * CHUNK)
    subs = [bus.subscribe("bench.async") for _ in range(SUBSCRIBERS)]
    n = len(events)

    async def consume(sub) -> int:
        got = 0
        async for _ in sub:
            got += 1
            if got == n:
                break
        return got

    async def produce() -> None:
        publish = bus.publish
        for i, ev in enumerate(events, 1):
            publish("bench.async", ev)
            if i % CHUNK == 0:
                await asyncio.sleep(0)

    results = await asyncio.gather(produce(), *(consume(s) for s in subs))
    assert results[1:] == [n] * SUBSCRIBERS, results
    assert all(s.dropped == 0 for s in subs)
    bus.close()


async def _async_queues(events: list[Event]) -> None:
    queues: list[asyncio.Queue] = [asyncio.Queue() for _ in range(SUBSCRIBERS)]
    n = len(events)

    async def consume(q: asyncio.Queue) -> int:
        got = 0
        while got < n:
            await q.get()
            got += 1
        return got

    async def produce() -> None:
        for i, ev in enumerate(events, 1):
            for q in queues:
                q.put_nowait(ev)
            if i % CHUNK == 0:
                await asyncio.sleep(0)

    results = await asyncio.gather(produce(), *(consume(q) for q in queues))
    assert results[1:] == [n] * SUBSCRIBERS, results


def bench_fanout_async(cfg: Config, events: list[Event]) -> tuple[list[float], list[float]]:
    return _paired(lambda _: asyncio.run(_async_bus(events)), lambda _: asyncio.run(_async_queues(events)),
                   cfg.repeats)


def _many_subscriptions(subscribe: Callable[..., object], callback: Callable[[Event], None]) -> None:
    """1,000 subscriptions, 10 of which match namespace 'tenant-007.orders' and the events
    (exact, '*', '>', with and without filters); 990 are on other namespaces or filtered
    out by event type or actor."""
    matching = [
        ("tenant-007.orders", {}), ("tenant-007.orders", {"event_types": ["AccountCredited"]}),
        ("tenant-007.*", {}), ("tenant-007.>", {}), ("*.orders", {}), (">", {"actor_pattern": ">"}),
        ("tenant-007.orders", {"actor_pattern": "*"}), ("*.*", {}), ("tenant-007.orders", {}),
        ("*.orders", {"event_types": ["AccountCredited", "AccountDebited"]}),
    ]
    for pattern, kw in matching:
        subscribe(pattern, callback, **kw)
    i = 0
    while i < 990:
        t = f"tenant-{100 + i % 300:03d}"
        kind = i % 6
        if kind < 3:
            subscribe(f"{t}.{['orders', 'billing', 'users'][kind]}", callback)
        elif kind == 3:
            subscribe(f"{t}.*", callback)
        elif kind == 4:
            subscribe(f"{t}.>", callback)
        else:
            subscribe("tenant-007.orders", callback, event_types=["Other"])
        i += 1


def bench_publish_1000(cfg: Config, events: list[Event]) -> tuple[list[float], list[float], int, int]:
    callbacks, boxes = _counters(2)
    bus = EventBus()
    _many_subscriptions(lambda p, cb, **kw: bus.subscribe(p, callback=cb, **kw), callbacks[0])
    python = PyAetherBus()
    _many_subscriptions(python.subscribe, callbacks[1])
    assert len(bus.subscriptions()) == 1000
    few = events[: max(1000, len(events) // 50)]

    def ours(_: object) -> None:
        publish = bus.publish
        for ev in events:
            publish("tenant-007.orders", ev)

    def theirs(_: object) -> None:
        publish = python.publish
        for ev in few:
            publish("tenant-007.orders", ev)

    t_ours, t_theirs = _paired(ours, theirs, cfg.repeats)
    assert boxes[0][0] == 10 * (cfg.repeats + 1) * len(events), boxes
    assert boxes[1][0] == 10 * (cfg.repeats + 1) * len(few), boxes
    bus.close()
    return t_ours, t_theirs, len(events), len(few)


def bus_rows(cfg: Config, log: Callable[[str], None] = lambda msg: None) -> list[Row]:
    """The bus workloads of one configuration, as rows of the benchmark table."""
    gc.collect()
    gc.freeze()
    try:
        log("  bus: matching ...")
        ours, theirs, n = bench_match(cfg)
        rows = [
            rate_row(f"match 1 subject vs {PATTERNS} patterns (subjects/s)", "bus_match", n, ours,
                      "pure-Python token trie", theirs, n, 10),
        ]
        events = make_events(cfg.events)
        log("  bus: fan-out to callbacks ...")
        ours, theirs = bench_fanout_callback(cfg, events)
        rows.append(rate_row(f"fan-out {len(events)} events x {SUBSCRIBERS} callbacks", "bus_fanout_callback",
                              len(events), ours, "plain loop of the callbacks", theirs, len(events), 0.8))
        log("  bus: fan-out to async iterators ...")
        ours, theirs = bench_fanout_async(cfg, events)
        rows.append(rate_row(f"fan-out {len(events)} events x {SUBSCRIBERS} async for", "bus_fanout_async",
                              len(events), ours, f"{SUBSCRIBERS} asyncio.Queue", theirs, len(events), 3))
        log("  bus: publish with 1,000 subscriptions ...")
        ours, theirs, n, n_few = bench_publish_1000(cfg, events)
        rows.append(rate_row("publish, 1,000 subscriptions, 10 match", "bus_publish_1000", n, ours,
                              "Aether-style bus in Python", theirs, n_few, 10))
        return rows
    finally:
        gc.unfreeze()


def main(argv: list[str] | None = None) -> None:
    """``python -m aether_fast.bench.bus [--quick]``: the bus rows alone."""
    import sys

    from .common import QUICK, format_table

    args = sys.argv[1:] if argv is None else argv
    cfg = QUICK if "--quick" in args else Config()
    print(format_table(bus_rows(cfg, lambda msg: print(msg, file=sys.stderr, flush=True))))


if __name__ == "__main__":
    main()
