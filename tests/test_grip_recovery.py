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
from tests.http_helpers import next_event, sse_events, wait_pushpin_subscribed
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
            _, headers, _ = await asyncio.to_thread(curl, via_proxy)
            since = headers["etag"].strip('"')  # where the streams start
            async with httpx.AsyncClient(timeout=15) as http:
                sse = f"{proxy.url}/realtime/sse?topic=headlines.{hid}"
                accept = {"Accept": "text/event-stream"}
                async with (
                    http.stream("GET", via_proxy, headers=accept) as held,
                    http.stream("GET", sse) as endpoint,
                ):
                    held_events, endpoint_events = sse_events(held), sse_events(endpoint)
                    await next_event(endpoint_events)  # tidings.open
                    # both streams are on their channels in Pushpin (the view's hold on
                    # the topic's, the endpoint on tidings.t.<topic>)
                    await wait_pushpin_subscribed(proxy, f"headlines.{hid}")
                    await wait_pushpin_subscribed(proxy, f"tidings.t.headlines.{hid}")
                    # published where Pushpin is not told: only history has it
                    _, headers, _ = await asyncio.to_thread(
                        put, f"{b.url}/headlines/{hid}/", type="lost"
                    )
                    lost = headers["etag"].strip('"')
                    # the server Pushpin will ask to recover already has it in history
                    # (shared Redis: as soon as b's PUT was answered, so no wait)
                    r = await http.get(
                        f"{server.url}/realtime/poll",
                        params={"topic": f"headlines.{hid}", "since": since, "timeout": 0},
                    )
                    assert [m["position"] for m in r.json()["messages"]] == [lost]
                    await asyncio.to_thread(put, f"{server.url}/headlines/{hid}/", type="next")
                    for events in (held_events, endpoint_events):
                        got = [json.loads((await next_event(events)).data)["type"] for _ in "12"]
                        assert got == ["lost", "next"]
