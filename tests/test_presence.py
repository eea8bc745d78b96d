"""Presence over WebSocket: state then diffs, several tabs, meta updates, privacy."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from tests.test_websocket import login
from tidings.testing import Client, RequestFailed


def apply(state: dict[str, Any], frame: dict[str, Any]) -> dict[str, Any]:
    """What a client does with a presence frame (Phoenix's syncState/syncDiff)."""
    if frame["op"] == "presence":
        return copy.deepcopy(frame["state"])
    state = copy.deepcopy(state)
    for key, member in frame["leaves"].items():
        gone = {m["ref"] for m in member["metas"]}
        if key in state:
            state[key]["metas"] = [m for m in state[key]["metas"] if m["ref"] not in gone]
            if not state[key]["metas"]:
                del state[key]
    for key, member in frame["joins"].items():
        if key in state:
            state[key]["metas"] += member["metas"]
            state[key]["info"] = member["info"]
        else:
            state[key] = copy.deepcopy(member)
    return state


async def presence_frame(c: Client, topic: str, timeout: float = 10) -> dict[str, Any]:
    while True:
        frame = await c.next_frame(timeout)
        if frame.get("op") in ("presence", "presence_diff") and frame["topic"] == topic:
            return frame


class Watcher:
    """A client that keeps its view of a topic's presence up to date."""

    def __init__(self, client: Client, topic: str) -> None:
        self.client, self.topic, self.state = client, topic, {}

    async def next(self) -> dict[str, Any]:
        frame = await presence_frame(self.client, self.topic)
        self.state = apply(self.state, frame)
        return frame

    async def until(self, predicate, timeout: float = 15) -> None:
        async def loop():
            while not predicate(self.state):
                await self.next()

        await asyncio.wait_for(loop(), timeout)


def summary(state: dict[str, Any]) -> dict[str, list[str]]:
    return {k: sorted(m.get("state", "") for m in v["metas"]) for k, v in state.items()}


@pytest.fixture
async def users(server):
    return {
        name: await asyncio.to_thread(login, server, name, f"pw-{name}-1")
        for name in ("alice", "bob")
    }


async def test_joins_tabs_updates_and_leaves(server, users):
    topic = "presence.doc1"
    url, origin = server.ws_url, server.url
    async with Client(url, origin=origin, cookies=users["alice"]) as a1:
        await a1.subscribe(topic, presence={"state": "viewing"})
        wa = Watcher(a1, topic)
        first = await wa.next()
        assert first["op"] == "presence"  # the full state comes first
        await wa.until(lambda s: summary(s) == {"alice": ["viewing"]})
        async with Client(url, origin=origin, cookies=users["bob"]) as b:
            await b.subscribe(topic, presence={"state": "editing"})
            wb = Watcher(b, topic)
            await wb.until(lambda s: summary(s) == {"alice": ["viewing"], "bob": ["editing"]})
            await wa.until(lambda s: summary(s) == {"alice": ["viewing"], "bob": ["editing"]})
            async with Client(url, origin=origin, cookies=users["alice"]) as a2:
                await a2.subscribe(topic, presence={"state": "viewing"})
                # a second tab: the same member, one more meta (not a first join)
                await wb.until(
                    lambda s: summary(s) == {"alice": ["viewing", "viewing"], "bob": ["editing"]}
                )
                assert len(wb.state["alice"]["metas"]) == 2
                # a connection updates its meta: its old meta leaves, the new one joins
                await a2.request("presence", topic=topic, meta={"state": "editing"})
                await wb.until(
                    lambda s: summary(s) == {"alice": ["editing", "viewing"], "bob": ["editing"]}
                )
            # closing a tab gives a leave at once; alice is still there with one tab
            await wb.until(
                lambda s: summary(s) == {"alice": ["viewing"], "bob": ["editing"]}, timeout=5
            )
        await wa.until(
            lambda s: summary(s) == {"alice": ["viewing"]}, timeout=5
        )  # bob's last leave


async def test_query_and_what_a_member_shows(server, users):
    topic = "presence.doc2"
    async with (
        Client(server.ws_url, origin=server.url, cookies=users["alice"]) as a,
        Client(server.ws_url, origin=server.url) as anon,
    ):
        await a.subscribe(topic, presence={"state": "viewing"})
        await anon.subscribe(topic)  # subscribed without presence: no presence frames
        reply = await anon.request("presence", topic=topic)
        assert list(reply["state"]) == ["alice"]
        member = reply["state"]["alice"]
        assert member["info"] == {"name": "alice"}  # only what the app chose to show
        (meta,) = member["metas"]
        assert set(meta) == {"ref", "state"} and meta["state"] == "viewing"
        assert len(meta["ref"]) >= 12  # a random ref, not a session or user id
        with pytest.raises(asyncio.TimeoutError):
            await presence_frame(anon, topic, timeout=0.5)


async def test_anonymous_watchers_are_not_members(server, users):
    topic = "presence.doc3"
    async with Client(server.ws_url, origin=server.url) as anon:
        await anon.subscribe(topic, presence={"state": "viewing"})
        w = Watcher(anon, topic)
        assert (await w.next())["op"] == "presence"
        assert w.state == {}  # the member function said None: watching, not tracked
        async with Client(server.ws_url, origin=server.url, cookies=users["bob"]) as b:
            await b.subscribe(topic, presence=True)  # true: watch only
            with pytest.raises(RequestFailed) as e:
                await b.request("presence", topic=topic, meta={"state": "x"})
            assert e.value.code == "bad_request"  # a watcher has no meta to update
            # a member joins after the two watchers: the first change anyone is told of is
            # that join alone; a join of either watcher would have come before it
            async with Client(server.ws_url, origin=server.url, cookies=users["alice"]) as a:
                await a.subscribe(topic, presence={"state": "editing"})
                diff = await w.next()
                assert diff["op"] == "presence_diff"
                assert (list(diff["joins"]), diff["leaves"]) == (["alice"], {})
                assert summary(w.state) == {"alice": ["editing"]}
                for c in (anon, b, a):  # and asked now, the server shows alice alone
                    reply = await c.request("presence", topic=topic)
                    assert summary(reply["state"]) == {"alice": ["editing"]}


async def test_counts_only(server, users):
    topic = "crowd.big"
    async with Client(server.ws_url, origin=server.url) as watcher:
        await watcher.subscribe(topic, presence=True)
        assert (await presence_frame(watcher, topic))["count"] == {"members": 0, "connections": 0}
        async with (
            Client(server.ws_url, origin=server.url, cookies=users["alice"]) as a1,
            Client(server.ws_url, origin=server.url, cookies=users["alice"]) as a2,
        ):
            await a1.subscribe(topic, presence={})
            await a2.subscribe(topic, presence={})
            counts = []
            while not counts or counts[-1] != {"members": 1, "connections": 2}:
                frame = await presence_frame(watcher, topic)
                assert "joins" not in frame and "state" not in frame  # no member list shipped
                counts.append(frame["count"])
        while counts[-1] != {"members": 0, "connections": 0}:
            counts.append((await presence_frame(watcher, topic))["count"])


async def test_only_subscribers_see_presence(server, users):
    async with (
        Client(server.ws_url, origin=server.url, cookies=users["alice"]) as a,
        Client(server.ws_url, origin=server.url) as anon,
    ):
        await a.subscribe("secret.plan", presence={"state": "editing"})
        with pytest.raises(RequestFailed) as e:
            await anon.subscribe("secret.plan", presence=True)
        assert e.value.code == "forbidden"
        with pytest.raises(RequestFailed) as e:
            await anon.request("presence", topic="secret.plan")
        assert e.value.code == "not_subscribed"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"topic": "test.nopresence", "presence": {}}, "bad_request"),  # not tracked
        ({"topic": "presence.x", "presence": "yes"}, "bad_request"),
        ({"topic": "presence.x", "presence": {"ref": "forged"}}, "bad_request"),
        ({"topic": "presence.x", "presence": {"pad": "x" * 2000}}, "bad_request"),
        ({"topic": "tidings.presence.presence.x"}, "invalid_topic"),  # tidings' own topics
    ],
)
async def test_bad_presence_requests(server, fields, code):
    async with Client(server.ws_url, origin=server.url) as c:
        with pytest.raises(RequestFailed) as e:
            await c.request("subscribe", **fields)
        assert e.value.code == code


# -- over SSE and long-poll -------------------------------------------------------------


async def test_presence_over_sse_watch_and_track(server, users):
    import json

    import httpx

    from tests.http_helpers import next_event, sse_events

    topic = "presence.sse1"
    async with Client(server.ws_url, origin=server.url, cookies=users["alice"]) as a:
        await a.subscribe(topic, presence={"state": "viewing"})
        wa = Watcher(a, topic)
        await wa.until(lambda s: summary(s) == {"alice": ["viewing"]})
        params = {"topic": topic, "presence": json.dumps({topic: {"state": "reading"}})}
        async with httpx.AsyncClient(base_url=server.url, cookies=users["bob"], timeout=10) as http:
            async with http.stream("GET", "/realtime/sse", params=params) as r:
                events = sse_events(r)
                assert (await next_event(events)).event == "tidings.open"
                first = await next_event(events)
                assert first.event == "tidings.presence"
                state = apply({}, json.loads(first.data))
                while summary(state) != {"alice": ["viewing"], "bob": ["reading"]}:
                    e = await next_event(events)
                    assert e.event == "tidings.presence_diff"
                    state = apply(state, json.loads(e.data))
                # the WebSocket member sees the SSE member, who is tracked while streaming
                await wa.until(lambda s: summary(s) == {"alice": ["viewing"], "bob": ["reading"]})
        await wa.until(
            lambda s: summary(s) == {"alice": ["viewing"]}, timeout=5
        )  # stream gone: left


async def test_presence_in_long_poll_answers(server, users):
    import json

    import httpx

    topic = "presence.lp1"
    async with Client(server.ws_url, origin=server.url, cookies=users["alice"]) as a:
        await a.subscribe(topic, presence={"state": "editing"})
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            params = {"topic": topic, "timeout": 0, "presence": json.dumps({topic: True})}
            for _ in range(50):
                body = (await http.get("/realtime/poll", params=params)).json()
                if "alice" in body["presence"][topic]["state"]:
                    break
                await asyncio.sleep(0.1)
            assert summary(body["presence"][topic]["state"]) == {"alice": ["editing"]}
            bad = await http.get(
                "/realtime/poll",
                params={"topic": "test.x", "presence": json.dumps({"test.x": True})},
            )
            assert bad.status_code == 400 and bad.json()["error"]["topic"] == "test.x"
            bad = await http.get("/realtime/poll", params={"topic": topic, "presence": "[1]"})
            assert bad.status_code == 400
