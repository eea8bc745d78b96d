"""The WebSocket transport against a real uvicorn server, with real `websockets` clients."""

from __future__ import annotations

import asyncio
import json
import re
import socket

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tidings.testing import Client, LiveServer, RequestFailed


def client(server: LiveServer, **kwargs) -> Client:
    return Client(server.ws_url, origin=server.url, **kwargs)


async def test_publish_reaches_every_subscriber_in_order(server):
    async with client(server) as a, client(server) as b, client(server) as c:
        for x in (a, b):
            reply = await x.subscribe("test.fanout")
            assert re.fullmatch(r"[A-Za-z0-9]+:\d+", reply["position"])
        sent = [await c.publish("test.fanout", {"n": i}) for i in range(5)]
        for x in (a, b):
            got = [await x.next_message() for _ in range(5)]
            assert [m["data"] for m in got] == [{"n": i} for i in range(5)]
            assert [m["position"] for m in got] == [r["position"] for r in sent]
            assert all(m["event"] == "message" and m["topic"] == "test.fanout" for m in got)
        # the publisher did not subscribe, so it gets nothing
        with pytest.raises(asyncio.TimeoutError):
            await c.next_message(timeout=0.3)


async def test_many_topics_on_one_socket_and_unsubscribe(server):
    async with client(server) as a, client(server) as pub:
        await a.subscribe("test.one")
        await a.subscribe("test.two")
        await pub.publish("test.one", 1)
        await pub.publish("test.two", 2, event="custom")
        got = [await a.next_message(), await a.next_message()]
        assert {(m["topic"], m["data"], m["event"]) for m in got} == {
            ("test.one", 1, "message"),
            ("test.two", 2, "custom"),
        }
        assert (await a.request("unsubscribe", topic="test.one"))["ok"]
        await pub.publish("test.one", 3)
        await pub.publish("test.two", 4)
        m = await a.next_message()
        assert (m["topic"], m["data"]) == ("test.two", 4)


async def test_resubscribe_is_idempotent(server):
    async with client(server) as a, client(server) as pub:
        await a.subscribe("test.idem")
        await a.subscribe("test.idem")
        await pub.publish("test.idem", "once")
        assert (await a.next_message())["data"] == "once"
        with pytest.raises(asyncio.TimeoutError):
            await a.next_message(timeout=0.3)


async def test_subscribe_with_since_replays_what_was_missed(server):
    async with client(server) as pub:
        first = await pub.publish("test.replay", "a")
        await pub.publish("test.replay", "b")
        await pub.publish("test.replay", "c")
    async with client(server) as late:
        reply = await late.subscribe("test.replay", since=first["position"])
        assert reply["recovered"] is True
        assert [(await late.next_message())["data"] for _ in range(2)] == ["b", "c"]
        epoch = first["position"].split(":")[0]
        other = await late.request("subscribe", topic="test.replay2", since="zz" + epoch + ":1")
        assert other["recovered"] is False


async def test_ping(server):
    async with client(server) as a:
        assert await a.request("ping") == {"id": 1, "ok": True}


# -- origins ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", None, "file://", "ws://127.0.0.1"]
)
async def test_foreign_missing_and_null_origins_are_refused_before_accept(server, origin):
    with pytest.raises(InvalidStatus) as e:
        async with connect(server.ws_url, origin=origin):
            pass
    assert e.value.response.status_code == 403


async def test_same_host_and_allowed_hosts_origins_are_accepted(server):
    for origin in (server.url, f"http://localhost:{server.port}", "http://127.0.0.1:1234"):
        async with connect(server.ws_url, origin=origin) as ws:
            await ws.send(json.dumps({"id": 1, "op": "ping"}))
            assert json.loads(await ws.recv())["ok"]


async def test_allowed_origins_setting(make_server):
    with make_server({"ALLOWED_ORIGINS": ["https://app.example.com"]}) as srv:
        async with connect(srv.ws_url, origin="https://app.example.com") as ws:
            await ws.send(json.dumps({"id": 1, "op": "ping"}))
            assert json.loads(await ws.recv())["ok"]
        with pytest.raises(InvalidStatus) as e:
            async with connect(srv.ws_url, origin="https://other.example.com"):
                pass
        assert e.value.response.status_code == 403  # refused before accept, as a foreign one


# -- authentication and authorization -------------------------------------------------


def login(server: LiveServer, username: str, password: str) -> dict[str, str]:
    """Log in through Django's real login view; return the cookies."""
    from django.contrib.auth.models import User

    if not User.objects.filter(username=username).exists():
        User.objects.create_user(username, password=password)
    with httpx.Client(base_url=server.url) as http:
        page = http.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        r = http.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
            headers={"Referer": server.url + "/accounts/login/"},
        )
        assert r.status_code == 302, r.text
        return {"sessionid": http.cookies["sessionid"]}


async def test_session_cookie_authenticates_the_socket(server):
    cookies = await asyncio.to_thread(login, server, "alice", "pw-alice-1")
    async with client(server, cookies=cookies) as alice, client(server) as anon:
        assert (await alice.subscribe("members.lounge"))["ok"]
        with pytest.raises(RequestFailed) as e:
            await anon.subscribe("members.lounge")
        assert e.value.code == "forbidden"
        with pytest.raises(RequestFailed) as e:
            await anon.publish("members.lounge", "hi")
        assert e.value.code == "forbidden"
        await alice.publish("members.lounge", "hello")
        assert (await alice.next_message())["data"] == "hello"
        # the handler sees the same user as a view would
        await alice.subscribe("whoami.x")
        await alice.publish("whoami.x", {"q": 1})
        assert (await alice.next_message())["data"] == {"user": "alice", "said": {"q": 1}}
        await anon.subscribe("whoami.x")
        await anon.publish("whoami.x", 2)
        assert (await anon.next_message())["data"] == {"user": None, "said": 2}


async def test_bad_session_cookie_is_just_anonymous(server):
    async with client(server, cookies={"sessionid": "forged"}) as c:
        with pytest.raises(RequestFailed) as e:
            await c.subscribe("members.lounge")
        assert e.value.code == "forbidden"


@pytest.mark.parametrize(
    ("op", "topic", "code"),
    [
        ("subscribe", "private.x", "forbidden"),  # no rule: denied
        ("subscribe", "deny.x", "forbidden"),  # a callable rule said no
        ("publish", "readonly.x", "forbidden"),  # may subscribe, may not publish
        ("publish", "private.x", "forbidden"),
    ],
)
async def test_default_deny(server, op, topic, code):
    async with client(server) as c:
        fields = {"data": 1} if op == "publish" else {}
        with pytest.raises(RequestFailed) as e:
            await c.request(op, topic=topic, **fields)
        assert e.value.code == code


async def test_handler_can_reject_broadcast_nothing_or_fail(server):
    async with client(server) as c:
        assert (await c.publish("quiet.x", 1))["position"] is None
        with pytest.raises(RequestFailed) as e:
            await c.publish("boom.x", 1)
        assert e.value.code == "internal_error" and "handler bug" not in e.value.message
        assert (await c.request("ping"))["ok"]  # still serving
    assert "handler bug" in server.log()  # ...and the traceback is in the log


# -- bad input: the offender gets an error, everyone else keeps being served ----------

BAD_FRAMES = [
    ("not json", "bad_request"),
    ("[]", "bad_request"),
    (json.dumps({"op": "dance", "id": 9}), "unknown_op"),
    (json.dumps({"id": 1}), "bad_request"),
    (json.dumps({"id": 1, "op": "subscribe"}), "bad_request"),
    (json.dumps({"id": 1, "op": "subscribe", "topic": ["x"]}), "invalid_topic"),
    (json.dumps({"id": 1, "op": "subscribe", "topic": "t" * 201}), "invalid_topic"),
    (json.dumps({"id": 1, "op": "subscribe", "topic": "has space"}), "invalid_topic"),
    (
        json.dumps({"id": 1, "op": "subscribe", "topic": "test.x", "since": "garbage"}),
        "bad_request",
    ),
    (json.dumps({"id": 1, "op": "publish", "topic": "test.x"}), "bad_request"),
    (json.dumps({"id": {}, "op": "ping"}), "bad_request"),
    (json.dumps({"id": 1, "op": "unsubscribe", "topic": "test.never"}), "not_subscribed"),
]
# A frame over MAX_FRAME_BYTES is closed 1009 by the server as served (tidings.serve):
# tests/security/test_deflate.py


@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES)
async def test_bad_frames(server, frame, code):
    async with client(server) as bystander, client(server) as pub:
        await bystander.subscribe("test.bystander")
        async with connect(server.ws_url, origin=server.url) as bad:
            await bad.send(frame)
            reply = json.loads(await asyncio.wait_for(bad.recv(), 5))
            assert reply["ok"] is False and reply["error"]["code"] == code
            assert reply["error"]["message"]
            await bad.send(json.dumps({"id": 2, "op": "ping"}))  # the offender stays connected
            assert json.loads(await asyncio.wait_for(bad.recv(), 5)) == {"id": 2, "ok": True}
        await pub.publish("test.bystander", "still here")
        assert (await bystander.next_message())["data"] == "still here"


async def test_binary_frame(server):
    async with connect(server.ws_url, origin=server.url) as bad:
        await bad.send(b"\x00\xff")
        reply = json.loads(await asyncio.wait_for(bad.recv(), 5))
        assert reply["error"]["code"] == "bad_request"


async def test_frame_over_the_hard_limit_closes_1009(make_server):
    with make_server(args=("--ws-max-size", "200000")) as srv:
        async with connect(srv.ws_url, origin=srv.url, max_size=None) as bad:
            await bad.send(json.dumps({"op": "ping", "pad": "x" * 300_000}))
            with pytest.raises(ConnectionClosed) as e:
                await asyncio.wait_for(bad.recv(), 5)
            assert e.value.rcvd.code == 1009


async def test_too_many_subscriptions(make_server):
    with make_server({"MAX_SUBSCRIPTIONS": 3}) as srv:
        async with Client(srv.ws_url, origin=srv.url) as c:
            for i in range(3):
                await c.subscribe(f"test.s{i}")
            with pytest.raises(RequestFailed) as e:
                await c.subscribe("test.s3")
            assert e.value.code == "too_many_subscriptions"
            await c.request("unsubscribe", topic="test.s0")
            assert (await c.subscribe("test.s3"))["ok"]


async def test_flood_is_rate_limited_then_closed_4008(make_server):
    with make_server({"RATE_LIMIT": {"rate": 5, "burst": 10}}) as srv:
        async with Client(srv.ws_url, origin=srv.url) as calm:
            await calm.subscribe("test.calm")
            async with connect(srv.ws_url, origin=srv.url) as flood:
                for _ in range(40):
                    await flood.send(json.dumps({"op": "ping"}))
                codes = []
                with pytest.raises(ConnectionClosed) as e:
                    while True:
                        codes.append(
                            json.loads(await asyncio.wait_for(flood.recv(), 5))["error"]["code"]
                        )
                assert e.value.rcvd.code == 4008
                assert codes and set(codes) == {"rate_limited"}
            assert (await calm.request("ping"))["ok"]


async def test_slow_consumer_is_cut_4009_and_others_get_everything(make_server):
    with make_server({"QUEUE_SIZE": 50}) as srv:
        async with Client(srv.ws_url, origin=srv.url) as fast:
            await fast.subscribe("test.slow")
            # a small fixed receive buffer (no autotuning), so the kernel cannot absorb the burst
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            sock.connect((srv.host, srv.port))
            slow = await connect(srv.ws_url, origin=srv.url, max_queue=1, max_size=None, sock=sock)
            await slow.send(json.dumps({"id": 1, "op": "subscribe", "topic": "test.slow"}))
            reply = json.loads(await asyncio.wait_for(slow.recv(), 10))  # subscribed: then
            assert reply["id"] == 1 and reply["ok"] is True  # never read again
            chunks, n, size = 20, 20, 50_000  # 20 MB in all: far more than the buffers hold
            got = []
            async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
                for _ in range(chunks):  # paced so that a reading client keeps up
                    r = await http.post(
                        "/test/publish", json={"topic": "test.slow", "n": n, "size": size}
                    )
                    assert r.status_code == 200  # the publisher is never held up
                    got += [await fast.next_message(timeout=30) for _ in range(n)]
            assert [m["data"]["i"] for m in got] == list(range(n)) * chunks
            with pytest.raises(ConnectionClosed) as e:
                while True:
                    await asyncio.wait_for(slow.recv(), 10)
            assert e.value.rcvd.code == 4009
            assert e.value.rcvd.reason == "slow consumer"


@pytest.mark.parametrize("path", ["/nope", "/realtime/nope", "/realtime/ws/x"])
async def test_unknown_websocket_path_is_refused(server, path):
    """A WebSocket on a path that is not tidings' goes to the Django URL it resolves to:
    none here, so the handshake gets Django's 404, before any socket is accepted."""
    with pytest.raises(InvalidStatus) as e:
        async with connect(server.ws_url.replace("/realtime/ws", path), origin=server.url):
            pass
    assert e.value.response.status_code == 404


@pytest.mark.parametrize("ws", ["websockets-sansio", "websockets"])
async def test_fan_out_on_uvicorns_own_websocket_protocols(make_server, ws):
    """Served by uvicorn's own protocols (no ``tidings.serve`` synchronous send), a
    subscriber still gets a lone message and then a burst (frames written back to back),
    each once and in order: the writer falls back to ASGI ``send()``."""
    with make_server(args=("--ws", ws)) as srv:
        async with (
            Client(srv.ws_url, origin=srv.url) as a,
            Client(srv.ws_url, origin=srv.url) as b,
            connect(srv.ws_url, origin=srv.url) as pub,
        ):
            for c in (a, b):
                await c.subscribe("test.fallback")
            await pub.send(json.dumps({"op": "publish", "topic": "test.fallback", "data": 0}))
            assert (await a.next_message())["data"] == (await b.next_message())["data"] == 0
            for i in range(1, 201):
                await pub.send(json.dumps({"op": "publish", "topic": "test.fallback", "data": i}))
            for c in (a, b):
                got = [(await c.next_message())["data"] for _ in range(200)]
                assert got == list(range(1, 201))


async def test_the_served_protocols_event_inbox_serves_readers_in_order_and_loses_nothing():
    """``tidings.serve`` replaces uvicorn's per-connection ``asyncio.Queue`` of events
    with a lighter one (docs/performance.md): an app that reads from two tasks gets
    each event once, in order, and a reader cancelled after being woken loses none."""
    from tidings.serve import Inbox

    inbox = Inbox()
    first, second = asyncio.ensure_future(inbox.get()), asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("a")
    inbox.put_nowait("b")
    assert [await asyncio.wait_for(f, 1) for f in (first, second)] == ["a", "b"]
    woken, other = asyncio.ensure_future(inbox.get()), asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("c")
    woken.cancel()  # woken for "c", then cancelled before it took it
    assert await asyncio.wait_for(other, 1) == "c"
    assert inbox.empty()
