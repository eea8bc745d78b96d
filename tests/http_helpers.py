"""Small helpers for the HTTP transport tests: an SSE event reader over httpx, and
conditions to wait on (a server's subscribers, Pushpin's subscriptions) instead of sleeps."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Event:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)


async def sse_events(response: httpx.Response):
    """Parse a text/event-stream as the HTML spec says; yields each dispatched event.

    Comment-only blocks are yielded too (as events with only ``comments``), so tests
    can see keep-alives.
    """
    buffer = ""
    current = Event()
    data_lines: list[str] = []
    async for chunk in response.aiter_text():
        buffer += chunk
        while True:
            m = re.search(r"\r\n|\r|\n", buffer)
            if m is None:
                break
            line, buffer = buffer[: m.start()], buffer[m.end() :]
            if line == "":
                current.data = "\n".join(data_lines)
                if data_lines or current.comments or current.retry is not None:
                    yield current
                current, data_lines = Event(), []
                continue
            if line.startswith(":"):
                current.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data_lines.append(value)
            elif name == "event":
                current.event = value
            elif name == "id":
                current.id = value
            elif name == "retry":
                current.retry = int(value)


async def next_event(events, timeout: float = 10.0, skip_comments: bool = True) -> Event:
    while True:
        event = await asyncio.wait_for(anext(events), timeout)
        if skip_comments and not event.data and event.comments:
            continue
        return event


async def hub(server, topic: str) -> dict:
    async with httpx.AsyncClient(base_url=server.url) as http:
        return (await http.get("/test/hub", params={"topic": topic})).json()


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll an async predicate until it is truthy; return its value or fail."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met in {timeout}s (last: {value!r})")
        await asyncio.sleep(interval)


def hub_subscribers(url: str, topic: str) -> int:
    """How many subscribers the server process at ``url`` holds on ``topic`` (sync)."""
    r = httpx.get(f"{url}/test/hub", params={"topic": topic}, timeout=10)
    r.raise_for_status()
    return int(r.json()["subscribers"])


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll a sync predicate until it is truthy; return its value or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s (last: {value!r})")
        time.sleep(interval)


def pushpin_subscribes(proxy: Any, channel: str) -> int:
    """How many times Pushpin has subscribed a connection to ``channel`` so far.

    Pushpin's handler logs ``subscribe <uri> channel=<channel>`` (at info, the
    ``log_level=2`` of docs/deploy.md's configuration) when it adds a held request or a
    WebSocket to the channel's receivers, i.e. from when a publish on it reaches that
    connection. Pushpin has no other inspection of its subscriptions short of its ZeroMQ
    stats socket. Count before, then wait for the count to grow.
    """
    try:
        with open(os.path.join(proxy.rundir, "pushpin-handler.log"), errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return 0
    line = rf"^\[INFO\] .* subscribe \S+ channel={re.escape(channel)}( retry)?$"
    return len(re.findall(line, text, re.M))


async def wait_pushpin_subscribed(proxy: Any, channel: str, before: int = 0) -> None:
    """Wait until Pushpin has subscribed one more connection to ``channel`` than ``before``."""

    async def more() -> bool:
        return pushpin_subscribes(proxy, channel) > before

    await wait_for(more)
