"""Namespaces cannot be escaped with crafted names.

A namespace of the LMDB store is a set of sub-databases named ``<namespace>/log|idx|snap``
inside the store's one environment, so a name that could hold ``/``, a wildcard or a look-alike
of another name would reach another namespace's data or the store's meta database. Every
crafted name is refused with InvalidNamespaceError (naming it) by the LMDB and in-memory
stores, ``NotifyingStore`` and the bus, before anything is written, and the store directory
holds only LMDB's two files afterwards.
"""

from __future__ import annotations

import os

import pytest

from aether_fast import (
    Event,
    EventBus,
    InMemoryEventStore,
    InvalidNamespaceError,
    InvalidTypeError,
    LmdbEventStore,
    NotifyingStore,
)

CRAFTED = [
    "..", ".", "../default", "default/..", "default/../other", "/etc", "a/b", "a\\b", "~",
    ">", "*", "tenant.>", "tenant.*", "tenant-*", "default.", ".default", "a..b",
    "default\x00", "\x00", "a\x00/b", "default\n", " default", "default ", "de fault", "\t",
    "",
    "ｄｅｆａｕｌｔ",            # fullwidth letters
    "dеfault",                # Cyrillic 'е' (U+0435)
    "default\u200b",          # zero-width space
    "de\u0301fault",          # combining accent
    "ᵈefault",                # modifier letter
    "default\u2024x",         # one dot leader, looks like '.'
    "default\u2215x",         # division slash, looks like '/'
    "__meta__/log",           # the meta database's neighbourhood
    "default/log",            # another namespace's sub-database by name
    "x" * 201,                # one over the limit
    "a." * 150 + "a",         # long and dotted
    "é" * 100,                # 200 characters, 400 bytes, not ASCII
]


def _entries(path) -> set[str]:
    return {os.path.relpath(os.path.join(root, name), path)
            for root, dirs, files in os.walk(path) for name in dirs + files}


@pytest.mark.parametrize("name", CRAFTED, ids=lambda n: repr(n)[:30])
def test_lmdb_store_refuses_crafted_namespace(tmp_path, name):
    path = tmp_path / "store"
    with LmdbEventStore(path) as store:
        store.save_event(Event(event_type="T", actor_id="a", version=1, data={"v": 1}))
        namespaces_before = store.info()["namespaces"]
    with pytest.raises(InvalidNamespaceError) as info:
        LmdbEventStore(path, namespace=name)
    assert repr(name[:40])[1:-1] in str(info.value) or "characters" in str(info.value) or not name
    assert _entries(tmp_path) == {"store", "store/data.mdb", "store/lock.mdb"}
    with LmdbEventStore(path) as store:
        assert store.info()["namespaces"] == namespaces_before
        assert [e.data for e in store.get_events("a")] == [{"v": 1}]


def test_no_crafted_namespace_opens_anything(tmp_path):
    """All the crafted names against one store: its namespaces and its files are unchanged."""
    path = tmp_path / "store"
    LmdbEventStore(path).close()
    size_before = (path / "data.mdb").stat().st_size
    for name in CRAFTED:
        with pytest.raises(InvalidNamespaceError):
            LmdbEventStore(path, namespace=name)
    assert _entries(tmp_path) == {"store", "store/data.mdb", "store/lock.mdb"}
    assert (path / "data.mdb").stat().st_size == size_before
    with LmdbEventStore(path) as store:
        assert store.info()["namespaces"] == ["default"]


@pytest.mark.parametrize("name", [b"default", 1, None, ["default"]], ids=repr)
def test_non_str_namespace_is_a_type_error(tmp_path, name):
    with pytest.raises(InvalidTypeError):
        LmdbEventStore(tmp_path / "store", namespace=name)
    with pytest.raises(InvalidTypeError):
        InMemoryEventStore(namespace=name)
    assert not (tmp_path / "store").exists() or _entries(tmp_path / "store") == set()


def test_lookalike_names_are_separate_from_meta_and_each_other(tmp_path):
    """Names that pass the rules (``__meta__``, the longest, case variants) are namespaces
    of their own: their writes reach no other namespace and the store still opens."""
    path = tmp_path / "store"
    names = ["default", "Default", "DEFAULT", "__meta__", "default.log", "default-log", "x" * 200]
    stores = [LmdbEventStore(path, namespace=n) for n in names]
    try:
        for i, store in enumerate(stores):
            store.save_event(Event(event_type="T", actor_id="same", version=1, data={"ns": names[i]}))
        for i, store in enumerate(stores):
            assert [e.data for e in store.read_all()] == [{"ns": names[i]}]
            assert store.last_position() == 1
    finally:
        for store in stores:
            store.close()
    with LmdbEventStore(path) as store:     # the meta database is intact: the format check passes
        assert sorted(store.info()["namespaces"]) == sorted(names)
    assert _entries(tmp_path) == {"store", "store/data.mdb", "store/lock.mdb"}


@pytest.mark.parametrize("name", CRAFTED, ids=lambda n: repr(n)[:30])
def test_memory_store_and_notifying_store_refuse_crafted_namespace(tmp_path, name):
    with pytest.raises(InvalidNamespaceError):
        InMemoryEventStore(namespace=name)
    bus = EventBus()
    with InMemoryEventStore() as inner:
        with pytest.raises(InvalidNamespaceError):
            NotifyingStore(inner, bus, namespace=name)
        assert inner.last_position() == 0


@pytest.mark.parametrize("name", CRAFTED, ids=lambda n: repr(n)[:30])
def test_bus_refuses_crafted_namespace_and_delivers_nothing(name):
    bus = EventBus()
    everything = bus.subscribe(">", with_namespace=True)
    event = Event(event_type="T", actor_id="a", version=1)
    with pytest.raises(InvalidNamespaceError):
        bus.publish(name, event)
    with pytest.raises(InvalidNamespaceError):
        bus.publish_many(name, [event])
    assert everything.drain() == []
    assert bus.metrics().total("events_published") == 0
    bus.publish("default", event)               # the bus still works
    assert everything.drain() == [("default", event)]


BAD_PATTERNS = ["..", "a/b", "a\\b", "tenant-*", "*a", "a>", ">.a", "a..b", ".", "a.", "\x00", "a\x00",
                "ｄｅｆａｕｌｔ", "dеfault", "default\u200b", "de fault", "x" * 201, ""]


@pytest.mark.parametrize("pattern", BAD_PATTERNS, ids=lambda n: repr(n)[:30])
def test_bus_refuses_crafted_patterns(pattern):
    bus = EventBus()
    with pytest.raises(InvalidNamespaceError):
        bus.subscribe(pattern)
    assert bus.subscriptions() == []


# Actor ids are free text (any non-empty UTF-8 up to 255 bytes), so an actor pattern is a
# filter, not an isolation boundary: only its wildcard structure, whitespace and size are rules.
BAD_ACTOR_PATTERNS = ["tenant-*", "*a", "a>", ">.a", "a..b", ".", "a.", "", "de fault", "a\n", "x" * 256]


@pytest.mark.parametrize("pattern", BAD_ACTOR_PATTERNS, ids=lambda n: repr(n)[:30])
def test_bus_refuses_crafted_actor_patterns(pattern):
    bus = EventBus()
    with pytest.raises(InvalidNamespaceError):
        bus.subscribe("default", actor_pattern=pattern)
    assert bus.subscriptions() == []


def test_crafted_pattern_cannot_inject_metrics_lines():
    """A refused pattern is counted under its own (escaped) label: it cannot add a line to
    the Prometheus exposition."""
    bus = EventBus()
    evil = 'a"} 1\naether_events_published_total{namespace="victim'
    with pytest.raises(InvalidNamespaceError):
        bus.subscribe(evil)
    text = bus.metrics().to_prometheus()
    assert 'namespace="victim' not in text.replace('\\"', "")
    metric_lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert len(metric_lines) == 1 and metric_lines[0].startswith("aether_subscribe_errors_total{")
