"""Consistent hashing: which node owns a key, an actor, a shard.

- :class:`HashRing`: a consistent hash ring with virtual nodes (150 per node by default)
  and weights, native lookups of one key (``owner``) or of many at once (``owners``,
  a numpy array of indices into ``ring.nodes``; the GIL is released while hashing);
- :func:`shard_for`: ``actor id -> shard`` (1024 shards by default);
- :class:`ShardMap`: ``shard -> node``, one snapshot of an assignment;
- :class:`PlacementStrategy`: how a cluster assigns shards to nodes, and
  :class:`RingPlacement`, the default, which puts shard ``s`` where the ring puts the key
  ``"shard-<s>"``.

Hashing is MurmurHash3 x86_32 with seed 0 of the key's UTF-8 bytes (bytes keys as they
are), the answer of ``mmh3.hash(key, 0, signed=False)``. Virtual node ``i`` (0-based) of
node ``N`` sits at the hash of ``f"{N}-{i}"``, and a key belongs to the first virtual node
clockwise strictly after its hash (wrapping): uhashring's scheme, so a ring gives the same
owners as ``uhashring.HashRing(nodes, vnodes=..., hash_fn=lambda k: mmh3.hash(k,
signed=False))`` for the same nodes and integer weights, except where virtual nodes of two
nodes land on the same 32-bit point (uhashring: the node added last holds it; here: the
node id smaller in UTF-8 byte order, whatever the order of adding). A node of weight
``w`` has ``round(vnodes * w)`` virtual nodes. Owners depend only on the set of nodes,
their weights and ``vnodes``: the same in every process and on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from . import _native
from ._native import MAX_ID_BYTES, murmur3_32
from .errors import EmptyRingError, InvalidInputError, InvalidTypeError

DEFAULT_VNODES = 150
DEFAULT_SHARDS = 1024
MAX_POINTS_PER_NODE = 1_000_000      # vnodes * weight
MAX_SHARDS = 1 << 24

NodeSet = Mapping[str, float] | Iterable[str]
"""Nodes: node ids (weight 1 each) or a mapping of node id to weight."""


# -- checks ----------------------------------------------------------------------------------


def _check_node_id(node_id: object) -> str:
    if not isinstance(node_id, str):
        raise InvalidTypeError(f"node id must be a str, got {type(node_id).__name__}: {node_id!r:.80}")
    if not node_id:
        raise InvalidInputError("node id must not be empty")
    try:
        size = len(node_id.encode())
    except UnicodeEncodeError:
        raise InvalidInputError(f"node id {node_id!r:.80} has a lone surrogate, which UTF-8 cannot encode") from None
    if size > MAX_ID_BYTES:
        raise InvalidInputError(f"node id is {size} UTF-8 bytes, over the limit of {MAX_ID_BYTES}: {node_id[:40]!r}...")
    return node_id


def _check_vnodes(vnodes: object) -> int:
    if isinstance(vnodes, bool) or not isinstance(vnodes, int):
        raise InvalidTypeError(f"vnodes must be an int, got {type(vnodes).__name__}: {vnodes!r:.80}")
    if not 1 <= vnodes <= MAX_POINTS_PER_NODE:
        raise InvalidInputError(f"vnodes must be in 1..{MAX_POINTS_PER_NODE}, got {vnodes}")
    return vnodes


def _virtual_nodes(node_id: str, weight: object, vnodes: int) -> tuple[float, int]:
    """(weight as float, its number of virtual nodes), or a clear error."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise InvalidTypeError(
            f"weight of node {node_id!r} must be a number, got {type(weight).__name__}: {weight!r:.80}"
        )
    w = float(weight)
    if not math.isfinite(w) or w <= 0:
        raise InvalidInputError(f"weight of node {node_id!r} must be a finite number > 0, got {weight!r}")
    count = round(vnodes * w)
    if count < 1:
        raise InvalidInputError(
            f"weight {weight!r} of node {node_id!r} gives {vnodes} * {weight!r} < 0.5 virtual nodes; "
            f"use a weight of at least {0.5 / vnodes:.6g}"
        )
    if count > MAX_POINTS_PER_NODE:
        raise InvalidInputError(
            f"weight {weight!r} of node {node_id!r} gives {count} virtual nodes, over the limit of "
            f"{MAX_POINTS_PER_NODE}"
        )
    return w, count


def _checked_nodes(nodes: NodeSet, vnodes: int) -> list[tuple[str, float, int]]:
    """(node id, weight, virtual node count) of each node, all checked, none twice."""
    checked: dict[str, tuple[str, float, int]] = {}
    for node_id, weight in _node_weights(nodes):
        node_id = _check_node_id(node_id)
        if node_id in checked:
            raise InvalidInputError(f"node {node_id!r} is given twice")
        checked[node_id] = (node_id, *_virtual_nodes(node_id, weight, vnodes))
    return list(checked.values())


def _check_shards(shards: object) -> int:
    if isinstance(shards, bool) or not isinstance(shards, int):
        raise InvalidTypeError(f"shards must be an int, got {type(shards).__name__}: {shards!r:.80}")
    if not 1 <= shards <= MAX_SHARDS:
        raise InvalidInputError(f"shards must be in 1..{MAX_SHARDS}, got {shards}")
    return shards


def _node_weights(nodes: NodeSet) -> list[tuple[object, object]]:
    """(node id, weight) pairs of a mapping or an iterable of node ids (weight 1)."""
    if isinstance(nodes, Mapping):
        return list(nodes.items())
    if isinstance(nodes, (str, bytes)):
        raise InvalidTypeError(f"nodes must be a collection of node ids, got one {type(nodes).__name__}: "
                               f"{nodes!r:.80}; wrap it in a list")
    try:
        return [(node, 1.0) for node in nodes]
    except TypeError:
        raise InvalidTypeError(
            f"nodes must be node ids or a mapping of node id to weight, got {type(nodes).__name__}"
        ) from None


# -- batches of keys -------------------------------------------------------------------------


def _batch(keys: object) -> tuple[list | tuple | None, tuple | None, tuple[int, ...]]:
    """``keys`` as the native batch functions take them: (a list or tuple of str/bytes, None)
    or (None, (raw bytes, itemsize, is UCS-4) of a numpy 'S'/'U' array); and the result's
    shape."""
    if isinstance(keys, np.ndarray):
        kind = keys.dtype.kind
        if kind in "SU":
            if kind == "U" and not keys.dtype.isnative:
                keys = keys.astype(keys.dtype.newbyteorder("="))
            arr = np.require(keys, requirements=("C", "A"))
            if arr.itemsize == 0:
                arr = arr.astype("S1")
            return None, (arr.reshape(-1).view(np.uint8), arr.itemsize, kind == "U"), keys.shape
        if kind == "O":
            return keys.reshape(-1).tolist(), None, keys.shape
        raise InvalidTypeError(f"a keys array must hold str or bytes (dtype S, U or object), got dtype {keys.dtype}")
    if isinstance(keys, (list, tuple)):
        return keys, None, (len(keys),)
    if isinstance(keys, (str, bytes)):
        raise InvalidTypeError(f"keys must be a collection of keys, got one {type(keys).__name__}: "
                               f"{keys!r:.80}; look one key up with owner()")
    try:
        seq = list(keys)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidTypeError(f"keys must be a list, tuple, iterable or numpy array of str/bytes, "
                               f"got {type(keys).__name__}") from None
    return seq, None, (len(seq),)


def murmur3_32_many(keys: object, seed: int = 0) -> np.ndarray:
    """``murmur3_32`` of each key (a list, tuple, iterable or numpy array of str/bytes) as
    a uint32 array, in one native call."""
    seq, array, shape = _batch(keys)
    out = np.empty(math.prod(shape), dtype=np.uint32)
    if array is not None:
        _native._murmur3_array(*array, seed, out)
    else:
        _native._murmur3_seq(seq, seed, out)
    return out.reshape(shape)


# -- the ring --------------------------------------------------------------------------------


class HashRing(_native.HashRing):
    """A consistent hash ring; ``HashRing(["a", "b"])`` or ``HashRing({"a": 1, "b": 2})``.

    ``vnodes`` virtual nodes per node of weight 1 (``round(vnodes * weight)`` for others).
    ``owner(key)`` is the node id owning a str or bytes key; ``owners(keys)`` the owners of
    many keys as an int32 array of indices into ``nodes`` (node ids in the order they were
    added; removing a node closes the gap), ``owner_names(keys)`` the same as node ids.
    Lookups on an empty ring raise :class:`EmptyRingError`. Safe to share between threads:
    each lookup sees the ring before or after a concurrent change, never half of it.
    """

    __slots__ = ("_vnodes",)

    def __init__(self, nodes: NodeSet = (), *, vnodes: int = DEFAULT_VNODES) -> None:
        self._vnodes = _check_vnodes(vnodes)
        for node_id, weight, count in _checked_nodes(nodes, self._vnodes):
            self._insert(node_id, count, weight)

    @property
    def vnodes(self) -> int:
        """Virtual nodes of a node of weight 1."""
        return self._vnodes

    def add_node(self, node_id: str, weight: float = 1.0) -> None:
        """Put ``node_id`` on the ring with ``round(vnodes * weight)`` virtual nodes."""
        w, count = _virtual_nodes(_check_node_id(node_id), weight, self._vnodes)
        if node_id in self:
            raise InvalidInputError(f"node {node_id!r} is already on the ring")
        self._insert(node_id, count, w)

    def remove_node(self, node_id: str) -> None:
        """Take ``node_id`` off the ring: only the keys it owned move (to the other nodes)."""
        self._require(node_id)
        self._delete(node_id)

    def weight(self, node_id: str) -> float:
        """The weight ``node_id`` was added with."""
        self._require(node_id)
        return self._node_info(node_id)[0]

    def vnodes_of(self, node_id: str) -> int:
        """The number of virtual nodes of ``node_id``."""
        self._require(node_id)
        return self._node_info(node_id)[1]

    def _require(self, node_id: object) -> None:
        _check_node_id(node_id)
        if node_id not in self:
            raise InvalidInputError(f"node {node_id!r} is not on the ring (nodes: {list(self.nodes)!r:.200})")

    def _lookup(self, keys: object) -> tuple[np.ndarray, tuple[str, ...]]:
        seq, array, shape = _batch(keys)
        out = np.empty(math.prod(shape), dtype=np.int32)
        raw = out.view(np.uint32)
        names = self._owners_array(*array, raw) if array is not None else self._owners_seq(seq, raw)
        return out.reshape(shape), names

    def owners(self, keys: object) -> np.ndarray:
        """The owner of each key (a list, tuple, iterable or numpy 'S'/'U'/object array of
        str/bytes) as an int32 array of indices into ``nodes``, of the keys' shape."""
        return self._lookup(keys)[0]

    def owner_names(self, keys: object) -> np.ndarray:
        """As ``owners``, but the node ids themselves (an object array), taken from the same
        state of the ring as the indices."""
        idx, names = self._lookup(keys)
        return np.asarray(names, dtype=object)[idx]

    def names_of(self, indices: object) -> np.ndarray:
        """The node ids of owner indices (from ``owners`` while the ring is unchanged)."""
        return np.asarray(self.nodes, dtype=object)[np.asarray(indices)]

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted uint32 points, int32 owner index of each point): the ring itself."""
        points, owners, _ = self._table_arrays()
        return np.frombuffer(points, dtype=np.uint32), np.frombuffer(owners, dtype=np.int32)

    def __reduce__(self) -> tuple[object, ...]:
        return _ring_from, (type(self), {node: self.weight(node) for node in self.nodes}, self._vnodes)

    def __repr__(self) -> str:
        return f"HashRing({len(self)} nodes, vnodes={self._vnodes})"


def _ring_from(cls: type[HashRing], nodes: dict[str, float], vnodes: int) -> HashRing:
    """Unpickles a ring (its nodes in the order they were added, their weights, vnodes)."""
    return cls(nodes, vnodes=vnodes)


# -- shards ----------------------------------------------------------------------------------


def shard_for(actor_id: str | bytes, shards: int = DEFAULT_SHARDS) -> int:
    """The shard of an actor: ``murmur3_32(actor_id) % shards``."""
    return murmur3_32(actor_id) % _check_shards(shards)


def shards_for(actor_ids: object, shards: int = DEFAULT_SHARDS) -> np.ndarray:
    """``shard_for`` of many actor ids at once, as an int32 array."""
    return (murmur3_32_many(actor_ids) % np.uint32(_check_shards(shards))).astype(np.int32)


def shard_key(shard: int) -> str:
    """The ring key of a shard: ``"shard-<n>"``."""
    return f"shard-{shard}"


@dataclass(frozen=True, eq=False)
class ShardMap:
    """One assignment of shards to nodes: ``owners[s]`` is the index in ``nodes`` of the
    node that owns shard ``s``. Immutable; compare two with ``moved_shards``."""

    nodes: tuple[str, ...]
    owners: np.ndarray

    def __post_init__(self) -> None:
        nodes = tuple(_check_node_id(n) for n in self.nodes)
        if len(set(nodes)) != len(nodes):
            raise InvalidInputError(f"a shard map names a node twice: {nodes!r:.200}")
        owners = np.array(self.owners, dtype=np.int32).reshape(-1)
        _check_shards(len(owners))
        if len(owners) and (owners.min() < 0 or owners.max() >= len(nodes)):
            raise InvalidInputError(f"shard owners must be indices into the {len(nodes)} nodes")
        owners.flags.writeable = False
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "owners", owners)

    @classmethod
    def from_ring(cls, ring: HashRing, shards: int = DEFAULT_SHARDS) -> ShardMap:
        """Shard ``s`` goes to the ring's owner of ``shard_key(s)``."""
        idx, names = ring._lookup([shard_key(s) for s in range(_check_shards(shards))])
        return cls(names, idx)

    @property
    def shards(self) -> int:
        return len(self.owners)

    def node_for_shard(self, shard: int) -> str:
        if isinstance(shard, bool) or not isinstance(shard, (int, np.integer)):
            raise InvalidTypeError(f"shard must be an int, got {type(shard).__name__}: {shard!r:.80}")
        if not 0 <= shard < self.shards:
            raise InvalidInputError(f"shard {shard} is not in 0..{self.shards - 1}")
        return self.nodes[self.owners[shard]]

    def shard_for(self, actor_id: str | bytes) -> int:
        return shard_for(actor_id, self.shards)

    def node_for_actor(self, actor_id: str | bytes) -> str:
        """The node of the shard of ``actor_id``."""
        return self.nodes[self.owners[shard_for(actor_id, self.shards)]]

    def nodes_for_actors(self, actor_ids: object) -> np.ndarray:
        """``node_for_actor`` of many actor ids, as an object array of node ids."""
        return np.asarray(self.nodes, dtype=object)[self.owners[shards_for(actor_ids, self.shards)]]

    def shards_of(self, node_id: str) -> list[int]:
        """The shards ``node_id`` owns, ascending (empty for a node not in the map)."""
        if node_id not in self.nodes:
            return []
        return np.flatnonzero(self.owners == self.nodes.index(node_id)).tolist()

    def counts(self) -> dict[str, int]:
        """Shards per node (every node of the map, 0 included)."""
        per = np.bincount(self.owners, minlength=len(self.nodes))
        return {node: int(c) for node, c in zip(self.nodes, per)}

    def as_dict(self) -> dict[int, str]:
        """``{shard: node id}``."""
        return {s: self.nodes[i] for s, i in enumerate(self.owners.tolist())}

    def moved_shards(self, other: ShardMap) -> list[int]:
        """Shards whose node differs between this map and ``other`` (same shard count)."""
        if other.shards != self.shards:
            raise InvalidInputError(f"cannot compare a map of {self.shards} shards with one of {other.shards}")
        mine = np.asarray(self.nodes, dtype=object)[self.owners]
        theirs = np.asarray(other.nodes, dtype=object)[other.owners]
        return np.flatnonzero(mine != theirs).tolist()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ShardMap) and self.shards == other.shards and not self.moved_shards(other)

    __hash__ = None  # type: ignore[assignment]


# -- placement -------------------------------------------------------------------------------


@runtime_checkable
class PlacementStrategy(Protocol):
    """How shards (and so actors) are placed on nodes; the shard manager's only input.

    ``nodes`` is a collection of node ids, or a mapping of node id to weight.
    """

    def assign_shards(self, nodes: NodeSet, shards: int = DEFAULT_SHARDS) -> ShardMap:
        """A full assignment of ``shards`` shards to ``nodes``."""
        ...

    def rebalance_shards(self, current: ShardMap, nodes: NodeSet) -> ShardMap:
        """The assignment after the nodes changed to ``nodes``, moving few shards."""
        ...

    def place_actor(self, actor_id: str, nodes: NodeSet) -> str:
        """The node that hosts ``actor_id`` (the node of its shard)."""
        ...


class RingPlacement:
    """The default placement: shard ``s`` goes where a :class:`HashRing` of the nodes puts
    ``shard_key(s)``. Deterministic (the same nodes give the same map in every process),
    so ``rebalance_shards`` needs no history: a node joining takes only shards from
    others, a node leaving hands only its own shards to others."""

    def __init__(self, *, vnodes: int = DEFAULT_VNODES, shards: int = DEFAULT_SHARDS) -> None:
        self.vnodes = _check_vnodes(vnodes)
        self.shards = _check_shards(shards)
        self._cached: tuple[object, ShardMap] | None = None

    def assign_shards(self, nodes: NodeSet, shards: int | None = None) -> ShardMap:
        count = self.shards if shards is None else _check_shards(shards)
        checked = _checked_nodes(nodes, self.vnodes)
        key = (frozenset(checked), count)
        cached = self._cached
        if cached is not None and cached[0] == key:
            return cached[1]
        ring = HashRing(vnodes=self.vnodes)
        for node_id, weight, vnodes in checked:
            ring._insert(node_id, vnodes, weight)
        shard_map = ShardMap.from_ring(ring, count)
        self._cached = (key, shard_map)
        return shard_map

    def rebalance_shards(self, current: ShardMap, nodes: NodeSet) -> ShardMap:
        return self.assign_shards(nodes, current.shards)

    def place_actor(self, actor_id: str, nodes: NodeSet) -> str:
        return self.assign_shards(nodes).node_for_actor(actor_id)


__all__ = [
    "DEFAULT_SHARDS",
    "DEFAULT_VNODES",
    "EmptyRingError",
    "HashRing",
    "PlacementStrategy",
    "RingPlacement",
    "ShardMap",
    "murmur3_32",
    "murmur3_32_many",
    "shard_for",
    "shard_key",
    "shards_for",
]
