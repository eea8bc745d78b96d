"""Items 1, 2, 5 and 16 of the hostile-client list: what a client sends is strict JSON
within limits, or it gets ``bad_request`` and stays connected; errors over HTTP are the
documented JSON; one client's data can never break another client's frames.

The depth limit (item 1) and SIGTERM (item 12) are tested on every transport in
tests/transports/test_scenarios.py (``test_deep_json_*``, ``test_sigterm_*``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import tidings
from tests.test_presence import presence_frame
from tests.test_websocket import client, login
from tests.transports.test_scenarios import stack
from tidings.testing import Client

# What Python's json reads and JSON has not: each as it would appear in a frame's text.
NOT_JSON = {
    "nan": "NaN",
    "infinity": "Infinity",
    "-infinity": "-Infinity",
    "lone surrogate": '"\\ud800"',
    "lone low surrogate in a key": '{"\\udc00x": 1}',
}


async def error_of(c: Client, text: str) -> dict[str, Any]:
    await c.ws.send(text)
    frame = await c.next_frame()
    assert frame["ok"] is False, frame
    return frame["error"]


@pytest.mark.parametrize("kind", ["ws", "grip-ws"])
async def test_nan_infinity_and_lone_surrogates_get_bad_request_and_the_socket_stays(kind):
    with stack(kind) as (_, at):
        async with Client(at.ws_url, origin=at.origin) as c:
            for value in NOT_JSON.values():
                publish = '{"id":1,"op":"publish","topic":"test.strict","data":' + value + "}"
                assert (await error_of(c, publish))["code"] == "bad_request"
                meta = '{"id":2,"op":"subscribe","topic":"presence.strict","presence":'
                error = await error_of(c, meta + '{"state":' + value + "}}")
                assert error["code"] == "bad_request"
            assert (await c.request("ping"))["ok"] is True  # still connected
            assert (await c.publish("test.strict", {"fine": "\ud83d\ude00"}))["ok"] is True


@pytest.mark.parametrize("value", list(NOT_JSON.values()), ids=list(NOT_JSON))
@pytest.mark.parametrize("where", ["sse", "poll", "publish"])
async def test_non_json_values_over_http_get_a_400_json_answer(server, where, value):
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        if where == "publish":
            r = await http.post(
                "/realtime/publish", content='{"topic":"test.strict","data":' + value + "}"
            )
        else:
            presence = '{"presence.strict":{"state":' + value + "}}"
            params = {"topic": "presence.strict", "presence": presence, "timeout": 0}
            r = await http.get(f"/realtime/{where}", params=params)
        assert r.status_code == 400 and r.headers["content-type"] == "application/json"
        assert r.json()["error"]["code"] == "bad_request"


async def test_a_poisoned_meta_breaks_no_watcher(server):
    """The attack: a logged-in user joins with ``{"state": NaN}`` or ``"\\ud800"``; every
    watcher used to get a frame it could not parse, or a socket that went silent."""
    mallory = await asyncio.to_thread(login, server, "mallory", "pw-mallory-1")
    alice = await asyncio.to_thread(login, server, "alice", "pw-alice-1")
    topic = "presence.poison"
    async with client(server) as watcher, client(server, cookies=mallory) as m:
        await watcher.subscribe(topic, presence=True)
        assert (await presence_frame(watcher, topic))["state"] == {}
        for value in ("NaN", '"\\ud800"'):
            text = '{"id":1,"op":"subscribe","topic":"%s","presence":{"state":%s}}'
            assert (await error_of(m, text % (topic, value)))["code"] == "bad_request"
        async with client(server, cookies=alice) as a:
            await a.subscribe(topic, presence={"state": "here"})
            diff = await presence_frame(watcher, topic)  # parsed: valid JSON
            assert list(diff["joins"]) == ["alice"]
            assert diff["joins"]["alice"]["metas"][0]["state"] == "here"
        async with client(server) as newcomer:  # a newcomer still gets the state
            await newcomer.subscribe(topic, presence=True)
            assert (await presence_frame(newcomer, topic))["op"] == "presence"


@pytest.mark.parametrize("data", [float("nan"), float("inf"), {"k": "\ud800"}, {"\udfff": 1}])
def test_server_side_publish_of_non_json_is_a_value_error(data):
    with pytest.raises(ValueError):
        tidings.publish("test.strict", data, on_commit=False)


async def test_a_handler_that_raises_answers_internal_error_json_over_http(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        r = await http.post("/realtime/publish", json={"topic": "boom.http", "data": 1})
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert r.json()["error"]["code"] == "internal_error"
    assert "handler bug" not in r.text
    assert "handler bug" in server.log()  # the traceback is logged


@pytest.mark.parametrize("rid", [2**53, -(2**53), 10**30])
async def test_ids_javascript_cannot_hold_are_refused_not_echoed(server, rid):
    async with client(server) as c:
        error = await error_of(c, json.dumps({"id": rid, "op": "ping"}))
        assert error["code"] == "bad_request" and "2**53" in error["message"]
        assert (await c.request("ping"))["ok"] is True  # still connected


async def test_a_flood_gets_burst_errors_then_4008_and_others_are_served(server):
    """700 frames in one write (the default burst is 200): the first frames are served,
    then exactly ``burst`` ``rate_limited`` errors, then close 4008."""
    async with client(server) as calm:
        await calm.subscribe("test.calm")
        async with connect(server.ws_url, origin=server.url) as flood:
            for i in range(700):  # written without waiting for any answer
                await flood.send(json.dumps({"id": i, "op": "ping"}))
            ok = limited = 0
            with pytest.raises(ConnectionClosed) as e:
                while True:
                    frame = json.loads(await asyncio.wait_for(flood.recv(), 10))
                    if frame["ok"]:
                        ok += 1
                    else:
                        assert frame["error"]["code"] == "rate_limited"
                        limited += 1
            assert e.value.rcvd is not None and e.value.rcvd.code == 4008
            assert limited == 200 and ok >= 200
        assert (await calm.publish("test.calm", 1))["ok"] is True


async def test_http_publishes_have_an_allowance_per_client_address(make_server):
    """``POST /realtime/publish`` holds no connection, so its allowance is kept per
    client address: a flood from one address gets 429 ``rate_limited`` (with
    ``Retry-After``); another address (127.0.0.2) is served meanwhile; after a pause
    the first is served again."""

    async def publish(http: httpx.AsyncClient, n: int) -> httpx.Response:
        return await http.post("/realtime/publish", json={"topic": "test.http-rate", "data": n})

    with make_server({"RATE_LIMIT": {"rate": 5, "burst": 10}}) as srv:
        other = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with (
            httpx.AsyncClient(base_url=srv.url, timeout=10) as http,
            httpx.AsyncClient(base_url=srv.url, timeout=10, transport=other) as calm,
        ):
            answers = [await publish(http, n) for n in range(40)]
            limited = [r for r in answers if r.status_code == 429]
            assert answers[0].status_code == 200 and len(limited) >= 20
            assert limited[0].json()["error"]["code"] == "rate_limited"
            assert limited[0].headers["Retry-After"] == "1"
            assert (await publish(calm, 100)).status_code == 200
            await asyncio.sleep(2.1)  # 5 per second: the allowance is full again
            assert (await publish(http, 101)).status_code == 200
