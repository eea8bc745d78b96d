"""tidings.client, the Python asyncio client, against a real server: subscribe, publish,
refusals, a session cookie, presence, and a network cut it comes back from."""

from __future__ import annotations

import asyncio
import copy
import os
import secrets
import subprocess
import sys

import httpx
import pytest

from tests.netproxy import proxy
from tests.test_websocket import login
from tidings.client import Backoff, ClientError, Roster, connect, is_newer

FAST = Backoff(initial=0.05, max=0.5)


def topic(prefix: str) -> str:
    return f"{prefix}.{secrets.token_hex(4)}"


async def test_a_publish_reaches_a_subscriber_in_order(server):
    news = topic("test")
    async with connect(server.ws_url) as reader, connect(server.ws_url) as writer:
        sub = await reader.subscribe(news)
        positions = [await writer.publish(news, {"n": n}) for n in range(3)]
        got = [await sub.get(timeout=5) for _ in range(3)]
    assert [m.data for m in got] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert [m.position for m in got] == positions and sub.position == positions[-1]
    assert {m.event for m in got} == {"message"} and {m.topic for m in got} == {news}


async def test_refusals_raise_with_the_servers_code(server):
    async with connect(server.ws_url) as client:
        with pytest.raises(ClientError) as refused:
            await client.subscribe("deny.x")
        assert refused.value.code == "forbidden" and "deny.x" in refused.value.message
        with pytest.raises(ClientError) as refused:
            await client.publish("readonly.x", {"a": 1})
        assert refused.value.code == "forbidden"
        with pytest.raises(ClientError) as refused:
            await client.subscribe("no spaces")
        assert refused.value.code == "invalid_topic"
        await client.ping()  # still connected, still served


async def test_the_session_cookie_is_who_the_client_is(server):
    cookies = await asyncio.to_thread(login, server, "carol", "pw-carol-1")
    async with connect(server.ws_url, cookies=cookies) as carol, connect(server.ws_url) as anon:
        lounge = topic("members")
        sub = await carol.subscribe(lounge)
        with pytest.raises(ClientError):
            await anon.subscribe(lounge)
        await carol.publish(lounge, "hi")
        assert (await sub.get(timeout=5)).data == "hi"


async def test_a_resume_that_cannot_replay_says_so(server):
    async with connect(server.ws_url) as client:
        sub = await client.subscribe(topic("test"), since="zz9:5")
        assert sub.recovered is False and sub.position is not None


async def test_after_a_network_cut_it_resumes_with_nothing_lost_or_repeated(server):
    news, gaps = topic("test"), []
    with proxy("127.0.0.1", server.port) as net:
        far = net.url.replace("http", "ws") + "/realtime/ws"
        async with (
            connect(far, origin=server.url, backoff=FAST) as reader,
            connect(server.ws_url) as writer,
        ):
            sub = await reader.subscribe(news, on_gap=gaps.append)
            for n in range(2):
                await writer.publish(news, n)
            assert [(await sub.get(timeout=5)).data for _ in range(2)] == [0, 1]
            await asyncio.to_thread(net.offline)
            for n in range(2, 5):
                await writer.publish(news, n)  # while the reader is cut off
            await asyncio.to_thread(net.online)
            got = [(await sub.get(timeout=15)).data for _ in range(3)]
            await writer.publish(news, 5)
            got.append((await sub.get(timeout=5)).data)
            with pytest.raises(TimeoutError):
                await sub.get(timeout=0.5)  # and nothing twice
    assert got == [2, 3, 4, 5] and sub.recovered is True and gaps == []


async def test_a_reader_that_falls_behind_is_cut_by_the_server_and_comes_back(make_server):
    """Its queue full, the client stops reading; the server's queue bound cuts it (4009)
    before this process's memory grows; it reconnects, resumes, and reads on in order."""
    gaps: list[object] = []
    with make_server({"QUEUE_SIZE": 20}) as srv:
        async with connect(srv.ws_url, max_queue=1, backoff=FAST) as slow:
            sub = await slow.subscribe("test.behind", on_gap=gaps.append)
            async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
                for _ in range(50):  # 50 MB: more than loopback buffers hold (up to 36 MB)
                    r = await http.post(
                        "/test/publish", json={"topic": "test.behind", "n": 20, "size": 50_000}
                    )
                    assert r.status_code == 200
            # the server cut it; it hears so once it has read what was sent before
            seen = [m.position async for m in limited(sub, 2)]
            assert slow.last_close == (4009, "slow consumer")
            async with httpx.AsyncClient(base_url=srv.url) as http:
                await http.post("/test/publish", json={"topic": "test.behind", "n": 1})
            last = await sub.get(timeout=15)
    offsets = [int(p.rpartition(":")[2]) for p in [*seen, last.position]]
    assert offsets == sorted(set(offsets)) and offsets[-1] == 1001  # in order, none twice
    assert gaps or len(offsets) == 1001  # what history could not replay was said


async def limited(sub, quiet: float):
    """The subscription's messages until none comes for ``quiet`` seconds."""
    while True:
        try:
            yield await sub.get(timeout=quiet)
        except TimeoutError:
            return


async def test_presence_is_kept_current(server):
    room = topic("presence")
    cookies = await asyncio.to_thread(login, server, "dave", "pw-dave-1")
    async with connect(server.ws_url) as watcher:
        seen = await watcher.subscribe(room, presence=True)
        async with connect(server.ws_url, cookies=cookies) as dave:
            mine = await dave.subscribe(room, presence={"state": "reading"})
            await until(lambda: metas(seen.presence, "dave") == [{"state": "reading"}])
            await mine.update({"state": "writing"})
            await until(lambda: metas(seen.presence, "dave") == [{"state": "writing"}])
            assert seen.presence.members["dave"]["info"] == {"name": "dave"}
            state = await dave.presence(room)
            assert list(state["state"]) == ["dave"]
        await until(lambda: "dave" not in seen.presence.members)


async def test_unsubscribe_ends_the_iteration(server):
    news = topic("test")
    async with connect(server.ws_url) as client:
        sub = await client.subscribe(news)
        await sub.unsubscribe()
        assert [m async for m in sub] == []
        await client.publish(news, 1)
        await client.ping()


def metas(roster: Roster | None, key: str) -> list[dict[str, object]]:
    member = roster.members.get(key) if roster else None
    return [{k: v for k, v in m.items() if k != "ref"} for m in member["metas"]] if member else []


async def until(condition, timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


# -- the pure parts -------------------------------------------------------------------


def test_backoff_is_capped_and_jittered():
    b = Backoff(initial=0.5, max=15, factor=2, jitter=0.5)
    assert b.delay(0, random=lambda: 0) == 0.5 and b.delay(3, random=lambda: 0) == 4
    assert b.delay(10, random=lambda: 0) == 15 and b.delay(10, random=lambda: 0.999) > 7.5


def test_positions_order_within_an_epoch_and_a_new_epoch_is_new():
    assert is_newer("a:2", None) and is_newer("a:2", "a:1") and not is_newer("a:1", "a:1")
    assert not is_newer("a:1", "a:2") and is_newer("b:1", "a:9")
    assert is_newer("a:10", "a:9")  # numbers, not strings


def test_a_meta_update_is_a_leave_and_a_join_under_one_ref():
    roster = Roster()
    roster.apply({"op": "presence", "state": {"k": {"info": {}, "metas": [{"ref": "r", "s": 1}]}}})
    roster.apply(
        {
            "op": "presence_diff",
            "joins": {"k": {"info": {}, "metas": [{"ref": "r", "s": 2}]}},
            "leaves": {"k": {"info": {}, "metas": [{"ref": "r", "s": 1}]}},
        }
    )
    assert roster.members["k"]["metas"] == [{"ref": "r", "s": 2}]
    roster.apply({"op": "presence_diff", "joins": {}, "leaves": copy.deepcopy(roster.members)})
    assert roster.members == {}


def test_it_needs_no_django_settings(tmp_path):
    """A service or script imports it without a Django project."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = "import tidings.client as c; print(c.connect('ws://127.0.0.1:1/realtime/ws').origin)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == "http://127.0.0.1:1", done.stderr
