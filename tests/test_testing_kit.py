"""tidings.testing's in-process kit as an app's tests use it: tests/kit/cases.py (a
handler, a rule, SSE and long-poll, a view's publish, a model feed) run by Django's own
test runner, in a TestCase and a TransactionTestCase, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import need

ROOT = Path(__file__).resolve().parent.parent


def pg_ok() -> bool:
    import psycopg

    try:
        psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres").close()
    except psycopg.Error:
        return False
    return True


def python(env: dict[str, str], *args: str) -> str:
    """Run Python in the repository with ``args``; what it printed (it must succeed)."""
    run = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    return out


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_an_apps_tests_run_in_process_under_djangos_runner(database, tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    env["DEMO_DB"] = str(tmp_path / "db.sqlite3")
    if database == "postgresql":
        need("PostgreSQL at 127.0.0.1:5432", pg_ok())
        env["DEMO_PG"] = f"kit_{os.getpid()}"  # the runner makes test_<name> and drops it
    out = python(env, "-m", "django", "test", "tests.kit.cases", "--noinput", "-v", "2")
    assert "Ran 6 tests" in out and "\nOK\n" in out, out
    assert "test_a_chat_message_is_saved_and_fed_to_everyone" in out  # it ran, and passed


def test_an_apps_tests_run_in_process_under_pytest_django(tmp_path):
    ini = tmp_path / "pytest.ini"
    ini.write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "python_files = pytest_cases.py\nDJANGO_SETTINGS_MODULE = tests.settings\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DEMO_DB": str(tmp_path / "db.sqlite3")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    args = ["-c", str(ini), "--rootdir", str(ROOT), "--noconftest", "-p", "pytest_django", "-v"]
    out = python(env, "-m", "pytest", *args, "tests/kit/pytest_cases.py")
    assert "3 passed" in out and "test_a_model_feed PASSED" in out, out
