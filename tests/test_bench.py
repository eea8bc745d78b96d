"""The benchmark harness works end to end on a tiny size. It asserts no speed.

``python -m bench`` runs as a subprocess (as ``make bench`` does) against tidings and
the raw ``websockets`` reference, N=5, one run, into a temporary directory; then the
results must be complete: every phase measured, every delivery counted. The Channels
targets are left out (slow to start, need Redis); they run in the full ``make bench``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import need

ROOT_DIR = Path(__file__).resolve().parent.parent

N = 5
TARGETS = ("tidings", "raw")


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
        timeout=90,
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
        assert r["topics_delivered"] == r["topics_expected"] == 200
        assert r["topics_per_client_min"] == r["topics_per_client_max"] == 200 // N
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
            "topics_deliveries_per_s",
            "topics_p50_ms",
        ):
            assert isinstance(r[key], float), (name, key, r.get(key))
        assert 0 < r["lone_p50_ms"] <= r["lone_p99_ms"]
    stats = {s["target"]: s["stats"] for s in doc["summary"]}
    assert stats["tidings"]["burst_deliveries_per_s"]["runs"] == 1
    assert set(doc["ratios"][str(N)]) >= {"burst_deliveries_per_s", "lone_p99_ms"}
