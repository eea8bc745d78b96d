"""Reliability behind Pushpin: a publish Pushpin never got is recovered from tidings'
history (prev-id mismatch -> next link with Grip-Last), for a view's held stream and
for /realtime/sse. The lost publish is made real: a second server shares the Redis
broker but has no GRIP setting, so what it publishes never reaches Pushpin."""

from __future__ import annotations

import asyncio
import json
import os

import httpx

from tests.conftest import APP, server_env
from tests.http_helpers import next_event, sse_events
from tests.pushpin_server import grip_stack
from tests.redis_server import redis_server
from tests.test_headlines import curl, put
from tidings.testing import live_server


async def test_a_publish_pushpin_missed_is_recovered_from_history(tmp_path):
    with redis_server() as r:
        broker = {"BROKER": r.url}
        with (
            grip_stack(broker) as (server, proxy),
            live_server(APP, env=server_env(broker), log_path=os.path.join(tmp_path, "b.log")) as b,
        ):
            _, _, body = await asyncio.to_thread(curl, "-X", "POST", f"{proxy.url}/headlines/")
            hid = json.loads(body)["id"]
            via_proxy = f"{proxy.url}/headlines/{hid}/"
            async with httpx.AsyncClient(timeout=15) as http:
                sse = f"{proxy.url}/realtime/sse?topic=headlines.{hid}"
                accept = {"Accept": "text/event-stream"}
                async with (
                    http.stream("GET", via_proxy, headers=accept) as held,
                    http.stream("GET", sse) as endpoint,
                ):
                    held_events, endpoint_events = sse_events(held), sse_events(endpoint)
                    await next_event(endpoint_events)  # tidings.open
                    await asyncio.sleep(0.5)
                    # published where Pushpin is not told: only history has it
                    await asyncio.to_thread(put, f"{b.url}/headlines/{hid}/", type="lost")
                    await asyncio.sleep(0.3)
                    await asyncio.to_thread(put, f"{server.url}/headlines/{hid}/", type="next")
                    for events in (held_events, endpoint_events):
                        got = [json.loads((await next_event(events)).data)["type"] for _ in "12"]
                        assert got == ["lost", "next"]
