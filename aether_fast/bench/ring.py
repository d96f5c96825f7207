"""Side-by-side benchmark of the consistent hash ring (``python -m aether_fast.bench.ring``).

One ring of 10 nodes x 150 virtual nodes, the same in every system (uhashring's point
scheme, mmh3 hashes; the owners of a sample of keys are checked equal before timing):

- ``ring_lookup``: N single-key lookups from Python (``ring.owner(key)``, a bound method
  called in a loop), against uhashring's ``get_node`` configured with an mmh3 hash
  function, and against a pure-Python ring (``mmh3.hash`` + ``bisect.bisect_right`` over
  a sorted list); keys/s, the three taking turns repeat by repeat;
- ``ring_owners``: one vectorised lookup of N keys (a list of str), hashing included
  (``ring.owners(keys)``), against numpy: ``mmh3.hash`` of each key in a list
  comprehension, then ``np.searchsorted`` and a gather of the owners;
- ``ring_owners_array``: the same from a numpy bytes array (no baseline).

Keys are ``"actor-<i>"`` strings built outside the timed regions; the slow baselines run
on a tenth of them (rates are per key); every figure is the median of the repeats. The
baselines need ``mmh3`` and ``uhashring`` (``pip install "aether_fast[bench]"``): without
one, its rows are skipped with a line saying what to install.
"""

from __future__ import annotations

import bisect
import gc
import json
import sys
import time
from collections.abc import Callable
from functools import partial

import numpy as np

from ..ring import HashRing
from .common import QUICK, Config, Row, alternate, format_table, machine, measure, rate_row

NODES = 10
VNODES = 150
SAMPLE = 10_000


class PyRing:
    """A plain Python consistent hash ring with the same points and rule: mmh3 hashes of
    ``f"{node}-{i}"``, ties to the smaller node id, first point strictly after the key."""

    def __init__(self, nodes: list[str], vnodes: int, hash_fn: Callable[[object], int]) -> None:
        points = sorted((hash_fn(f"{n}-{i}"), n.encode(), n) for n in nodes for i in range(vnodes))
        self.hashes = [p[0] for p in points]
        self.owners = [p[2] for p in points]
        self.hash_fn = hash_fn

    def owner(self, key: str) -> str:
        i = bisect.bisect_right(self.hashes, self.hash_fn(key))
        return self.owners[i] if i < len(self.owners) else self.owners[0]


def _loop(lookup: Callable[[str], object], keys: list[str]) -> Callable[[object], None]:
    def go(_: object) -> None:
        for k in keys:
            lookup(k)
    return go


def numpy_owners(keys: list[str], hashes: np.ndarray, owners: np.ndarray,
                 hash_fn: Callable[[object], int]) -> np.ndarray:
    """The numpy baseline: hash each key in Python, then ``searchsorted`` (side='right',
    wrapping) and a gather of the owner indices."""
    h = np.array([hash_fn(k) for k in keys], dtype=np.uint32)
    at = np.searchsorted(hashes, h, side="right")
    at[at == len(hashes)] = 0
    return owners[at]


def ring_rows(cfg: Config, log: Callable[[str], None] = lambda msg: None) -> tuple[list[Row], list[str]]:
    """The ring workloads at ``cfg.events`` keys: the rows, and a line per skipped baseline."""
    n = cfg.events
    few = max(1000, n // 10)
    nodes = [f"node-{i}" for i in range(NODES)]
    ring = HashRing(nodes, vnodes=VNODES)
    keys = [f"actor-{i}" for i in range(n)]
    key_array = np.array(keys, dtype="S")
    rows: list[Row] = []
    skipped: list[str] = []
    try:
        import mmh3
    except ImportError:
        mmh3 = None
        skipped.append("ring baselines skipped: install mmh3 (pip install 'aether_fast[bench]')")
    try:
        from uhashring import HashRing as UHashRing
    except ImportError:
        UHashRing = None
        skipped.append("ring vs uhashring skipped: install uhashring (pip install 'aether_fast[bench]')")
    for line in skipped:
        log(line)

    gc.collect()
    gc.freeze()
    try:
        sample = keys[:SAMPLE]
        expected = ring.owner_names(sample).tolist()
        single = {"aether_fast": _loop(ring.owner, keys)}
        if mmh3 is not None:
            hash_fn = partial(mmh3.hash, seed=0, signed=False)
            py_ring = PyRing(nodes, VNODES, hash_fn)
            assert [py_ring.owner(k) for k in sample] == expected
            single["py"] = _loop(py_ring.owner, keys[:few])
            if UHashRing is not None:
                uhr = UHashRing(nodes=nodes, vnodes=VNODES, hash_fn=hash_fn)
                assert [uhr.get_node(k) for k in sample] == expected
                single["uhashring"] = _loop(uhr.get_node, keys[:few])
        log(f"  ring: single-key lookups ({', '.join(single)}, interleaved) ...")
        t = dict(zip(single, alternate([lambda run=run: measure(run, 1) for run in single.values()], cfg.repeats)))
        if "py" in t:
            rows.append(rate_row("ring lookup, 1 key per call (keys/s)", "ring_lookup_py", n, t["aether_fast"],
                                 "pure-Python mmh3 + bisect ring", t["py"], few, 2))
        if "uhashring" in t:
            rows.append(rate_row("ring lookup, 1 key per call (keys/s)", "ring_lookup_uhashring", n,
                                 t["aether_fast"], "uhashring, mmh3 hash_fn", t["uhashring"], few, 3))

        if mmh3 is not None:
            log(f"  ring: vectorised lookup of {n} keys (interleaved) ...")
            hashes = np.array(py_ring.hashes, dtype=np.uint32)
            owner_index = {name: i for i, name in enumerate(ring.nodes)}
            owners = np.array([owner_index[o] for o in py_ring.owners], dtype=np.int32)
            assert np.array_equal(numpy_owners(keys, hashes, owners, hash_fn), ring.owners(keys))
            assert np.array_equal(ring.owners(key_array), ring.owners(keys))
            ours, array_times, theirs = alternate([
                lambda: measure(lambda _: ring.owners(keys), 1),
                lambda: measure(lambda _: ring.owners(key_array), 1),
                lambda: measure(lambda _: numpy_owners(keys, hashes, owners, hash_fn), 1),
            ], cfg.repeats)
            baseline = "Python mmh3 + numpy searchsorted"
            rows.append(rate_row(f"ring.owners(list of {n} str), hashing included", "ring_owners", n, ours,
                                 baseline, theirs, n, 4))
            # information: the old target here was an absolute rate (>= 30M keys/s)
            rows.append(rate_row(f"ring.owners(numpy S array of {n}), hashing included", "ring_owners_array", n,
                                 array_times, baseline, theirs, n, None))
        return rows, skipped
    finally:
        gc.unfreeze()


def _report(cfg: Config, rows: list[Row], skipped: list[str], seconds: float) -> dict[str, object]:
    return {
        "machine": machine(), "seconds": seconds, "skipped": skipped,
        "settings": {"keys": cfg.events, "repeats": cfg.repeats, "nodes": NODES, "vnodes": VNODES},
        "workloads": [r.as_dict() for r in rows],
    }


def run(cfg: Config | None = None, log: Callable[[str], None] = lambda msg: None) -> dict[str, object]:
    """Run the ring workloads (``Config().events`` keys by default); the JSON form: machine,
    settings, seconds, ``workloads`` (one dict per row) and ``skipped`` (lines)."""
    cfg = cfg or Config()
    t0 = time.perf_counter()
    rows, skipped = ring_rows(cfg, log)
    return _report(cfg, rows, skipped, time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    """``python -m aether_fast.bench.ring [--quick] [--json FILE]``: the ring rows alone."""
    args = sys.argv[1:] if argv is None else argv
    cfg = QUICK if "--quick" in args else Config()
    t0 = time.perf_counter()
    rows, skipped = ring_rows(cfg, lambda msg: print(msg, file=sys.stderr, flush=True))
    seconds = time.perf_counter() - t0
    print(f"ring of {NODES} nodes x {VNODES} virtual nodes, {cfg.events} keys, median of {cfg.repeats} repeats")
    print(format_table(rows))
    for line in skipped:
        print(line)
    print(f"({seconds:.1f} s)", flush=True)
    if "--json" in args:
        with open(args[args.index("--json") + 1], "w") as f:
            json.dump(_report(cfg, rows, skipped, seconds), f, indent=2)


if __name__ == "__main__":
    main()
