"""The code stays ruff- and mypy-clean (mypy --strict on the package)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff():
    r = run("ruff", "check", "src", "tests", "demo", "bench")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy():
    r = run("mypy")
    assert r.returncode == 0, r.stdout + r.stderr
