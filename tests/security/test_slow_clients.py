"""Slow, silent and numerous connections: each holds a file descriptor, so the served
stack bounds how long headers may take (408), how long a WebSocket may hold no
subscription (4010), and how many connections one client address may hold (429)."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.http_helpers import sse_events
from tidings.testing import Client

REQUEST = "GET /realtime/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
HANDSHAKE = (
    "GET /realtime/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\n"
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def trickle(writer: asyncio.StreamWriter, text: str, every: float) -> None:
    """Send ``text`` one byte every ``every`` seconds (slowloris), until cut off."""
    with contextlib.suppress(ConnectionError):
        for byte in text.encode():
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every)


async def answer(srv, text: str = "", every: float = 0.0) -> bytes:
    """What the server sends on a connection that sends ``text`` (slowly), until it closes."""
    reader, writer = await asyncio.open_connection(srv.host, srv.port)
    sender = asyncio.create_task(trickle(writer, text, every))
    try:
        return await asyncio.wait_for(reader.read(), 15)
    finally:
        sender.cancel()
        writer.close()


@pytest.mark.parametrize(
    ("text", "every"),
    [("", 0.0), (REQUEST, 0.2), (HANDSHAKE, 0.1)],
    ids=["silent", "slow-headers", "slow-handshake"],
)
async def test_headers_not_complete_within_header_timeout_get_408_and_are_closed(
    make_server, text, every
):
    with make_server({"HEADER_TIMEOUT": 1}) as srv:
        got = await answer(srv, text, every)  # would take 10 s (headers) or forever
        assert got.startswith(b"HTTP/1.1 408 "), got


async def test_header_timeout_does_not_cut_a_stream_that_outlives_it(make_server):
    with make_server({"HEADER_TIMEOUT": 1, "SSE_KEEPALIVE": 2}) as srv:
        async with httpx.AsyncClient(base_url=srv.url, timeout=10) as http:
            url = "/realtime/sse?topic=test.slow"
            async with http.stream("GET", url, headers={"Origin": srv.url}) as response:
                assert response.status_code == 200
                async for event in sse_events(response):
                    if event.comments:  # a keep-alive, 2 s in: the stream is still open
                        break


async def test_a_websocket_without_a_subscription_is_closed_4010_after_idle_timeout(
    make_server,
):
    with make_server({"IDLE_TIMEOUT": 1}) as srv:
        async with Client(srv.ws_url, origin=srv.url) as listener:
            await listener.subscribe("test.idle")
            async with connect(srv.ws_url, origin=srv.url) as idle:
                with pytest.raises(ConnectionClosed) as e:
                    await asyncio.wait_for(idle.recv(), 10)
                assert e.value.rcvd is not None and e.value.rcvd.code == 4010
            async with Client(srv.ws_url, origin=srv.url) as pub:
                await pub.publish("test.idle", "kept")  # the subscribed one stays
            assert (await listener.next_message())["data"] == "kept"


async def test_frames_without_a_subscription_push_the_idle_close_back(make_server):
    """Each frame restarts the wait: pings every 0.4 s keep a socket with no topic open
    past IDLE_TIMEOUT (1 s); once they stop, it is closed 4010 about a second later."""
    loop = asyncio.get_running_loop()
    with make_server({"IDLE_TIMEOUT": 1}) as srv:
        async with connect(srv.ws_url, origin=srv.url) as ws:
            for i in range(6):  # 2.4 s of pings, none more than 0.4 s apart
                await ws.send(json.dumps({"id": i, "op": "ping"}))
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["ok"] is True
                await asyncio.sleep(0.4)
            quiet = loop.time()
            with pytest.raises(ConnectionClosed) as e:
                await asyncio.wait_for(ws.recv(), 10)
            assert e.value.rcvd is not None and e.value.rcvd.code == 4010
            assert 0.2 <= loop.time() - quiet < 5  # the close came from the last ping


async def test_a_websocket_that_leaves_its_last_topic_is_closed_4010(make_server):
    with make_server({"IDLE_TIMEOUT": 1}) as srv:
        async with connect(srv.ws_url, origin=srv.url) as ws:
            await ws.send(json.dumps({"id": 1, "op": "subscribe", "topic": "test.left"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["ok"] is True
            await ws.send(json.dumps({"id": 2, "op": "unsubscribe", "topic": "test.left"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["ok"] is True
            with pytest.raises(ConnectionClosed) as e:
                await asyncio.wait_for(ws.recv(), 10)
            assert e.value.rcvd is not None and e.value.rcvd.code == 4010


async def refused(url: str, origin: str, **headers: str) -> int | None:
    """The status a WebSocket handshake is refused with (``None``: it was accepted)."""
    try:
        async with connect(url, origin=origin, additional_headers=headers):
            return None
    except InvalidStatus as e:
        return e.response.status_code


async def until_accepted(url: str, origin: str, **headers: str) -> None:
    """A freed slot is released when the server sees the close: retry until then."""
    for _ in range(100):
        if await refused(url, origin, **headers) is None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("never accepted again")


async def test_direct_connections_past_the_per_ip_cap_get_429(make_server):
    # no trusted proxy: 127.0.0.1 is a client, counted from the TCP accept
    with make_server(
        {"MAX_CONNECTIONS_PER_IP": 3}, args=("--forwarded-allow-ips", "192.0.2.1")
    ) as srv:
        silent = [await asyncio.open_connection(srv.host, srv.port) for _ in range(3)]
        assert await refused(srv.ws_url, srv.url) == 429
        async with httpx.AsyncClient(base_url=srv.url, timeout=5) as http:
            response = await http.get("/realtime/health")
            assert response.status_code == 429
        silent.pop()[1].close()
        await until_accepted(srv.ws_url, srv.url)
        for _, writer in silent:
            writer.close()


async def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(make_server):
    # 127.0.0.1 is uvicorn's default trusted proxy: X-Forwarded-For names the client
    with make_server({"MAX_CONNECTIONS_PER_IP": 2}) as srv:
        one = {"X-Forwarded-For": "203.0.113.7"}
        async with connect(srv.ws_url, origin=srv.url, additional_headers=one):
            async with connect(srv.ws_url, origin=srv.url, additional_headers=one):
                assert await refused(srv.ws_url, srv.url, **one) == 429
                async with httpx.AsyncClient(base_url=srv.url, timeout=5) as http:
                    response = await http.get("/realtime/health", headers=one)
                    assert response.status_code == 429
                    other = {"X-Forwarded-For": "203.0.113.8"}
                    assert (await http.get("/realtime/health", headers=other)).status_code == 200
                assert await refused(srv.ws_url, srv.url, **other) is None
        await until_accepted(srv.ws_url, srv.url, **one)
