"""The command line: ``python -m aether_fast bench`` end to end, help and argument errors.

No assertion here is about speed: only that every figure is there and sane."""

import json
import subprocess
import sys

import pytest

from aether_fast.__main__ import main

WORKLOADS = {
    "bulk_append/py-lmdb", "bulk_append/sqlite3", "bulk_append/c", "save_event", "replay", "replay/c",
    "columns_actor", "columns_actor/c", "columns_range", "columns_range/c", "read_all", "read_all/c",
    "threads_vs_single", "threads_vs_sqlite", "single_vs_pylmdb", "catch_up",
    "es/insert_events/sqlite", "es/insert_events/popo", "es/select_events/sqlite",
    "es/select_notifications/sqlite", "es/app_1/sqlite", "es/app_n/sqlite",
    "bus_match", "bus_fanout_callback", "bus_fanout_async", "bus_publish_1000",
    "ring_lookup_py", "ring_lookup_uhashring", "ring_owners", "ring_owners_array",
}


def test_bench_quick_reports_every_workload_as_json(tmp_path):
    out = tmp_path / "bench.json"
    stores = tmp_path / "stores"
    stores.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "aether_fast", "bench", "--quick", "--json", str(out), "--dir", str(stores)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    rows = result["workloads"]
    assert {row["key"] for row in rows} == WORKLOADS
    repeats = result["settings"]["repeats"]
    for row in rows:
        assert row["aether_fast"] > 0 and len(row["aether_times"]) == repeats, row
        assert row["workload"] in proc.stdout
        if row["key"] == "catch_up":       # information: no baseline, no target
            assert row["ratio"] is None and row["verdict"] == "-"
            continue
        assert row["baseline_rate"] > 0 and len(row["baseline_times"]) == repeats, row
        lo, hi = row["ratio_range"]
        assert len(row["ratios"]) == repeats and lo <= row["ratio"] <= hi
        assert row["verdict"] in (("yes", "NO", "within noise") if row["target_value"] is not None else ("-",))
    assert "C baseline: c_baseline.c" in proc.stdout
    latency = result["subscription_latency_ms"]
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert "commit-to-delivery latency" in proc.stdout
    assert result["settings"]["durability"] == "nosync"
    assert result["machine"]["cores"] >= 1
    assert "synchronous=NORMAL" in proc.stdout
    assert list(stores.iterdir()) == []   # every temporary store is removed


def test_help_lists_the_bench_command():
    proc = subprocess.run([sys.executable, "-m", "aether_fast", "--help"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0
    assert "bench" in proc.stdout


def test_bench_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--quick", "--json", "--events", "--actors", "--durability"):
        assert option in out


@pytest.mark.parametrize("argv", [
    [],
    ["nope"],
    ["bench", "--events", "0"],
    ["bench", "--events", "many"],
    ["bench", "--actors", "-3"],
    ["bench", "--events", "10", "--actors", "20"],
    ["bench", "--durability", "maybe"],
    ["bench", "--unknown"],
    ["bench", "--dir", "/nonexistent/aether-bench"],
    ["bench", "--json", "/nonexistent/aether-bench/out.json"],
])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_bench_nats_suite_runs_on_servers_of_its_own(tmp_path):
    """`--nats` adds the NATS bus and JetStream rows, against raw nats-py, same run."""
    from support.nats_server import require_nats

    require_nats()
    out = tmp_path / "nats.json"
    proc = subprocess.run(
        [sys.executable, "-m", "aether_fast", "bench", "--quick", "--suite", "core", "--nats", "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    keys = {row["key"] for row in result["workloads"]}
    assert {"nats_bus_rate", "js_save_sequential", "js_save_pipelined", "js_replay"} <= keys
    assert "bulk_append/py-lmdb" in keys
    for row in result["workloads"]:
        assert row["aether_fast"] > 0 and row["baseline_rate"] > 0, row
    latency = result["nats_bus_latency_ms"]
    assert 0 < latency["bus"]["p50_ms"] <= latency["bus"]["p99_ms"]
    assert "NatsEventBus publish-to-delivery latency" in proc.stdout
