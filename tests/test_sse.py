"""Server-Sent Events at /realtime/sse, with httpx streaming over real sockets."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.http_helpers import hub, next_event, sse_events, wait_for
from tidings.testing import Client


async def publish(server, topic, data, event="message"):
    async with Client(server.ws_url, origin=server.url) as c:
        return (await c.publish(topic, data, event=event))["position"]


async def test_stream_headers_open_event_and_messages(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        async with http.stream("GET", "/realtime/sse", params={"topic": "test.sse1"}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["cache-control"] == "no-cache"
            assert r.headers["x-accel-buffering"] == "no"
            events = sse_events(r)
            opened = await next_event(events)
            assert opened.retry == 2000 and opened.event == "tidings.open"
            position = json.loads(opened.data)["topics"]["test.sse1"]["position"]
            assert opened.id == position
            p1 = await publish(server, "test.sse1", {"n": 1}, event="update")
            p2 = await publish(server, "test.sse1", "two")
            e1, e2 = await next_event(events), await next_event(events)
            assert (e1.event, json.loads(e1.data), e1.id) == ("update", {"n": 1}, p1)
            assert (e2.event, json.loads(e2.data), e2.id) == ("message", "two", p2)


async def test_several_topics_in_one_stream_and_last_event_id_resumes_them_all(server):
    params = [("topic", "test.mA"), ("topic", "test.mB")]
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        async with http.stream("GET", "/realtime/sse", params=params) as r:
            events = sse_events(r)
            await next_event(events)
            pa = await publish(server, "test.mA", "a1")
            pb = await publish(server, "test.mB", "b1")
            ea, eb = await next_event(events), await next_event(events)
            assert [ea.data, eb.data] == ['"a1"', '"b1"']
            assert ea.id.split(",")[0] == pa and eb.id == f"{pa},{pb}"
            last_id = eb.id
        # while disconnected, both topics move on
        await publish(server, "test.mA", "a2")
        await publish(server, "test.mB", "b2")
        await publish(server, "test.mA", "a3")
        headers = {"Last-Event-ID": last_id}
        async with http.stream("GET", "/realtime/sse", params=params, headers=headers) as r:
            events = sse_events(r)
            opened = json.loads((await next_event(events)).data)
            assert all(t["recovered"] for t in opened["topics"].values())
            got = [json.loads((await next_event(events)).data) for _ in range(3)]
            # each topic in its own order (there is no order across topics)
            assert [g for g in got if g[0] == "a"] == ["a2", "a3"] and "b2" in got
            live = await publish(server, "test.mB", "b3")
            e = await next_event(events)
            assert e.data == '"b3"' and e.id.endswith(live)


async def test_since_parameter_and_unrecoverable_since(server):
    first = await publish(server, "test.since", 1)
    await publish(server, "test.since", 2)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        params = {"topic": "test.since", "since": first}
        async with http.stream("GET", "/realtime/sse", params=params) as r:
            events = sse_events(r)
            opened = json.loads((await next_event(events)).data)
            assert opened["topics"]["test.since"]["recovered"] is True
            assert (await next_event(events)).data == "2"
        epoch, _ = first.split(":")
        params = {"topic": "test.since", "since": f"x{epoch}:1"}
        async with http.stream("GET", "/realtime/sse", params=params) as r:
            events = sse_events(r)
            opened = await next_event(events)
            info = json.loads(opened.data)["topics"]["test.since"]
            assert info["recovered"] is False
            assert opened.id == info["position"]  # resume from now, not from the bad position
            await publish(server, "test.since", 3)
            assert (await next_event(events)).data == "3"  # nothing replayed, live continues


async def test_keepalive_comments_on_idle_streams(make_server):
    with make_server({"SSE_KEEPALIVE": 0.2}) as srv:
        async with (
            httpx.AsyncClient(base_url=srv.url, timeout=10) as http,
            http.stream("GET", "/realtime/sse", params={"topic": "test.idle"}) as r,
        ):
            events = sse_events(r)
            await next_event(events)
            ping = await next_event(events, skip_comments=False)
            assert ping.comments == ["keep-alive"] and not ping.data


async def test_stream_ends_promptly_when_the_client_goes_away(server):
    topic = "test.gone"
    before = await hub(server, topic)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        async with http.stream("GET", "/realtime/sse", params={"topic": topic}) as r:
            events = sse_events(r)  # keep a reference: a collected reader closes the stream
            await next_event(events)
            state = await hub(server, topic)
            assert state["subscribers"] == 1, state
    # the client closed its connection: no subscription and no task is left behind
    await wait_for(lambda: _count(server, topic, 0), timeout=5)
    after = await wait_for(lambda: _tasks_back(server, topic, before["tasks"]), timeout=5)
    assert after["tasks"] <= before["tasks"]


async def _count(server, topic, n):
    return (await hub(server, topic))["subscribers"] == n


async def _tasks_back(server, topic, tasks):
    state = await hub(server, topic)
    return state if state["tasks"] <= tasks else None


async def test_many_idle_streams_cost_no_thread_each(server):
    topic = "test.crowd"
    threads_before = (await hub(server, topic))["threads"]
    async with httpx.AsyncClient(
        base_url=server.url, timeout=30, limits=httpx.Limits(max_connections=400)
    ) as http:
        streams = [http.stream("GET", "/realtime/sse", params={"topic": topic}) for _ in range(300)]
        responses = await asyncio.gather(*(s.__aenter__() for s in streams))
        try:
            assert all(r.status_code == 200 for r in responses)
            state = await wait_for(lambda: _at_least(server, topic, 300), timeout=20)
            assert state["threads"] <= threads_before + 2  # not one per stream
            await publish(server, topic, "to all")
            firsts = await asyncio.gather(*(_second_event(r) for r in responses))
            assert all(e.data == '"to all"' for e in firsts)
        finally:
            await asyncio.gather(*(s.__aexit__(None, None, None) for s in streams))
    await wait_for(lambda: _count(server, topic, 0), timeout=10)


async def _at_least(server, topic, n):
    state = await hub(server, topic)
    return state if state["subscribers"] >= n else None


async def _second_event(response):
    events = sse_events(response)
    await next_event(events)
    return await next_event(events)


async def test_newlines_in_data_cannot_inject_fields(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        async with http.stream("GET", "/realtime/sse", params={"topic": "test.inject"}) as r:
            events = sse_events(r)
            opened = await next_event(events)
            evil = "a\nid: 999\nevent: x\r\ndata: y\rretry: 1"
            position = await publish(server, "test.inject", evil)
            e = await next_event(events)
            assert json.loads(e.data) == evil  # exactly one message, intact
            assert e.event == "message" and e.id == position and e.retry is None
            done = await publish(server, "test.inject", "next")
            e2 = await next_event(events)
            assert e2.data == '"next"' and e2.id == done  # nothing extra came in between
            assert int(done.split(":")[1]) == int(opened.id.split(":")[1]) + 2


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({}, 400, "bad_request"),
        ({"topic": "bad topic"}, 400, "invalid_topic"),
        ({"topic": "private.x"}, 403, "forbidden"),
        ({"topic": "test.x", "since": "nonsense"}, 400, "bad_request"),
        ({"topic": "test.x", "since": "a:1,b:2"}, 400, "bad_request"),
    ],
)
async def test_bad_requests(server, params, status, code):
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.get("/realtime/sse", params=params)
    assert r.status_code == status
    assert r.json()["error"]["code"] == code


async def test_foreign_origin_refused_own_origin_and_none_allowed(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        for path in ("/realtime/sse", "/realtime/poll"):
            r = await http.get(
                path,
                params={"topic": "test.o", "timeout": 0},
                headers={"Origin": "http://evil.example"},
            )
            assert r.status_code == 403, path
            r = await http.get(
                path, params={"topic": "test.o", "timeout": 0}, headers={"Origin": "null"}
            )
            assert r.status_code == 403, path
        r = await http.get(
            "/realtime/poll",
            params={"topic": "test.o", "timeout": 0},
            headers={"Origin": server.url},
        )
        assert r.status_code == 200
        r = await http.get("/realtime/poll", params={"topic": "test.o", "timeout": 0})
        assert r.status_code == 200


async def test_a_refused_topic_is_named(server):
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.get("/realtime/poll", params=[("topic", "test.ok"), ("topic", "private.no")])
    assert r.status_code == 403
    assert r.json()["error"]["topic"] == "private.no"


async def test_recovered_only_for_topics_given_a_position(server):
    p = await publish(server, "test.partial", 1)
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.get(
            "/realtime/poll",
            params=[
                ("topic", "test.partial"),
                ("topic", "test.other"),
                ("since", f"{p},"),
                ("timeout", "0"),
            ],
        )
    topics = r.json()["topics"]
    assert topics["test.partial"]["recovered"] is True
    assert "recovered" not in topics["test.other"]
