"""Verdicts, the table, --compare and the header, on fake samples: no timing involved."""

import json
import subprocess
import sys

import pytest

from aether_fast.bench.common import (
    alternate,
    faster,
    format_table,
    machine,
    rate_row,
    same_size_row,
    verdict,
)
from aether_fast.bench.runner import compare


def row(ratios, target=2.0, key="k", events=1000):
    """A row whose paired repeats give exactly ``ratios`` (aether_fast 1 s, the baseline r s)."""
    return same_size_row("work", key, events, [1.0] * len(ratios), "base", list(ratios), target)


@pytest.mark.parametrize(("ratios", "expected"), [
    ([2.4, 2.6, 2.5], "yes"),
    ([2.0, 2.1, 2.2], "yes"),             # reaching the target exactly counts
    ([1.2, 1.5, 1.9], "NO"),
    ([1.8, 2.3, 2.1], "within noise"),    # the range straddles the target
    ([1.99, 5.0], "within noise"),
])
def test_verdict_from_the_range_of_paired_ratios(ratios, expected):
    assert verdict(ratios, 2.0) == expected
    r = row(ratios)
    assert r.ratios == pytest.approx(ratios)
    assert r.verdict == expected
    assert r.ratio_range == pytest.approx((min(ratios), max(ratios)))
    assert r.ratio == pytest.approx(sorted(ratios)[len(ratios) // 2] if len(ratios) % 2 else sum(ratios) / 2)


def test_no_target_and_unavailable_baselines():
    assert row([3.0, 3.1], target=None).verdict == "-"
    missing = same_size_row("work", "k", 100, [1.0, 1.0], "C loop", [], 0.5,
                            "baseline unavailable: no C compiler")
    assert missing.verdict == "baseline unavailable" and missing.ratio is None and missing.ratio_range is None
    table = format_table([missing, row([2.5, 2.6])])
    assert "baseline unavailable" in table and "no C compiler" in table and "[1]" in table


def test_ratios_pair_repeat_by_repeat_and_count_the_baselines_events():
    # aether_fast: 1000 events in 1 s then 2 s; baseline: 100 events in 1 s then 1 s
    r = rate_row("work", "k", 1000, [1.0, 2.0], "base", [1.0, 1.0], 100, 2.0)
    assert r.ratios == pytest.approx([10.0, 5.0])
    assert r.verdict == "yes"
    with pytest.raises(ValueError, match="paired"):
        rate_row("work", "k", 10, [1.0, 2.0], "base", [1.0], 10, 2.0)


def test_table_shows_ratio_range_target_and_verdict():
    table = format_table([row([1.8, 2.3, 2.1]), row([2.4, 2.6, 2.5]), row([1.0, 1.1, 1.2])])
    lines = table.splitlines()
    assert "range" in lines[0] and "verdict" in lines[0]
    assert "2.10x" in lines[2] and "1.80-2.30" in lines[2] and ">= 2x" in lines[2] and "within noise" in lines[2]
    assert lines[3].endswith("yes") and lines[4].endswith("NO")


def test_alternate_interleaves_the_sides():
    order = []
    sides = [lambda: order.append("A") or [1.0], lambda: order.append("B") or [2.0]]
    times = alternate(sides, repeats=3, warmup=1)
    assert order == ["A", "B"] * 4
    assert times == [[1.0] * 3, [2.0] * 3]


def test_faster_picks_the_faster_baseline_and_names_the_other():
    label, times, events, note = faster([("one connection each", [4.0, 4.0], 100),
                                          ("shared connection", [1.0, 1.2], 100)])
    assert (label, times, events) == ("shared connection", [1.0, 1.2], 100)
    assert "one connection each" in note


def run_json(rows, cpu="CPU A"):
    return {"machine": {"cpu": cpu, "cores": 2}, "workloads": [r.as_dict() for r in rows]}


def test_compare_two_runs_row_by_row():
    old = run_json([row([2.4, 2.5, 2.6], key="a"), row([3.0, 3.1, 3.2], key="b"), row([1.0], key="gone")])
    new = run_json([row([2.5, 2.55, 2.7], key="a"), row([4.0, 4.1, 4.2], key="b"), row([1.0], key="fresh")])
    text = compare(old, new)
    a, b = (next(line for line in text.splitlines() if f"{x:.2f}x" in line) for x in (2.55, 4.1))
    assert "same within noise" in a              # the ranges overlap
    assert "better" in b and "+32%" in b         # 3.1x -> 4.1x
    assert "(not in the old run)" in text and "(not in the new run)" in text
    assert "different machines" not in text
    assert "different machines" in compare(old, run_json([row([2.5], key="a")], cpu="CPU B"))


def test_compare_on_the_command_line_reads_two_saved_runs(tmp_path):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(run_json([row([2.0, 2.1], key="a")])))
    new.write_text(json.dumps(run_json([row([1.0, 1.1], key="a")])))
    proc = subprocess.run([sys.executable, "-m", "aether_fast", "bench", "--from-json", str(new), "--compare",
                           str(old)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "worse" in proc.stdout and "-49%" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "aether_fast", "bench", "--from-json", str(new), "--compare",
                          str(tmp_path / "missing.json")], capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "--compare" in bad.stderr


def test_machine_names_what_the_figures_depend_on(tmp_path):
    m = machine(str(tmp_path))
    for key in ("cpu", "cores", "memory_gb", "kernel", "file_system", "python", "lmdb", "py-lmdb",
                "aether_fast", "sqlite", "cc"):
        assert m[key], key
    assert m["store_dir"] == str(tmp_path)
    assert m["file_system"] != "unknown"
