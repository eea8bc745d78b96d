"""Several tidings processes sharing one Redis, and what happens when things break.

Real uvicorn servers (``live_server``), a real ``redis-server`` per test, WebSocket
clients. Faults are real: Redis shut down and restarted, flushed by a restart without
data, its pub/sub connections killed, a server process killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import APP, server_env
from tests.redis_server import RedisServer, redis_server
from tidings.brokers import broker_from_url
from tidings.core.messages import HistoryPolicy, Position
from tidings.exceptions import BrokerError
from tidings.testing import Client, LiveServer, RequestFailed, live_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIG = HistoryPolicy(size=20_000, ttl=600)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as r:
        yield r


def tidings_server(url: str, **settings: Any) -> contextlib.AbstractContextManager[LiveServer]:
    return live_server(APP, env=server_env({"BROKER": url, **settings}))


def client(server: LiveServer) -> Client:
    return Client(server.ws_url, origin=server.url)


async def until(condition: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await asyncio.sleep(0.05)


async def messages(c: Client, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    return [await c.next_message(timeout) for _ in range(count)]


def offsets(frames: list[dict[str, Any]]) -> list[int]:
    return [Position.parse(f["position"]).offset for f in frames]


# -- two processes, one Redis ------------------------------------------------------------
async def test_a_publish_on_one_server_reaches_the_clients_of_the_other(redis):
    with tidings_server(redis.url) as s1, tidings_server(redis.url) as s2:
        async with client(s1) as a, client(s2) as b:
            await a.subscribe("test.cross")
            await b.subscribe("test.cross")
            sent = await b.publish("test.cross", {"from": "b"})
            (got_a,), (got_b,) = await messages(a, 1), await messages(b, 1)
            assert got_a["data"] == got_b["data"] == {"from": "b"}
            assert got_a["position"] == got_b["position"] == sent["position"]
            sent = await a.publish("test.cross", {"from": "a"}, event="hello")
            (got_b,) = await messages(b, 1)
            assert (got_b["data"], got_b["event"]) == ({"from": "a"}, "hello")
            assert Position.parse(got_b["position"]).offset == 2


async def test_one_redis_subscription_per_topic_per_process_over_few_connections(redis):
    """20 clients on two topics: each server subscribes each topic once, holds one
    pub/sub connection and a few others, and drops a topic after its last subscriber."""
    admin = redis.client()

    def numsub(topic: str) -> int:
        return int(dict(admin.pubsub_numsub(f"tidings:0:{{{topic}}}"))[f"tidings:0:{{{topic}}}"])

    with tidings_server(redis.url) as s1, tidings_server(redis.url) as s2:
        clients = [client(s1 if i % 2 else s2) for i in range(20)]
        async with contextlib.AsyncExitStack() as stack:
            for c in clients:
                await stack.enter_async_context(c)
                await c.subscribe("test.shared")
            await clients[0].subscribe("test.alone")
            assert numsub("test.shared") == 2  # one per process
            assert numsub("test.alone") == 1
            await clients[0].publish("test.shared", "hi")
            for c in clients:
                assert (await messages(c, 1))[0]["data"] == "hi"
            mine = admin.client_id()
            theirs = [c for c in admin.client_list() if int(c["id"]) != mine]
            assert sum(1 for c in theirs if "P" in c["flags"]) == 2  # pub/sub: one each
            assert len(theirs) <= 2 * (1 + 8), theirs  # and at most max_connections more
        await until(lambda: numsub("test.shared") == 0 and numsub("test.alone") == 0, 10)


async def test_a_process_without_a_server_publishes_to_the_servers_clients(redis):
    """A management command, a worker: tidings.publish() with no event loop at all."""
    code = (
        "import django; django.setup(); import tidings\n"
        "print(tidings.publish('test.cmd', {'from': 'command'}))\n"
        "print(tidings.publish('test.cmd', [1, 2], event='second'))\n"
    )
    with tidings_server(redis.url) as s:
        async with client(s) as a:
            await a.subscribe("test.cmd")
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-c", code],
                env={**os.environ, **server_env({"BROKER": redis.url})},
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            printed = done.stdout.split()
            got = await messages(a, 2)
            assert [m["position"] for m in got] == printed
            assert [(m["event"], m["data"]) for m in got] == [
                ("message", {"from": "command"}),
                ("second", [1, 2]),
            ]


# -- faults ------------------------------------------------------------------------------
class Publisher:
    """Publishes ``count`` numbered messages from a thread, as a web process would; keeps
    what was acknowledged and what raised BrokerError (anything else is a failure)."""

    def __init__(self, url: str, topic: str, count: int) -> None:
        self.broker = broker_from_url(url)
        self.topic = topic
        self.count = count
        self.acked: dict[int, Position] = {}
        self.failed: list[int] = []
        self.crashed: list[BaseException] = []
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        for i in range(self.count):
            try:
                self.acked[i] = self.broker.publish(self.topic, "m", str(i), BIG)
            except BrokerError:
                self.failed.append(i)
            except BaseException as e:  # pragma: no cover - reported by the test
                self.crashed.append(e)
                return

    def start(self) -> Publisher:
        self.thread.start()
        return self

    async def join(self) -> None:
        await until(lambda: not self.thread.is_alive(), 120, "the publisher")
        assert not self.crashed


@pytest.mark.parametrize("outage", ["shutdown", "sigstop"])
async def test_redis_away_for_5s_while_10000_messages_are_published(redis, outage):
    """Each publish is acknowledged or raises; a client resuming with ``since`` afterwards
    gets every acknowledged message, in order, once. So does a client that stayed
    connected throughout (its server re-subscribes and fills the gap from history).

    ``shutdown``: Redis exits (saving a snapshot) and starts again: connections are
    refused meanwhile. ``sigstop``: Redis freezes: connections hang, publishes time out,
    and those stuck in its sockets must be refused when it thaws (their deadline passed).
    """
    topic = "test.outage"
    url = redis.url + "?socket_timeout=1&socket_connect_timeout=1&publish_timeout=2"
    with tidings_server(redis.url, QUEUE_SIZE=50_000) as s:
        async with client(s) as live:
            start = Position.parse((await live.subscribe(topic))["position"])
            pub = Publisher(url, topic, 10_000).start()
            await until(lambda: len(pub.acked) >= 1000, 60, "1000 acknowledged publishes")
            if outage == "shutdown":
                redis.stop(save=True)  # down, with its data on disk
                await asyncio.sleep(5)
                redis.start()  # back, with the data
            else:
                redis.pause()
                await asyncio.sleep(5)
                redis.resume()
            await pub.join()
            acked = sorted(pub.acked)
            assert pub.failed, "the outage was not felt"
            acked_offsets = [pub.acked[i].offset for i in acked]
            assert acked_offsets == sorted(acked_offsets)

            async with client(s) as resumed:
                reply = await resumed.subscribe(topic, since=str(start))
                assert reply["recovered"] is True
                head = Position.parse(reply["position"]).offset
                replay = await messages(resumed, head)
            stayed = await messages(live, head, timeout=60)

    for frames in (replay, stayed):
        numbers = [f["data"] for f in frames]
        assert offsets(frames) == list(range(1, head + 1))  # in order, no gap, none twice
        assert numbers == sorted(set(numbers))
        assert set(acked) <= set(numbers)  # every acknowledged message
        unknown = set(numbers) - set(acked)
        # ...and nothing else, but for at most the one publish that was in flight when
        # Redis went away: executed, its reply lost, so the caller got BrokerError.
        assert unknown <= set(pub.failed) and len(unknown) <= 1, unknown
        assert [f["position"] for f in frames if f["data"] in pub.acked] == [
            str(pub.acked[i]) for i in acked
        ]


async def test_redis_back_empty_changes_the_epoch_and_subscriptions_come_back(redis):
    topic = "test.empty"
    with tidings_server(redis.url) as s:
        async with client(s) as a:
            await a.subscribe(topic)
            old = Position.parse((await a.publish(topic, "before"))["position"])
            await messages(a, 1)
            redis.restart()  # SIGKILL, start again with nothing
            frame = None
            deadline = time.monotonic() + 30
            while frame is None:  # the server reconnects by itself; publish until it has
                assert time.monotonic() < deadline, s.log()[-3000:]
                with contextlib.suppress(RequestFailed):
                    await a.publish(topic, "after")
                with contextlib.suppress(asyncio.TimeoutError):
                    frame = await a.next_message(timeout=0.5)
            assert frame["data"] == "after"
            assert Position.parse(frame["position"]).epoch != old.epoch
            async with client(s) as resumed:
                reply = await resumed.subscribe(topic, since=str(old))
                assert reply["recovered"] is False
    assert "connected again" in s.log()


async def test_killed_pubsub_connection_loses_nothing(redis):
    """CLIENT KILL TYPE pubsub, three times, under a stream of publishes."""
    topic = "test.kill"
    with tidings_server(redis.url, QUEUE_SIZE=50_000) as s:
        async with client(s) as a:
            await a.subscribe(topic)
            pub = Publisher(redis.url, topic, 3000).start()
            killer = redis.client()
            for n in (500, 1200, 2000):
                await until(lambda n=n: len(pub.acked) >= n, 60)
                killer.client_kill_filter(_type="pubsub")
            await pub.join()
            assert not pub.failed
            got = await messages(a, 3000, timeout=60)
            assert offsets(got) == list(range(1, 3001))
            assert [m["data"] for m in got] == list(range(3000))
            with pytest.raises(asyncio.TimeoutError):
                await a.next_message(timeout=0.5)
    assert s.log().count("connected again") >= 1


async def test_a_killed_server_s_client_resumes_on_the_other_and_its_presence_expires(redis):
    from tests.test_websocket import login

    ttl, sync = 2, 0.5
    url = f"{redis.url}?presence_ttl={ttl}"
    topic = "presence.failover"
    with (
        tidings_server(url, PRESENCE_SYNC=sync) as s1,
        tidings_server(url, PRESENCE_SYNC=sync) as s2,
    ):
        cookies = {n: await asyncio.to_thread(login, s2, n, f"pw-{n}-1") for n in ("ann", "wat")}
        async with Client(s2.ws_url, origin=s2.url, cookies=cookies["wat"]) as watcher:
            await watcher.subscribe(topic, presence={"state": "watching"})
            ann = await Client(s1.ws_url, origin=s1.url, cookies=cookies["ann"]).__aenter__()
            await ann.subscribe(topic, presence={"state": "reading"})

            async def members() -> dict[str, Any]:
                state: dict[str, Any] = (await watcher.request("presence", topic=topic))["state"]
                return state

            await until_async(lambda: _has(members, "ann"))
            [ann_ref] = [m["ref"] for m in (await members())["ann"]["metas"]]
            for i in range(10):
                await watcher.publish(topic, i)
            last = (await messages(ann, 10))[-1]["position"]

            s1.process.kill()  # SIGKILL: no goodbye, no cleanup
            s1.process.wait()
            killed = time.monotonic()
            with contextlib.suppress(Exception):
                await ann.__aexit__(None, None, None)
            for i in range(10, 20):
                await watcher.publish(topic, i)

            async with Client(s2.ws_url, origin=s2.url, cookies=cookies["ann"]) as again:
                reply = await again.subscribe(topic, since=last, presence={"state": "reading"})
                assert reply["recovered"] is True
                assert [m["data"] for m in await messages(again, 10)] == list(range(10, 20))
                await watcher.publish(topic, 20)
                assert (await messages(again, 1))[0]["data"] == 20

                while True:
                    state = await members()
                    refs = {m["ref"] for m in state.get("ann", {}).get("metas", [])}
                    if ann_ref not in refs:
                        break
                    assert time.monotonic() - killed < 30
                    await asyncio.sleep(0.1)
                gone_after = time.monotonic() - killed
                assert sorted(state) == ["ann", "wat"]  # ann is back, through the new connection
    # a crashed process's members leave within TTL + PRESENCE_SYNC (docs/presence.md)
    assert gone_after < ttl + sync + 2, gone_after


async def _has(members: Callable[[], Any], key: str) -> bool:
    return key in await members()


async def until_async(condition: Callable[[], Any], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_health_says_when_redis_is_gone(redis: RedisServer) -> None:
    import httpx

    with tidings_server(redis.url + "?keepalive=1") as srv:
        async with httpx.AsyncClient(base_url=srv.url) as http, client(srv) as c:
            await c.subscribe("test.health")  # the listener runs once a topic is wanted
            assert (await http.get("/realtime/health")).status_code == 200
            redis.stop()
            deadline = time.monotonic() + 30
            while (r := await http.get("/realtime/health")).status_code != 503:
                assert time.monotonic() < deadline, r.text
                await asyncio.sleep(0.2)
            assert r.json() == {"ok": False}
            redis.start()
            deadline = time.monotonic() + 30
            while (await http.get("/realtime/health")).status_code != 200:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)


async def test_presence_across_processes_and_a_killed_process_leaves(redis: RedisServer) -> None:
    """Two servers share Redis: a member on each sees the other; when one server is
    killed with SIGKILL, its member leaves the other's view within TTL + PRESENCE_SYNC."""
    from tests.test_presence import Watcher, summary
    from tests.test_websocket import login

    url = redis.url + "?presence_ttl=2"
    with (
        tidings_server(url, PRESENCE_SYNC=0.5) as one,
        tidings_server(url, PRESENCE_SYNC=0.5) as two,
    ):
        cookies = {n: await asyncio.to_thread(login, one, n, f"pw-{n}-1") for n in ("alice", "bob")}
        async with Client(one.ws_url, origin=one.url, cookies=cookies["alice"]) as a:
            await a.subscribe("presence.shared", presence={"state": "viewing"})
            wa = Watcher(a, "presence.shared")
            b = Client(two.ws_url, origin=two.url, cookies=cookies["bob"])
            await b.__aenter__()
            await b.subscribe("presence.shared", presence={"state": "editing"})
            wb = Watcher(b, "presence.shared")
            both = {"alice": ["viewing"], "bob": ["editing"]}
            await wa.until(lambda s: summary(s) == both)
            await wb.until(lambda s: summary(s) == both)
            two.process.kill()  # no goodbye: its entries must expire
            start = time.monotonic()
            await wa.until(lambda s: summary(s) == {"alice": ["viewing"]}, timeout=15)
            assert time.monotonic() - start < 2 + 0.5 + 3  # TTL + sync interval + slack
            with contextlib.suppress(Exception):
                await b.__aexit__(None, None, None)
