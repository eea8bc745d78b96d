"""The headline API (the Fanout/django-grip article) driven by curl, as in the article."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conftest import need
from tests.http_helpers import hub, hub_subscribers, next_event, sse_events, wait_for, wait_until
from tidings.testing import LiveServer


def curl(*args: str, timeout: float = 30) -> tuple[int, dict[str, str], str]:
    """Run curl -si; return (status, headers, body) as curl saw them."""
    need("curl", shutil.which("curl") is not None)
    out = subprocess.run(
        ["curl", "-si", "--max-time", str(timeout), *args],
        capture_output=True,
        text=True,
        timeout=timeout + 5,
        check=True,
    ).stdout
    head, _, body = out.partition("\n\n")  # text mode turned CRLF into LF
    lines = head.split("\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
    return status, headers, body


@pytest.fixture
def headline(server) -> str:
    """POST /headlines/ -> a new headline's URL."""
    status, headers, body = curl("-X", "POST", f"{server.url}/headlines/")
    assert status == 200 and headers["content-type"] == "application/json"
    data = json.loads(body)
    assert data["type"] == "none" and data["text"] == "" and "title" not in data
    assert re.fullmatch(r"\d+", data["id"])
    return f"{server.url}/headlines/{data['id']}/"


def put(url: str, **fields: str) -> tuple[int, dict[str, str], str]:
    return curl("-X", "PUT", "-H", "Content-Type: application/json", "-d", json.dumps(fields), url)


HeldCheck = Callable[[], Callable[[Callable[[], bool]], None]]


def articles_curl_session(headline: str, held_check: HeldCheck) -> list[dict[str, str]]:
    """The article's session on ``headline``, with curl: GET + ETag, 304, a ``Wait`` that
    times out into 304, a ``Wait`` released by a PUT. Returns every answer's headers.

    ``held_check()`` is called before the released ``Wait`` is sent and returns
    ``until_held(done)``, which returns once whoever holds requests (this server, or
    Pushpin) shows that request held, and fails if ``done()`` (it was answered) first.
    The PUT is sent only then: a request that came after the PUT would be answered from
    history, at once, with the same 200, and prove nothing about holding."""
    seen = []
    status, headers, body = curl(headline)  # the current value with an ETag
    seen.append(headers)
    assert status == 200
    etag = headers["etag"]
    assert re.fullmatch(r'"[A-Za-z0-9]+:\d+"', etag)
    assert json.loads(body)["type"] == "none"
    status, headers, _ = curl("-H", f"If-None-Match: {etag}", headline)  # current: 304
    seen.append(headers)
    assert status == 304 and headers["etag"] == etag
    start = time.monotonic()  # a long-poll that times out: 304 after Wait seconds
    status, headers, _ = curl("-H", f"If-None-Match: {etag}", "-H", "Wait: 1", headline)
    seen.append(headers)
    assert status == 304 and headers["etag"] == etag
    assert 0.9 < time.monotonic() - start < 10
    # a long-poll released by a PUT: 200 with the new object and its ETag, at once
    result: dict[str, Any] = {}
    held = threading.Thread(
        target=lambda: result.update(
            zip(
                ("status", "headers", "body"),
                curl("-H", f"If-None-Match: {etag}", "-H", "Wait: 20", headline),
                strict=True,
            )
        )
    )
    until_held = held_check()
    start = time.monotonic()
    held.start()
    until_held(lambda: not held.is_alive())
    assert held.is_alive() and not result  # held, not answered
    status, headers, body = put(headline, type="normal", text="hello to the world")
    assert status == 200
    new_etag = headers["etag"]
    assert new_etag != etag and json.loads(body)["text"] == "hello to the world"
    held.join(20)
    assert time.monotonic() - start < 10
    assert result["status"] == 200, result
    seen.append(result["headers"])
    assert result["headers"]["etag"] == new_etag
    assert json.loads(result["body"])["text"] == "hello to the world"
    assert result["body"].startswith("{\n    ")  # the pretty-printed body, as published
    status, headers, _ = curl("-H", f"If-None-Match: {new_etag}", headline)  # now current
    assert status == 304
    return seen


def topic_of(headline: str) -> str:
    return "headlines." + headline.rstrip("/").rsplit("/", 1)[1]


def held_by_server(server: LiveServer, topic: str) -> HeldCheck:
    """The check for a server that holds the request itself: its hub has a subscriber."""

    def held_check() -> Callable[[Callable[[], bool]], None]:
        # the timed-out Wait before may still be leaving the hub: start from none
        wait_until(lambda: hub_subscribers(server.url, topic) == 0)

        def until_held(done: Callable[[], bool]) -> None:
            wait_until(lambda: done() or hub_subscribers(server.url, topic) > 0)
            assert not done(), "answered before it was held"

        return until_held

    return held_check


def test_the_articles_curl_session(server, headline):
    articles_curl_session(headline, held_by_server(server, topic_of(headline)))


def test_a_get_that_is_stale_answers_at_once(headline):
    _, headers, _ = curl(headline)
    old = headers["etag"]
    put(headline, type="a")
    start = time.monotonic()
    status, headers, body = curl("-H", f"If-None-Match: {old}", "-H", "Wait: 20", headline)
    assert status == 200 and json.loads(body)["type"] == "a"
    assert time.monotonic() - start < 5


@pytest.mark.parametrize(("wait", "status"), [("abc", 400), ("1.5", 400), ("", 400)])
def test_wait_must_be_an_integer(headline, wait, status):
    code, _, body = curl("-H", f"Wait: {wait}" if wait else "Wait;", headline)
    assert code == status and "Wait" in json.loads(body)["error"]


def test_wait_is_clamped(headline):
    _, headers, _ = curl(headline)
    start = time.monotonic()
    status, _, _ = curl("-H", f"If-None-Match: {headers['etag']}", "-H", "Wait: 0", headline)
    assert status == 304 and 0.9 < time.monotonic() - start < 10  # 0 became 1 s


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ("{not json", 400, "JSON"),
        ("[1, 2]", 400, "object"),
        ('{"title": "no type"}', 400, "type"),
        ('{"type": 5}', 400, "type"),
        ('{"type": "x", "text": ' + json.dumps("t" * 10_001) + "}", 413, "text"),
    ],
)
def test_put_bad_input(headline, body, status, words):
    code, headers, answer = curl("-X", "PUT", "-d", body, headline)
    assert code == status and headers["content-type"] == "application/json"
    assert words in json.loads(answer)["error"]


def test_unknown_id_and_wrong_methods(server, headline):
    status, _, body = curl(f"{server.url}/headlines/999999/")
    assert status == 404 and "error" in json.loads(body)
    status, headers, _ = curl("-X", "DELETE", headline)
    assert status == 405 and headers["allow"] == "GET, PUT"
    status, headers, _ = curl(f"{server.url}/headlines/")
    assert status == 405 and headers["allow"] == "POST"


async def test_sse_on_the_same_url_streams_updates(headline):
    async with httpx.AsyncClient(timeout=10) as http:
        async with http.stream("GET", headline, headers={"Accept": "text/event-stream"}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            events = sse_events(r)
            _, headers, _ = await asyncio.to_thread(put, headline, type="sse", text="one")
            e = await next_event(events)
            assert e.event == "update" and json.loads(e.data)["text"] == "one"
            assert f'"{e.id}"' == headers["etag"]  # the event id is the ETag's position


async def subscribed(server: LiveServer, topic: str) -> bool:
    return (await hub(server, topic))["subscribers"] > 0


async def test_websocket_on_the_same_url_receives_each_update(server, headline):
    ws_url = headline.replace("http://", "ws://")
    topic = topic_of(headline)
    async with connect(ws_url, origin=server.url) as ws:
        await wait_for(lambda: subscribed(server, topic))  # the view's hold is listening
        await asyncio.to_thread(put, headline, type="ws", text="over the socket")
        update = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert update["type"] == "ws" and update["text"] == "over the socket"
        await ws.send("ignored")  # what the client sends is read and ignored
        await asyncio.to_thread(put, headline, type="ws", text="again")
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["text"] == "again"


async def test_websocket_to_an_unknown_headline_or_foreign_origin_is_refused(server):
    with pytest.raises(InvalidStatus) as e:
        async with connect(
            f"ws://{server.host}:{server.port}/headlines/999999/", origin=server.url
        ):
            pass
    assert e.value.response.status_code == 404
    with pytest.raises(InvalidStatus) as e:
        async with connect(
            f"ws://{server.host}:{server.port}/headlines/1/", origin="http://evil.example"
        ):
            pass
    assert e.value.response.status_code == 403
