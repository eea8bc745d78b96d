"""Issue #13, item 10: while the broker is down every HTTP endpoint says so the same way.

Long-poll, SSE, HTTP publish and long-polls held by views answer 503 with the JSON
error ``unavailable`` and ``Retry-After`` (one path: ``transports/http.error``); SSE
joins before it answers, so it no longer sends 200 and a stream that ends at once (a
stream held by a view is answered before it joins: it ends at once). A WebSocket gets
the same error as a reply frame and stays open. When Redis is back, the same requests succeed again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import APP, server_env
from tests.http_helpers import next_event, sse_events
from tests.redis_server import RedisServer, redis_server
from tidings.testing import Client, RequestFailed, live_server

UNAVAILABLE = {"code": "unavailable", "message": "The message broker is unavailable."}


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as r:
        yield r


def assert_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/json"
    assert int(r.headers["Retry-After"]) > 0
    assert r.json() == {"ok": False, "error": UNAVAILABLE}


async def test_every_transport_answers_503_json_while_redis_is_down(redis: RedisServer):
    url = redis.url + "?socket_timeout=1&socket_connect_timeout=1&publish_timeout=1"
    with live_server(APP, env=server_env({"BROKER": url})) as srv:
        async with (
            httpx.AsyncClient(base_url=srv.url, timeout=30) as http,
            Client(srv.ws_url, origin=srv.url) as ws,
        ):
            assert (await http.get("/realtime/poll?topic=test.up&timeout=0")).status_code == 200
            redis.kill()
            for topic in ("test.up", "test.new"):  # one this process listens to, one not
                assert_unavailable(await http.get(f"/realtime/poll?topic={topic}&timeout=0"))
                async with http.stream("GET", f"/realtime/sse?topic={topic}") as r:
                    await r.aread()
                    assert_unavailable(r)
            assert_unavailable(
                await http.post("/realtime/publish", json={"topic": "test.up", "data": 1})
            )
            assert_unavailable(await http.get("/test/hold-poll?topic=test.new"))  # in a view
            async with http.stream("GET", "/test/hold?topic=test.new") as r:
                assert r.status_code == 200  # sent before the join: it ends at once
                assert await r.aread() == b""
            with pytest.raises(RequestFailed) as refused:
                await ws.subscribe("test.ws")
            assert refused.value.code == "unavailable"
            redis.start()
            ok = await http.get("/realtime/poll?topic=test.new&timeout=0")
            assert ok.status_code == 200, ok.text
            async with http.stream("GET", "/realtime/sse?topic=test.new") as r:
                assert r.status_code == 200
                opened = await next_event(sse_events(r))
                assert "test.new" in json.loads(opened.data)["topics"]
            assert (await ws.subscribe("test.ws"))["ok"]
