"""Long-polling at /realtime/poll and client publishing at /realtime/publish, over httpx."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import pytest

from tests.http_helpers import hub, next_event, sse_events, wait_for
from tidings.testing import Client, RequestFailed


async def publish(server, topic, data):
    async with Client(server.ws_url, origin=server.url) as c:
        return (await c.publish(topic, data))["position"]


async def poll(http, topic, **params):
    r = await http.get("/realtime/poll", params={"topic": topic, **params})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    return r.json()


async def test_answers_at_once_when_messages_after_since_exist(server):
    first = await publish(server, "test.lp1", 1)
    p2 = await publish(server, "test.lp1", 2)
    p3 = await publish(server, "test.lp1", 3)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        start = time.monotonic()
        body = await poll(http, "test.lp1", since=first, timeout=20)
        assert time.monotonic() - start < 5
    assert [m["data"] for m in body["messages"]] == [2, 3]
    assert [m["position"] for m in body["messages"]] == [p2, p3]
    assert body["since"] == p3
    assert body["topics"]["test.lp1"] == {"position": p3, "recovered": True}


async def test_holds_until_a_publish(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        first = await poll(http, "test.lp2", timeout=0)
        assert first["messages"] == []
        held = asyncio.create_task(poll(http, "test.lp2", since=first["since"], timeout=15))
        await wait_for(lambda: _subscribed(server, "test.lp2"))
        assert not held.done()
        position = await publish(server, "test.lp2", "now")
        body = await asyncio.wait_for(held, 10)
    assert [m["data"] for m in body["messages"]] == ["now"]
    assert body["since"] == position


async def _subscribed(server, topic):
    return (await hub(server, topic))["subscribers"] > 0


async def test_timeout_answers_empty_with_the_current_position(server):
    position = await publish(server, "test.lp3", "x")
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        start = time.monotonic()
        body = await poll(http, "test.lp3", since=position, timeout=0.5)
        assert 0.4 < time.monotonic() - start < 5
    assert body == {
        "messages": [],
        "since": position,
        "topics": {"test.lp3": {"position": position, "recovered": True}},
    }


async def test_polling_with_the_returned_since_misses_nothing_and_repeats_nothing(server):
    topic = "test.lp4"
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        since = (await poll(http, topic, timeout=0))["since"]

        async def produce():
            for i in range(60):
                await publish(server, topic, i)

        producer = asyncio.create_task(produce())
        got = []
        while len(got) < 60:
            body = await poll(http, topic, since=since, timeout=5)
            got += [m["data"] for m in body["messages"]]
            since = body["since"]
        await producer
    assert got == list(range(60))


async def test_several_topics_and_an_unrecoverable_since(server):
    pa = await publish(server, "test.lpA", "a")
    epoch = pa.split(":")[0]
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        r = await http.get(
            "/realtime/poll",
            params=[
                ("topic", "test.lpA"),
                ("topic", "test.lpB"),
                ("since", f"x{epoch}:1,"),
                ("timeout", "0"),
            ],
        )
    body = r.json()
    assert body["messages"] == []  # nothing passed off as a replay
    assert body["topics"]["test.lpA"]["recovered"] is False
    assert body["since"].split(",")[0] == pa  # go on from now


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"topic": "test.x", "timeout": "soon"}, 400, "bad_request"),
        ({"topic": "test.x", "timeout": "-1"}, 400, "bad_request"),
        ({"topic": "test.x", "timeout": "1000"}, 400, "bad_request"),
        ({"topic": "test.x", "since": "zzz"}, 400, "bad_request"),
        ({"topic": "no/slashes"}, 400, "invalid_topic"),
        ({"topic": "private.x"}, 403, "forbidden"),
    ],
)
async def test_bad_polls(server, params, status, code):
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.get("/realtime/poll", params=params)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text


async def test_a_poll_that_is_abandoned_leaves_nothing_behind(server):
    topic = "test.lp5"
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        task = asyncio.create_task(
            http.get("/realtime/poll", params={"topic": topic, "timeout": 30})
        )
        await wait_for(lambda: _subscribed(server, topic))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await wait_for(lambda: _unsubscribed(server, topic), timeout=5)


async def _unsubscribed(server, topic):
    return (await hub(server, topic))["subscribers"] == 0


# -- POST /realtime/publish ------------------------------------------------------------


async def test_http_publish_uses_the_same_rules_and_handlers(server):
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
        Client(server.ws_url, origin=server.url) as listener,
    ):
        await listener.subscribe("whoami.http")
        r = await http.post("/realtime/publish", json={"topic": "whoami.http", "data": {"x": 1}})
        assert r.status_code == 200 and r.json()["ok"] is True
        m = await listener.next_message()
        assert m["data"] == {"user": None, "said": {"x": 1}}  # the topic handler ran
        assert m["position"] == r.json()["position"]
        r = await http.post("/realtime/publish", json={"topic": "readonly.x", "data": 1})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")
        r = await http.post("/realtime/publish", json={"topic": "quiet.x", "data": 1})
        assert r.json() == {"ok": True, "topic": "quiet.x", "position": None}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"not json", 400, "bad_request"),
        (b"[1]", 400, "bad_request"),
        (b'{"topic": "test.x"}', 400, "bad_request"),
        (b'{"topic": "bad topic", "data": 1}', 400, "invalid_topic"),
        (b'{"topic": "test.x", "data": 1, "event": "tidings.open"}', 400, "bad_request"),
        (b'{"topic": "test.x", "data": "' + b"x" * 70_000 + b'"}', 413, "too_large"),
    ],
)
async def test_http_publish_bad_input(server, body, status, code):
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.post("/realtime/publish", content=body)
    assert r.status_code == status
    assert r.json()["error"]["code"] == code


async def test_http_publish_wrong_method_and_foreign_origin(server):
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.get("/realtime/publish")
        assert r.status_code == 405 and r.headers["allow"] == "POST"
        r = await http.post(
            "/realtime/publish",
            json={"topic": "test.x", "data": 1},
            headers={"Origin": "http://evil.example"},
        )
        assert r.status_code == 403


async def test_http_publish_with_a_session_needs_the_csrf_token(server):
    from tests.test_websocket import login

    cookies = await asyncio.to_thread(login, server, "carol", "pw-carol-1")
    async with httpx.AsyncClient(base_url=server.url, timeout=10, cookies=cookies) as http:
        body = {"topic": "members.csrf", "data": "hi"}
        r = await http.post("/realtime/publish", json=body)
        assert r.status_code == 403 and "CSRF" in r.json()["error"]["message"]
        page = await http.get("/accounts/login/")  # any page with a form sets the CSRF cookie
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        r = await http.post("/realtime/publish", json=body, headers={"X-CSRFToken": token})
        assert r.status_code == 200, r.text


# -- the same authorization on every transport -------------------------------------------


async def test_same_private_topic_same_answer_on_every_transport(server):
    """Allowed everywhere with a session, refused everywhere without one, each transport
    with its form of the same answer: ``forbidden`` (over HTTP a 403 naming the topic)."""
    from tests.test_websocket import login

    topic = "members.same"
    cookies = await asyncio.to_thread(login, server, "dave", "pw-dave-1")

    def refusal(r: httpx.Response) -> tuple[int, str, str]:
        error = r.json()["error"]
        return r.status_code, error["code"], error.get("topic")

    async def over_ws(jar) -> object:
        async with Client(server.ws_url, origin=server.url, cookies=jar) as ws:
            try:
                reply = await ws.subscribe(topic)
            except RequestFailed as e:
                return e.code
            return "ok" if reply["topic"] == topic else reply

    async def over_poll(http: httpx.AsyncClient) -> object:
        r = await http.get("/realtime/poll", params={"topic": topic, "timeout": 0})
        return "ok" if r.status_code == 200 and topic in r.json()["topics"] else refusal(r)

    async def over_sse(http: httpx.AsyncClient) -> object:
        async with http.stream("GET", "/realtime/sse", params={"topic": topic}) as r:
            if r.status_code != 200:
                await r.aread()
                return refusal(r)
            opened = await next_event(sse_events(r))
            return "ok" if topic in json.loads(opened.data)["topics"] else opened

    for jar, expected in (
        (cookies, ("ok", "ok", "ok")),
        ({}, ("forbidden", (403, "forbidden", topic), (403, "forbidden", topic))),
    ):
        async with httpx.AsyncClient(base_url=server.url, cookies=jar, timeout=10) as http:
            answers = (await over_ws(jar), await over_sse(http), await over_poll(http))
        assert answers == expected


async def test_health(server):
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.get("/realtime/health")
    assert r.status_code == 200 and r.json() == {"ok": True}  # no details for anonymous users
