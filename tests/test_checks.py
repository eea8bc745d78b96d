"""System checks, run as a developer would: manage.py check."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def check(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "demo/manage.py", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "demo.settings", **env},
    )


def test_memory_broker_with_several_workers_warns():
    r = check(WEB_CONCURRENCY="2")
    assert "tidings.W001" in r.stderr + r.stdout
    assert "Redis" in r.stderr + r.stdout


def test_one_worker_is_fine():
    r = check(WEB_CONCURRENCY="1")
    assert r.returncode == 0 and "tidings." not in r.stderr + r.stdout


def test_unknown_broker_is_an_error():
    r = check(TIDINGS_BROKER="carrier-pigeon://coop")
    assert r.returncode != 0 and "tidings.E001" in r.stderr
