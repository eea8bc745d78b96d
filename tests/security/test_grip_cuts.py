"""#13 items 8 and 9 through a real Pushpin: the connections the proxy holds are cut
when their user's login ends, and hear of a history lost under them.

Pushpin, not tidings, holds these connections (WebSocket-over-HTTP, held streams, held
polls), so a cut is published to the proxy: every proxied connection of a logged-in
user listens on the user's channel (``tidings.u.<pk>``), where :func:`tidings.disconnect`
publishes a close. A lost history (Redis killed and started empty) is told before the
new epoch's first message, as on the direct transports (tests/security/test_epoch_gap.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest

from tests.http_helpers import next_event, pushpin_subscribes, sse_events, wait_pushpin_subscribed
from tests.pushpin_server import Pushpin, grip_stack
from tests.redis_server import redis_server
from tests.security.test_epoch_gap import publish_until_it_works
from tests.security.test_logout import LOGGED_OUT, TOPIC, Browser, account, closed_with, user
from tidings.testing import Client, LiveServer


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[LiveServer, Pushpin]]:
    with grip_stack() as s:
        yield s


async def logged_in(server: LiveServer) -> tuple[Browser, str, dict[str, str], str]:
    """A browser logged in as a new user: (browser, username, cookies, user channel)."""
    from django.contrib.auth.models import User

    name, pw = user()
    browser = Browser(server)
    cookies = await asyncio.to_thread(browser.login, name, pw)
    pk = await asyncio.to_thread(lambda: User.objects.get(username=name).pk)
    return browser, name, cookies, f"tidings.u.{pk}"


async def ws_via(proxy: Pushpin, cookies: dict[str, str] | None, channel: str | None) -> Client:
    """A WebSocket through Pushpin, once Pushpin has subscribed it to its user's
    ``channel`` (Pushpin may apply a subscription after relaying the answer)."""
    before = pushpin_subscribes(proxy, channel) if channel else 0
    client = Client(f"{proxy.ws_url}/realtime/ws", origin=proxy.url, cookies=cookies or {})
    await client.__aenter__()
    await client.request("ping")
    if channel:
        await wait_pushpin_subscribed(proxy, channel, before)
    return client


async def subscribed(proxy: Pushpin, client: Client, topic: str) -> dict[str, object]:
    """``client`` subscribed to ``topic``, once Pushpin applied it."""
    before = pushpin_subscribes(proxy, f"tidings.t.{topic}")
    reply = await client.subscribe(topic)
    await wait_pushpin_subscribed(proxy, f"tidings.t.{topic}", before)
    return reply


async def test_logout_closes_the_users_websocket_held_by_pushpin_4401_and_nobody_elses(stack):
    server, proxy = stack
    browser, _, cookies, channel = await logged_in(server)
    mine = await ws_via(proxy, cookies, channel)
    bystander = await ws_via(proxy, None, None)
    try:
        await subscribed(proxy, bystander, "test.gbystander")
        assert (await mine.subscribe(TOPIC))["ok"]
        await asyncio.to_thread(browser.logout)
        assert await closed_with(mine) == (LOGGED_OUT, "logged out")
        await bystander.publish("test.gbystander", "still here")
        assert (await bystander.next_message())["data"] == "still here"
    finally:
        await mine.__aexit__(None, None, None)
        await bystander.__aexit__(None, None, None)


async def test_tidings_disconnect_closes_a_websocket_held_by_pushpin_with_the_reason(stack):
    server, proxy = stack
    _, name, cookies, channel = await logged_in(server)
    mine = await ws_via(proxy, cookies, channel)
    try:
        await asyncio.to_thread(account, server, name, "disconnect", reason="banned")
        assert await closed_with(mine) == (LOGGED_OUT, "banned")
    finally:
        await mine.__aexit__(None, None, None)


async def test_logout_ends_a_stream_held_by_pushpin_with_tidings_close_4401(stack):
    server, proxy = stack
    browser, _, cookies, channel = await logged_in(server)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=30, cookies=cookies) as http:
        before = pushpin_subscribes(proxy, channel)
        async with http.stream("GET", "/realtime/sse", params={"topic": TOPIC}) as response:
            assert response.status_code == 200
            events = sse_events(response)
            assert (await next_event(events)).event == "tidings.open"
            await wait_pushpin_subscribed(proxy, channel, before)
            await asyncio.to_thread(browser.logout)
            closing = await next_event(events)
            assert closing.event == "tidings.close"
            assert json.loads(closing.data) == {"code": LOGGED_OUT, "reason": "logged out"}

            async def rest() -> list[object]:
                return [e async for e in events]

            assert await asyncio.wait_for(rest(), 10) == []  # and the stream ended
        r = await http.get("/realtime/sse", params={"topic": TOPIC})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


async def test_logout_retries_a_poll_held_by_pushpin_and_it_is_refused(stack):
    """Pushpin retries the held poll at once; tidings answers it as whoever the cookie
    now says (nobody: members' topics refuse it)."""
    server, proxy = stack
    browser, _, cookies, channel = await logged_in(server)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=60, cookies=cookies) as http:
        first = await http.get("/realtime/poll", params={"topic": TOPIC, "timeout": 0})
        assert first.status_code == 200
        before = pushpin_subscribes(proxy, channel)
        params = {"topic": TOPIC, "since": first.json()["since"], "timeout": 50}
        poll = asyncio.ensure_future(http.get("/realtime/poll", params=params))
        await wait_pushpin_subscribed(proxy, channel, before)
        await asyncio.to_thread(browser.logout)
        answer = await asyncio.wait_for(poll, 20)
        assert answer.status_code == 403
        assert answer.json()["error"]["code"] == "forbidden"


# -- a lost history -----------------------------------------------------------------------
async def test_connections_held_by_pushpin_hear_of_a_lost_history_before_the_next_message():
    topic = "test.glost"
    with redis_server() as redis, grip_stack({"BROKER": redis.url}) as (server, proxy):
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=60) as direct,
            httpx.AsyncClient(base_url=proxy.url, timeout=60) as http,
        ):
            ws = await ws_via(proxy, None, None)
            before = pushpin_subscribes(proxy, f"tidings.t.{topic}")
            assert (await subscribed(proxy, ws, topic))["position"] == "0:0"
            async with http.stream("GET", "/realtime/sse", params={"topic": topic}) as stream:
                events = sse_events(stream)
                assert (await next_event(events)).event == "tidings.open"
                await wait_pushpin_subscribed(proxy, f"tidings.t.{topic}", before + 1)
                first = await publish_until_it_works(direct, "before", topic)
                # a topic's first message: the WebSocket is told of a new history, which
                # it joined empty (tidings.js ignores a gap at 0:0)
                assert (await ws.next_frame())["op"] == "gap"
                assert (await ws.next_frame())["data"] == "before"
                assert (await next_event(events)).data == '"before"'

                redis.restart()  # SIGKILL, then started again with nothing
                after = await publish_until_it_works(direct, "after", topic)
                assert after.epoch != first.epoch
                gap = {"op": "gap", "topic": topic, "position": f"{after.epoch}:0"}
                assert await ws.next_frame() == gap
                assert (await ws.next_frame())["position"] == str(after)

                event = await next_event(events)
                assert event.event == "tidings.gap" and json.loads(event.data) == gap
                assert event.id == gap["position"]
                event = await next_event(events)
                assert event.id == str(after) and event.data == '"after"'

            r = await http.get("/realtime/poll", params={"topic": topic, "since": str(first)})
            body = r.json()
            assert body["topics"][topic]["recovered"] is False  # tidings.js: "gap"
            assert body["since"] == str(after)
            await ws.__aexit__(None, None, None)


def test_any_primary_key_makes_one_grip_channel():
    """A user's channel is one ``Grip-Channel`` entry whatever its primary key holds
    (``,`` separates entries and ``;`` parameters there): a string pk cannot add or
    forge channels for a connection."""
    from tidings.grip.instructions import channel_header, user_channel, with_user

    for pk in ("42", "a,tidings.t.admin", "b;prev-id=x", "c=d", 'e"f', "g h"):
        header = channel_header(with_user({"tidings.t.news": None}, pk))
        entries = header.split(", ")
        assert entries == ["tidings.t.news", user_channel(pk)], (pk, header)
        assert not any(c in user_channel(pk) for c in ',; ="'), pk
