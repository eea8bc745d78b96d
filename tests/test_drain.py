"""Graceful deploys against a real server: SIGTERM drains (readiness 503 first, clients
closed with 1012 spread over DRAIN_SECONDS, newcomers told 1012 at once, then the
process exits), and a reconnect storm is admitted at CONNECT_RATE, the rest told to try
again later (1013 with a hint; 503 with Retry-After), which the clients follow."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from tidings.client import Backoff, connect


async def subscribed(srv, topic: str):
    ws = await ws_connect(srv.ws_url, additional_headers={"Origin": srv.url})
    await ws.send(json.dumps({"id": 1, "op": "subscribe", "topic": topic}))
    assert json.loads(await ws.recv())["ok"]
    return ws


async def closed(ws) -> tuple[int | None, str, float]:
    """How ``ws`` was closed by the server, and when (monotonic)."""
    try:
        while True:
            await ws.recv()
    except ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd else None
        return code, e.rcvd.reason if e.rcvd else "", time.monotonic()


async def sse_status(http: httpx.AsyncClient) -> tuple[int, int]:
    """An SSE stream's status and its Retry-After (0 if none); the stream is left."""
    async with http.stream("GET", "/realtime/sse?topic=test.s") as r:
        return r.status_code, int(r.headers.get("Retry-After", 0))


async def test_sigterm_drains_over_the_window_then_the_server_exits(make_server):
    with make_server({"DRAIN_SECONDS": 2.0}) as srv:
        sockets = [await subscribed(srv, "test.drain") for _ in range(20)]
        ends = [asyncio.create_task(closed(ws)) for ws in sockets]
        start = time.monotonic()
        srv.process.send_signal(signal.SIGTERM)
        async with httpx.AsyncClient(base_url=srv.url) as http:
            await asyncio.sleep(0.3)
            ready = await http.get("/realtime/health?ready=1")
            live = await http.get("/realtime/health")
            assert (ready.status_code, live.status_code) == (503, 200)  # draining, alive
            late = await ws_connect(srv.ws_url, additional_headers={"Origin": srv.url})
            assert (await closed(late))[:2] == (1012, "service restart")  # go elsewhere
        results = await asyncio.gather(*ends)
        assert {(code, reason) for code, reason, _ in results} == {(1012, "service restart")}
        times = sorted(t - start for _, _, t in results)
        assert times[-1] - times[0] >= 1.0, times  # spread over the window, not at once
        assert await asyncio.to_thread(srv.process.wait, 20) in (0, -signal.SIGTERM)


async def test_a_storm_is_admitted_at_connect_rate_and_the_rest_told_when(make_server):
    with make_server({"CONNECT_RATE": {"rate": 2, "burst": 4}}) as srv:
        origin = {"Origin": srv.url}
        sockets = await asyncio.gather(
            *(ws_connect(srv.ws_url, additional_headers=origin) for _ in range(12))
        )
        outcomes = []
        for ws in sockets:
            try:
                await ws.send(json.dumps({"id": 1, "op": "ping"}))
                outcomes.append(json.loads(await asyncio.wait_for(ws.recv(), 5))["ok"])
            except ConnectionClosed as e:
                assert e.rcvd is not None and e.rcvd.code == 1013
                assert e.rcvd.reason.startswith("try again in ") and e.rcvd.reason.endswith(" s")
                outcomes.append(e.rcvd.reason)
        admitted = [o for o in outcomes if o is True]
        assert 4 <= len(admitted) <= 6, outcomes  # the burst, and what refilled meanwhile
        async with httpx.AsyncClient(base_url=srv.url) as http:
            streams = [await sse_status(http) for _ in range(8)]
            polls = [await http.get("/realtime/poll?topic=test.s&timeout=0") for _ in range(8)]
        busy = [(status, retry) for status, retry in streams if status == 503]
        assert busy and all(retry >= 1 for _, retry in busy), streams
        assert {r.status_code for r in polls} == {200}  # a poll is a request: not admitted
        for ws in sockets:
            await ws.close()
        # the Python client follows the hint: a crowd of them all gets in, spread out
        clients = [connect(srv.ws_url, backoff=Backoff(initial=0.05, max=0.2)) for _ in range(8)]
        try:
            await asyncio.wait_for(asyncio.gather(*(c.open() for c in clients)), 60)
            for c in clients:
                await c.subscribe("test.storm")
            told = [c.last_close for c in clients if c.last_close is not None]
            assert told and all(code == 1013 for code, _ in told), told  # refused, then in
        finally:
            await asyncio.gather(*(c.close() for c in clients))
