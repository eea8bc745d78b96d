"""The bounded outbound queue and "coalesce by key"."""

import asyncio
import json
import socket

import httpx
from websockets.asyncio.client import connect

from tidings.core.queue import Queue


def test_bounded():
    box: Queue[str] = Queue(2)
    assert box.put("a") and box.put("b")
    assert not box.put("c")  # full: refused, nothing queued
    assert box.pop_all() == ["a", "b"] and not box


def test_a_newer_item_with_the_same_key_replaces_the_waiting_one():
    box: Queue[str] = Queue(3)
    box.put("x1", key="x")
    box.put("plain")
    box.put("y1", key="y")
    assert box.put("x2", key="x")  # replaces x1 in place of a new slot: not "full"
    assert box.size == 3
    assert box.pop_all() == ["plain", "y1", "x2"]
    box.put("x3", key="x")  # x2 was sent: x3 is just queued
    assert box.pop() == "x3" and box.pop() is None
    assert box._keyed == {}  # no key is remembered once its item is gone


def test_full_queue_still_takes_a_replacement():
    box: Queue[str] = Queue(1)
    box.put("k1", key="k")
    assert box.put("k2", key="k")
    assert not box.put("other")
    assert box.pop_all() == ["k2"]


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
