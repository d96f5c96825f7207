"""Smoke test of an installed aether_fast (a wheel in a fresh venv, run from outside the source tree).

Opens a store in a temp dir, appends, replays, snapshots, reads the global log and the numpy
columns, reopens the store, and looks a key up on the hash ring when the build has one.
Exits non-zero on the first failure. ``--expect-outside DIR``: fail if aether_fast was
imported from inside DIR (e.g. the source tree instead of the installed wheel).
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import aether_fast
from aether_fast import ActorSnapshot, Event, LmdbEventStore, VersionConflictError


def check(condition: bool, what: str) -> None:
    if not condition:
        sys.exit(f"smoke: FAILED: {what}")
    print(f"smoke: ok: {what}")


def lmdb_libraries_mapped() -> list[str]:
    """Shared LMDB libraries mapped into this process (Linux only; [] elsewhere)."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return []
    return sorted({line.split()[-1] for line in maps.read_text().splitlines() if "liblmdb" in line})


def store_round_trip(path: str) -> None:
    with LmdbEventStore(path) as store:
        first = store.save_event(Event(event_type="OrderPlaced", actor_id="order-1", version=1,
                                       data={"total": 42}))
        check(first == 1, "save_event returns global position 1")
        positions = store.append("order-1", [
            Event(event_type="ItemAdded", actor_id="order-1", version=2, data=b"raw"),
            Event(event_type="OrderPaid", actor_id="order-1", version=3),
        ], expected_version=1)
        check(list(positions) == [2, 3], f"append returns positions [2, 3] (got {list(positions)})")
        try:
            store.save_event(Event(event_type="Dup", actor_id="order-1", version=3))
            check(False, "a stale version is refused")
        except VersionConflictError as err:
            check(err.current_version == 3, "a stale version is refused with VersionConflictError")
        events = store.get_events("order-1")
        check([e.version for e in events] == [1, 2, 3], "replay returns versions 1, 2, 3")
        check(events[0].data == {"total": 42} and events[1].data == b"raw", "replayed data is intact")
        store.save_snapshot(ActorSnapshot("order-1", 3, {"status": "paid"}))
        snap = store.get_latest_snapshot("order-1")
        check(snap is not None and snap.state == {"status": "paid"}, "snapshot round trip")
        log = list(store.read_all())
        check([e.position for e in log] == [1, 2, 3], "read_all yields positions 1, 2, 3")
        cols = store.read_columns("order-1")
        check(list(cols.versions) == [1, 2, 3], "read_columns versions")
    with LmdbEventStore(path) as store:
        check(store.get_latest_version("order-1") == 3, "a reopened store keeps version 3")


def ring_lookup() -> None:
    ring = aether_fast.HashRing(["node-a", "node-b", "node-c"])
    owner = ring.owner("order-1")
    check(owner in {"node-a", "node-b", "node-c"}, f"ring lookup gives a member ({owner!r})")
    many = ring.owner_names(["order-1", "order-2", "order-3"])
    check(list(many) == [ring.owner(k) for k in ("order-1", "order-2", "order-3")],
          "vectorised ring lookup agrees with single lookups")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expect-outside", metavar="DIR", help="fail if aether_fast comes from DIR")
    args = parser.parse_args()
    package_dir = Path(aether_fast.__file__).resolve().parent
    print(f"smoke: aether_fast from {package_dir}")
    if args.expect_outside:
        source = Path(args.expect_outside).resolve()
        check(source not in package_dir.parents and package_dir != source,
              f"aether_fast is not imported from {source}")
    with tempfile.TemporaryDirectory(prefix="aether-smoke-") as tmp:
        store_round_trip(os.path.join(tmp, "store"))
    mapped = lmdb_libraries_mapped()
    check(not mapped, f"no shared LMDB library is loaded (mapped: {mapped})")
    ring_lookup()
    print("smoke: all checks passed")


if __name__ == "__main__":
    main()
