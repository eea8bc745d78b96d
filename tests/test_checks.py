"""System checks, run as a developer would: manage.py check."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tidings.checks import worker_count

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


def test_uvicorn_workers_on_the_memory_broker_warn_at_startup(make_server):
    """Each worker of ``uvicorn --workers 2`` runs the checks as it starts (tidings.asgi)."""
    with make_server(args=("--workers", "2")) as server:
        log = server.log()
    assert "tidings.W001" in log and "2 workers (uvicorn --workers 2)" in log, log


@pytest.mark.parametrize(
    ("argv", "env", "workers"),
    [
        (["/venv/bin/uvicorn", "app:a", "--workers", "3"], {"WEB_CONCURRENCY": "1"}, 3),
        (["/venv/lib/uvicorn/__main__.py", "app:a", "--workers=2"], {}, 2),
        (["/venv/bin/uvicorn", "app:a"], {"UVICORN_WORKERS": "4", "WEB_CONCURRENCY": "2"}, 4),
        (["/venv/bin/gunicorn", "-w", "5", "app:a"], {}, 5),
        (["/venv/bin/gunicorn", "-w6", "app:a"], {}, 6),
        (["/venv/bin/gunicorn", "app:a"], {"GUNICORN_CMD_ARGS": "--workers 7"}, 7),
        (["/venv/bin/gunicorn", "--workers=2", "app:a"], {"GUNICORN_CMD_ARGS": "-w 7"}, 2),
        (["/venv/bin/gunicorn", "app:a"], {"WEB_CONCURRENCY": "3"}, 3),
        (["/venv/bin/uvicorn", "app:a"], {}, 1),
        (["demo/manage.py", "check", "--workers", "2"], {}, 1),  # not a server's flag
        (["demo/manage.py", "check"], {"UVICORN_WORKERS": "2"}, 1),
    ],
)
def test_the_worker_count_is_read_as_uvicorn_and_gunicorn_read_it(argv, env, workers):
    """gunicorn is not installed here: its command lines are read as it would read them."""
    assert worker_count(argv, env)[0] == workers
