"""Item 9: broker data loss is signalled to live subscribers.

Redis killed with SIGKILL and started again empty: the topic's history is gone and
its positions start over in a new epoch. A subscriber that was connected all along
used to get the new messages as if nothing had happened (only the epoch in their
positions changed, which tidings.js accepted silently). Now, before the first message
of the new epoch, every transport says so: ``{"op": "gap", "topic", "position"}`` over
WebSocket and in a long-poll's ``messages``, a ``tidings.gap`` event over SSE; the
JS client fires ``gap`` as for ``recovered: false`` (js/tests/subscribe.test.mjs).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from tests.http_helpers import hub, next_event, sse_events, wait_for
from tests.redis_server import redis_server
from tests.test_redis_servers import tidings_server
from tidings.core.messages import Position
from tidings.testing import Client

TOPIC = "test.lost"


async def publish_until_it_works(
    http: httpx.AsyncClient, data: Any, topic: str = TOPIC
) -> Position:
    """Publish ``data`` once the server reaches Redis again (503 until then)."""
    deadline = time.monotonic() + 30
    while True:
        r = await http.post("/realtime/publish", json={"topic": topic, "data": data})
        if r.status_code == 200:
            return Position.parse(r.json()["position"])
        assert r.status_code == 503 and time.monotonic() < deadline, r.text
        await asyncio.sleep(0.2)


async def test_every_live_subscriber_hears_of_a_lost_history_before_the_next_message():
    with redis_server() as redis, tidings_server(redis.url) as server:
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=60) as http,
            Client(server.ws_url, origin=server.url) as ws,
            http.stream("GET", "/realtime/sse", params={"topic": TOPIC}) as stream,
        ):
            await ws.subscribe(TOPIC)
            events = sse_events(stream)
            assert (await next_event(events)).event == "tidings.open"
            before = await publish_until_it_works(http, "before")
            assert (await ws.next_frame())["data"] == "before"
            assert (await next_event(events)).data == '"before"'
            since = f"{before}"
            poll = asyncio.create_task(
                http.get("/realtime/poll", params={"topic": TOPIC, "since": since, "timeout": 50})
            )
            # the poll's join done (its history read), not only its listening: a restart
            # between the two would give it the new epoch from the start, and no gap
            await wait_for(lambda: _joined(server, 3))

            redis.restart()  # SIGKILL, then started again with nothing
            after = await publish_until_it_works(http, "after")
            assert after.epoch != before.epoch

            gap = await ws.next_frame()  # first the gap, then the message
            resume_at = f"{after.epoch}:{after.offset - 1}"
            assert gap == {"op": "gap", "topic": TOPIC, "position": resume_at}
            assert (await ws.next_frame())["position"] == str(after)
            assert (await ws.request("ping"))["ok"] is True  # still connected

            event = await next_event(events)
            assert event.event == "tidings.gap" and json.loads(event.data) == gap
            assert event.id == gap["position"]  # a resume goes on from there
            event = await next_event(events)
            assert event.id == str(after) and event.data == '"after"'

            body = (await poll).json()
            assert [m["op"] for m in body["messages"]] == ["gap", "message"]
            assert body["messages"][0] == gap and body["since"] == str(after)


async def _joined(server: Any, n: int) -> bool:
    return (await hub(server, TOPIC))["joined"] >= n


async def test_a_topics_first_publish_is_no_gap(server):
    """A topic seen empty (``0:0``) gets its first epoch at its first publish: nothing
    was lost, so no gap (a test of the memory broker's empty topics)."""
    async with Client(server.ws_url, origin=server.url) as c:
        topic = "test.first-ever"
        assert (await c.subscribe(topic))["position"] == "0:0"
        async with httpx.AsyncClient(base_url=server.url) as http:
            await http.post("/realtime/publish", json={"topic": topic, "data": 1})
        frame = await c.next_frame()
        assert frame["op"] == "message" and frame["position"].endswith(":1")
