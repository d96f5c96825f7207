"""Hostile JSON lines for ``import``: truncated, bit-flipped and random input ends in a clean
ImportRefusedError naming the line, and the store keeps exactly what it had."""

from __future__ import annotations

import tempfile

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aether_fast import Event, LmdbEventStore
from aether_fast.store.admin import ImportRefusedError, export_events, import_events

GOOD = [Event(event_type="OrderPlaced", actor_id=f"order-{i % 3}", version=i // 3 + 1,
              data={"n": i, "text": "é"}, metadata={"correlationId": f"c{i}"}) for i in range(9)]
LINES = [orjson.dumps(e.to_dict()) for e in GOOD]


def mutate(line: bytes, how: str, at: int, byte: int) -> bytes:
    at = at % max(1, len(line))
    if how == "truncate":
        return line[:at]
    if how == "flip":
        return line[:at] + bytes([line[at] ^ (1 << (byte % 8))]) + line[at + 1:]
    return line[:at] + bytes([byte]) + line[at:]           # insert


def snapshot(path) -> list[dict]:
    import io
    out = io.BytesIO()
    export_events(path, out)
    return [orjson.loads(x) for x in out.getvalue().splitlines()]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, len(LINES) - 1), st.sampled_from(["truncate", "flip", "insert"]),
       st.integers(0, 10_000), st.integers(0, 255), st.binary(max_size=64))
def test_damaged_or_random_lines_are_refused_cleanly_and_change_nothing(tmp_path, index, how, at, byte, junk):
    path = tempfile.mkdtemp(dir=tmp_path)        # one store per example
    with LmdbEventStore(path) as store:
        store.save_event(Event(event_type="Before", actor_id="kept", version=1))
    before = snapshot(path)
    lines = list(LINES)
    lines[index] = mutate(lines[index], how, at, byte)
    for candidate in (lines, [*LINES[:2], junk]):
        try:
            import_events(path, candidate)
        except ImportRefusedError as e:      # the only way an import may fail
            assert 1 <= e.line <= len(candidate)
            assert snapshot(path) == before  # all or nothing
        else:                                # a mutation may leave a valid, acceptable event
            after = snapshot(path)           # (blank lines are skipped)
            added = sum(1 for line in candidate if line.strip())
            assert after[: len(before)] == before and len(after) == len(before) + added
            before = after
