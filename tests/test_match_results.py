"""PatternIndex.match interns its result tuples by matched set: stale answers, leaks, evictions.

A match always walks the whole trie; only then is the tuple of the matched lists looked up
among the interned ones. These tests check that no change of the index (add, remove, clear,
compaction) lets an old tuple through, that interned tuples keep no removed target alive
(also through a reference cycle), and that many distinct sets (more than the slots) and
non-ASCII subjects still get the right answers.
"""

from __future__ import annotations

import gc
import weakref

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_match import pattern_st, reference_match, subject_st

from aether_fast._native import PatternIndex

op_st = st.one_of(
    st.tuples(st.just("add"), pattern_st),
    st.tuples(st.just("remove"), st.integers(0, 200)),
    st.tuples(st.just("match"), subject_st),
    st.tuples(st.just("clear"), st.none()),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op_st, max_size=80))
def test_matches_between_changes_agree_with_reference(ops):
    index = PatternIndex()
    live: dict[int, str] = {}
    for n, (op, arg) in enumerate(ops):
        if op == "add":
            index.add(arg, n)
            live[n] = arg
        elif op == "remove" and live:
            target = sorted(live)[arg % len(live)]
            assert index.remove(live.pop(target), target)
        elif op == "clear":
            index.clear()
            live.clear()
        elif op == "match":
            expected = sorted(t for t, p in live.items() if reference_match(p, arg))
            assert sorted(index.match(arg)) == expected, arg
            assert sorted(index.match(arg)) == expected, arg   # the interned answer too


def test_same_matched_set_same_tuple_until_a_change():
    index = PatternIndex()
    index.add("a.*", 1)
    index.add("a.>", 2)
    first = index.match("a.b")
    assert sorted(first) == [1, 2]
    assert index.match("a.c") is first            # another subject, the same matched set
    index.add("a.c", 3)
    assert sorted(index.match("a.c")) == [1, 2, 3]
    assert index.match("a.b") is not first and sorted(index.match("a.b")) == [1, 2]
    assert index.remove("a.>", 2)
    assert index.match("a.b") == (1,)


class Target:
    """A subscription-like target; ``index`` makes a reference cycle through the index."""

    def __init__(self, index: PatternIndex | None = None) -> None:
        self.index = index


def test_a_removed_target_is_not_kept_alive_by_an_interned_result():
    index = PatternIndex()
    target = Target()
    gone = weakref.ref(target)
    index.add("a.*", target)
    index.add("*.b", "other")
    assert len(index.match("a.b")) == 2
    assert index.remove("a.*", target)
    del target
    assert gone() is None
    assert index.match("a.b") == ("other",)


def test_a_cycle_through_an_interned_result_is_collected():
    gc.collect()
    index = PatternIndex()
    target = Target(index)
    index.add("a.*", target)
    index.add("a.b.>", target)
    assert index.match("a.b") == (target,)
    assert index.match("a.b.c") == (target,)
    gone = weakref.ref(target)
    del target, index
    gc.collect()
    assert gone() is None


def test_more_matched_sets_than_interned_slots():
    index = PatternIndex()
    for i in range(1000):
        index.add(f"t{i}.*", i)
    for k in range(7):
        index.add(f"*.s{k}", f"s{k}")
    for _ in range(3):
        for i in range(0, 1000, 3):
            assert sorted(map(str, index.match(f"t{i}.s{i % 7}"))) == sorted([str(i), f"s{i % 7}"])
            assert index.match(f"t{i}.x") == (i,)


def test_larger_matched_sets_than_interned_are_still_answered():
    index = PatternIndex()
    patterns = [".".join(p) for p in (("a", "*", "*"), ("*", "b", "*"), ("*", "*", "c"), ("a", "b", "*"),
                                      ("a", "*", "c"), ("*", "b", "c"), ("a", "b", "c"), ("*", "*", "*"),
                                      ("a", ">"), ("*", ">"), ("a", "b", ">"), ("*", "b", ">"), (">",))]
    for p in patterns:
        index.add(p, p)
    for _ in range(2):
        assert sorted(index.match("a.b.c")) == sorted(patterns)


def test_non_ascii_subjects():
    index = PatternIndex()
    index.add("zürich.*", "z")
    index.add("*.日本", "j")
    index.add("ascii.>", "a")
    for _ in range(2):
        assert index.match("zürich.x") == ("z",)
        assert sorted(index.match("zürich.日本")) == ["j", "z"]
        assert sorted(index.match("ascii.日本")) == ["a", "j"]
        assert index.match("zurich.x") == ()


# tokens around the 8-byte words the matcher reads: shared first words, lengths 0 to 17
WORD_TOKENS = ["a" * k for k in range(1, 18)] + ["aaaaaaab", "aaaaaaaab", "aaaaaaaaaaaaaaab", "é", "aé", "\x00", "a\x00"]
word_token = st.sampled_from(WORD_TOKENS)
word_subject_st = st.lists(st.one_of(word_token, st.just("")), min_size=1, max_size=5).map(".".join)
word_pattern_st = st.builds(
    lambda toks, tail: ".".join(toks + ([">"] if tail else [])),
    st.lists(st.one_of(word_token, st.just("*")), min_size=0, max_size=4),
    st.booleans(),
).filter(bool)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(word_pattern_st, min_size=1, max_size=30), st.lists(word_subject_st, min_size=1, max_size=20))
def test_tokens_of_every_length_agree_with_reference(patterns, subjects):
    index = PatternIndex()
    for i, p in enumerate(patterns):
        index.add(p, i)
    for s in subjects:
        expected = sorted(i for i, p in enumerate(patterns) if reference_match(p, s))
        assert sorted(index.match(s)) == expected, s


def test_tokens_at_word_boundaries():
    index = PatternIndex()
    for k in range(1, 20):
        index.add("x" * k, f"exact{k}")
        index.add("x" * k + ".*", f"star{k}")
        index.add("*." + "y" * k, f"end{k}")
    for k in range(1, 20):
        assert index.match("x" * k) == (f"exact{k}",)
        assert index.match("x" * k + ".q") == (f"star{k}",)
        assert index.match("q." + "y" * k) == (f"end{k}",)
        assert sorted(index.match("x" * k + "." + "y" * k)) == [f"end{k}", f"star{k}"]
        assert index.match("x" * k + "x.q") == ((f"star{k + 1}",) if k < 19 else ())
        assert index.match("x" * k + ".") == (f"star{k}",)         # an empty last token
    assert index.match(".") == () and index.match("..") == ()
