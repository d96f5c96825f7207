"""Store metrics snapshots and their Prometheus exposition (a real HTTP scrape)."""

from __future__ import annotations

import urllib.request

import pytest
from support.group_commit import ev, run_queued

from aether_fast import ActorSnapshot, Event, EventBus, LmdbEventStore, VersionConflictError
from aether_fast.errors import AetherError

prometheus_client = pytest.importorskip("prometheus_client", reason="the [metrics] extra is not installed")
from prometheus_client.parser import text_string_to_metric_families

from aether_fast.metrics import register_metrics


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_store_metrics_count_appends_conflicts_and_failures(tmp_path):
    with LmdbEventStore(tmp_path / "s", max_event_bytes=1000) as store:
        store.save_event(ev("a", 1))
        store.append("b", [ev("b", 1), ev("b", 2)])
        with pytest.raises(VersionConflictError):
            store.save_event(ev("a", 1, data={"other": 1}))
        with pytest.raises(AetherError):
            store.save_event(ev("c", 1, data={"x": "y" * 2000}))     # over max_event_bytes
        store.save_snapshot(ActorSnapshot(actor_id="b", version=2, state={"n": 2}))
        m = store.metrics()
        assert (m.events_appended, m.append_calls, m.append_conflicts, m.append_failures) == (3, 4, 1, 1)
        assert m.commits == 4 and m.commit_seconds_sum > 0
        assert m.commit_seconds_buckets[-1] == (float("inf"), 4)
        counts = [count for _, count in m.commit_seconds_buckets]
        assert counts == sorted(counts)                  # cumulative
        assert m.group_size_buckets[0] == (1.0, 4)      # each call alone: groups of one
        assert (m.last_position, m.events, m.snapshots) == (3, 3, 1)
        assert m.size_on_disk > 0 and 0 < m.map_used_bytes <= m.map_size
        assert m.path == store.path and m.namespace == store.namespace


def test_grouped_appends_are_one_commit_each_group(tmp_path):
    with LmdbEventStore(tmp_path / "s") as store:
        run_queued(store, [lambda a=a: store.save_event(ev(f"a{a}", 1)) for a in range(8)])
        m = store.metrics()
        assert m.events_appended == 8 and m.append_calls == 8
        assert m.commits == 2                            # the first caller alone, then 7 together
        sizes = dict(m.group_size_buckets)
        assert sizes[1.0] == 1 and sizes[8.0] == 2      # cumulative: one group of 1, one of 7


def test_appends_in_an_explicit_transaction_are_counted_but_are_not_commits(tmp_path):
    with LmdbEventStore(tmp_path / "s") as store:
        with store.transaction():
            for v in range(1, 6):
                store.save_event(ev("a", v))
        m = store.metrics()
        assert (m.events_appended, m.append_calls, m.commits) == (5, 5, 0)


def test_namespaces_share_the_environment_counters(tmp_path):
    with LmdbEventStore(tmp_path / "s", namespace="x") as x, LmdbEventStore(tmp_path / "s", namespace="y") as y:
        x.save_event(ev("a", 1))
        y.save_event(ev("a", 1))
        y.save_event(ev("a", 2))
        mx, my = x.metrics(), y.metrics()
        assert mx.events_appended == my.events_appended == 3
        assert (mx.events, my.events) == (1, 2)


def test_prometheus_exposition_of_stores_and_bus(tmp_path):
    registry = prometheus_client.CollectorRegistry()
    bus = EventBus()
    sub = bus.subscribe("orders", buffer=10)
    with LmdbEventStore(tmp_path / "s", namespace="orders") as store, \
            LmdbEventStore(tmp_path / "s", namespace="users") as users:
        collector = register_metrics(stores=[store, users], buses=[bus], registry=registry)
        store.save_event(ev("a", 1))
        with pytest.raises(VersionConflictError):
            store.save_event(ev("a", 1, data={"n": 2}))
        bus.publish("orders", Event(event_type="T", actor_id="a", version=1))
        text = prometheus_client.generate_latest(registry).decode()
        got = samples(text)
        path = (("path", store.path),)
        assert got[("aether_store_events_appended_total", path)] == 1
        assert got[("aether_store_append_conflicts_total", path)] == 1
        assert got[("aether_store_commits_total", path)] == 2
        assert got[("aether_store_commit_seconds_count", path)] == 2
        assert got[("aether_store_commit_seconds_bucket", (("le", "+Inf"), *path))] == 2
        assert got[("aether_store_last_position", (("namespace", "orders"), *path))] == 1
        assert got[("aether_store_last_position", (("namespace", "users"), *path))] == 0
        assert got[("aether_events_published_total", (("namespace", "orders"),))] == 1
        assert got[("aether_events_received_total", (("namespace", "orders"),))] == 1
        assert got[("aether_active_subscriptions", (("pattern", "orders"),))] == 1
        # one environment: its counters are exposed once, not once per namespace
        assert text.count('aether_store_events_appended_total{path=') == 1
        users.close()
        assert ("aether_store_last_position", (("namespace", "users"), *path)) not in samples(
            prometheus_client.generate_latest(registry).decode())
        registry.unregister(collector)
    sub.close()


def test_metrics_served_over_http(tmp_path):
    registry = prometheus_client.CollectorRegistry()
    with LmdbEventStore(tmp_path / "s") as store:
        register_metrics(stores=[store], registry=registry)
        server, thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
        try:
            store.save_event(ev("a", 1))
            port = server.server_address[1]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                body = response.read().decode()
            assert samples(body)[("aether_store_events_appended_total", (("path", store.path),))] == 1
        finally:
            server.shutdown()
            server.server_close()
            thread.join(10)


def test_two_buses_give_one_series_per_namespace_summed():
    registry = prometheus_client.CollectorRegistry()
    a, b = EventBus(), EventBus()
    register_metrics(buses=[a, b], registry=registry)
    a.publish("orders", Event(event_type="T", actor_id="x", version=1))
    b.publish("orders", Event(event_type="T", actor_id="x", version=1))
    b.publish("users", Event(event_type="T", actor_id="x", version=1))
    text = prometheus_client.generate_latest(registry).decode()
    assert text.count('aether_events_published_total{namespace="orders"}') == 1
    got = samples(text)
    assert got[("aether_events_published_total", (("namespace", "orders"),))] == 2
    assert got[("aether_events_published_total", (("namespace", "users"),))] == 1
