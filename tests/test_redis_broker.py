"""The Redis broker in one process, against a real redis-server and real faults:
FLUSHALL, restarts, CLIENT KILL, a frozen (SIGSTOP) server, a server that is down.

Every wait is on a condition with a generous timeout: the machine may be slow."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.redis_server import RedisServer, redis_server
from tidings.brokers import broker_from_url
from tidings.brokers.redis import RedisBroker
from tidings.brokers.redis.batches import settle
from tidings.core.messages import HistoryPolicy, Message, Position
from tidings.exceptions import BrokerError

KEEP = HistoryPolicy(size=10_000, ttl=300)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A server of this test's own: these tests break it."""
    with redis_server() as r:
        yield r


class Got:
    """Collects deliveries; ``await got.wait(n)`` until there are ``n``."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def offsets(self) -> list[int]:
        return [m.position.offset for m in self.messages]

    async def wait(self, count: int, timeout: float = 20) -> None:
        await until(lambda: len(self.messages) >= count, timeout, f"{count} messages")


async def until(condition: Callable[[], bool], timeout: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await asyncio.sleep(0.02)


async def started(url: str) -> tuple[RedisBroker, Got]:
    broker = broker_from_url(url)
    assert isinstance(broker, RedisBroker)
    got = Got()
    await broker.start(got)
    return broker, got


@pytest.fixture
async def broker(redis: RedisServer) -> AsyncIterator[tuple[RedisBroker, Got]]:
    b, got = await started(redis.url + "?keepalive=1&presence_ttl=1")
    yield b, got
    await b.close()


def publish_in_thread(b: RedisBroker, topic: str, count: int) -> threading.Thread:
    def run() -> None:
        for i in range(count):
            b.publish(topic, "m", str(i), KEEP)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


async def joined(thread: threading.Thread) -> None:
    await until(lambda: not thread.is_alive(), 60, "the publisher thread")


# -- URLs and keys ------------------------------------------------------------------------
def test_url_options_are_ours_the_rest_is_redis_pys():
    b = broker_from_url("redis://:secret@127.0.0.1:1/3?prefix=app&presence_ttl=2&socket_timeout=1")
    assert isinstance(b, RedisBroker)
    assert b.options.prefix == "app" and b.options.presence_ttl == 2
    kwargs = b._sync.connection_pool.connection_kwargs
    assert kwargs["db"] == 3 and kwargs["password"] == "secret" and kwargs["socket_timeout"] == 1
    assert b.names.key("rooms.a", "meta") == "app:{rooms.a}:meta"  # hash-tagged for a cluster
    assert b.names.channel("rooms.a") == "app:3:{rooms.a}"  # pub/sub ignores db numbers
    assert broker_from_url("rediss://example.com:6380/0").url.startswith("rediss:")
    with pytest.raises(ImproperlyConfigured, match="presence_ttl"):
        broker_from_url("redis://127.0.0.1/0?presence_ttl=soon")


async def publish_both_ways(b: RedisBroker, got: Got, topic: str) -> None:
    """apublish, then publish() from a thread: both are delivered, in order."""
    await b.subscribe(topic)
    await b.apublish(topic, "m", "1", KEEP)
    await asyncio.to_thread(b.publish, topic, "m", "2", KEEP)
    await got.wait(2)
    assert got.offsets == [1, 2]


async def test_tls_and_a_password():
    with redis_server(tls=True, password="s3cret") as r:
        assert r.url.startswith("rediss://:s3cret@")
        b, got = await started(r.url)
        try:
            await publish_both_ways(b, got, "tls")
        finally:
            await b.close()
        wrong = broker_from_url(r.url.replace("s3cret", "wrong"))
        with pytest.raises(BrokerError, match=r"(?i)password|auth"):
            await wrong.apublish("tls", "m", "3", KEEP)


async def test_a_unix_socket_url(redis):
    """``unix:///path?db=N``: the path is the socket, the database comes from the query."""
    url = f"unix://{redis.socket_path}?db=3"
    b, got = await started(url)
    try:
        await publish_both_ways(b, got, "sock")
        assert b.health()["redis"] == f"unix:{redis.socket_path}/3"
        assert redis.client().keys("tidings:*") == []  # all in database 3, none in 0
    finally:
        await b.close()


async def test_keys_expire(broker, redis):
    b, _ = broker
    await b.apublish("k", "m", "1", HistoryPolicy(size=10, ttl=30))
    await b.presence.add("k", "c1", {})
    c = redis.client()
    keys = c.keys("tidings:*")
    assert len(keys) == 5, keys  # meta, history, a receipt, presence, members
    assert all(c.pttl(k) > 0 for k in keys), {k: c.pttl(k) for k in keys}
    assert 25_000 < c.pttl("tidings:{k}:history") <= 30_000
    assert c.pttl("tidings:{k}:meta") > 3600_000  # meta_ttl (a day): outlives history


# -- publishing ----------------------------------------------------------------------------
async def test_a_retried_publish_is_published_once(broker):
    """The script is idempotent: what redis-py does after a broken connection."""
    b, _ = broker
    batch = [b._pending(t, "m", d, KEEP, None) for t, d in [("r", "1"), ("r2", "2"), ("r", "3")]]
    keys, args = b._batch_args(batch)
    first = b._publish_sync(keys=keys, args=args)
    again = b._publish_sync(keys=keys, args=args)
    assert first == again
    settle(batch, again)
    assert [b._published("r", p).offset for p in batch] == [1, 1, 2]
    assert (await b.history("r", None)).position.offset == 2
    assert (await b.history("r2", None)).position.offset == 1


async def test_concurrent_publishes_go_in_few_batches_in_the_order_they_were_made(
    broker, redis
):
    """64 tasks publishing at once, and 16 threads: every publish gets its own position,
    a topic's offsets follow the order of the calls, and Redis ran far fewer scripts."""
    b, got = broker
    await b.subscribe("many")
    c = redis.client()
    c.config_resetstat()
    positions = await asyncio.gather(*(b.apublish("many", "m", str(i), KEEP) for i in range(64)))
    assert [p.offset for p in positions] == list(range(1, 65))
    calls = int(c.info("commandstats")["cmdstat_evalsha"]["calls"])
    assert calls <= 4, f"{calls} script calls for 64 concurrent publishes"
    await got.wait(64)
    assert [m.data_json for m in got.messages] == [str(i) for i in range(64)]

    results: dict[int, list[int]] = {}

    def publisher(k: int) -> None:  # each thread's own publishes stay in its order
        results[k] = [b.publish(f"t{k}", "m", str(i), KEEP).offset for i in range(20)]

    threads = [threading.Thread(target=publisher, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {k: list(range(1, 21)) for k in range(16)}
    calls = int(c.info("commandstats")["cmdstat_evalsha"]["calls"]) - calls
    assert calls < 160, f"{calls} script calls for 320 publishes from 16 threads"


async def test_history_reads_made_at_once_share_a_script_call(broker, redis):
    """A reconnect storm's resumes: 100 reads at once, each with its own right answer."""
    b, _ = broker
    first = [await b.apublish(f"h{k}", "m", str(k), KEEP) for k in range(100)]
    await asyncio.gather(*(b.apublish(f"h{k}", "m", "next", KEEP) for k in range(0, 100, 2)))
    c = redis.client()
    c.config_resetstat()
    results = await asyncio.gather(*(b.history(f"h{k}", first[k]) for k in range(100)))
    assert int(c.info("commandstats")["cmdstat_evalsha"]["calls"]) <= 2
    for k, result in enumerate(results):
        assert result.recovered
        assert [m.data_json for m in result.messages] == (["next"] if k % 2 == 0 else [])
    gone = await b.history("h1", Position("no-such-epoch", 1))
    assert not gone.recovered and gone.position == first[1]


async def test_a_publish_that_arrives_after_its_deadline_is_refused(broker):
    b, _ = broker
    late, fine = (b._pending(t, "m", "1", KEEP, None) for t in ("late", "fine"))
    late.args = (*late.args[:7], int((time.time() - 10) * 1000))
    batch = [late, fine]
    settle(batch, b._publish_sync(keys=b._batch_args(batch)[0], args=b._batch_args(batch)[1]))
    with pytest.raises(BrokerError, match="deadline, so it was not published"):
        b._published("late", late)
    assert (await b.history("late", None)).position.offset == 0
    assert b._published("fine", fine).offset == 1  # a batch's other messages go on


async def test_batches_in_flight_are_written_again_in_order_and_published_once(redis):
    """The pipeline's connection is killed again and again while 64 tasks publish,
    several batches in flight each time: each topic's history holds every message at
    most once (a batch written again returns its receipt instead of running twice),
    each task's in the order it made them, and every answer is its own message's."""
    b, _ = await started(redis.url + "?retries=6")
    c = redis.client()
    stop = threading.Event()
    kills = []

    def killer() -> None:
        while not stop.is_set():
            kills.append(c.client_kill_filter(_type="normal", skipme=True))
            time.sleep(0.02)

    async def task(k: int) -> list[tuple[int, int]]:
        answered = []
        for i in range(40):
            try:
                position = await b.apublish(f"o{k % 8}", "m", f"{k} {i}", KEEP)
            except BrokerError:  # the one uncertain case: published or not
                continue
            answered.append((position.offset, i))
        return answered

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        results = await asyncio.gather(*(task(k) for k in range(64)))
    finally:
        stop.set()
        thread.join()
    assert sum(kills) >= 3, f"the connection was killed {sum(kills)} times only"
    assert sum(map(len, results)) > 64 * 40 * 0.9  # failures are rare, not the rule
    for topic in range(8):
        epoch = (await b.history(f"o{topic}", None)).position.epoch
        replay = await b.history(f"o{topic}", Position(epoch, 0))
        data = [m.data_json for m in replay.messages]
        assert [m.position.offset for m in replay.messages] == list(range(1, len(data) + 1))
        assert len(set(data)) == len(data)  # nobody's publish twice
        for k in range(topic, 64, 8):
            mine = [int(d.split()[1]) for d in data if d.split()[0] == str(k)]
            assert mine == sorted(mine)  # a task's publishes in the order it made them
            assert all(data[o - 1] == f"{k} {i}" for o, i in results[k])
    await b.close()


async def test_threads_publishing_to_one_topic_keep_their_order(broker):
    """16 threads and 16 tasks on one topic: one contiguous history, each publisher's
    messages in the order it made them, each answer the offset its message got."""
    b, _ = broker
    answers: dict[str, list[int]] = {}

    def thread(k: int) -> None:
        answers[f"t{k}"] = [b.publish("one", "m", f"t{k} {i}", KEEP).offset for i in range(30)]

    async def task(k: int) -> None:
        answers[f"a{k}"] = [
            (await b.apublish("one", "m", f"a{k} {i}", KEEP)).offset for i in range(30)
        ]

    threads = [threading.Thread(target=thread, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    await asyncio.gather(*(task(k) for k in range(16)))
    for t in threads:
        await joined(t)
    epoch = (await b.history("one", None)).position.epoch
    replay = await b.history("one", Position(epoch, 0))
    data = [m.data_json for m in replay.messages]
    assert [m.position.offset for m in replay.messages] == list(range(1, 32 * 30 + 1))
    for who, offsets in answers.items():
        assert [data[o - 1] for o in offsets] == [f"{who} {i}" for i in range(30)]
        assert offsets == sorted(offsets)


async def test_apublish_to_a_frozen_redis_is_refused_in_time_and_never_appears(redis):
    """50 publishes at once, several batches in flight, to a frozen Redis: each raises
    within about publish_timeout, and none is published when Redis wakes up."""
    url = redis.url + "?socket_timeout=0.5&socket_connect_timeout=0.5&publish_timeout=1"
    b = broker_from_url(url)
    before = await b.apublish("fz", "m", "before", KEEP)
    redis.pause()
    try:
        t0 = time.monotonic()
        results = await asyncio.gather(
            *(b.apublish("fz", "m", f"lost {i}", KEEP) for i in range(50)),
            return_exceptions=True,
        )
        assert time.monotonic() - t0 < 5
        assert all(isinstance(r, BrokerError) for r in results), results[:3]
        await asyncio.sleep(1.5)  # the stuck attempts now wait past their deadline
    finally:
        redis.resume()
    after = await b.apublish("fz", "m", "after", KEEP)
    replay = await b.history("fz", Position(before.epoch, 0))
    assert [m.data_json for m in replay.messages] == ["before", "after"]
    assert after.offset == 2
    await b.close()


async def test_a_redis_that_refuses_the_script_fails_each_publish_with_the_reason(redis):
    """An ACL without SCRIPT: every publish raises, saying so, none hangs or is retried
    for long, and the pipeline serves again once the ACL allows it."""
    c = redis.client()
    c.acl_setuser("pub", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"],
                  commands=["+@all", "-script"])  # fmt: skip
    b = broker_from_url(redis.url.replace("redis://", "redis://pub:pw@", 1))
    t0 = time.monotonic()
    results = await asyncio.gather(
        *(b.apublish("acl", "m", str(i), KEEP) for i in range(20)), return_exceptions=True
    )
    assert time.monotonic() - t0 < 3
    assert all(isinstance(r, BrokerError) and "script" in str(r).lower() for r in results)
    c.acl_setuser("pub", enabled=True, commands=["+script"])
    assert (await b.apublish("acl", "m", "now", KEEP)).offset == 1
    await b.close()


async def test_formats_travel_with_the_message(broker):
    b, got = broker
    await b.subscribe("f")
    first = await b.apublish("f", "m", '"x"', KEEP, '{"sse": "x\\ny"}')
    await b.apublish("f", "m", '"é"', KEEP)
    await got.wait(2)
    assert [m.formats_json for m in got.messages] == ['{"sse": "x\\ny"}', None]
    assert [m.data_json for m in got.messages] == ['"x"', '"é"']
    replay = await b.history("f", Position(first.epoch, 0))
    assert [m.formats_json for m in replay.messages] == ['{"sse": "x\\ny"}', None]
    assert abs(replay.messages[0].timestamp - time.time()) < 30


async def test_publish_while_redis_is_down_raises_quickly(redis):
    b = broker_from_url(redis.url + "?socket_connect_timeout=1")
    redis.kill()
    t0 = time.monotonic()
    with pytest.raises(BrokerError, match="Could not publish to 'x'"):
        b.publish("x", "m", "1", KEEP)
    with pytest.raises(BrokerError, match="Could not publish to 'x'"):
        await b.apublish("x", "m", "1", KEEP)
    with pytest.raises(BrokerError):
        await b.history("x", None)
    assert time.monotonic() - t0 < 10


async def test_publish_to_a_frozen_redis_times_out_and_never_appears_later(redis):
    url = redis.url + "?socket_timeout=0.5&socket_connect_timeout=0.5&publish_timeout=1"
    b = broker_from_url(url)
    before = b.publish("z", "m", "before", KEEP)
    redis.pause()
    try:
        t0 = time.monotonic()
        with pytest.raises(BrokerError):
            b.publish("z", "m", "lost", KEEP)
        assert time.monotonic() - t0 < 10
        await asyncio.sleep(1.5)  # the stuck attempts now wait past their deadline
    finally:
        redis.resume()
    after = b.publish("z", "m", "after", KEEP)
    replay = await b.history("z", Position(before.epoch, 0))
    assert [m.data_json for m in replay.messages] == ["before", "after"]
    assert after.offset == 2


# -- delivery ------------------------------------------------------------------------------
async def test_two_brokers_publishing_at_once_deliver_one_order(redis):
    a, got_a = await started(redis.url)
    b, got_b = await started(redis.url)
    try:
        await a.subscribe("t")
        await b.subscribe("t")
        threads = [publish_in_thread(a, "t", 300), publish_in_thread(b, "t", 300)]
        for thread in threads:
            await joined(thread)
        await got_a.wait(600)
        await got_b.wait(600)
        assert got_a.offsets == got_b.offsets == list(range(1, 601))
    finally:
        await a.close()
        await b.close()


async def test_unsubscribed_topics_are_not_delivered(broker):
    b, got = broker
    await b.subscribe("u")
    await b.apublish("u", "m", "1", KEEP)
    await got.wait(1)
    await b.unsubscribe("u")
    await b.apublish("u", "m", "2", KEEP)
    await b.subscribe("u")
    await b.apublish("u", "m", "3", KEEP)
    await got.wait(2)
    await asyncio.sleep(0.2)
    assert [m.data_json for m in got.messages] == ["1", "3"]


async def test_a_skipped_offset_is_filled_from_history(broker):
    """A message in history that never came live (here: published to no channel)."""
    b, got = broker
    await b.subscribe("g")
    await b.apublish("g", "m", "1", KEEP)
    skipped = b._pending("g", "m", "2", KEEP, None)
    skipped.args = ("nowhere", *skipped.args[1:])
    keys, args = b._batch_args([skipped])
    b._publish_sync(keys=keys, args=args)
    await b.apublish("g", "m", "3", KEEP)
    await got.wait(3)
    await asyncio.sleep(0.2)
    assert [m.data_json for m in got.messages] == ["1", "2", "3"]
    assert got.offsets == [1, 2, 3]


async def test_a_foreign_message_on_a_channel_is_ignored(broker, redis, caplog):
    b, got = broker
    await b.subscribe("x")
    redis.client().publish(b.names.channel("x"), "not from tidings")
    await b.apublish("x", "m", "1", KEEP)
    await got.wait(1)
    assert got.offsets == [1] and b.health()["reconnects"] == 0
    assert "no tidings broker sent" in caplog.text


async def test_client_kill_pubsub_loses_nothing(broker, redis):
    b, got = broker
    await b.subscribe("k")
    thread = publish_in_thread(b, "k", 2000)
    c = redis.client()
    for _ in range(3):
        await until(lambda: b.health()["connected"], 20, "a connection")
        await asyncio.sleep(0.1)
        c.client_kill_filter(_type="pubsub")
    await joined(thread)
    await got.wait(2000, 30)
    await asyncio.sleep(0.3)
    assert got.offsets == list(range(1, 2001))
    health = b.health()
    assert health["reconnects"] >= 1 and health["last_error"]


async def test_a_quiet_connection_to_a_frozen_redis_is_noticed(broker, redis):
    """keepalive=1: no reply to PING within a second means reconnect."""
    b, got = broker
    await b.subscribe("q")
    await b.apublish("q", "m", "1", KEEP)
    await got.wait(1)
    redis.pause()
    try:
        await until(lambda: not b.health()["connected"], 20, "the listener to notice")
    finally:
        redis.resume()
    await until(lambda: b.health()["connected"], 20, "the listener to reconnect")
    await b.apublish("q", "m", "2", KEEP)
    await got.wait(2)
    assert got.offsets == [1, 2]


async def test_flushall_changes_the_epoch_and_delivery_goes_on(broker, redis):
    b, got = broker
    await b.subscribe("e")
    old = await b.apublish("e", "m", "1", KEEP)
    await got.wait(1)
    redis.client().flushall()
    assert not (await b.history("e", old)).recovered
    new = await b.apublish("e", "m", "2", KEEP)
    assert new.epoch != old.epoch and new.offset == 1
    await got.wait(2)
    assert [str(m.position) for m in got.messages] == [str(old), str(new)]
    recovered = await b.history("e", Position(new.epoch, 0))
    assert recovered.recovered and [m.data_json for m in recovered.messages] == ["2"]


async def test_restart_without_data_resubscribes_and_changes_the_epoch(broker, redis):
    b, got = broker
    await b.subscribe("s")
    old = await b.apublish("s", "m", "1", KEEP)
    await got.wait(1)
    redis.restart()
    await until(lambda: b.health()["reconnects"] >= 1 and b.health()["connected"], 30)
    assert not (await b.history("s", old)).recovered
    new = await b.apublish("s", "m", "2", KEEP)
    assert new.epoch != old.epoch
    await got.wait(2)
    assert got.messages[-1].position == new


async def test_what_was_published_while_cut_off_arrives_after_reconnecting(broker, redis):
    """The pub/sub connection is killed and cannot come back (maxclients) while two
    messages are published: they arrive from history once it reconnects, in order."""
    b, got = broker
    other = broker_from_url(redis.url)
    await b.subscribe("d")
    other.publish("d", "m", "1", KEEP)  # other's pooled connection is now open
    await got.wait(1)
    c = redis.client()
    c.config_set("maxclients", 1)
    try:
        c.client_kill_filter(_type="pubsub")
        await until(lambda: not b.health()["connected"], 20, "the listener to notice")
        other.publish("d", "m", "2", KEEP)
        other.publish("d", "m", "3", KEEP)
        await asyncio.sleep(0.5)
        assert got.offsets == [1]
    finally:
        c.config_set("maxclients", 10000)
    await got.wait(3)
    await asyncio.sleep(0.2)
    assert got.offsets == [1, 2, 3]
    assert [m.data_json for m in got.messages] == ["1", "2", "3"]


async def test_it_can_be_started_again_and_a_failing_callback_does_not_stop_it(redis, caplog):
    b, got = await started(redis.url)
    await b.close()
    failures = 0

    def deliver(message: Message) -> None:
        nonlocal failures
        if message.data_json == "1":
            failures += 1
            raise RuntimeError("subscriber bug")
        got(message)

    await b.start(deliver)
    try:
        await b.subscribe("again")
        await b.apublish("again", "m", "1", KEEP)
        await b.apublish("again", "m", "2", KEEP)
        await got.wait(1)
        assert failures == 1 and got.offsets == [2]
        assert "delivering Message('again', 'm', " in caplog.text
        health = b.health()
        assert health["connected"] and health["topics"] == 1 and health["reconnects"] == 0
    finally:
        await b.close()


# -- subscribing when Redis is away -----------------------------------------------------
async def test_subscribe_while_redis_is_down_fails_then_works_again(redis):
    b, got = await started(redis.url + "?socket_timeout=1&socket_connect_timeout=1")
    try:
        await until(lambda: b.health()["connected"])
        redis.kill()
        with pytest.raises(BrokerError):
            await b.subscribe("w")
        assert b.health()["topics"] == 0
        redis.start()
        await until(lambda: b.health()["connected"], 30)
        await b.subscribe("w")
        await b.apublish("w", "m", "1", KEEP)
        await got.wait(1)
    finally:
        await b.close()


async def test_a_broker_started_while_redis_is_down_connects_when_it_comes_up(redis):
    redis.kill()
    b, got = await started(redis.url + "?socket_connect_timeout=1")
    try:
        await until(lambda: b.health()["last_error"] is not None, 20, "a failed attempt")
        assert not b.health()["connected"]
        redis.start()
        await until(lambda: b.health()["connected"], 30, "the connection")
        await b.subscribe("late")
        await b.apublish("late", "m", "1", KEEP)
        await got.wait(1)
    finally:
        await b.close()


# -- presence ------------------------------------------------------------------------------
async def test_presence_is_refreshed_while_alive_and_expires_after_a_crash(redis):
    url = redis.url + "?presence_ttl=1"
    a, _ = await started(url)
    b, _ = await started(url)
    try:
        await a.presence.add("p", "c1", {"name": "ann"})
        await asyncio.sleep(2.5)  # more than the TTL: a refreshes it
        assert await b.presence.entries("p") == {"c1": {"name": "ann"}}
        await a.close()  # as good as a crash: nobody refreshes c1 any more
        t0 = time.monotonic()
        while await b.presence.entries("p"):
            assert time.monotonic() - t0 < 10
            await asyncio.sleep(0.1)
        assert time.monotonic() - t0 < 1 + 2  # the TTL, give or take a slow machine
        # Dropped, not just hidden: reading removed c1 from both keys (or they expired
        # together), and Redis deletes an emptied key.
        assert redis.client().exists("tidings:{p}:presence", "tidings:{p}:members") == 0
    finally:
        await b.close()
