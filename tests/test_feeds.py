"""Model change feeds: after commit only, snapshot plus changes without a race, privacy."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.test_websocket import login
from tidings.testing import Client, RequestFailed


async def write(server, **body) -> int:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        r = await http.post("/test/write", json=body)
        assert r.status_code == 200, r.text
        return r.json()["pk"]


async def test_changes_are_published_after_commit_and_never_on_rollback(server):
    async with Client(server.ws_url, origin=server.url) as c:
        await c.subscribe("counters.values")
        await write(server, model="counter", name="rolled-back", increments=3, rollback=True)
        pk = await write(server, model="counter", name="kept", increments=2)
        got = [(await c.next_message())["data"] for _ in range(3)]
        assert [(g["action"], g["pk"], g["data"]) for g in got] == [
            ("create", pk, {"name": "kept", "value": 0}),
            ("update", pk, {"name": "kept", "value": 1}),
            ("update", pk, {"name": "kept", "value": 2}),
        ]
        assert got[1]["changed"] == ["value"] and got[0]["changed"] == ["name", "value"]
        with pytest.raises(asyncio.TimeoutError):
            await c.next_message(timeout=0.5)  # nothing from the rolled-back transaction
        await write(server, model="counter", name="kept", delete=True)
        deleted = (await c.next_message())["data"]
        assert (deleted["action"], deleted["pk"]) == ("delete", pk)


async def test_the_object_topic_gets_only_that_object(server):
    pk = await write(server, model="counter", name="solo")
    async with Client(server.ws_url, origin=server.url) as c:
        await c.subscribe(f"counters.values.{pk}", initial=True)
        snapshot = await c.next_frame()
        assert snapshot["op"] == "snapshot" and [r["pk"] for r in snapshot["rows"]] == [pk]
        await write(server, model="counter", name="other", increments=1)
        await write(server, model="counter", name="solo", increments=1)
        m = await c.next_message()
        assert m["data"]["pk"] == pk and m["data"]["data"]["value"] == 1


async def test_snapshot_then_changes_without_a_race(server):
    """While one counter is incremented 200 times, 20 clients subscribe with initial at
    different moments: each one's snapshot plus the changes after it ends at the final
    value, with no change applied twice and none missing."""
    pk = await write(server, model="counter", name="raced")

    async def follower(delay: float) -> int:
        await asyncio.sleep(delay)
        async with Client(server.ws_url, origin=server.url) as c:
            await c.subscribe(f"counters.values.{pk}", initial=True)
            snapshot = await c.next_frame()
            value = snapshot["rows"][0]["data"]["value"]
            while value < 200:
                change = (await c.next_message(timeout=30))["data"]
                assert change["data"]["value"] == value + 1, "a change missing or repeated"
                value = change["data"]["value"]
            return value

    followers = [asyncio.create_task(follower(i * 0.05)) for i in range(20)]
    for _ in range(20):
        await write(server, model="counter", name="raced", increments=10)
        await asyncio.sleep(0.03)
    assert await asyncio.gather(*followers) == [200] * 20


async def test_private_rows_are_hidden_in_snapshots_and_changes(server):
    cookies = {n: await asyncio.to_thread(login, server, n, f"pw-{n}-1") for n in ("olga", "pete")}
    await write(server, model="note", owner="olga", text="olga's secret", private=True)
    await write(server, model="note", owner="olga", text="for everyone")
    async with (
        Client(server.ws_url, origin=server.url, cookies=cookies["olga"]) as olga,
        Client(server.ws_url, origin=server.url, cookies=cookies["pete"]) as pete,
    ):
        await olga.subscribe("notes", initial=True)
        await pete.subscribe("notes", initial=True)
        seen = lambda frame: sorted(r["data"]["text"] for r in frame["rows"])  # noqa: E731
        olga_rows = seen(await olga.next_frame())
        pete_rows = seen(await pete.next_frame())
        assert "olga's secret" in olga_rows and "olga's secret" not in pete_rows
        assert "for everyone" in pete_rows
        await write(server, model="note", owner="olga", text="another secret", private=True)
        await write(server, model="note", owner="pete", text="pete says hi")
        assert (await olga.next_message())["data"]["data"]["text"] == "another secret"
        assert (await pete.next_message())["data"]["data"][
            "text"
        ] == "pete says hi"  # not the secret
        assert (await olga.next_message())["data"]["data"]["text"] == "pete says hi"


async def test_feed_rules_and_bad_requests(server):
    async with Client(server.ws_url, origin=server.url) as anon:
        with pytest.raises(RequestFailed) as e:
            await anon.subscribe("chat.messages", initial=True)  # the chat feed: logged in only
        assert e.value.code == "forbidden"
        with pytest.raises(RequestFailed) as e:
            await anon.subscribe("test.x", initial=True)
        assert e.value.code == "bad_request"  # not a model feed
        with pytest.raises(RequestFailed) as e:
            await anon.request("subscribe", topic="counters.values", initial="yes")
        assert e.value.code == "bad_request"
        with pytest.raises(RequestFailed) as e:
            await anon.publish("chat.say", {"text": "hi"})
        assert e.value.code == "forbidden"


async def test_counter_commands(server):
    async with Client(server.ws_url, origin=server.url) as c:
        await c.subscribe("counters.values")
        await c.publish("counters.commands", {"action": "create", "name": "clicks"})
        created = (await c.next_message())["data"]
        await c.publish("counters.commands", {"action": "increment", "pk": created["pk"]})
        assert (await c.next_message())["data"]["data"] == {"name": "clicks", "value": 1}
        for bad in (
            {"action": "create", "name": ""},
            {"action": "create", "name": "clicks"},
            {"action": "increment", "pk": 999999},
            {"action": "explode"},
        ):
            with pytest.raises(RequestFailed) as e:
                await c.publish("counters.commands", bad)
            assert e.value.code == "rejected"
        await c.publish("counters.commands", {"action": "delete", "pk": created["pk"]})
        assert (await c.next_message())["data"]["action"] == "delete"


async def test_a_row_created_after_the_snapshot_can_be_deleted_right_away(server):
    async with Client(server.ws_url, origin=server.url) as c:
        await c.subscribe("counters.values", initial=True)
        assert (await c.next_frame())["op"] == "snapshot"
        pk = await write(server, model="counter", name="short-lived")
        assert (await c.next_message())["data"]["action"] == "create"
        await write(server, model="counter", name="short-lived", delete=True)
        deleted = (await c.next_message())["data"]  # not mistaken for one the snapshot showed
        assert (deleted["action"], deleted["pk"]) == ("delete", pk)
