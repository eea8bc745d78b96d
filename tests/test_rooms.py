"""The rooms demo (Channels 1 chat rooms) over real HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from tidings.testing import Client, RequestFailed

LABEL = re.compile(r"[a-z]+-[a-z]+-\d{4}")


def test_landing_page_links_every_demo(server):
    r = httpx.get(server.url + "/")
    assert r.status_code == 200
    assert 'href="/rooms/"' in r.text


def test_new_room_redirects_to_a_haiku_label(server):
    labels = set()
    for _ in range(3):
        r = httpx.get(server.url + "/rooms/new/")
        assert r.status_code == 302
        m = re.fullmatch(r"/rooms/([^/]+)/", r.headers["location"])
        assert m and LABEL.fullmatch(m.group(1)), r.headers["location"]
        labels.add(m.group(1))
    assert len(labels) == 3
    page = httpx.get(server.url + r.headers["location"])
    assert page.status_code == 200 and m.group(1) in page.text


def test_unknown_label_creates_the_room(server):
    from demo.rooms.models import Room

    assert not Room.objects.filter(label="brand-new-room").exists()
    r = httpx.get(server.url + "/rooms/brand-new-room/")
    assert r.status_code == 200 and "brand-new-room" in r.text
    assert Room.objects.filter(label="brand-new-room").exists()
    assert httpx.get(server.url + "/rooms/not a label/").status_code == 404


async def test_messages_are_validated_stored_and_broadcast(server):
    from demo.rooms.models import Message

    label = "talk-room-1"
    await asyncio.to_thread(httpx.get, f"{server.url}/rooms/{label}/")
    async with (
        Client(server.ws_url, origin=server.url) as a,
        Client(server.ws_url, origin=server.url) as b,
    ):
        await a.subscribe(f"rooms.{label}")
        await b.subscribe(f"rooms.{label}")
        reply = await a.publish(f"rooms.{label}", {"handle": "ann", "message": " hello "})
        for c in (a, b):
            m = await c.next_message()
            assert m["data"]["handle"] == "ann" and m["data"]["message"] == "hello"
            assert m["data"]["timestamp"] and m["position"] == reply["position"]
        stored = await Message.objects.select_related("room").aget(pk=m["data"]["id"])
        assert (stored.handle, stored.message, stored.room.label) == ("ann", "hello", label)
        for bad, why in [
            ({"handle": "", "message": "x"}, "handle"),
            ({"handle": "ann", "message": "   "}, "message"),
            ({"handle": "a" * 65, "message": "x"}, "64"),
            ({"handle": "ann", "message": "x" * 2001}, "2000"),
            ("not an object", "handle"),
        ]:
            with pytest.raises(RequestFailed) as e:
                await a.publish(f"rooms.{label}", bad)
            assert e.value.code == "rejected" and why in e.value.message
        with pytest.raises(RequestFailed) as e:
            await a.publish("rooms.no-such-room-xyz", {"handle": "a", "message": "b"})
        assert e.value.code == "rejected"


def test_room_page_renders_the_last_50_oldest_first(server):
    from datetime import timedelta

    from demo.rooms.models import Message, Room
    from django.utils import timezone

    room = Room.objects.create(label="busy-room-5000")
    start = timezone.now() - timedelta(hours=1)
    Message.objects.bulk_create(
        Message(
            room=room, handle="h", message=f"msg-{i:03d}", timestamp=start + timedelta(seconds=i)
        )
        for i in range(60)
    )
    page = httpx.get(server.url + "/rooms/busy-room-5000/").text
    shown = re.findall(r"msg-\d{3}", page)
    assert shown == [f"msg-{i:03d}" for i in range(10, 60)]
