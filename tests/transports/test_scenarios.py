"""Scenarios written once, run on every transport (tests/transports/clients.py):
resume across cuts with every message once and in order; say so when resuming is not
possible; authorization checked again on resume; the same answer to hostile JSON, to
a publish with a string id, and to a server going down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import APP, server_env
from tests.http_helpers import hub, next_event, sse_events, wait_for
from tests.pushpin_server import grip_stack
from tests.transports.clients import KINDS, Endpoint, open_sub
from tidings.testing import Client, LiveServer, RequestFailed, live_server

TOTAL = 10_000
GRIP_TOTAL = 2_000  # each publish makes Pushpin ask the backend for it: slower
BIG_HISTORY = {"HISTORY": {"test.*": {"size": 20_000, "ttl": 600}}}


@contextlib.contextmanager
def stack(
    kind: str, tidings: dict[str, Any] | None = None
) -> Iterator[tuple[LiveServer, Endpoint]]:
    """A fresh server for ``kind``, and where its clients connect (Pushpin for grip-*)."""
    if kind.startswith("grip-"):
        with grip_stack(tidings) as (server, proxy):
            yield server, Endpoint(proxy.url, proxy.url)
    else:
        with live_server(APP, env=server_env(tidings)) as server:
            yield server, Endpoint(server.url, server.url)


async def publishers(server: LiveServer, topic: str, total: int, writers: int = 2) -> None:
    """``writers`` concurrent publishers (sync views), ``total`` messages in all, in batches."""

    async def one(count: int) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            for _ in range(count // 50):
                r = await http.post("/test/publish", json={"topic": topic, "n": 50})
                assert r.status_code == 200
                await asyncio.sleep(0)

    await asyncio.gather(*(one(total // writers) for _ in range(writers)))


def offset(position: str) -> int:
    return int(position.split(":")[1])


def assert_exactly_once_in_order(positions: list[str], total: int) -> None:
    assert len({p.split(":")[0] for p in positions}) == 1, "one epoch"
    assert [offset(p) for p in positions] == list(range(1, total + 1))


# -- resume --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["ws", "sse", "poll", "grip-sse", "grip-poll"])
async def test_every_message_once_in_order_across_cuts(kind):
    """Cut at random points while two publishers run; each reconnect resumes from the
    last position received, and the replay is complete (``recovered``)."""
    total = GRIP_TOTAL if kind.startswith("grip-") else TOTAL
    rng = random.Random(kind)
    kills = set(rng.sample(range(50, total - 50), 8))
    topic = "test.cuts"
    with stack(kind, BIG_HISTORY) as (server, at):
        got: list[str] = []
        producer: asyncio.Task[None] | None = None
        while len(got) < total:
            sub = await open_sub(kind, at, topic, since=got[-1] if got else None)
            try:
                assert sub.recovered is not False
                if producer is None:
                    producer = asyncio.create_task(publishers(server, topic, total))
                while len(got) < total:
                    got.append((await sub.next(30)).position)
                    if len(got) in kills:
                        await sub.cut()
                        break
            finally:
                await sub.close()
        assert producer is not None
        await producer
        assert_exactly_once_in_order(got, total)


async def assert_not_recovered(kind: str, at: Endpoint, topic: str, since: str) -> None:
    sub = await open_sub(kind, at, topic, since=since)
    try:
        assert sub.recovered is False
        with pytest.raises(TimeoutError):
            await sub.next(timeout=1)  # nothing is passed off as a replay
    finally:
        await sub.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_resume_past_the_history_window_is_not_recovered_within_it_is(kind):
    with stack(kind, {"HISTORY": {"test.*": {"size": 5, "ttl": 600}}}) as (server, at):
        async with Client(server.ws_url, origin=server.url) as c:
            first = (await c.publish("test.win", 0))["position"]
            for i in range(10):
                await c.publish("test.win", i)
        await assert_not_recovered(kind, at, "test.win", first)
        # exactly size + 1 missed is one too many; exactly size is recovered, in full
        epoch = first.split(":")[0]
        await assert_not_recovered(kind, at, "test.win", f"{epoch}:{offset(first) + 4}")
        sub = await open_sub(kind, at, "test.win", since=f"{epoch}:{offset(first) + 5}")
        try:
            assert sub.recovered is True
            assert [offset((await sub.next()).position) for _ in range(5)] == [7, 8, 9, 10, 11]
        finally:
            await sub.close()


@pytest.mark.parametrize("kind", ["ws", "sse", "poll", "grip-sse"])
async def test_a_resume_into_a_new_epoch_is_not_recovered(kind):
    with stack(kind) as (server, _):
        async with Client(server.ws_url, origin=server.url) as c:
            for i in range(3):
                position = (await c.publish("test.epoch", i))["position"]
    with stack(kind) as (_, at):  # the memory broker lost its history: a new epoch
        await assert_not_recovered(kind, at, "test.epoch", position)


@pytest.mark.parametrize("kind", ["ws", "sse", "poll"])
async def test_authorization_is_checked_again_on_resume(server, kind):
    from tests.test_websocket import login

    cookies = await asyncio.to_thread(login, server, "erin", "pw-erin-1")
    topic = f"members.resume-{kind}"
    async with Client(server.ws_url, origin=server.url, cookies=cookies) as erin:
        await erin.subscribe(topic)
        first = (await erin.publish(topic, "before"))["position"]
        await erin.next_message()
        await erin.publish(topic, "secret")
    at = Endpoint(server.url, server.url)
    sub = await open_sub(kind, at, topic, since=first, cookies=cookies)
    assert (await sub.next()).data == "secret"  # while logged in, the replay comes
    await sub.close()
    # erin's session ends (as on logout); her client comes back with the same cookie and since
    from django.contrib.sessions.models import Session

    await Session.objects.filter(session_key=cookies["sessionid"]).adelete()
    with pytest.raises(RequestFailed) as e:
        await open_sub(kind, at, topic, since=first, cookies=cookies)
    assert e.value.code == "forbidden"
    if kind == "ws":  # and nothing from history follows the refusal
        async with Client(server.ws_url, origin=server.url, cookies=cookies) as gone:
            with pytest.raises(RequestFailed):
                await gone.subscribe(topic, since=first)
            with pytest.raises(asyncio.TimeoutError):
                await gone.next_message(timeout=1)
    else:
        assert e.value.status == 403  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["ws", "sse", "poll"])
async def test_a_refusal_is_logged_on_tidings_auth(server, kind):
    """A refused subscribe and publish say, at INFO on ``tidings.auth``, what was
    refused to whom over what (over SSE and long-poll, publishes are HTTP POSTs)."""
    from django.contrib.auth.models import User

    from tests.test_websocket import login

    cookies = await asyncio.to_thread(login, server, "fay", "pw-fay-1")
    pk = (await User.objects.aget(username="fay")).pk
    at, topic, readonly = (
        Endpoint(server.url, server.url),
        f"deny.log-{kind}",
        f"readonly.log-{kind}",
    )
    over, publish_over = OVER[kind]
    with pytest.raises(RequestFailed) as e:
        await open_sub(kind, at, topic, cookies=cookies)
    assert e.value.code == "forbidden"
    if kind == "ws":
        async with Client(server.ws_url, origin=server.url) as c:
            with pytest.raises(RequestFailed):
                await c.publish(readonly, 1)
    else:
        async with httpx.AsyncClient(base_url=server.url) as http:
            r = await http.post("/realtime/publish", json={"topic": readonly, "data": 1})
            assert r.status_code == 403
    lines = [
        f"refused '{topic}' to fay (pk {pk}) over {over}: forbidden (You may not subscribe",
        f"refused '{readonly}' to anonymous over {publish_over}: forbidden (You may not publish",
    ]

    async def logged() -> bool:
        return all(line in server.log() for line in lines)

    await wait_for(logged)


OVER = {  # kind -> what subscribes over it, what publishes over it
    "ws": ("websocket", "websocket"),
    "sse": ("sse", "publish"),
    "poll": ("longpoll", "publish"),
}


async def test_a_slow_consumer_is_cut_then_resumes_without_loss():
    with stack("ws", {"QUEUE_SIZE": 20, **BIG_HISTORY}) as (server, _):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        sock.connect((server.host, server.port))
        got: list[str] = []
        ws = await connect(server.ws_url, origin=server.url, sock=sock, max_queue=1, max_size=None)
        await ws.send(json.dumps({"id": 1, "op": "subscribe", "topic": "test.cut"}))
        assert json.loads(await ws.recv())["ok"]
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            for _ in range(10):
                r = await http.post(
                    "/test/publish", json={"topic": "test.cut", "n": 20, "size": 50_000}
                )
                assert r.status_code == 200
        with pytest.raises(ConnectionClosed) as e:
            while True:
                got.append(json.loads(await asyncio.wait_for(ws.recv(), 10))["position"])
        assert e.value.rcvd is not None and e.value.rcvd.code == 4009 and len(got) < 200
        sub = await open_sub("ws", Endpoint(server.url, server.url), "test.cut", since=got[-1])
        try:
            assert sub.recovered is True
            while len(got) < 200:
                got.append((await sub.next()).position)
        finally:
            await sub.close()
        assert_exactly_once_in_order(got, 200)


# -- the same answer on every transport ------------------------------------------------
def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("levels", [33, 1000])
@pytest.mark.parametrize("kind", ["ws", "grip-ws"])
async def test_deep_json_frames_get_bad_request_and_the_socket_stays_open(kind, levels):
    with stack(kind) as (_, at):
        async with Client(at.ws_url, origin=at.origin) as c:
            await c.ws.send(
                '{"id":1,"op":"publish","topic":"test.deep","data":' + deep(levels) + "}"
            )
            error = await c.next_frame()
            assert error["ok"] is False and error["error"]["code"] == "bad_request"
            assert "nest" in error["error"]["message"]
            assert (await c.request("ping"))["ok"] is True  # still connected
            reply = await c.publish("test.deep", {"shallow": [1, [2]]})
            assert reply["ok"] is True


@pytest.mark.parametrize("levels", [33, 1000])
@pytest.mark.parametrize("where", ["sse", "poll", "publish"])
async def test_deep_json_over_http_gets_a_400_json_answer(server, where, levels):
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        if where == "publish":
            body = '{"topic":"test.deep","data":' + deep(levels) + "}"
            r = await http.post("/realtime/publish", content=body)
        else:
            presence = '{"presence.deep":' + deep(levels) + "}"
            params = {"topic": "presence.deep", "presence": presence, "timeout": 0}
            r = await http.get(f"/realtime/{where}", params=params)
        assert r.status_code == 400 and r.headers["content-type"] == "application/json"
        assert r.json()["error"]["code"] == "bad_request"


@pytest.mark.parametrize("kind", ["ws", "grip-ws", "http"])
async def test_a_publish_answers_its_position_as_text_whatever_the_id(kind):
    with stack("grip-ws" if kind == "grip-ws" else "ws") as (_, at):
        if kind == "http":
            async with httpx.AsyncClient(base_url=at.url) as http:
                r = await http.post("/realtime/publish", json={"topic": "test.sid", "data": 1})
            positions = [r.json()["position"]]
        else:
            async with Client(at.ws_url, origin=at.origin) as c:
                await c.ws.send(
                    json.dumps({"id": "one", "op": "publish", "topic": "test.sid", "data": 1})
                )
                await c.ws.send(
                    json.dumps({"id": 2, "op": "publish", "topic": "test.sid", "data": 2})
                )
                replies = [await c.next_frame(), await c.next_frame()]
                replies += [await c.publish("test.sid", 3)]
                assert [r["id"] for r in replies[:2]] == ["one", 2]
                positions = [r["position"] for r in replies]
        assert all(isinstance(p, str) and offset(p) > 0 for p in positions), positions


async def _at_least(server: LiveServer, topic: str, n: int) -> dict[str, Any] | None:
    state = await hub(server, topic)
    return state if state["subscribers"] >= n else None


@pytest.mark.parametrize("kind", ["ws", "held-ws", "sse", "held-stream", "poll"])
async def test_sigterm_closes_every_client_at_once_with_1012(kind):
    """Clients hear "service restart" (1012) at once and reconnect elsewhere: not the
    grace period, not a slow-consumer 4009."""
    with stack(kind) as (server, _):
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
            topic = "test.bye"
            if kind in ("ws", "held-ws"):
                if kind == "ws":
                    ws = await connect(server.ws_url, origin=server.url)
                    await ws.send(json.dumps({"id": 1, "op": "subscribe", "topic": topic}))
                    await ws.recv()
                else:
                    headline = (await http.post("/headlines/")).json()["id"]
                    topic = f"headlines.{headline}"
                    url = f"ws://{server.host}:{server.port}/headlines/{headline}/"
                    ws = await connect(url, origin=server.url)
                    await wait_for(lambda: _at_least(server, topic, 1))
                server.process.terminate()
                with pytest.raises(ConnectionClosed) as e:
                    await asyncio.wait_for(ws.recv(), 10)
                assert e.value.rcvd is not None and e.value.rcvd.code == 1012
            elif kind in ("sse", "held-stream"):
                url = "/realtime/sse" if kind == "sse" else "/test/hold"
                async with http.stream("GET", url, params={"topic": topic}) as r:
                    events = sse_events(r)
                    if kind == "sse":
                        await next_event(events)  # open
                    await wait_for(lambda: _at_least(server, topic, 1))
                    start = asyncio.get_running_loop().time()
                    server.process.terminate()
                    if kind == "sse":
                        closing = await next_event(events, timeout=5)
                        assert closing.event == "tidings.close"
                        assert json.loads(closing.data) == {
                            "code": 1012,
                            "reason": "service restart",
                        }
                    else:
                        with pytest.raises(StopAsyncIteration):
                            await next_event(events, timeout=5)  # the stream ends
                    assert asyncio.get_running_loop().time() - start < 4
            else:
                poll = asyncio.create_task(
                    http.get("/realtime/poll", params={"topic": topic, "timeout": 60})
                )
                await wait_for(lambda: _at_least(server, topic, 1))
                start = asyncio.get_running_loop().time()
                server.process.terminate()
                body = (await asyncio.wait_for(poll, 5)).json()
                assert (
                    body["messages"] == []
                )  # the client polls again, elsewhere, from the same since
                assert asyncio.get_running_loop().time() - start < 4  # not the 60 s poll
        # uvicorn finishes its shutdown, then re-raises the signal: exit status -SIGTERM
        assert await asyncio.to_thread(server.process.wait, 10) in (0, -15)
        assert "Application shutdown complete" in server.log()
