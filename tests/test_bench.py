"""The benchmark harness works end to end on a tiny size. It asserts no speed.

``python -m bench`` runs as a subprocess (as ``make bench`` does) against tidings, tidings
with SSE subscribers (the harness' SSE client) and the raw ``websockets`` reference,
N=5, one run, into a temporary directory; then the results must be complete: every
phase measured (SSE skips many-topics, and says so), every delivery counted. The
Redis and Channels targets are left out (slow to start, need Redis); they run in the
full ``make bench``. The SSE subscriber's parser is also checked on its own, on
chunks and reads cut at arbitrary places. The scale run (``make bench-scale``) runs
at N=300 on 2 workers and 2 load generators (needs Redis): correctness only.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from bench.sseclient import SSEClient
from bench.targets import redis_missing
from bench.wire import data_json
from bench.wsclient import Tally

from tests.conftest import need

ROOT_DIR = Path(__file__).resolve().parent.parent

N = 5
TARGETS = ("tidings", "tidings-sse", "raw")
SKIPS_TOPICS = {"tidings-sse"}


def test_broker_bench_tiny_run(tmp_path: Path) -> None:
    """``python -m bench.brokers`` (it checks that every publish got its own position)."""
    from bench.targets import redis_missing

    missing = redis_missing()
    need(f"redis-server at 127.0.0.1:6379 ({missing})", missing is None)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.brokers", "--runs", "1", "--messages", "640",
         "--out", str(tmp_path), "--stem", "b"],
        cwd=ROOT_DIR, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = json.loads((tmp_path / "b.json").read_text())["runs"]
    assert len(runs) == 1 and all(value > 0 for value in runs[0].values()), runs
    assert "| apublish(), 64 tasks |" in (tmp_path / "b.md").read_text()


def test_bench_tiny_run(tmp_path: Path) -> None:
    need("matplotlib (the bench extra)", importlib.util.find_spec("matplotlib") is not None)
    proc = subprocess.run(
        [
            sys.executable, "-m", "bench",
            "--targets", ",".join(TARGETS), "--sizes", str(N), "--runs", "1",
            "--lone", "5", "--burst-deliveries", "500", "--topic-messages", "200",
            "--out", str(tmp_path),
        ],
        cwd=ROOT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "partial.json").read_text())
    assert (tmp_path / "partial.md").read_text().startswith("Run ")
    assert (tmp_path / "partial.png").read_bytes().startswith(b"\x89PNG")

    assert doc["meta"]["cpus"] >= 1 and doc["meta"]["versions"]["uvicorn"]
    results = {r["target"]: r for r in doc["results"]}
    assert sorted(results) == sorted(TARGETS)
    for name, r in results.items():
        assert r["error"] is None, (name, r["error"])
        assert r["n"] == N
        # every subscriber got every message of the fan-out burst and nothing else
        assert r["burst_messages"] == 100  # 500 deliveries / 5 subscribers
        assert r["burst_delivered"] == r["burst_expected"] == N * r["burst_messages"]
        assert r["burst_per_client_min"] == r["burst_per_client_max"] == r["burst_messages"]
        assert r["burst_publisher_errors"] == 0
        for pattern in ("loop", "threads"):  # published by the server itself
            assert r[f"{pattern}_delivered"] == r[f"{pattern}_expected"] == N * 100, name
            assert r[f"{pattern}_per_client_min"] == r[f"{pattern}_per_client_max"] == 100
            assert isinstance(r[f"{pattern}_deliveries_per_s"], float), (name, pattern)
            assert r[f"{pattern}_publisher_errors"] == 0
        if name in SKIPS_TOPICS:
            assert "topics" in r["skipped"] and "topics_delivered" not in r
            assert "publishers" in r["skipped"] and "publishers_delivered" not in r
        else:
            assert r["topics_delivered"] == r["topics_expected"] == 200
            assert r["topics_per_client_min"] == r["topics_per_client_max"] == 200 // N
            assert isinstance(r["topics_deliveries_per_s"], float), name
            assert isinstance(r["topics_p50_ms"], float), name
            # the same 200 messages from 16 publishers at once (many concurrent publishers)
            assert r["publishers_delivered"] == r["publishers_expected"] == 200, name
            assert r["publishers_per_client_min"] == r["publishers_per_client_max"] == 200 // N
            assert r["publishers_publisher_errors"] == 0
        assert r["lone_count"] == 5
        for key in (
            "accept_per_s",
            "idle_mib_per_1k",
            "rss_base_mib",
            "lone_p50_ms",
            "lone_p99_ms",
            "lone_reach_ms",
            "burst_deliveries_per_s",
            "burst_server_us_per_delivery",
            "burst_client_cpu_pct",
        ):
            assert isinstance(r[key], float), (name, key, r.get(key))
        assert 0 < r["lone_p50_ms"] <= r["lone_p99_ms"]
    stats = {s["target"]: s["stats"] for s in doc["summary"]}
    assert stats["tidings"]["burst_deliveries_per_s"]["runs"] == 1
    assert set(doc["ratios"][str(N)]) >= {
        "burst_deliveries_per_s",
        "lone_p99_ms",
        "tidings-sse:burst_deliveries_per_s",
        "loop_deliveries_per_s",
        "threads_deliveries_per_s",
    }
    md = (tmp_path / "partial.md").read_text()
    assert "fan-out deliveries/s, tidings-sse" in md and "many topics not run" in md


def test_sse_client_counts_across_any_split() -> None:
    """The SSE subscriber's parser: chunks that end mid-event, reads split anywhere."""
    events = [f"id: ab:{i}\nevent: message\ndata: {data_json(1_000 + i, i)}\n\n" for i in range(50)]
    body = "retry: 2000\nid: ab:0\nevent: tidings.open\ndata: {}\n\n" + "".join(events)
    raw = body.encode()
    # chunks cut at arbitrary places, as Django cuts a long yield into 64 KiB pieces
    rng = random.Random(5)
    cuts = sorted(rng.sample(range(1, len(raw)), 30))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    stream = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(
        b"%x\r\n%s\r\n" % (len(p), p) for p in pieces
    )

    async def feed(splits: list[int]) -> tuple[int, list[int]]:
        tally = Tally()
        tally.arm(len(events), record=True)
        client = SSEClient(tally, "127.0.0.1", 1, "/realtime/sse", "bench.all")
        for a, b in zip([0, *splits], [*splits, len(stream)], strict=True):
            client.data_received(stream[a:b])
        assert client._opened.done() and client._opened.exception() is None
        return client.received, tally.latencies

    for splits in ([], list(range(1, len(stream))), sorted(rng.sample(range(1, len(stream)), 40))):
        received, latencies = asyncio.run(feed(splits))
        assert received == len(events)
        assert len(latencies) == len(events)


@pytest.mark.timeout(180)
def test_bench_scale_tiny_run(tmp_path: Path) -> None:
    """``make bench-scale`` at N=300 on 2 workers and 2 load generators: everyone
    subscribed, everyone got the broadcast, and after every worker was killed everyone
    came back with ``recovered: true`` holding each message exactly once."""
    need("Redis at 127.0.0.1:6379", redis_missing() is None)
    proc = subprocess.run(
        [
            sys.executable, "-m", "bench.scale", "--n", "300", "--workers", "2",
            "--loadgens", "2", "--broadcasts", "2", "--timeout", "140", "--out", str(tmp_path),
        ],
        cwd=ROOT_DIR,
        capture_output=True,
        text=True,
        timeout=170,
    )  # fmt: skip
    doc = json.loads((tmp_path / "scale-partial.json").read_text())
    r = doc["result"]
    assert proc.returncode == 0 and r["error"] is None, proc.stderr[-3000:]
    assert r["accept"]["connected"] == 300
    assert [b["delivered"] for b in r["broadcasts"]] == [300, 300]
    assert all(0 < b["p50_ms"] <= b["p99_ms"] for b in r["broadcasts"])
    storm = r["storm"]
    assert storm["ok"]
    assert storm["cut"] == storm["back"] == storm["at_final"] == 300
    assert storm["recovered_true"] == storm["cuts"] >= 300 and storm["recovered_false"] == 0
    assert storm["duplicates"] == storm["gaps"] == storm["epoch_changes"] == 0
    assert storm["final_offset"] == 2 + storm["messages"]  # the broadcasts, then the storm's
    assert (tmp_path / "scale-partial.md").read_text().startswith("Run ")


@pytest.mark.timeout(180)
def test_bench_scale_storm_that_cuts_one_worker_of_two(tmp_path: Path) -> None:
    """``--kill 1``: the clients of the worker killed come back resumed; the others stay
    connected and get the lone broadcasts probed before and during the storm."""
    need("Redis at 127.0.0.1:6379", redis_missing() is None)
    proc = subprocess.run(
        [
            sys.executable, "-m", "bench.scale", "--n", "200", "--workers", "2",
            "--loadgens", "2", "--broadcasts", "1", "--kill", "1", "--storm-messages", "4",
            "--probe-interval", "0.1", "--timeout", "140", "--out", str(tmp_path),
        ],
        cwd=ROOT_DIR,
        capture_output=True,
        text=True,
        timeout=170,
    )  # fmt: skip
    r = json.loads((tmp_path / "scale-partial.json").read_text())["result"]
    assert proc.returncode == 0 and r["error"] is None, proc.stderr[-3000:]
    storm = r["storm"]
    assert storm["ok"] and storm["killed_workers"] == 1
    assert 0 < storm["cut"] == storm["back"] < 200 and storm["at_final"] == 200
    assert storm["duplicates"] == storm["gaps"] == storm["recovered_false"] == 0
    before, during = r["probe_before_storm"], r["probe_during_storm"]
    assert before["samples"] == 4 * 200  # every client got every probe before the storm
    assert 0 < during["samples"] <= 4 * (200 - storm["cut"])  # the never-cut ones, during
    assert "lone broadcasts at clients never cut" in (tmp_path / "scale-partial.md").read_text()
