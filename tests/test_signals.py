"""tidings.signals against a real server: connected, subscribed, unsubscribed and
disconnected fire in order, with who, how and why, on every transport.

The receivers live in the server process (tests/testapp/realtime.py): for a user named
``signals-...`` they publish what they were sent on ``test.signals.<username>``, which
an anonymous observer here subscribes to.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx

from tests.test_websocket import login
from tidings.client import Subscription, connect


async def watch(server: Any) -> tuple[str, dict[str, str], Any, Subscription]:
    """A fresh ``signals-`` user's cookies, and an observer subscribed to its signals."""
    name = "signals-" + secrets.token_hex(4)
    cookies = await asyncio.to_thread(login, server, name, "pw-" + name)
    observer = connect(server.ws_url)
    await observer.open()
    return name, cookies, observer, await observer.subscribe(f"test.signals.{name}")


async def told(sub: Subscription, n: int) -> list[dict[str, Any]]:
    return [(await sub.get(timeout=10)).data for _ in range(n)]


async def test_a_websockets_life_in_order(server):
    _, cookies, observer, log = await watch(server)
    try:
        async with connect(server.ws_url, cookies=cookies) as client:
            first = await client.subscribe("test.a")
            await first.unsubscribe()
            await client.subscribe("test.b")
        events = await told(log, 6)
    finally:
        await observer.close()
    assert [(e["signal"], e.get("topic"), e.get("reason")) for e in events] == [
        ("connected", None, None),
        ("subscribed", "test.a", None),
        ("unsubscribed", "test.a", "unsubscribe"),
        ("subscribed", "test.b", None),
        ("unsubscribed", "test.b", "disconnect"),
        ("disconnected", None, "client went away"),
    ]
    assert {e["transport"] for e in events} == {"websocket"}
    assert len({e["connection"] for e in events}) == 1
    assert events[0]["joined"]  # the sync receiver read the user from the database
    assert events[-1]["code"] == 1000  # the client's close code


async def test_sse_and_long_poll_tell_the_same_story(server):
    _, cookies, observer, log = await watch(server)
    try:
        async with httpx.AsyncClient(base_url=server.url, cookies=cookies) as http:
            async with http.stream("GET", "/realtime/sse?topic=test.sse") as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("event:"):
                        break  # the stream is open: leave
            sse = await told(log, 4)
            poll = await http.get("/realtime/poll?topic=test.poll&timeout=0")
            assert poll.status_code == 200
            polled = await told(log, 4)
    finally:
        await observer.close()
    for events, transport, topic in ((sse, "sse", "test.sse"), (polled, "longpoll", "test.poll")):
        assert [(e["signal"], e.get("topic")) for e in events] == [
            ("connected", None),
            ("subscribed", topic),
            ("unsubscribed", topic),
            ("disconnected", None),
        ]
        assert {e["transport"] for e in events} == {transport}
        assert events[-1] == {**events[-1], "code": None, "reason": "client went away"}


async def test_a_server_side_close_says_why(server):
    name, cookies, observer, log = await watch(server)
    try:
        client = connect(server.ws_url, cookies=cookies)
        await client.open()
        await client.subscribe("test.cut")
        await told(log, 2)  # connected, subscribed
        async with httpx.AsyncClient(base_url=server.url) as http:
            body = {"username": name, "action": "disconnect", "reason": "banned for spam"}
            assert (await http.post("/test/account", json=body)).status_code == 200
        events = await told(log, 2)
        await client.close()
    finally:
        await observer.close()
    assert [e["signal"] for e in events] == ["unsubscribed", "disconnected"]
    assert events[0]["reason"] == "disconnect"
    assert (events[1]["code"], events[1]["reason"]) == (4401, "banned for spam")


async def test_a_receiver_that_raises_is_logged_and_changes_nothing(server):
    async with connect(server.ws_url) as client:
        sub = await client.subscribe("test.broken-receiver." + secrets.token_hex(4))
        await client.publish(sub.topic, "still served")
        assert (await sub.get(timeout=5)).data == "still served"
    log = server.log()
    assert "a receiver of tidings.signals failed" in log and "a receiver's bug" in log
