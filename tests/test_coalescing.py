"""Coalescing seen from a client: a subscriber that lags behind a state-like topic gets
the latest state of each key, not every step (TIDINGS["COALESCE"])."""

import asyncio
import json
import socket

import httpx
from websockets.asyncio.client import connect


async def test_a_lagging_subscriber_gets_the_latest_state_per_key(make_server):
    """A client that reads nothing while 200 updates of one key are published (far more
    than its queue of 10 holds) is not cut; once it reads, it gets the newest state and
    not every superseded one."""
    with make_server({"COALESCE": {"test.state*": "i"}, "QUEUE_SIZE": 10}) as srv:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        sock.connect((srv.host, srv.port))
        async with connect(srv.ws_url, origin=srv.url, sock=sock, max_queue=1, max_size=None) as ws:
            await ws.send(json.dumps({"id": 1, "op": "subscribe", "topic": "test.state"}))
            assert json.loads(await ws.recv())["ok"]
            async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
                for _ in range(20):  # every message has i == 0: one key
                    body = {"topic": "test.state", "n": 10, "size": 50_000}
                    assert (await http.post("/test/publish", json=body)).status_code == 200
            offsets = []
            while True:
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 2))
                except TimeoutError:
                    break
                offsets.append(int(frame["position"].split(":")[1]))
            assert offsets[-1] == 200  # the newest state arrived
            assert offsets == sorted(offsets)  # never a stale state after a fresh one
            assert len(offsets) < 200  # superseded states were dropped, not all sent
            assert ws.close_code is None  # and the lagging client was not cut
