"""The headline API (the article's curl session) through a real Pushpin: GRIP holds."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.http_helpers import (
    next_event,
    pushpin_subscribes,
    sse_events,
    wait_pushpin_subscribed,
    wait_until,
)
from tests.pushpin_server import Pushpin, grip_stack
from tests.test_headlines import articles_curl_session, curl, put, topic_of
from tidings.testing import LiveServer


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[LiveServer, Pushpin]]:
    with grip_stack() as s:
        yield s


@pytest.fixture
def headline(stack) -> str:
    _, proxy = stack
    status, _, body = curl("-X", "POST", f"{proxy.url}/headlines/")
    assert status == 200, body
    return f"{proxy.url}/headlines/{json.loads(body)['id']}/"


def held_by_pushpin(proxy: Pushpin, channel: str):
    """The check behind Pushpin, where the backend holds nothing: Pushpin logs that it
    subscribed one more request to the channel, and the request is still unanswered."""

    def held_check():
        before = pushpin_subscribes(proxy, channel)

        def until_held(done):
            wait_until(lambda: done() or pushpin_subscribes(proxy, channel) > before)
            assert not done(), "answered before it was held"

        return until_held

    return held_check


def test_the_articles_curl_session_through_pushpin(stack, headline):
    _, proxy = stack
    # the same session as without a proxy; the hold is on the headline's own channel
    seen = articles_curl_session(headline, held_by_pushpin(proxy, topic_of(headline)))
    assert not any(h.startswith("grip-") for headers in seen for h in headers)  # stays in Pushpin


def test_a_stale_etag_answers_at_once(headline):
    _, headers, _ = curl(headline)
    put(headline, type="a")
    start = time.monotonic()
    status, _, body = curl("-H", f"If-None-Match: {headers['etag']}", "-H", "Wait: 20", headline)
    assert status == 200 and json.loads(body)["type"] == "a"
    assert time.monotonic() - start < 5


async def test_sse_through_pushpin(stack, headline):
    _, proxy = stack
    channel = topic_of(headline)
    before = pushpin_subscribes(proxy, channel)
    async with httpx.AsyncClient(timeout=10) as http:
        async with http.stream("GET", headline, headers={"Accept": "text/event-stream"}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            events = sse_events(r)
            # the response's start can reach us before Pushpin's handler has put the
            # stream on the channel: a PUT before then would not reach it
            await wait_pushpin_subscribed(proxy, channel, before)
            _, headers, _ = await asyncio.to_thread(put, headline, type="sse", text="one")
            e = await next_event(events)
            assert e.event == "update" and json.loads(e.data)["text"] == "one"
            assert f'"{e.id}"' == headers["etag"]
            _, headers, _ = await asyncio.to_thread(put, headline, type="sse", text="two")
            e = await next_event(events)
            assert json.loads(e.data)["text"] == "two" and f'"{e.id}"' == headers["etag"]


async def test_websocket_through_pushpin(stack, headline):
    _, proxy = stack
    channel = topic_of(headline)
    before = pushpin_subscribes(proxy, channel)
    async with connect(headline.replace("http://", "ws://"), origin=proxy.url) as ws:
        await wait_pushpin_subscribed(proxy, channel, before)  # the socket is on the channel
        await asyncio.to_thread(put, headline, type="ws", text="over the socket")
        update = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert update["type"] == "ws" and update["text"] == "over the socket"
        await ws.send("ignored")
        await asyncio.to_thread(put, headline, type="ws", text="again")
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["text"] == "again"
