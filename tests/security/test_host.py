"""DNS rebinding: a page on a name that now points at this server is same-origin with
itself (Host and Origin both that name); only ALLOWED_HOSTS tells it from the site.
Every transport refuses such a Host before doing anything (WebSocket: 403 before the
upgrade; HTTP: Django's 400 for DisallowedHost)."""

from __future__ import annotations

import asyncio
import base64
import os

import httpx
import pytest

EVIL = "rebind.evil.example"


async def handshake(server, path: str, host: str, origin: str, extra: str = "") -> int:
    """A raw WebSocket handshake with these ``Host`` and ``Origin`` (and ``extra``
    header lines); the status answered."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n{extra}"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        return int(status_line.split()[1])
    finally:
        writer.close()


@pytest.mark.parametrize("path", ["/realtime/ws", "/headlines/1/"])
async def test_a_websocket_for_a_host_not_in_allowed_hosts_is_refused_403(server, path):
    assert await handshake(server, path, EVIL, f"http://{EVIL}") == 403
    with_port = f"{EVIL}:{server.port}"
    assert await handshake(server, path, with_port, f"http://{with_port}") == 403


async def test_the_sites_own_host_still_upgrades(server):
    own = f"{server.host}:{server.port}"
    assert await handshake(server, "/realtime/ws", own, f"http://{own}") == 101


@pytest.mark.parametrize(
    "path", ["/realtime/sse?topic=test.host", "/realtime/poll?topic=test.host&timeout=0"]
)
async def test_a_stream_or_poll_for_a_host_not_in_allowed_hosts_is_refused(server, path):
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
        response = await http.get(path, headers={"Host": EVIL, "Origin": f"http://{EVIL}"})
        assert response.status_code == 400
        assert "text/event-stream" not in response.headers.get("content-type", "")


async def test_x_forwarded_host_counts_only_with_use_x_forwarded_host(server):
    own = f"{server.host}:{server.port}"
    # Django ignores X-Forwarded-Host unless USE_X_FORWARDED_HOST: the real Host decides
    extra = f"X-Forwarded-Host: {EVIL}\r\n"
    assert await handshake(server, "/realtime/ws", own, f"http://{own}", extra) == 101
