"""The broker contract (:mod:`tidings.brokers.base`) as a pytest kit: a broker that
passes it is a tidings broker.

Subclass :class:`BrokerContract` in a test module (pytest collects it by its ``Test``
name) and say how to make the broker, by URL or by factory::

    from tidings.testing.broker_contract import BrokerContract

    class TestMyBroker(BrokerContract):
        broker_url = "mybroker://localhost"      # a scheme tidings.brokers.BACKENDS knows

    class TestMyOtherBroker(BrokerContract):
        @pytest.fixture
        def new_broker(self, my_server):         # a factory; it may use fixtures
            return lambda: MyBroker(f"mybroker://{my_server.address}")

``new_broker()`` must return a fresh, unstarted broker each time; brokers made by one
test must not see the topics of another (a broker with a server: give each test its own
key prefix or database). Two more fixtures hold a broker to what it stores:
``stored(broker)`` counts the topics it keeps anything for (default: its health's
``streams``), and ``new_broker_freeing(meta_ttl)`` makes one that frees idle topics
after ``meta_ttl`` seconds (default: ``broker_url`` with ``?meta_ttl=``).
:class:`PresenceContract` holds the presence tests
(:class:`~tidings.brokers.base.PresenceStore`); :class:`BrokerContract` includes them,
run on the broker's own store. The tests are marked for pytest-asyncio, so they run in
its strict mode too.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from tidings.brokers import broker_from_url
from tidings.brokers.base import Broker, PresenceStore
from tidings.core.messages import EMPTY, HistoryPolicy, Message, Position

KEEP = HistoryPolicy(size=100, ttl=300)

Started = tuple[Broker, list[Message]]  # a started broker, and what it delivered so far


async def settle(got: list[Message] | None = None, count: int = 0) -> None:
    """Let deliveries happen: until ``got`` holds ``count`` messages (a broker with a
    server delivers asynchronously), then a few more turns of the loop."""
    deadline = time.monotonic() + 10
    while got is not None and len(got) < count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    for _ in range(3):
        await asyncio.sleep(0.01)


class PresenceContract:
    """The :class:`~tidings.brokers.base.PresenceStore` contract; the ``presence``
    fixture gives the store under test (override it to test a store on its own)."""

    @pytest.fixture
    def presence(self) -> PresenceStore:
        pytest.fail(f"{type(self).__name__}: override the `presence` fixture")

    @pytest.mark.asyncio
    async def test_presence_add_remove(self, presence: PresenceStore) -> None:
        await presence.add("p", "c1", {"name": "ann"})
        await presence.add("p", "c2", {"name": "bob"})
        assert await presence.entries("p") == {"c1": {"name": "ann"}, "c2": {"name": "bob"}}
        await presence.remove("p", "c1")
        assert await presence.entries("p") == {"c2": {"name": "bob"}}
        assert await presence.entries("nobody") == {}

    @pytest.mark.asyncio
    async def test_presence_add_again_replaces_the_info(self, presence: PresenceStore) -> None:
        await presence.add("q", "c1", {"v": 1})
        await presence.add("q", "c1", {"v": 2})
        assert await presence.entries("q") == {"c1": {"v": 2}}
        await presence.remove("q", "c1")
        await presence.remove("q", "c1")  # twice: nothing to do
        assert await presence.entries("q") == {}


class BrokerContract(PresenceContract):
    """The broker contract; set :attr:`broker_url` or override the ``new_broker`` fixture."""

    broker_url: ClassVar[str] = ""

    @pytest.fixture
    def new_broker(self) -> Callable[[], Broker]:
        """Makes a fresh, unstarted broker (default: ``broker_from_url(broker_url)``)."""
        if not self.broker_url:
            pytest.fail(f"{type(self).__name__}: set broker_url or override new_broker")
        url = self.broker_url
        return lambda: broker_from_url(url)

    @pytest_asyncio.fixture
    async def broker(self, new_broker: Callable[[], Broker]) -> AsyncIterator[Started]:
        """A started broker and the list its deliveries go to; closed afterwards."""
        b = new_broker()
        got: list[Message] = []
        await b.start(got.append)
        yield b, got
        await b.close()

    @pytest.fixture
    def presence(self, broker: Started) -> PresenceStore:
        return broker[0].presence

    @pytest.fixture
    def stored(self) -> Callable[[Broker], Awaitable[int]]:
        """How many topics a broker keeps anything for (default: ``health()["streams"]``)."""

        async def count(b: Broker) -> int:
            streams = b.health().get("streams")
            if not isinstance(streams, int):
                pytest.fail(f"{type(self).__name__}: override the `stored` fixture")
            return streams

        return count

    @pytest.fixture
    def new_broker_freeing(self) -> Callable[[float], Broker]:
        """Makes a fresh broker that frees idle topics after ``meta_ttl`` seconds."""
        if not self.broker_url:
            pytest.fail(f"{type(self).__name__}: set broker_url or override new_broker_freeing")
        url = self.broker_url
        sep = "&" if "?" in url else "?"
        return lambda meta_ttl: broker_from_url(f"{url}{sep}meta_ttl={meta_ttl}")

    # -- publish and deliver ---------------------------------------------------------
    @pytest.mark.asyncio
    async def test_offsets_are_consecutive_per_topic(self, broker: Started) -> None:
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

    @pytest.mark.asyncio
    async def test_publish_from_threads_keeps_offset_order_in_delivery(
        self, broker: Started
    ) -> None:
        b, got = broker
        await b.subscribe("t")
        positions: list[Position] = []

        def worker() -> None:
            for i in range(200):
                positions.append(b.publish("t", "m", str(i), KEEP))

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):  # noqa: ASYNC110 (threads, no event)
            await asyncio.sleep(0.01)
        await settle(got, 800)
        assert sorted(p.offset for p in positions) == list(range(1, 801))
        assert [m.position.offset for m in got] == list(range(1, 801))

    @pytest.mark.asyncio
    async def test_concurrent_apublish_is_contiguous_and_delivered_in_order(
        self, broker: Started
    ) -> None:
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

    @pytest.mark.asyncio
    async def test_a_message_carries_event_data_formats_and_time(self, broker: Started) -> None:
        b, got = broker
        await b.subscribe("x")
        first = await b.apublish("x", "created", '{"a":[1,"é"]}', KEEP, '{"sse":"a\\nb"}')
        await b.apublish("x", "m", "null", KEEP)
        await settle(got, 2)
        replay = await b.history("x", Position(first.epoch, 0))
        for messages in (got, list(replay.messages)):
            m, plain = messages
            expected: tuple[Any, ...] = ("x", "created", {"a": [1, "é"]}, first)
            assert (m.topic, m.event, m.data, m.position) == expected
            assert m.formats_json == '{"sse":"a\\nb"}' and plain.formats_json is None
            assert abs(m.timestamp - time.time()) < 30

    @pytest.mark.asyncio
    async def test_deliveries_resume_after_unsubscribe_and_subscribe(self, broker: Started) -> None:
        b, got = broker
        await b.subscribe("r")
        await b.unsubscribe("r")
        await b.subscribe("r")
        p = await b.apublish("r", "m", "1", KEEP)
        await settle(got, 1)
        assert [m.position for m in got] == [p]

    def test_publish_without_a_running_broker_still_keeps_history(
        self, new_broker: Callable[[], Broker]
    ) -> None:
        b = new_broker()
        p = b.publish("x", "m", "1", KEEP)
        result = asyncio.run(b.history("x", Position(p.epoch, 0)))
        assert result.recovered and [m.data_json for m in result.messages] == ["1"]
        assert time.time() - result.messages[0].timestamp < 5

    # -- history ---------------------------------------------------------------------
    @pytest.mark.asyncio
    async def test_history_after_a_position(self, broker: Started) -> None:
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

    @pytest.mark.asyncio
    async def test_history_of_a_new_topic_is_offset_zero(self, broker: Started) -> None:
        b, _ = broker
        result = await b.history("fresh", None)
        assert result.position.offset == 0 and result.recovered
        assert (await b.history("fresh", result.position)).recovered

    @pytest.mark.asyncio
    async def test_reading_topics_it_keeps_nothing_of_stores_nothing(
        self, broker: Started, stored: Callable[[Broker], Awaitable[int]]
    ) -> None:
        """Anyone may ask about any topic: the answer must not outlive the question."""
        b, _ = broker
        await b.apublish("kept", "m", "1", KEEP)
        before = await stored(b)
        for i in range(200):
            result = await b.history(f"unknown.{i}", None)
            assert result.position == EMPTY and result.recovered
            assert not (await b.history(f"unknown.{i}", Position("ab12cd34", 3))).recovered
            assert (await b.history(f"unknown.{i}", EMPTY)).recovered
        assert await stored(b) == before == 1

    @pytest.mark.asyncio
    async def test_a_topic_seen_empty_resumes_from_its_first_message(self, broker: Started) -> None:
        b, got = broker
        await b.subscribe("late")
        seen = (await b.history("late", None)).position
        first = await b.apublish("late", "m", "1", KEEP)
        await b.apublish("late", "m", "2", KEEP)
        resumed = await b.history("late", seen)
        assert resumed.recovered and [m.data_json for m in resumed.messages] == ["1", "2"]
        assert first.offset == 1 and resumed.position == Position(first.epoch, 2)
        await settle(got, 2)
        assert [m.data_json for m in got] == ["1", "2"]

    @pytest.mark.asyncio
    async def test_idle_topics_are_freed(
        self,
        new_broker_freeing: Callable[[float], Broker],
        stored: Callable[[Broker], Awaitable[int]],
    ) -> None:
        """A topic with no subscriber here and no history left is freed within its
        ``meta_ttl``; read afterwards it is empty, and resumes as a topic seen empty."""
        b = new_broker_freeing(0.5)
        got: list[Message] = []
        await b.start(got.append)
        try:
            brief = HistoryPolicy(size=10, ttl=0.2)
            old = [await b.apublish(f"idle.{i}", "m", "1", brief) for i in range(20)]
            assert await stored(b) == 20
            deadline = time.monotonic() + 15
            while await stored(b) and time.monotonic() < deadline:  # noqa: ASYNC110 (polls)
                await asyncio.sleep(0.05)
            assert await stored(b) == 0
            now = await b.history("idle.0", old[0])
            assert not now.recovered and now.position == EMPTY
            got.clear()  # (a broker may deliver what nobody here subscribed to)
            await b.subscribe("idle.0")
            again = await b.apublish("idle.0", "m", "2", brief)
            assert again.offset == 1 and again.epoch != old[0].epoch
            resumed = await b.history("idle.0", EMPTY)
            assert resumed.recovered and [m.data_json for m in resumed.messages] == ["2"]
            await settle(got, 1)
            assert [m.position for m in got if m.topic == "idle.0"] == [again]
        finally:
            await b.close()

    @pytest.mark.asyncio
    async def test_history_refuses_what_it_cannot_promise(self, broker: Started) -> None:
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

    @pytest.mark.asyncio
    async def test_history_keeps_exactly_size_messages(self, broker: Started) -> None:
        """One message more than ``size`` after a position cannot be recovered, even by
        one: a history trimmed a message too late would pass every other test."""
        b, _ = broker
        size = 3
        policy = HistoryPolicy(size=size, ttl=300)
        start = (await b.history("exact", None)).position
        for i in range(1, size + 2):  # size + 1 messages after start
            await b.apublish("exact", "m", str(i), policy)
        over = await b.history("exact", start)
        assert not over.recovered and over.messages == ()
        assert over.position.offset == size + 1
        within = await b.history("exact", Position(over.position.epoch, 1))  # size missed
        assert within.recovered and within.position == over.position
        assert [m.data_json for m in within.messages] == [str(i) for i in range(2, size + 2)]
        assert [m.position.offset for m in within.messages] == list(range(2, size + 2))

    @pytest.mark.asyncio
    async def test_history_expires_by_age(self, broker: Started) -> None:
        b, _ = broker
        brief = HistoryPolicy(size=100, ttl=0.2)
        first = await b.apublish("t", "m", "1", brief)
        await b.apublish("t", "m", "2", brief)
        assert (await b.history("t", first)).recovered
        await asyncio.sleep(0.3)
        assert not (await b.history("t", first)).recovered

    @pytest.mark.asyncio
    async def test_disabled_history_still_counts_offsets(self, broker: Started) -> None:
        b, _ = broker
        off = HistoryPolicy(size=0, ttl=300)
        p1 = await b.apublish("n", "m", "1", off)
        p2 = await b.apublish("n", "m", "2", off)
        assert p2.offset == p1.offset + 1
        assert not (await b.history("n", p1)).recovered
