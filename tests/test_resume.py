"""History and resume: across killed transports, every message exactly once, in order."""

from __future__ import annotations

import asyncio
import json
import random
import socket

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.http_helpers import next_event, sse_events
from tidings.testing import Client, RequestFailed

TOTAL = 10_000
BIG_HISTORY = {"HISTORY": {"test.*": {"size": 20_000, "ttl": 600}}}


async def publishers(server, topic: str, total: int = TOTAL, writers: int = 2) -> None:
    """``writers`` concurrent publishers, ``total`` messages in all, in batches."""

    async def one(count: int) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            for _ in range(count // 50):
                r = await http.post("/test/publish", json={"topic": topic, "n": 50})
                assert r.status_code == 200
                await asyncio.sleep(0)

    await asyncio.gather(*(one(total // writers) for _ in range(writers)))


def offset(position: str) -> int:
    return int(position.split(":")[1])


def assert_exactly_once_in_order(positions: list[str], total: int = TOTAL) -> None:
    assert len({p.split(":")[0] for p in positions}) == 1, "one epoch"
    offsets = [offset(p) for p in positions]
    assert offsets == list(range(1, total + 1))


def kill_points(rng: random.Random, total: int) -> set[int]:
    return set(rng.sample(range(50, total - 50), 8))


async def test_websocket_killed_at_random_points(make_server):
    rng = random.Random(4)
    with make_server(BIG_HISTORY) as srv:
        got: list[str] = []
        kills = kill_points(rng, TOTAL)
        last = None
        producer = None
        while len(got) < TOTAL:
            async with connect(srv.ws_url, origin=srv.url, max_size=None) as ws:
                frame = {"id": 1, "op": "subscribe", "topic": "test.rws"}
                if last:
                    frame["since"] = last
                await ws.send(json.dumps(frame))
                reply = json.loads(await ws.recv())
                assert reply["ok"] and reply.get("recovered", True) is True
                if producer is None:
                    producer = asyncio.create_task(publishers(srv, "test.rws"))
                while len(got) < TOTAL:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    got.append(m["position"])
                    last = m["position"]
                    if len(got) in kills:
                        ws.transport.abort()  # the network drops, mid-stream
                        break
        await producer
        assert_exactly_once_in_order(got)


async def test_sse_killed_at_random_points(make_server):
    rng = random.Random(5)
    with make_server(BIG_HISTORY) as srv:
        got: list[str] = []
        kills = kill_points(rng, TOTAL)
        last = None
        producer = None
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
            while len(got) < TOTAL:
                headers = {"Last-Event-ID": last} if last else {}
                async with http.stream(
                    "GET", "/realtime/sse", params={"topic": "test.rsse"}, headers=headers
                ) as r:
                    events = sse_events(r)
                    opened = json.loads((await next_event(events)).data)["topics"]["test.rsse"]
                    assert opened.get("recovered", True) is True
                    if producer is None:
                        producer = asyncio.create_task(publishers(srv, "test.rsse"))
                    while len(got) < TOTAL:
                        e = await next_event(events, timeout=30)
                        got.append(e.id)
                        last = e.id
                        if len(got) in kills:
                            break  # leaving the block closes the connection mid-stream
        await producer
        assert_exactly_once_in_order(got)


async def test_longpoll_cut_at_random_points(make_server):
    rng = random.Random(6)
    with make_server(BIG_HISTORY) as srv:
        got: list[str] = []
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
            since = (
                await http.get("/realtime/poll", params={"topic": "test.rlp", "timeout": 0})
            ).json()["since"]
            producer = asyncio.create_task(publishers(srv, "test.rlp"))
            cuts = 0
            while len(got) < TOTAL:
                poll = asyncio.create_task(
                    http.get(
                        "/realtime/poll",
                        params={"topic": "test.rlp", "since": since, "timeout": 10},
                    )
                )
                if rng.random() < 0.15:  # the request is lost before its answer arrives
                    await asyncio.sleep(rng.random() * 0.05)
                    if not poll.done():
                        poll.cancel()
                        cuts += 1
                        continue
                body = (await poll).json()
                assert body["topics"]["test.rlp"]["recovered"] is True
                got += [m["position"] for m in body["messages"]]
                since = body["since"]
            await producer
        assert cuts > 0
        assert_exactly_once_in_order(got)


# -- when resuming is not possible, say so ------------------------------------------


async def test_window_exceeded_is_not_recovered_on_every_transport(make_server):
    with make_server({"HISTORY": {"test.*": {"size": 5, "ttl": 600}}}) as srv:
        async with Client(srv.ws_url, origin=srv.url) as c:
            first = (await c.publish("test.win", 0))["position"]
            for i in range(10):
                await c.publish("test.win", i)
        await assert_not_recovered(srv, "test.win", first)
        # within the window it is recovered
        async with Client(srv.ws_url, origin=srv.url) as c:
            last5 = f"{first.split(':')[0]}:{offset(first) + 6}"
            reply = await c.subscribe("test.win", since=last5)
            assert reply["recovered"] is True
            assert [offset((await c.next_message())["position"]) for _ in range(4)] == [
                8,
                9,
                10,
                11,
            ]


async def test_epoch_changed_is_not_recovered_on_every_transport(make_server):
    with make_server() as srv:
        async with Client(srv.ws_url, origin=srv.url) as c:
            for i in range(3):
                position = (await c.publish("test.epoch", i))["position"]
    with make_server() as restarted:  # the memory broker lost its history: a new epoch
        await assert_not_recovered(restarted, "test.epoch", position)


async def assert_not_recovered(srv, topic: str, since: str) -> None:
    async with Client(srv.ws_url, origin=srv.url) as c:
        reply = await c.subscribe(topic, since=since)
        assert reply["recovered"] is False
        with pytest.raises(asyncio.TimeoutError):
            await c.next_message(timeout=0.3)  # nothing is passed off as a replay
    async with httpx.AsyncClient(base_url=srv.url, timeout=10) as http:
        async with http.stream(
            "GET", "/realtime/sse", params={"topic": topic}, headers={"Last-Event-ID": since}
        ) as r:
            opened = json.loads((await next_event(sse_events(r))).data)
            assert opened["topics"][topic]["recovered"] is False
        body = (
            await http.get("/realtime/poll", params={"topic": topic, "since": since, "timeout": 0})
        ).json()
        assert body["topics"][topic]["recovered"] is False and body["messages"] == []


async def test_a_slow_consumer_is_cut_then_resumes_without_loss(make_server):
    with make_server({"QUEUE_SIZE": 20, **BIG_HISTORY}) as srv:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        sock.connect((srv.host, srv.port))
        got: list[str] = []
        ws = await connect(srv.ws_url, origin=srv.url, sock=sock, max_queue=1, max_size=None)
        await ws.send(json.dumps({"id": 1, "op": "subscribe", "topic": "test.cut"}))
        assert json.loads(await ws.recv())["ok"]
        async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
            for _ in range(10):
                r = await http.post(
                    "/test/publish", json={"topic": "test.cut", "n": 20, "size": 50_000}
                )
                assert r.status_code == 200
        with pytest.raises(ConnectionClosed) as e:
            while True:
                got.append(json.loads(await asyncio.wait_for(ws.recv(), 10))["position"])
        assert e.value.rcvd.code == 4009 and len(got) < 200
        async with Client(srv.ws_url, origin=srv.url, connect_kwargs={"max_size": None}) as again:
            reply = await again.subscribe("test.cut", since=got[-1])
            assert reply["recovered"] is True
            while len(got) < 200:
                got.append((await again.next_message())["position"])
        assert_exactly_once_in_order(got, 200)


async def test_authorization_is_checked_again_on_resume(server):
    from tests.test_websocket import login

    cookies = await asyncio.to_thread(login, server, "erin", "pw-erin-1")
    async with Client(server.ws_url, origin=server.url, cookies=cookies) as erin:
        await erin.subscribe("members.resume")
        first = (await erin.publish("members.resume", "before"))["position"]
        await erin.next_message()
        await erin.publish("members.resume", "secret")
    # erin's session ends (as on logout); her client comes back with the same cookie and since
    from django.contrib.sessions.models import Session

    await Session.objects.filter(session_key=cookies["sessionid"]).adelete()
    async with Client(server.ws_url, origin=server.url, cookies=cookies) as gone:
        with pytest.raises(RequestFailed) as e:
            await gone.subscribe("members.resume", since=first)
        assert e.value.code == "forbidden"
        with pytest.raises(asyncio.TimeoutError):
            await gone.next_message(timeout=0.3)  # nothing from history
    async with httpx.AsyncClient(base_url=server.url, cookies=cookies) as http:
        r = await http.get(
            "/realtime/poll", params={"topic": "members.resume", "since": first, "timeout": 0}
        )
        assert r.status_code == 403 and "secret" not in r.text
        r = await http.get("/realtime/sse", params={"topic": "members.resume", "since": first})
        assert r.status_code == 403 and "secret" not in r.text
