"""The consistent hash ring: murmur3 against mmh3, the ring against a plain Python ring and
uhashring, the consistent-hashing properties (hypothesis), shards and placement.

Bounds used below: with 150 virtual nodes per node, a node's share of the key space has a
relative standard deviation of about 1/sqrt(150) = 8%; every share is checked to be within
+-40% (about 5 sigma) of even. The property tests with such bounds run derandomized, so
they are deterministic.
"""

from __future__ import annotations

import bisect
import json
import os
import subprocess
import sys
import threading

import mmh3
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aether_fast import EmptyRingError, HashRing, PlacementStrategy, RingPlacement, ShardMap, shard_for
from aether_fast.errors import InvalidInputError, InvalidTypeError
from aether_fast.ring import murmur3_32, murmur3_32_many, shard_key, shards_for

SHARE_BOUND = 0.4
seeds = st.integers(0, 2**32 - 1)
node_ids = st.text(min_size=1, max_size=16)
node_sets = st.lists(node_ids, min_size=1, max_size=12, unique=True)
ring_keys = st.one_of(st.text(max_size=40), st.binary(max_size=40))
stable = settings(derandomize=True, deadline=None, max_examples=15,
                  suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def million_keys() -> np.ndarray:
    """1,000,000 actor ids as a numpy bytes array: b'actor-0' .. b'actor-999999'."""
    return np.char.add(b"actor-", np.arange(1_000_000).astype("S7"))


def reference_owner(nodes: dict[str, int], key: str | bytes) -> str:
    """The ring rule written plainly: points mmh3(f"{node}-{i}"), ties to the smaller node
    id (UTF-8 bytes), owner = first point strictly after mmh3(key), wrapping."""
    points = sorted((mmh3.hash(f"{n}-{i}", signed=False), n.encode(), n) for n, count in nodes.items()
                    for i in range(count))
    hashes = [p[0] for p in points]
    at = bisect.bisect_right(hashes, mmh3.hash(key, signed=False))
    return points[at % len(points)][2]


# -- murmur3 ---------------------------------------------------------------------------------


@given(st.binary(max_size=300), seeds)
def test_murmur3_of_bytes_equals_mmh3(data, seed):
    assert murmur3_32(data, seed) == mmh3.hash(data, seed, signed=False)


@given(st.text(max_size=120), seeds)
def test_murmur3_of_text_equals_mmh3_and_its_utf8_bytes(text, seed):
    assert murmur3_32(text, seed) == mmh3.hash(text, seed, signed=False) == murmur3_32(text.encode(), seed)


@given(st.lists(ring_keys, max_size=50), seeds)
def test_murmur3_many_equals_mmh3_on_lists_and_arrays(keys, seed):
    expected = [mmh3.hash(k, seed, signed=False) for k in keys]
    assert murmur3_32_many(keys, seed).tolist() == expected
    assert murmur3_32_many(tuple(keys), seed).dtype == np.uint32
    texts = [k for k in keys if isinstance(k, str)]
    as_u = np.array(texts, dtype="U") if texts else np.array([], dtype="U1")
    assert murmur3_32_many(as_u, seed).tolist() == [mmh3.hash(t, seed, signed=False) for t in as_u.tolist()]
    blobs = [k for k in keys if isinstance(k, bytes)]
    as_s = np.array(blobs, dtype="S") if blobs else np.array([], dtype="S1")
    assert murmur3_32_many(as_s, seed).tolist() == [mmh3.hash(b, seed, signed=False) for b in as_s.tolist()]


def test_murmur3_refuses_bad_keys_and_seeds():
    with pytest.raises(InvalidTypeError, match="got int: 5"):
        murmur3_32(5)
    with pytest.raises(InvalidInputError, match="lone surrogate"):
        murmur3_32("a\ud800")
    with pytest.raises(InvalidInputError, match="2\\*\\*32"):
        murmur3_32("a", 2**32)
    with pytest.raises(InvalidInputError, match="-1"):
        murmur3_32("a", -1)
    with pytest.raises(InvalidTypeError, match="seed"):
        murmur3_32("a", 1.5)


# -- the ring's rule ---------------------------------------------------------------------------


@given(node_sets, st.lists(ring_keys, min_size=1, max_size=30), st.integers(1, 20))
@settings(deadline=None)
def test_owner_follows_the_documented_rule(nodes, keys, vnodes):
    ring = HashRing(nodes, vnodes=vnodes)
    counts = dict.fromkeys(nodes, vnodes)
    assert [ring.owner(k) for k in keys] == [reference_owner(counts, k) for k in keys]


@given(node_sets, st.integers(1, 5))
@settings(deadline=None, max_examples=30)
def test_a_key_on_a_point_belongs_to_the_next_point(nodes, vnodes):
    ring = HashRing(nodes, vnodes=vnodes)
    on_points = [f"{n}-{i}" for n in nodes for i in range(vnodes)]      # each hashes to a point exactly
    counts = dict.fromkeys(nodes, vnodes)
    assert ring.owners(on_points).tolist() == [ring.owner_index(k) for k in on_points]
    assert [ring.owner(k) for k in on_points] == [reference_owner(counts, k) for k in on_points]


@given(node_sets)
@settings(deadline=None, max_examples=30)
def test_points_are_the_virtual_node_hashes(nodes):
    ring = HashRing(nodes, vnodes=7)
    points, owners = ring.points()
    expected = sorted((mmh3.hash(f"{n}-{i}", signed=False), n.encode(), n) for n in nodes for i in range(7))
    assert points.tolist() == [p[0] for p in expected]
    assert [ring.nodes[o] for o in owners] == [p[2] for p in expected]


@given(st.lists(st.text("abcdefgh0123456789-", min_size=1, max_size=8), min_size=1, max_size=6, unique=True),
       st.lists(st.text(max_size=20), min_size=1, max_size=40))
@settings(deadline=None, max_examples=30)
def test_same_owners_as_uhashring_with_mmh3(nodes, keys):
    from uhashring import HashRing as UHashRing

    points = [mmh3.hash(f"{n}-{i}", signed=False) for n in nodes for i in range(150)]
    if len(set(points)) != len(points):       # a shared point: uhashring keeps the last node added
        return
    theirs = UHashRing(nodes=nodes, vnodes=150, hash_fn=lambda key: mmh3.hash(key, signed=False))
    ring = HashRing(nodes)
    assert [ring.owner(k) for k in keys] == [theirs.get_node(k) for k in keys]


def test_a_shared_point_goes_to_the_smaller_node_id_whatever_the_order():
    a, b = "n86167", "n115679"                 # vnode 0 of each hashes to the same point
    assert mmh3.hash(f"{a}-0", signed=False) == mmh3.hash(f"{b}-0", signed=False)
    keys = [f"k{i}" for i in range(100)]
    for order in ([a, b], [b, a]):
        ring = HashRing(order, vnodes=1)
        assert set(ring.owner_names(keys)) == {b}            # b"n115679" < b"n86167"
    ring.remove_node(b)
    assert set(ring.owner_names(keys)) == {a}


def test_weights_scale_the_virtual_nodes(million_keys):
    ring = HashRing({"small": 1, "big": 2.0, "tiny": 0.5})
    assert (ring.vnodes_of("small"), ring.vnodes_of("big"), ring.vnodes_of("tiny")) == (150, 300, 75)
    assert ring.weight("big") == 2.0
    share = np.bincount(ring.owners(million_keys), minlength=3) / len(million_keys)
    expected = np.array([1, 2, 0.5]) / 3.5
    assert np.all(np.abs(share / expected - 1) < SHARE_BOUND), share


def test_a_ring_pickles_and_copies_with_its_nodes_weights_and_vnodes():
    import copy
    import pickle

    ring = HashRing({"a": 1, "b": 2.5, "c": 0.2}, vnodes=40)
    ring.remove_node("a")
    ring.add_node("a")
    keys = [f"k{i}" for i in range(2000)]
    for other in (pickle.loads(pickle.dumps(ring)), copy.copy(ring), copy.deepcopy(ring)):
        assert type(other) is HashRing and other.nodes == ("b", "c", "a") and other.vnodes == 40
        assert [other.vnodes_of(n) for n in other.nodes] == [100, 8, 40]
        assert np.array_equal(other.owners(keys), ring.owners(keys))


def test_vnodes_is_configurable():
    assert HashRing(["a"], vnodes=10).vnodes_of("a") == 10
    assert HashRing(["a"]).vnodes == 150
    assert len(HashRing(["a", "b"], vnodes=3).points()[0]) == 6


# -- properties ----------------------------------------------------------------------------


def test_same_owners_in_another_process():
    nodes = [f"node-{i}" for i in range(7)] + ["ünï-cødé", "🎉"]
    keys = [f"actor-{i}" for i in range(2000)] + ["ключ", "键", ""]
    ours = HashRing(nodes).owner_names(keys).tolist()
    code = (
        "import json, sys; from aether_fast import HashRing; nodes, keys = json.load(sys.stdin); "
        "print(json.dumps(HashRing(nodes).owner_names(keys).tolist()))"
    )
    for hash_seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], input=json.dumps([nodes, keys]), capture_output=True,
                             text=True, timeout=120, check=True,
                             env={**os.environ, "PYTHONHASHSEED": hash_seed})
        assert json.loads(out.stdout) == ours


@given(nodes=node_sets, new=node_ids)
@stable
def test_adding_a_node_moves_about_its_share_and_only_onto_it(nodes, new, million_keys):
    if new in nodes:
        return
    keys = million_keys[:200_000]
    ring = HashRing(nodes)
    before = ring.owner_names(keys)
    ring.add_node(new)
    after = ring.owner_names(keys)
    moved = before != after
    assert np.all(after[moved] == new)
    assert np.all(after[after == new] == after[moved])             # every key of the new node moved to it
    expected = 1 / (len(nodes) + 1)
    assert abs(moved.mean() / expected - 1) < SHARE_BOUND, (moved.mean(), expected)


@given(nodes=st.lists(node_ids, min_size=2, max_size=12, unique=True), data=st.data())
@stable
def test_removing_a_node_moves_only_its_keys(nodes, data, million_keys):
    gone = data.draw(st.sampled_from(nodes))
    keys = million_keys[:200_000]
    ring = HashRing(nodes)
    before = ring.owner_names(keys)
    ring.remove_node(gone)
    after = ring.owner_names(keys)
    assert np.array_equal(before != after, before == gone)
    assert gone not in set(after) and gone not in ring.nodes


@given(nodes=st.lists(node_ids, min_size=2, max_size=16, unique=True))
@settings(derandomize=True, deadline=None, max_examples=5)
def test_load_per_node_is_within_the_bound_for_a_million_keys(nodes, million_keys):
    ring = HashRing(nodes)
    load = np.bincount(ring.owners(million_keys), minlength=len(nodes))
    assert load.sum() == len(million_keys)
    even = len(million_keys) / len(nodes)
    assert np.all(np.abs(load / even - 1) < SHARE_BOUND), (load / even).round(3)


@given(node_sets, st.lists(ring_keys, max_size=60))
@settings(deadline=None)
def test_vectorised_lookup_equals_scalar(nodes, keys):
    ring = HashRing(nodes)
    expected = [ring.owner_index(k) for k in keys]
    assert [ring.nodes[i] for i in expected] == [ring.owner(k) for k in keys]
    for batch in (keys, tuple(keys), iter(keys), np.array(keys + [""], dtype=object)[:-1]):
        got = ring.owners(batch)
        assert got.dtype == np.int32 and got.tolist() == expected
    assert ring.owner_names(keys).tolist() == [ring.owner(k) for k in keys]
    assert ring.names_of(ring.owners(keys)).tolist() == [ring.owner(k) for k in keys]
    texts = [k for k in keys if isinstance(k, str)]
    if texts:
        as_u = np.array(texts)
        assert ring.owners(as_u).tolist() == [ring.owner_index(t) for t in as_u.tolist()]
    blobs = [k for k in keys if isinstance(k, bytes)]
    if blobs:
        as_s = np.array(blobs, dtype="S")
        assert ring.owners(as_s).tolist() == [ring.owner_index(b) for b in as_s.tolist()]


def test_vectorised_lookup_keeps_the_shape_and_reads_any_layout():
    ring = HashRing(["a", "b", "c"])
    keys = np.array([[f"k{i}-{j}" for j in range(5)] for i in range(4)])
    got = ring.owners(keys)
    assert got.shape == (4, 5)
    assert got.tolist() == [[ring.owner_index(k) for k in row] for row in keys.tolist()]
    column = keys[:, 1]                                               # not contiguous
    assert ring.owners(column).tolist() == [ring.owner_index(k) for k in column.tolist()]
    swapped = keys.astype(keys.dtype.newbyteorder(">"))                # big-endian UCS-4
    assert np.array_equal(ring.owners(swapped), got)
    assert ring.owners([]).shape == (0,)
    assert ring.owners(np.array([], dtype="S")).shape == (0,)


def test_lookups_see_one_state_of_a_ring_changing_in_another_thread():
    keys = [f"actor-{i}" for i in range(50_000)]
    ring = HashRing([f"node-{i}" for i in range(5)])
    without = ring.owner_names(keys).tolist()
    ring.add_node("extra")
    with_extra = ring.owner_names(keys).tolist()
    assert without != with_extra
    stop = threading.Event()

    def toggle() -> None:
        while not stop.is_set():
            ring.remove_node("extra")
            ring.add_node("extra")

    thread = threading.Thread(target=toggle)
    thread.start()
    try:
        for _ in range(30):
            got = ring.owner_names(keys).tolist()
            assert got == without or got == with_extra
    finally:
        stop.set()
        thread.join(timeout=60)


def test_nodes_added_from_many_threads_are_all_on_the_ring():
    ring = HashRing(vnodes=2000)
    barrier = threading.Barrier(4)

    def add(prefix: str) -> None:
        barrier.wait(timeout=60)
        for i in range(10):
            ring.add_node(f"{prefix}-{i}")

    threads = [threading.Thread(target=add, args=(f"t{t}",)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(ring.nodes) == sorted(f"t{t}-{i}" for t in range(4) for i in range(10))
    assert len(ring.points()[0]) == 40 * 2000
    assert ring.owners([f"k{i}" for i in range(1000)]).max() < 40


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda r: r.add_node(""), InvalidInputError, "must not be empty"),
        (lambda r: r.add_node(7), InvalidTypeError, "got int: 7"),
        (lambda r: r.add_node("x" * 256), InvalidInputError, "256 UTF-8 bytes"),
        (lambda r: r.add_node("a\udc80"), InvalidInputError, "surrogate"),
        (lambda r: r.add_node("a"), InvalidInputError, "'a' is already on the ring"),
        (lambda r: r.add_node("c", 0), InvalidInputError, "got 0"),
        (lambda r: r.add_node("c", -1.5), InvalidInputError, "got -1.5"),
        (lambda r: r.add_node("c", float("inf")), InvalidInputError, "got inf"),
        (lambda r: r.add_node("c", "2"), InvalidTypeError, "got str: '2'"),
        (lambda r: r.add_node("c", True), InvalidTypeError, "got bool"),
        (lambda r: r.add_node("c", 0.001), InvalidInputError, "at least 0.00333"),
        (lambda r: r.add_node("c", 10**5), InvalidInputError, "over the limit"),
        (lambda r: r.remove_node("zz"), InvalidInputError, "'zz' is not on the ring"),
        (lambda r: r.weight("zz"), InvalidInputError, "'zz' is not on the ring"),
        (lambda r: r.owner(5), InvalidTypeError, "got int: 5"),
        (lambda r: r.owner(None), InvalidTypeError, "got NoneType"),
        (lambda r: r.owner("\ud800"), InvalidInputError, "surrogate"),
        (lambda r: r.owners(["ok", 3.5]), InvalidTypeError, r"keys\[1\] must be str or bytes, got float: 3.5"),
        (lambda r: r.owners(("ok", "x\udfff")), InvalidInputError, r"keys\[1\]"),
        (lambda r: r.owners(np.array(["ok", "x\udfff"])), InvalidInputError, r"keys\[1\]"),
        (lambda r: r.owners("abc"), InvalidTypeError, "one str"),
        (lambda r: r.owners(5), InvalidTypeError, "got int"),
        (lambda r: r.owners(np.arange(3)), InvalidTypeError, "dtype int64"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(make, error, message):
    ring = HashRing(["a", "b"])
    before = (ring.nodes, ring.points()[0].tolist())
    with pytest.raises(error, match=message):
        make(ring)
    assert (ring.nodes, ring.points()[0].tolist()) == before


@pytest.mark.parametrize(
    ("nodes", "kwargs", "error", "message"),
    [
        (["a", "a"], {}, InvalidInputError, "'a' is given twice"),
        (["a", ""], {}, InvalidInputError, "must not be empty"),
        ("ab", {}, InvalidTypeError, "one str"),
        ({"a": 0}, {}, InvalidInputError, "got 0"),
        (["a"], {"vnodes": 0}, InvalidInputError, "vnodes must be in"),
        (["a"], {"vnodes": 2.5}, InvalidTypeError, "vnodes must be an int"),
    ],
)
def test_bad_rings_are_refused(nodes, kwargs, error, message):
    with pytest.raises(error, match=message):
        HashRing(nodes, **kwargs)


def test_an_empty_ring_has_no_owner():
    ring = HashRing()
    for lookup in (lambda: ring.owner("k"), lambda: ring.owner_index("k"), lambda: ring.owners(["k"])):
        with pytest.raises(EmptyRingError, match="no node"):
            lookup()
    assert isinstance(EmptyRingError("x"), LookupError)
    ring.add_node("a")
    ring.remove_node("a")
    with pytest.raises(EmptyRingError):
        ring.owner("k")


# -- shards and placement --------------------------------------------------------------------


@given(st.lists(st.text(max_size=30), max_size=40), st.integers(1, 5000))
def test_shard_for_is_murmur3_modulo_shards(actor_ids, shards):
    expected = [mmh3.hash(a, signed=False) % shards for a in actor_ids]
    assert [shard_for(a, shards) for a in actor_ids] == expected
    assert shards_for(actor_ids, shards).tolist() == expected
    assert all(shard_for(a) == mmh3.hash(a, signed=False) % 1024 for a in actor_ids)


def test_shard_map_follows_the_ring():
    ring = HashRing([f"node-{i}" for i in range(4)])
    shard_map = ShardMap.from_ring(ring)
    assert shard_map.shards == 1024
    assert [shard_map.node_for_shard(s) for s in range(1024)] == [ring.owner(shard_key(s)) for s in range(1024)]
    assert shard_map.as_dict() == {s: ring.owner(f"shard-{s}") for s in range(1024)}
    assert sum(shard_map.counts().values()) == 1024
    assert sorted(s for n in ring.nodes for s in shard_map.shards_of(n)) == list(range(1024))
    actors = [f"order-{i}" for i in range(500)]
    assert shard_map.nodes_for_actors(actors).tolist() == [shard_map.node_for_actor(a) for a in actors]
    assert all(shard_map.node_for_actor(a) == shard_map.node_for_shard(shard_for(a)) for a in actors)
    assert shard_map.shards_of("elsewhere") == []
    with pytest.raises(InvalidInputError, match="1024 is not in 0..1023"):
        shard_map.node_for_shard(1024)
    with pytest.raises(ValueError):
        shard_map.owners[0] = 1


@given(node_sets, node_ids)
@stable
def test_shards_move_only_onto_a_new_node_and_only_off_a_removed_one(nodes, new):
    if new in nodes:
        return
    placement = RingPlacement()
    before = placement.assign_shards(nodes)
    after = placement.rebalance_shards(before, [*nodes, new])
    moved = before.moved_shards(after)
    assert moved == after.shards_of(new)
    back = placement.rebalance_shards(after, nodes)
    assert back == before
    assert after.moved_shards(back) == after.shards_of(new)


def test_ring_placement_is_the_default_strategy():
    placement = RingPlacement(shards=64, vnodes=50)
    assert isinstance(placement, PlacementStrategy)
    nodes = {"a": 1, "b": 1, "c": 2}
    shard_map = placement.assign_shards(nodes)
    assert shard_map.shards == 64
    ring = HashRing(nodes, vnodes=50)
    assert shard_map == ShardMap.from_ring(ring, 64)
    assert placement.assign_shards(dict(reversed(nodes.items()))) is shard_map          # same node set, cached
    assert placement.place_actor("order-1", nodes) == ring.owner(shard_key(shard_for("order-1", 64)))
    with pytest.raises(EmptyRingError):
        placement.assign_shards([])
    with pytest.raises(InvalidInputError, match="given twice"):
        placement.assign_shards(["a", "a"])


def test_shard_maps_are_checked():
    with pytest.raises(InvalidInputError, match="indices"):
        ShardMap(("a",), np.array([0, 1]))
    with pytest.raises(InvalidInputError, match="twice"):
        ShardMap(("a", "a"), np.array([0, 1]))
    with pytest.raises(InvalidInputError, match="shards must be in"):
        ShardMap(("a",), np.array([], dtype=np.int32))
    with pytest.raises(InvalidInputError, match="1024 shards with one of 2"):
        ShardMap.from_ring(HashRing(["a"])).moved_shards(ShardMap(("a",), np.array([0, 0])))


# -- the benchmark runs (no assertion on speed) ------------------------------------------------


def test_bench_ring_reports_every_workload():
    from aether_fast.bench.common import Config
    from aether_fast.bench.ring import run

    result = run(Config(events=5000, repeats=1))
    assert result["skipped"] == []
    keys = [row["key"] for row in result["workloads"]]
    assert keys == ["ring_lookup_py", "ring_lookup_uhashring", "ring_owners", "ring_owners_array"]
    assert all(row["aether_fast"] > 0 and row["baseline_rate"] > 0 for row in result["workloads"])
    json.dumps(result)


def test_bench_ring_without_uhashring_says_what_to_install():
    code = ("import sys; sys.modules['uhashring'] = None; from aether_fast.bench.ring import main; "
            "main(['--quick'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert "ring vs uhashring skipped: install uhashring" in out.stdout
    assert "pure-Python mmh3 + bisect ring" in out.stdout and "uhashring, mmh3" not in out.stdout
