"""The broker contract (tidings/brokers/base.py), run against every broker.

The Redis broker runs against a real ``redis-server`` (tests/redis_server.py), each test
under its own key prefix.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.redis_server import RedisServer, redis_server
from tidings.brokers import Broker, broker_from_url
from tidings.core.messages import HistoryPolicy, Message, Position

KEEP = HistoryPolicy(size=100, ttl=300)
BROKERS = ["memory", "redis"]


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as r:
        yield r


@pytest.fixture(params=BROKERS)
def broker_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    server: RedisServer = request.getfixturevalue("redis")
    return f"{server.url}?prefix=t{secrets.token_hex(4)}"


@pytest.fixture
async def broker(broker_url: str) -> AsyncIterator[tuple[Broker, list[Message]]]:
    b = broker_from_url(broker_url)
    got: list[Message] = []
    await b.start(got.append)
    yield b, got
    await b.close()


async def settle(got: list[Message] | None = None, count: int = 0) -> None:
    """Let deliveries happen: until ``got`` holds ``count`` messages (a broker with a
    server delivers asynchronously), then a few more turns of the loop."""
    deadline = time.monotonic() + 10
    while got is not None and len(got) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    for _ in range(3):
        await asyncio.sleep(0.01)


async def test_offsets_are_consecutive_per_topic(broker):
    b, got = broker
    await b.subscribe("a")
    await b.subscribe("b")
    pa = [await b.apublish("a", "m", str(i), KEEP) for i in range(3)]
    pb = await b.apublish("b", "m", "0", KEEP)
    assert [p.offset for p in pa] == [1, 2, 3]
    assert pb.offset == 1
    assert len({p.epoch for p in pa}) == 1
    await settle(got, 4)
    assert [(m.topic, m.position.offset, m.data_json) for m in got] == [
        ("a", 1, "0"),
        ("a", 2, "1"),
        ("a", 3, "2"),
        ("b", 1, "0"),
    ]


async def test_history_after_a_position(broker):
    b, _ = broker
    first = await b.apublish("h", "m", "1", KEEP)
    await b.apublish("h", "m", "2", KEEP)
    last = await b.apublish("h", "m", "3", KEEP)
    result = await b.history("h", first)
    assert result.recovered and result.position == last
    assert [m.data_json for m in result.messages] == ["2", "3"]
    assert [m.position.offset for m in result.messages] == [2, 3]
    now = await b.history("h", last)
    assert now.recovered and now.messages == ()
    assert (await b.history("h", None)).position == last


async def test_history_of_a_new_topic_is_offset_zero(broker):
    b, _ = broker
    result = await b.history("fresh", None)
    assert result.position.offset == 0 and result.recovered
    assert (await b.history("fresh", result.position)).recovered


async def test_history_refuses_what_it_cannot_promise(broker):
    b, _ = broker
    small = HistoryPolicy(size=2, ttl=300)
    first = await b.apublish("w", "m", "1", small)
    for i in range(2, 6):
        await b.apublish("w", "m", str(i), small)
    gone = await b.history("w", first)  # 4 missed, 2 kept: window exceeded
    assert not gone.recovered and gone.messages == () and gone.position.offset == 5
    kept = await b.history("w", Position(first.epoch, 3))
    assert kept.recovered and [m.data_json for m in kept.messages] == ["4", "5"]
    other_epoch = await b.history("w", Position("zz" + first.epoch, 3))
    assert not other_epoch.recovered and other_epoch.messages == ()
    ahead = await b.history("w", Position(first.epoch, 99))
    assert not ahead.recovered


async def test_history_expires_by_age(broker):
    b, _ = broker
    brief = HistoryPolicy(size=100, ttl=0.2)
    first = await b.apublish("t", "m", "1", brief)
    await b.apublish("t", "m", "2", brief)
    assert (await b.history("t", first)).recovered
    await asyncio.sleep(0.3)
    assert not (await b.history("t", first)).recovered


async def test_disabled_history_still_counts_offsets(broker):
    b, _ = broker
    off = HistoryPolicy(size=0, ttl=300)
    p1 = await b.apublish("n", "m", "1", off)
    p2 = await b.apublish("n", "m", "2", off)
    assert p2.offset == p1.offset + 1
    assert not (await b.history("n", p1)).recovered


async def test_publish_from_threads_keeps_offset_order_in_delivery(broker):
    b, got = broker
    await b.subscribe("t")
    positions: list[Position] = []

    def worker() -> None:
        for i in range(200):
            positions.append(b.publish("t", "m", str(i), KEEP))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        await asyncio.sleep(0.01)
    await settle(got, 800)
    assert sorted(p.offset for p in positions) == list(range(1, 801))
    assert [m.position.offset for m in got] == list(range(1, 801))


async def test_presence_add_remove(broker):
    b, _ = broker
    await b.presence.add("p", "c1", {"name": "ann"})
    await b.presence.add("p", "c2", {"name": "bob"})
    assert await b.presence.entries("p") == {"c1": {"name": "ann"}, "c2": {"name": "bob"}}
    await b.presence.remove("p", "c1")
    assert await b.presence.entries("p") == {"c2": {"name": "bob"}}
    assert await b.presence.entries("nobody") == {}


async def test_concurrent_apublish_is_contiguous_and_delivered_in_order(broker):
    b, got = broker
    await b.subscribe("c")

    async def task(n: int) -> list[Position]:
        return [await b.apublish("c", "m", f"{n}.{i}", KEEP) for i in range(25)]

    positions = [p for ps in await asyncio.gather(*(task(n) for n in range(8))) for p in ps]
    assert sorted(p.offset for p in positions) == list(range(1, 201))
    await settle(got, 200)
    assert [m.position.offset for m in got] == list(range(1, 201))
    by_offset = {p.offset: p for p in positions}
    assert all(m.position == by_offset[m.position.offset] for m in got)


async def test_a_message_carries_event_data_formats_and_time(broker):
    b, got = broker
    await b.subscribe("x")
    first = await b.apublish("x", "created", '{"a":[1,"é"]}', KEEP, '{"sse":"a\\nb"}')
    await b.apublish("x", "m", "null", KEEP)
    await settle(got, 2)
    replay = await b.history("x", Position(first.epoch, 0))
    for messages in (got, list(replay.messages)):
        m, plain = messages
        assert (m.topic, m.event, m.data, m.position) == ("x", "created", {"a": [1, "é"]}, first)
        assert m.formats_json == '{"sse":"a\\nb"}' and plain.formats_json is None
        assert abs(m.timestamp - time.time()) < 30


async def test_deliveries_resume_after_unsubscribe_and_subscribe(broker):
    b, got = broker
    await b.subscribe("r")
    await b.unsubscribe("r")
    await b.subscribe("r")
    p = await b.apublish("r", "m", "1", KEEP)
    await settle(got, 1)
    assert [m.position for m in got] == [p]


async def test_presence_add_again_replaces_the_info(broker):
    b, _ = broker
    await b.presence.add("q", "c1", {"v": 1})
    await b.presence.add("q", "c1", {"v": 2})
    assert await b.presence.entries("q") == {"c1": {"v": 2}}
    await b.presence.remove("q", "c1")
    await b.presence.remove("q", "c1")  # twice: nothing to do
    assert await b.presence.entries("q") == {}


def test_publish_without_a_running_broker_still_keeps_history(broker_url):
    b = broker_from_url(broker_url)
    p = b.publish("x", "m", "1", KEEP)
    result = asyncio.run(b.history("x", Position(p.epoch, 0)))
    assert result.recovered and [m.data_json for m in result.messages] == ["1"]
    assert time.time() - result.messages[0].timestamp < 5
