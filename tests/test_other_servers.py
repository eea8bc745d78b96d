"""tidings under other ASGI servers than uvicorn (docs/deploy.md): hypercorn and granian
serve the WebSocket protocol and SSE as uvicorn does, a burst of messages included
(granian's ``send()`` returns no Python coroutine: the writer awaits it in a task)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.conftest import server_env
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
APP = "bench.servers.tidings_app:application"


def argv(server: str, port: int) -> list[str]:
    if server == "hypercorn":
        return [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", APP]
    return [
        sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1",
        "--port", str(port), "--workers", "1", APP,
    ]  # fmt: skip


@contextlib.contextmanager
def serving(server: str) -> Iterator[int]:
    port = free_port()
    env = {**os.environ, **server_env(), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        argv(server, port), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/realtime/health", timeout=1)
                break
            except httpx.HTTPError:
                assert process.poll() is None and time.monotonic() < deadline, server
                time.sleep(0.1)
        yield port
    finally:
        os.killpg(process.pid, 15)
        process.wait(15)


@pytest.mark.parametrize("server", ["hypercorn", "granian"])
async def test_websocket_and_sse_under(server):
    with serving(server) as port:
        url, origin = f"ws://127.0.0.1:{port}/realtime/ws", f"http://127.0.0.1:{port}"
        async with connect(url, origin=origin) as sub, connect(url, origin=origin) as pub:
            await sub.send(json.dumps({"id": 1, "op": "subscribe", "topic": "test.other"}))
            assert json.loads(await sub.recv())["ok"]
            for n in range(50):  # a burst: some writes must wait
                await pub.send(json.dumps({"op": "publish", "topic": "test.other", "data": n}))
            got = [json.loads(await asyncio.wait_for(sub.recv(), 10))["data"] for _ in range(50)]
        assert got == list(range(50))
        async with httpx.AsyncClient(base_url=origin) as http:
            async with http.stream("GET", "/realtime/sse?topic=test.other&since=0:0") as r:
                assert r.status_code == 200
                seen = []
                async for line in r.aiter_lines():
                    seen.append(line)
                    if line == "event: tidings.open":
                        break
        assert "event: tidings.open" in seen
