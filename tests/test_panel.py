"""The realtime panel of the Django admin, in Chromium against a real server: a staff
user sees who is connected and to what, live; publishes a test message that a
subscriber receives; reads a topic's history; disconnects a user. Non-staff users can
neither open it nor listen to its topic."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.test_websocket import login
from tidings.client import Backoff, ClientError, connect

pytestmark = pytest.mark.browser


@contextmanager
def subscriber(server: Any, cookies: dict[str, str], topic: str) -> Iterator[dict[str, Any]]:
    """A tidings.client connection subscribed to ``topic``, on a loop of its own (the
    test drives Chromium synchronously): what it got, and how it was last closed."""
    seen: dict[str, Any] = {"messages": [], "client": None, "ready": threading.Event()}
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def run() -> None:
        async with connect(server.ws_url, cookies=cookies, backoff=Backoff(2, 2)) as client:
            seen["client"] = client
            sub = await client.subscribe(topic)
            seen["ready"].set()
            reading = asyncio.ensure_future(_read(sub, seen["messages"]))
            await stop.wait()
            reading.cancel()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    assert seen["ready"].wait(10)
    try:
        yield seen
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


async def _read(sub: Any, into: list[Any]) -> None:
    async for message in sub:
        into.append(message.data)


def test_staff_watch_publish_read_history_and_disconnect_in_the_panel(browser, server):
    from django.contrib.auth.models import User

    name = f"panel-{secrets.token_hex(3)}"
    topic = f"test.panel-{secrets.token_hex(3)}"
    _make = lambda: User.objects.create_superuser(name, password="pw-panel-1")  # noqa: E731
    threading.Thread(target=_make).start()  # (the ORM, outside the test's event loop)
    bob = f"bob-{secrets.token_hex(3)}"
    cookies = _threaded(login, server, bob, "pw-bob-1")
    with subscriber(server, cookies, topic) as got:
        page = browser.new_context().new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.goto(f"{server.url}/admin/")
        page.fill("#id_username", name)
        page.fill("#id_password", "pw-panel-1")
        page.click("input[type=submit]")
        page.get_by_role("link", name="Realtime panel").first.click()
        expect(page.locator("#panel-state")).to_have_text("live · websocket")
        assert [e for e in errors if "404" not in e] == []  # (the admin's favicon aside)
        nodes = page.locator("#panel-nodes")
        expect(nodes).to_contain_text(topic, timeout=10_000)  # bob's subscription, live
        expect(nodes).to_contain_text(bob)

        page.fill("form:has(input[value=publish]) input[name=topic]", topic)
        page.fill("form:has(input[value=publish]) input[name=data]", '{"hello": "bob"}')
        page.click("form:has(input[value=publish]) input[type=submit]")
        expect(page.locator(".messagelist")).to_contain_text(f"Published to {topic} at ")
        expect(page.locator("#panel-history")).to_contain_text('{"hello":"bob"}')
        _until(lambda: {"hello": "bob"} in got["messages"])

        page.locator(f"tr:has-text('{bob}') input[value=Disconnect]").first.click()
        expect(page.locator(".messagelist")).to_contain_text("Disconnected every connection")
        _until(lambda: got["client"].last_close == (4401, "disconnected by staff"))


def test_non_staff_users_neither_open_the_panel_nor_hear_its_topic(server):
    cookies = _threaded(login, server, f"carl-{secrets.token_hex(3)}", "pw-carl-1")
    with httpx.Client(base_url=server.url, cookies=cookies) as http:
        r = http.get("/admin/tidings/panel/", follow_redirects=False)
    assert r.status_code == 302 and "/admin/login/" in r.headers["Location"]

    async def listen() -> list[str]:
        codes = []
        async with connect(server.ws_url, cookies=cookies) as client:
            for attempt in (client.subscribe("tidings-panel"), client.publish("tidings-panel", 1)):
                try:
                    await attempt  # nor may they forge a process's snapshot
                except ClientError as e:
                    codes.append(e.code)
        return codes

    # (Chromium's sync driver holds this thread's event loop: the client runs in another)
    assert _threaded(asyncio.run, listen()) == ["forbidden", "forbidden"]


def _threaded(fn: Any, *args: Any) -> Any:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn(*args)))
    thread.start()
    thread.join(30)
    return out[0]


def _until(predicate: Any, seconds: float = 10) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
