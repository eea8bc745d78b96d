"""Fixtures: a real uvicorn server (demo + test app) on a free loopback port, per session,
and a factory for servers with other settings. Django is set up in-process on the
same SQLite file, so tests can create users the server then sees."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

_tmp = tempfile.mkdtemp(prefix="tidings-tests-")
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
os.environ["DEMO_DB"] = os.path.join(_tmp, "db.sqlite3")
os.environ.setdefault("TIDINGS_TEST", "{}")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from tidings.testing import LiveServer, live_server  # noqa: E402

call_command("migrate", verbosity=0)

IN_CI = os.environ.get("CI") == "true"
APP = "demo.asgi:application"


def need(what: str, ok: bool) -> None:
    """Skip locally when ``what`` is missing; under CI=true fail instead."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true but missing")
    pytest.skip(f"{what} is not available here")


def server_env(tidings: dict[str, Any] | None = None) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DEMO_DB": os.environ["DEMO_DB"],
        "TIDINGS_TEST": json.dumps(tidings or {}),
        "DEMO_DEBUG": "1",
    }


@pytest.fixture(scope="session")
def server() -> Iterator[LiveServer]:
    with live_server(APP, env=server_env(), log_path=os.path.join(_tmp, "server.log")) as s:
        yield s


@pytest.fixture
def make_server() -> Callable[..., AbstractContextManager[LiveServer]]:
    """``with make_server({"QUEUE_SIZE": 10}) as srv:`` a fresh server with TIDINGS overrides."""

    def make(
        tidings: dict[str, Any] | None = None, **kwargs: Any
    ) -> AbstractContextManager[LiveServer]:
        return live_server(APP, env=server_env(tidings), **kwargs)

    return make


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_tmp, ignore_errors=True)


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (no downloaded browser build)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    need("Chromium (Debian package 'chromium')", path is not None)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page_errors() -> list[str]:
    """Collects JavaScript errors of pages a test opens with ``watch(page)``."""
    return []
