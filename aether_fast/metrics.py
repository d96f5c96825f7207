"""Metrics: snapshots of a store's counters, and Prometheus exposition for stores, buses and
cluster nodes.

``LmdbEventStore.metrics()`` returns a :class:`StoreMetrics` snapshot (no dependency);
:func:`register_metrics` exposes stores and buses to a ``prometheus_client`` registry
(the ``[metrics]`` extra) through one collector that reads the counters at scrape time,
so the hot path only bumps plain integers::

    from prometheus_client import start_http_server
    from aether_fast.metrics import register_metrics

    register_metrics(stores=[store], buses=[bus])
    start_http_server(9108)        # http://localhost:9108/metrics

Names: ``aether_store_*`` for stores (labels ``path``, and ``namespace`` where the value is
per namespace), the bus's own names (``aether_events_published_total{namespace=...}``
and the rest of ``BusMetrics``), which are Aether's, and ``aether_cluster_*{node=...}``
for cluster nodes (leader, term, owned shards, live nodes, heartbeats, elections).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from .store.lmdb import StoreMetrics


class MetricsSource(Protocol):
    """What the collector reads: a store (which also has ``closed``), a bus or a cluster node."""

    def metrics(self) -> Any: ...


def register_metrics(
    *, stores: Iterable[MetricsSource] = (), buses: Iterable[MetricsSource] = (),
    clusters: Iterable[MetricsSource] = (), registry: Any = None, prefix: str = "aether",
) -> PrometheusCollector:
    """Register one collector for these stores, buses and cluster nodes (default:
    prometheus_client's global registry); returns it (``registry.unregister(collector)``
    removes it)."""
    try:
        from prometheus_client import REGISTRY
    except ImportError as e:
        raise ImportError(
            "Prometheus metrics need prometheus_client: pip install 'aether_fast[metrics]'"
        ) from e
    collector = PrometheusCollector(stores=stores, buses=buses, clusters=clusters, prefix=prefix)
    (REGISTRY if registry is None else registry).register(collector)
    return collector


class PrometheusCollector:
    """A prometheus_client collector reading store, bus and cluster-node counters at each
    scrape. Closed stores are skipped."""

    def __init__(self, *, stores: Iterable[MetricsSource] = (), buses: Iterable[MetricsSource] = (),
                 clusters: Iterable[MetricsSource] = (), prefix: str = "aether") -> None:
        self.stores = list(stores)
        self.buses = list(buses)
        self.clusters = list(clusters)
        self.prefix = prefix

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        from .bus import PROMETHEUS_METRICS

        p = f"{self.prefix}_store"
        env_counters = [
            ("events_appended", "events stored by appends"),
            ("append_calls", "append calls answered"),
            ("append_conflicts", "append calls refused with a version conflict"),
            ("append_failures", "append calls failed with another error"),
            ("commits", "group-commit write transactions"),
        ]
        ns_gauges = [
            ("last_position", "last global position of the namespace"),
            ("events", "events in the namespace"),
            ("snapshots", "snapshots in the namespace"),
        ]
        env_gauges = [
            ("map_size", "LMDB map size in bytes"),
            ("map_used_bytes", "bytes of the map in use"),
            ("readers", "LMDB reader slots in use"),
            ("size_on_disk", "bytes of the data file"),
        ]
        counters = {n: CounterMetricFamily(f"{p}_{n}", h, labels=["path"]) for n, h in env_counters}
        gauges = {n: GaugeMetricFamily(f"{p}_{n}", h, labels=["path", "namespace"]) for n, h in ns_gauges}
        gauges.update({n: GaugeMetricFamily(f"{p}_{n}", h, labels=["path"]) for n, h in env_gauges})
        latency = HistogramMetricFamily(f"{p}_commit_seconds", "group-commit transaction latency",
                                        labels=["path"])
        groups = HistogramMetricFamily(f"{p}_group_size", "append calls per group commit", labels=["path"])
        seen_paths: set[str] = set()
        for store in self.stores:
            if getattr(store, "closed", False):
                continue
            m = store.metrics()
            for name, _ in ns_gauges:
                gauges[name].add_metric([m.path, m.namespace], getattr(m, name))
            if m.path in seen_paths:       # environment-wide values once per path
                continue
            seen_paths.add(m.path)
            for name, _ in env_counters:
                counters[name].add_metric([m.path], getattr(m, name))
            for name, _ in env_gauges:
                gauges[name].add_metric([m.path], getattr(m, name))
            latency.add_metric([m.path], _buckets(m.commit_seconds_buckets), m.commit_seconds_sum)
            groups.add_metric([m.path], _buckets(m.group_size_buckets), None)   # no exact sum kept
        yield from counters.values()
        yield from gauges.values()
        yield latency
        yield groups

        families: dict[str, Any] = {}
        for name, kind, label in PROMETHEUS_METRICS:
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            families[name] = family(f"{self.prefix}_{name}", f"bus {name.replace('_', ' ')}", labels=[label])
        totals: dict[str, dict[str, int]] = {name: {} for name in families}
        for bus in self.buses:        # several buses of a process: one series per namespace, summed
            snapshot = bus.metrics()
            for name, total in totals.items():
                for key, value in getattr(snapshot, name).items():
                    total[key] = total.get(key, 0) + value
        for name, family in families.items():
            for key, value in sorted(totals[name].items()):
                family.add_metric([key], value)
        yield from families.values()
        yield from self._cluster_families(CounterMetricFamily, GaugeMetricFamily)

    def _cluster_families(self, counter: Any, gauge: Any) -> Iterator[Any]:
        """``aether_cluster_*{node=...}``: leader, term, owned shards, live nodes and counters."""
        p = f"{self.prefix}_cluster"
        families = {name: (gauge if kind == "gauge" else counter)(f"{p}_{name}", help_, labels=["node"])
                    for name, kind, help_ in _CLUSTER_METRICS}
        for node in self.clusters:
            m = node.metrics()
            for name, kind, _ in _CLUSTER_METRICS:
                families[name].add_metric([m.node_id], float(getattr(m, name)))
        yield from families.values()


_CLUSTER_METRICS = (
    ("is_leader", "gauge", "1 while this node holds the leader lease"),
    ("term", "gauge", "the leader term this node knows"),
    ("owned_shards", "gauge", "shards assigned to this node"),
    ("live_nodes", "gauge", "nodes this node sees alive (itself included)"),
    ("heartbeats_sent", "counter", "discovery heartbeats sent"),
    ("heartbeats_received", "counter", "discovery heartbeats received"),
    ("elections_won", "counter", "leader elections this node won"),
    ("leadership_lost", "counter", "times this node lost the leadership"),
    ("rebalances", "counter", "shard assignments this node wrote as leader"),
)


def _buckets(buckets: tuple[tuple[float, int], ...]) -> list[tuple[str, int]]:
    return [("+Inf" if bound == float("inf") else repr(bound), count) for bound, count in buckets]


__all__ = ["PrometheusCollector", "StoreMetrics", "register_metrics"]
