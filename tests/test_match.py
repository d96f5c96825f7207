"""The native NATS-style matcher: pattern rules, a reference matcher, hypothesis, nats-server.

The reference matcher below is the NATS rule written as plainly as possible; hypothesis
compares the native single-pattern matcher and the PatternIndex (trie + exact names, with
additions, removals and compaction) with it. ``test_same_answers_as_nats_server`` sends
the same subjects and patterns through a real nats-server and compares which pairs deliver.
"""

from __future__ import annotations

import asyncio
import gc
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.nats_server import NatsServer, require_nats

from aether_fast._native import PatternIndex, check_pattern, match_pattern
from aether_fast.errors import InvalidNamespaceError, InvalidTypeError
from aether_fast.namespace import validate_actor_pattern, validate_namespace, validate_namespace_pattern


def reference_match(pattern: str, subject: str) -> bool:
    """NATS: tokens split on '.', '*' = exactly one token, '>' = one or more trailing tokens."""
    p, s = pattern.split("."), subject.split(".")
    if p[-1] == ">":
        return len(s) >= len(p) and all(a in ("*", b) for a, b in zip(p[:-1], s))
    return len(s) == len(p) and all(a in ("*", b) for a, b in zip(p, s))


TOKENS = ["a", "b", "c", "ab", "x-1", "_", "A9"]
token = st.sampled_from(TOKENS)
subject_st = st.lists(token, min_size=1, max_size=6).map(".".join)
pattern_st = st.builds(
    lambda toks, tail: ".".join(toks + ([">"] if tail else [])),
    st.lists(st.one_of(token, st.just("*")), min_size=0, max_size=5),
    st.booleans(),
).filter(bool)
# actor ids: any text, empty tokens included (they are not checked like namespaces)
actor_st = st.lists(st.one_of(token, st.just(""), st.text(max_size=3).filter(lambda t: "." not in t)),
                    min_size=1, max_size=5).map(".".join)


# -- pattern rules ----------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["a", "a.b", "*", ">", "a.*", "a.>", "*.b.>", "tenant-a.orders_1", "*.*.*"])
def test_valid_namespace_patterns(pattern):
    assert validate_namespace_pattern(pattern) == pattern
    assert check_pattern(pattern) == pattern


@pytest.mark.parametrize("pattern, fragment", [
    ("", "must not be empty"),
    ("a..b", "token 2 is empty"),
    (".a", "token 1 is empty"),
    ("a.", "token 2 is empty"),
    ("a.>.b", "'>' may only be the last"),
    (">.a", "'>' may only be the last"),
    ("tenant-*", "wildcards are whole tokens"),
    ("a.b*", "wildcards are whole tokens"),
    ("a.>>", "wildcards are whole tokens"),
    ("a b", "must be ASCII letters"),
    ("a.\u00e9", "must be ASCII letters"),
    ("x" * 201, "over the limit of 200"),
])
def test_bad_namespace_patterns_name_the_pattern(pattern, fragment):
    with pytest.raises(InvalidNamespaceError) as exc:
        validate_namespace_pattern(pattern)
    assert fragment in str(exc.value)
    if pattern and len(pattern) < 40:
        assert repr(pattern) in str(exc.value)


@pytest.mark.parametrize("pattern", ["a..b", "a.>.b", "tenant-*", "a b", "a\tb", "", "x" * 256])
def test_native_check_refuses_what_nats_rules_refuse(pattern):
    with pytest.raises(InvalidNamespaceError):
        check_pattern(pattern)
    with pytest.raises(InvalidNamespaceError):
        PatternIndex().add(pattern, 1)


def test_concrete_namespaces_refuse_wildcards():
    for name in ("a.*", ">", "a.>"):
        with pytest.raises(InvalidNamespaceError):
            validate_namespace(name)


@pytest.mark.parametrize("pattern", ["order-1", "order.*", "order.>", "*", "ordre.é.ü", "a.b.c.d"])
def test_valid_actor_patterns(pattern):
    assert validate_actor_pattern(pattern) == pattern


@pytest.mark.parametrize("pattern, fragment", [
    ("", "must not be empty"), ("a..b", "empty"), ("order-*", "whole tokens"), ("a.>.b", "last"),
    ("a b", "whitespace"), ("a\nb", "whitespace"), ("x" * 256, "over the limit of 255"),
    ("\ud800", "not valid Unicode"),
])
def test_bad_actor_patterns(pattern, fragment):
    with pytest.raises(InvalidNamespaceError) as exc:
        validate_actor_pattern(pattern)
    assert fragment in str(exc.value)


@pytest.mark.parametrize("value", [None, 3, b"a.b", ["a"]])
def test_patterns_must_be_str(value):
    with pytest.raises(InvalidTypeError):
        validate_namespace_pattern(value)
    with pytest.raises(InvalidTypeError):
        validate_actor_pattern(value)
    with pytest.raises(InvalidTypeError):
        PatternIndex().add(value, 1)


# -- examples ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern, subject, expected", [
    ("a.b", "a.b", True), ("a.b", "a.b.c", False), ("a.b", "a", False),
    ("a.*", "a.b", True), ("a.*", "a", False), ("a.*", "a.b.c", False),
    ("a.>", "a.b", True), ("a.>", "a.b.c", True), ("a.>", "a", False),
    (">", "a", True), (">", "a.b.c", True), ("*", "a", True), ("*", "a.b", False),
    ("*.b.>", "a.b.c", True), ("*.b.>", "a.b", False),
    ("tenant.*", "tenant-a", False),   # Aether's docs claim otherwise; NATS token rules say no
])
def test_examples(pattern, subject, expected):
    assert match_pattern(pattern, subject) is expected
    assert reference_match(pattern, subject) is expected
    index = PatternIndex()
    index.add(pattern, "hit")
    assert index.match(subject) == (("hit",) if expected else ())


def test_actor_ids_with_empty_and_unicode_tokens():
    assert match_pattern("*.x", ".x")
    assert match_pattern("a.*.c", "a..c")
    assert match_pattern("a.>", "a.")
    assert not match_pattern("a.b", "a..b")
    assert match_pattern("ordre.*", "ordre.é")
    assert not match_pattern("ordre.é", "ordre.e")


# -- property tests against the reference ------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(pattern_st, st.one_of(subject_st, actor_st))
def test_single_pattern_agrees_with_reference(pattern, subject):
    assert match_pattern(pattern, subject) == reference_match(pattern, subject)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(pattern_st, min_size=0, max_size=40), st.lists(st.one_of(subject_st, actor_st), max_size=30))
def test_index_agrees_with_reference(patterns, subjects):
    index = PatternIndex()
    for i, p in enumerate(patterns):
        index.add(p, i)
    assert len(index) == len(patterns)
    for s in subjects:
        expected = sorted(i for i, p in enumerate(patterns) if reference_match(p, s))
        assert sorted(index.match(s)) == expected, s


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(pattern_st, min_size=1, max_size=120), st.lists(subject_st, min_size=1, max_size=20),
       st.randoms(use_true_random=False))
def test_index_after_removals_agrees_with_reference(patterns, subjects, rnd):
    index = PatternIndex()
    live = {}
    for i, p in enumerate(patterns):
        index.add(p, i)
        live[i] = p
    for i in rnd.sample(sorted(live), k=rnd.randint(0, len(live))):
        assert index.remove(live.pop(i), i)
        assert not index.remove(patterns[i], i)
    assert len(index) == len(live)
    for s in subjects:
        expected = sorted(i for i, p in live.items() if reference_match(p, s))
        assert sorted(index.match(s)) == expected


def test_removals_compact_the_trie():
    index = PatternIndex()
    for i in range(500):
        index.add(f"t{i}.*.>", i)
    grown = index.nodes
    for i in range(499):
        index.remove(f"t{i}.*.>", i)
    # nodes of removed patterns are kept only until they outnumber 64 and the live ones
    assert index.nodes <= 1 + 2 * (1 + 64 + 64)
    assert grown == 1 + 2 * 500
    assert index.match("t499.x.y") == (499,)
    assert index.match("t1.x.y") == ()


def test_same_pattern_many_targets_and_remove_by_equality():
    index = PatternIndex()
    for target in ("a", "b", "a"):
        index.add("x.*", target)
    assert sorted(index.match("x.1")) == ["a", "a", "b"]
    assert index.remove("x.*", "a")
    assert sorted(index.match("x.1")) == ["a", "b"]
    assert not index.remove("x.>", "a")
    assert not index.remove("y", "a")
    index.clear()
    assert len(index) == 0 and index.match("x.1") == ()


def test_more_matching_patterns_than_the_fast_path_gathers():
    subject = "a.b.c.d.e.f.g"
    toks = subject.split(".")
    patterns = [".".join(t if (mask >> i) & 1 else "*" for i, t in enumerate(toks)) for mask in range(128)]
    patterns += [".".join(toks[:i] + [">"]) for i in range(7)]
    index = PatternIndex()
    for p in patterns:
        index.add(p, p)
        index.add(p + ".x" if not p.endswith(">") else p[:-1] + "x.y", "no")
    assert sorted(index.match(subject)) == sorted(patterns)
    assert all(reference_match(p, subject) for p in patterns)


def test_match_survives_a_finalizer_that_changes_the_index():
    """Making the result may run the garbage collector, and a finalizer may change the index
    in the middle of a match: the answer is then the one of the changed index."""
    index = PatternIndex()
    for i in range(5):
        index.add("a.*", i)
    index.add("a.b", "exact")

    class Changer:
        def __del__(self):
            index.remove("a.*", 0)
            index.remove("a.b", "exact")
            index.add("a.>", "new")

    match = index.match
    old = gc.get_threshold()
    gc.collect()
    gc.disable()
    try:
        garbage = Changer()
        garbage.cycle = garbage
        del garbage
        gc.set_threshold(1)
        gc.enable()
        result = match("a.b")
    finally:
        gc.set_threshold(*old)
        gc.enable()
    gc.collect()
    assert sorted(map(str, result)) == ["1", "2", "3", "4", "new"]


def test_deep_and_long_subjects():
    index = PatternIndex()
    deep = ".".join(["t"] * 128)
    index.add(deep, "deep")
    index.add("t.>", "gt")
    index.add(".".join(["*"] * 128), "stars")
    assert sorted(index.match(deep)) == ["deep", "gt", "stars"]
    assert index.match(deep + ".t") == ("gt",)
    assert index.match(".".join(["t"] * 5000)) == ("gt",)
    assert index.match("x" * 100_000) == ()


# -- the same answers as nats-server ------------------------------------------------------------------


PREFIX = "aether.events."


def _corpus(seed: int) -> tuple[list[str], list[str]]:
    rnd = random.Random(seed)
    toks = ["a", "b", "c", "ab", "x-1"]
    subjects = {".".join(rnd.choice(toks) for _ in range(rnd.randint(1, 4))) for _ in range(220)}
    patterns = {"a", "a.b", "*", ">", "a.*", "a.>", "*.b", "*.*.>", "*.*.*.*"}
    while len(patterns) < 90:
        parts = [rnd.choice(toks + ["*", "*"]) for _ in range(rnd.randint(0, 4))]
        if rnd.random() < 0.3 or not parts:
            parts.append(">")
        patterns.add(".".join(parts))
    return sorted(patterns), sorted(subjects)


async def _nats_deliveries(url: str, patterns: list[str], subjects: list[str]) -> set[tuple[str, str]]:
    import nats

    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        subs = [await nc.subscribe(PREFIX + p) for p in patterns]
        done = await nc.subscribe("aether.test.done")
        await nc.flush(timeout=5)
        for s in subjects:
            await nc.publish(PREFIX + s, s.encode())
        await nc.publish("aether.test.done", b"")
        await nc.flush(timeout=5)
        # the server delivers to this connection in publish order: once the last message is
        # here, every earlier one is in its subscription's queue
        await done.next_msg(timeout=5)
        got = set()
        for pattern, sub in zip(patterns, subs):
            while sub.pending_msgs:
                msg = await sub.next_msg(timeout=5)
                assert msg.subject.startswith(PREFIX)
                got.add((msg.subject[len(PREFIX):], pattern))
        return got
    finally:
        await nc.close()


def test_same_answers_as_nats_server():
    binary = require_nats()
    patterns, subjects = _corpus(20260526)
    with NatsServer(binary=binary) as server:
        got = asyncio.run(_nats_deliveries(server.url, patterns, subjects))
    index = PatternIndex()
    for p in patterns:
        index.add(p, p)
    ours = {(s, p) for s in subjects for p in index.match(s)}
    assert ours == {(s, p) for s in subjects for p in patterns if match_pattern(p, s)}
    assert len(got) > 500                       # the corpus exercises many matches
    assert len(ours) < len(patterns) * len(subjects) / 2    # and many non-matches
    assert got == ours, (sorted(got - ours)[:10], sorted(ours - got)[:10])
