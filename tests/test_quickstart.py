"""The README's quickstart, step by step as written, in a fresh project, in Chromium.

The steps are read from README.md, not copied here, so the README cannot drift from
what works. Shell lines run as written with three exceptions: ``pip install`` is
skipped (this venv has tidings), ``django-admin`` and ``python`` are this venv's, and
the servers get a free port. Each code block starts with a comment naming its file and
what to do with it: a file that does not exist yet is written whole, ``add at the end``
appends, ``instead`` replaces the file's import of the same name, anything else
replaces the file.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from tests.redis_server import free_port

pytestmark = pytest.mark.browser

README = Path(__file__).resolve().parent.parent / "README.md"
HEADER = re.compile(r"^(?:#|<!--)\s*(?P<path>[\w./-]+):\s*(?P<what>.*?)\s*(?:-->)?$")


def quickstart() -> list[tuple[str, str]]:
    """The quickstart's fenced blocks, in order: (language, text)."""
    text = README.read_text()
    section = text[text.index("## Quickstart") : text.index("## Documentation")]
    return re.findall(r"```(\w+)\n(.*?)```", section, re.S)


def apply(block: str, cwd: Path) -> None:
    """Do what a code block's first line says to its file."""
    m = HEADER.match(block.splitlines()[0])
    assert m, f"a quickstart block names no file: {block[:80]!r}"
    path, what = cwd / m["path"], m["what"]
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block)
    elif what.startswith("add at the end"):
        path.write_text(path.read_text() + "\n" + block)
    elif "instead" in what:
        text = path.read_text()
        for line in block.splitlines()[1:]:
            name = line.rpartition(" import ")[2]
            found = [old for old in text.splitlines() if old.endswith(f" import {name}")]
            assert found, f"{path.name} imports no {name}"
            text = text.replace(found[0], line)
        path.write_text(text)
    else:
        path.write_text(block)


def env() -> dict[str, str]:
    """A developer's shell: none of the suite's own Django settings."""
    drop = {"DJANGO_SETTINGS_MODULE", "DEMO_DB", "TIDINGS_TEST", "DEMO_DEBUG"}
    return {k: v for k, v in os.environ.items() if k not in drop}


@contextmanager
def serving(argv: list[str], cwd: Path, log: Path) -> Iterator[str]:
    """Start a server from the README's command line; yield its URL once it answers."""
    port = free_port()
    if argv[:3] == ["python", "manage.py", "runserver"]:
        argv = [*argv, f"127.0.0.1:{port}"]
    else:
        argv = [*argv, "--port", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, *argv[1:]] if argv[0] == "python" else [sys.executable, "-m", *argv],
            cwd=cwd,
            env=env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # runserver's autoreloader has a child: stop both
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def goal_reaches_the_other_window(browser: Browser, url: str) -> None:
    """Two windows on the page; Goal! pressed in one shows up in the other."""
    errors: list[str] = []
    watching = browser.new_context().new_page()
    watching.on(
        "console",
        lambda m: (
            m.type in ("error", "warning")
            and not m.location["url"].endswith("/favicon.ico")  # the quickstart has none
            and errors.append(m.text)
        ),
    )
    watching.goto(url + "/")
    pressing = browser.new_context().new_page()
    pressing.goto(url + "/")
    for _ in range(5):  # until the watching window's subscribe is answered
        pressing.get_by_role("button", name="Goal!").click()
        try:
            expect(watching.locator("#news li").first).to_have_text("Goal!", timeout=2_000)
            break
        except AssertionError:
            continue
    expect(watching.locator("#news li").first).to_have_text("Goal!", timeout=1)
    assert errors == []
    watching.context.close()
    pressing.context.close()


def subscribe(url: str, topic: str) -> bool:
    """Whether a subscribe to ``topic`` is granted (``False`` while the server is away)."""
    try:
        with connect(url.replace("http", "ws") + "/realtime/ws", origin=url) as ws:
            ws.send(json.dumps({"id": 1, "op": "subscribe", "topic": topic}))
            return bool(json.loads(ws.recv(timeout=5))["ok"])
    except (OSError, WebSocketException):  # the old process going, the new one coming
        return False


def other_transports_answer(url: str) -> None:
    """SSE and long-poll are served on the same port as the pages."""
    with httpx.stream("GET", url + "/realtime/sse?topic=news.sport", timeout=5) as sse:
        assert sse.status_code == 200 and "text/event-stream" in sse.headers["content-type"]
        assert "tidings.open" in next(sse.iter_text())
    poll = httpx.get(url + "/realtime/poll?topic=news.sport&timeout=1", timeout=5)
    assert poll.status_code == 200 and poll.json()["topics"], poll.text


def test_the_readme_quickstart_works_as_written(browser: Browser, tmp_path: Path) -> None:
    cwd, servers = tmp_path, 0
    for language, block in quickstart():
        if language != "sh":
            apply(block, cwd)
            continue
        for line in block.splitlines():
            argv = shlex.split(line, comments=True)
            if not argv or argv[0] == "pip":
                continue
            if argv[0] == "cd":
                cwd = cwd / argv[1]
            elif argv[:3] == ["python", "manage.py", "runserver"]:
                with serving(argv, cwd, tmp_path / "runserver.log") as url:
                    goal_reaches_the_other_window(browser, url)
                    other_transports_answer(url)
                    # autoreload: a rule added to realtime.py holds without a restart
                    assert not subscribe(url, "weather.today")
                    realtime = cwd / "news" / "realtime.py"
                    realtime.write_text(
                        realtime.read_text() + '\ntidings.allow("weather.*", subscribe=True)\n'
                    )
                    deadline = time.monotonic() + 30
                    while not subscribe(url, "weather.today"):
                        assert time.monotonic() < deadline, "runserver did not reload"
                        time.sleep(0.5)
                    goal_reaches_the_other_window(browser, url)
                    log = (tmp_path / "runserver.log").read_text()
                    assert "realtime.py changed, reloading" in log, log
                servers += 1
            elif argv[0] == "uvicorn":
                with serving(argv, cwd, tmp_path / "uvicorn.log") as url:
                    goal_reaches_the_other_window(browser, url)
                servers += 1
            else:
                django = argv[0] == "django-admin"
                command = ["-m", "django", *argv[1:]] if django else argv[1:]
                done = subprocess.run(
                    [sys.executable, *command], cwd=cwd, env=env(), capture_output=True, text=True
                )
                assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
    assert servers == 2, "the quickstart runs runserver, then uvicorn"


def test_runserver_listed_after_staticfiles_is_flagged(tmp_path: Path) -> None:
    """Listed after staticfiles, tidings' runserver is not the one Django runs: say so."""
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "late", str(tmp_path)],
        check=True,
        env=env(),
    )
    settings = tmp_path / "late" / "settings.py"
    settings.write_text(settings.read_text() + '\nINSTALLED_APPS += ["tidings"]\n')
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
    )
    out = done.stdout + done.stderr
    assert "tidings.W002" in out and "django.contrib.staticfiles" in out, out
