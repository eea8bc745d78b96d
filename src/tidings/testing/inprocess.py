"""Clients of this process's own ASGI application, for an app's tests: no server, no
subprocess, the test's database (``TestCase``, ``TransactionTestCase``, pytest-django).

::

    async with tidings.testing.connect(user=alice) as client:   # the WebSocket protocol
        sub = await client.subscribe("rooms.lobby")
        await client.publish("rooms.lobby", {"message": "hi"})
        message = await sub.get(timeout=5)

    async with tidings.testing.stream("rooms.lobby", user=alice) as events:   # SSE
        event = await events.next()

    answer = await tidings.testing.poll("rooms.lobby", since=cursor)        # long-poll

``connect`` gives a :class:`tidings.client.Client` (docs/client.md), over a socket to
the application instead of the network. The application is ``settings.ASGI_APPLICATION``
if set, else :func:`tidings.asgi.get_asgi_application`. It serves on the test's event
loop: the first client starts this process's node on it, and when the last one closes
the node is stopped, so the next test (on another loop) starts it again. Meanwhile,
as Django's test client does, requests do not close the database connection (that would
end a ``TestCase``'s transaction).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils.module_loading import import_string

from tidings.client import Backoff, Client
from tidings.server.node import get_node, reset_node
from tidings.testing.asgi import AppResponse, AppSocket
from tidings.types import ASGIApp

ORIGIN = "http://testserver"
_apps: dict[str, ASGIApp] = {}
_serving = 0  # clients open on the node's loop


def application() -> ASGIApp:
    """The project's ASGI application, built once."""
    path = getattr(settings, "ASGI_APPLICATION", None) or "tidings.asgi.get_asgi_application"
    app = _apps.get(path)
    if app is None:
        found = import_string(path)
        app = _apps[path] = found() if path == "tidings.asgi.get_asgi_application" else found
    return app


async def cookies_for(user: Any) -> dict[str, str]:
    """A logged-in session for ``user`` (Django's ``force_login``): its cookie."""
    if user is None or not getattr(user, "is_authenticated", False):
        return {}
    from django.test import AsyncClient

    http = AsyncClient()
    await http.aforce_login(user)
    name = settings.SESSION_COOKIE_NAME
    return {name: http.cookies[name].value}


def _headers(cookies: dict[str, str], origin: str | None) -> dict[str, str]:
    headers = {"Origin": origin or ORIGIN}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return headers


@asynccontextmanager
async def serving() -> AsyncIterator[None]:
    """This process's node serves on the running loop while the block runs."""
    global _serving
    node = get_node()
    loop = asyncio.get_running_loop()
    if node.loop is not None and node.loop is not loop:
        if not node.loop.is_closed() and node.loop.is_running():
            raise RuntimeError("tidings is serving on another event loop in this process")
        reset_node()  # a finished test's loop: start afresh
    if _serving == 0:  # as Django's test client does: the test's transaction stays open
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
    _serving += 1
    try:
        yield
    finally:
        _serving -= 1
        if _serving == 0:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)
            await get_node().stop()


@asynccontextmanager
async def connect(
    *,
    user: Any = None,
    app: ASGIApp | None = None,
    origin: str | None = None,
    timeout: float = 10.0,
    **options: Any,
) -> AsyncIterator[Client]:
    """A :class:`tidings.client.Client` connected to the application in this process,
    as ``user`` (``None``: anonymous). ``options`` go to the client."""
    target = app or application()

    def opener(
        url: str, origin: str, headers: dict[str, str], protocols: list[str], timeout: float
    ) -> AppSocket:
        return AppSocket(target, url, {**headers, "Origin": origin}, protocols, timeout)

    cookies = await cookies_for(user)
    async with serving():
        options.setdefault("backoff", Backoff(initial=0.05, max=0.5))
        client = Client(
            f"ws://testserver{get_node().settings.ws_path}",
            origin=origin or ORIGIN,
            cookies=cookies,
            timeout=timeout,
            opener=opener,
            **options,
        )
        async with client:
            yield client


class Events:
    """An SSE stream's events, parsed: each a dict of ``event``, ``id`` and ``data``
    (decoded from JSON when it is)."""

    def __init__(self, response: AppResponse) -> None:
        self.response = response
        self._chunks = response.chunks()
        self._buffer = ""

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next event (comments and keep-alives skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                block, sep, rest = self._buffer.partition("\n\n")
                if sep:
                    self._buffer = rest
                    event = _parse(block)
                    if event:
                        return event
                    continue
                self._buffer += (await anext(self._chunks)).decode()


def _parse(block: str) -> dict[str, Any]:
    event: dict[str, Any] = {}
    data: list[str] = []
    for line in block.splitlines():
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field in ("event", "id", "retry"):
            event[field] = value
    if data:
        text = "\n".join(data)
        try:
            event["data"] = json.loads(text)
        except ValueError:
            event["data"] = text
    return event


def _url(path: str, topics: str | list[str], **params: Any) -> str:
    names = [topics] if isinstance(topics, str) else topics
    query = [("topic", t) for t in names] + [(k, v) for k, v in params.items() if v is not None]
    return f"http://testserver{get_node().settings.path}{path}?{urlencode(query)}"


@asynccontextmanager
async def stream(
    topics: str | list[str],
    *,
    user: Any = None,
    since: str | None = None,
    app: ASGIApp | None = None,
    timeout: float = 10.0,
) -> AsyncIterator[Events]:
    """An SSE stream of ``topics`` from the application in this process, as ``user``.
    Raises :class:`AssertionError` with the answer when it does not open (a refusal)."""
    headers = _headers(await cookies_for(user), None)
    async with serving():
        response = AppResponse(
            app or application(), "GET", _url("sse", topics, since=since), headers, b"", timeout
        )
        try:
            await response.start()
            if response.status != 200:
                raise AssertionError(f"{response.status}: {(await response.read()).decode()}")
            yield Events(response)
        finally:
            await response.close()


async def poll(
    topics: str | list[str],
    *,
    user: Any = None,
    since: str | None = None,
    wait: float = 0,
    app: ASGIApp | None = None,
) -> dict[str, Any]:
    """One long-poll of ``topics`` (waiting at most ``wait`` seconds for a message):
    the answer's JSON, with its HTTP status under ``"status"``."""
    headers = _headers(await cookies_for(user), None)
    async with serving():
        url = _url("poll", topics, since=since, timeout=wait)
        response = AppResponse(app or application(), "GET", url, headers, b"", wait + 10)
        try:
            await response.start()
            answer: dict[str, Any] = json.loads(await response.read())
        finally:
            await response.close()
    answer["status"] = response.status
    return answer
