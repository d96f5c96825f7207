"""Coverage-guided fuzzing of the record decoder and the JSON decoders with atheris.

Not part of the test suite (pytest collects only ``test_*.py``); run it by hand:

    pip install -e ".[fuzz]"
    mkdir -p /tmp/aether-corpus    # an empty corpus directory is seeded with real records
    python tests/support/fuzz_atheris.py -max_total_time=300 /tmp/aether-corpus   # libFuzzer options
    python tests/support/fuzz_atheris.py crash-<hash>                             # replay one input

The first input byte picks the target, the rest is the hostile input:

0. ``decode_record`` of the bytes as they are (the checksum catches almost everything);
1. ``decode_record`` of the bytes re-sealed with a valid checksum (the structural checks);
2. a real record with the input written over it, re-sealed;
3. ``Event.from_json`` (the JSON import form);
4. a snapshot's stored state decoded as JSON (``model.decode_snapshot``).

Each must end in an event that is exactly what the bytes say, or an ``AetherError``;
any other exception, a crash or a hang is a finding. Python code is instrumented; the
native module is not (it would need a libFuzzer build), so coverage guides by the
Python side and the outcome checks do the rest.
"""

from __future__ import annotations

import os
import struct
import sys

import atheris

with atheris.instrument_imports():
    from aether_fast import AetherError, CorruptRecordError, Event, _native
    from aether_fast.model import decode_snapshot

SAMPLE = _native.encode_record(Event(
    event_type="OrderPlaced", actor_id="order-1", version=3, data={"n": 1, "s": "ü"},
    metadata={"correlationId": "c1", "k": "v"}, command_id="cmd-1", timestamp=1_700_000_000_000_000_000,
))


def _seal(body: bytes) -> bytes:
    return struct.pack("<I", _native.crc32c(body)) + body


@atheris.instrument_func
def _check_record(record: bytes) -> None:
    try:
        event = _native.decode_record(record, 1)
    except CorruptRecordError:
        return
    assert _native.encode_record(event) == record, f"decoded event does not re-encode to its record: {record!r}"
    try:
        data = event.data
    except CorruptRecordError:
        return
    assert isinstance(data, bytes if event.is_bytes else dict), f"data of a decoded event is a {type(data).__name__}"


@atheris.instrument_func
def one_input(data: bytes) -> None:
    if not data:
        return
    target, rest = data[0] % 5, data[1:]
    if target == 0:
        _check_record(rest)
    elif target == 1:
        if len(rest) >= 4:
            _check_record(_seal(rest[4:]))
    elif target == 2:
        merged = bytearray(SAMPLE)
        merged[4 : 4 + len(rest)] = rest[: len(SAMPLE) - 4]
        _check_record(_seal(bytes(merged[4:])))
    elif target == 3:
        try:
            Event.from_json(rest)
        except AetherError:
            pass
    else:
        try:
            snapshot = decode_snapshot("a", 1, 0, rest, False)
        except CorruptRecordError:
            return
        assert isinstance(snapshot.state, dict), "a snapshot's JSON state decoded to a non-dict"


def seed_corpus(directory: str) -> None:
    """Give an empty corpus directory one real input per target, to start from whole records."""
    if os.path.isdir(directory) and not os.listdir(directory):
        seeds = [b"\0" + SAMPLE, b"\1" + SAMPLE, b"\2" + SAMPLE[4:], b"\3" + _native.decode_record(SAMPLE).to_json().encode(),
                 b"\4" + b'{"state": [1, 2.5, "x"]}']
        for i, seed in enumerate(seeds):
            with open(os.path.join(directory, f"seed-{i}"), "wb") as f:
                f.write(seed)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        if not arg.startswith("-"):
            seed_corpus(arg)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
