"""The PostgreSQL broker against real servers and real faults: the listener's backend
killed with pg_terminate_backend, a server of the tests' own restarted (pg_ctl stop -m
fast, start) and kept down, retried batches, refused late batches, presence expiry,
two uvicorn servers sharing one database, ``django://`` reusing a DATABASES alias.

Most tests use a database made for this module on the machine's PostgreSQL, each test
under its own table prefix; the tests that stop a server start their own
(tests/pg_server.py). Every wait is on a condition with a generous timeout."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.conftest import APP, need, server_env
from tests.pg_server import Database, PgServer, pg_database, pg_server
from tests.test_redis_broker import Got, until
from tests.test_redis_servers import Publisher
from tidings.brokers import broker_from_url
from tidings.brokers.postgres import PostgresBroker
from tidings.core.messages import HistoryPolicy, Message, Position
from tidings.exceptions import BrokerError
from tidings.testing import Client, live_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEEP = HistoryPolicy(size=10_000, ttl=300)


@pytest.fixture(scope="module")
def pg() -> Iterator[Database]:
    with pg_database() as db:
        yield db


@pytest.fixture
def own() -> Iterator[tuple[PgServer, Database]]:
    """A server of this test's own: the test breaks it."""
    with pg_server() as (server, db):
        yield server, db


@pytest.fixture
def url(pg: Database) -> str:
    return f"{pg.url}?prefix=t{secrets.token_hex(4)}&keepalive=1"


async def started(url: str) -> tuple[PostgresBroker, Got]:
    broker = broker_from_url(url)
    assert isinstance(broker, PostgresBroker)
    got = Got()
    await broker.start(got)
    return broker, got


@pytest.fixture
async def broker(url: str) -> AsyncIterator[tuple[PostgresBroker, Got]]:
    b, got = await started(url)
    yield b, got
    await b.close()


def check_delivered(got: Got, pub: Publisher) -> None:
    """Offsets 1..n, in order, once; every acknowledged message, and besides them only
    publishes that raised (committed just as the connection failed)."""
    numbers = [int(m.data_json) for m in got.messages]
    assert got.offsets == list(range(1, len(got.messages) + 1))
    assert numbers == sorted(set(numbers))
    assert set(pub.acked) <= set(numbers)
    assert set(numbers) - set(pub.acked) <= set(pub.failed)
    assert {
        int(m.data_json): m.position for m in got.messages if int(m.data_json) in pub.acked
    } == pub.acked


# -- URLs -------------------------------------------------------------------------------
def test_url_options_are_ours_the_rest_is_libpq_s():
    b = broker_from_url(
        "postgres://ann:pw@db.internal:6543/app?prefix=site&presence_ttl=2&sslmode=require"
    )
    assert isinstance(b, PostgresBroker)
    assert b.options.prefix == "site" and b.options.presence_ttl == 2
    assert b.where == "db.internal:6543/app"  # no password in logs
    assert b._where.params() == {
        "conninfo": "postgres://ann:pw@db.internal:6543/app?sslmode=require"
    }
    for bad in ("prefix=Bad-Name", "meta_ttl=0", "presence_ttl=soon"):
        with pytest.raises(ImproperlyConfigured):
            broker_from_url(f"postgresql://db/app?{bad}")
    with pytest.raises(ImproperlyConfigured, match="sqlite, not PostgreSQL"):
        broker_from_url("django://default")  # the tests' default database is SQLite


@pytest.fixture
def sockets() -> str:
    """The directory of the machine's PostgreSQL's unix socket."""
    path = "/var/run/postgresql"
    need(f"PostgreSQL's socket in {path}", os.path.exists(f"{path}/.s.PGSQL.5432"))
    return path


async def test_a_unix_socket_url(pg: Database, sockets: str):
    """``postgresql:///db?host=/run/postgresql``: libpq's socket form, host in the query."""
    b, got = await started(f"postgresql:///{pg.name}?host={sockets}&user=postgres&prefix=sock")
    try:
        assert b.where == f"{sockets}/{pg.name}"
        await b.subscribe("sock")
        await b.apublish("sock", "m", "1", KEEP)
        await got.wait(1)
    finally:
        await b.close()


def test_django_alias_reuses_the_database_settings(pg: Database):
    """``django://default`` with a PostgreSQL default database: a process publishes,
    another reads the history, no URL of its own."""
    code = (
        "import django, sys; django.setup(); import asyncio, tidings\n"
        "from tidings.server.node import get_node\n"
        "if sys.argv[1] == 'publish': print(tidings.publish('test.alias', {'n': 1}))\n"
        "else: print(asyncio.run(get_node().broker.history('test.alias', None)).position)\n"
    )
    env = {
        **os.environ,
        **server_env({"BROKER": "django://default?prefix=alias"}),
        "DEMO_PG": pg.name,
    }
    printed = []
    for step in ("publish", "read"):
        done = subprocess.run(
            [sys.executable, "-c", code, step], env=env, cwd=ROOT, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        printed.append(done.stdout.split()[-1])
    assert printed[0] == printed[1] and printed[0].endswith(":1")


# -- publishing -------------------------------------------------------------------------
async def test_concurrent_publishes_share_transactions_in_the_order_they_were_made(broker, pg):
    """64 tasks and 16 threads at once: each publish has its own position, a topic's
    offsets follow the order of the calls, and far fewer transactions ran (one receipt
    per batch)."""
    b, got = broker
    prefix = b.options.prefix
    await b.subscribe("many")
    positions = await asyncio.gather(*(b.apublish("many", "m", str(i), KEEP) for i in range(64)))
    assert [p.offset for p in positions] == list(range(1, 65))
    await got.wait(64)
    assert [m.data_json for m in got.messages] == [str(i) for i in range(64)]

    results: dict[int, list[int]] = {}

    def publisher(k: int) -> None:
        results[k] = [b.publish(f"t{k}", "m", str(i), KEEP).offset for i in range(20)]

    threads = [threading.Thread(target=publisher, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    await until(lambda: not any(t.is_alive() for t in threads), 60, "the threads")
    assert results == {k: list(range(1, 21)) for k in range(16)}
    with pg.connect() as c:
        batches = c.execute(f"SELECT count(*) FROM {prefix}_receipts").fetchone()[0]
    assert batches < (64 + 320) / 2, f"{batches} transactions for 384 publishes"


async def test_a_retried_batch_is_published_once(broker, pg):
    """The receipt: what a retry after a broken connection does."""
    b, _ = broker
    await b.apublish("r", "m", "0", KEEP)
    sql = b._publish_sql
    args = ("receipt-1", "ab12cd34", time.time() + 30, 1000, ["r", "r"], ["m", "m"],
            ["1", "2"], [None, None], [10, 10], [300.0, 300.0])  # fmt: skip
    with pg.connect() as c:
        first = c.execute(sql, args).fetchone()[0]
        again = c.execute(sql, args).fetchone()[0]
    assert first == again and [line.split()[1] for line in first.splitlines()] == ["2", "3"]
    assert (await b.history("r", None)).position.offset == 3


async def test_a_batch_that_arrives_after_its_deadline_is_refused(broker, pg):
    b, _ = broker
    await b.apublish("other", "m", "1", KEEP)  # (the broker makes its tables on first use)
    args = ("receipt-2", "ab12cd34", time.time() - 1, 1000, ["late"], ["m"], ["1"], [None],
            [10], [300.0])  # fmt: skip
    with pg.connect() as c, pytest.raises(psycopg.errors.RaiseException, match="deadline"):
        c.execute(b._publish_sql, args)
    assert (await b.history("late", None)).position.offset == 0
    assert (await b.apublish("late", "m", "1", KEEP)).offset == 1


async def test_publish_while_the_server_is_down_raises_quickly(own):
    server, db = own
    b = broker_from_url(f"{db.url}?publish_timeout=2&connect_timeout=1")
    server.stop()
    t0 = time.monotonic()
    with pytest.raises(BrokerError, match="Could not publish to 'x' on PostgreSQL"):
        b.publish("x", "m", "1", KEEP)
    with pytest.raises(BrokerError, match="Could not publish to 'x'"):
        await b.apublish("x", "m", "1", KEEP)
    with pytest.raises(BrokerError, match="history"):
        await b.history("x", None)
    assert time.monotonic() - t0 < 10
    await b.close()


async def test_publish_to_a_frozen_server_gives_up_and_never_appears_later(own):
    """SIGSTOP: the sockets stay open and nothing answers. ``publish()`` raises within
    its deadline, and the refused message is not published when the server thaws."""
    server, db = own
    b = broker_from_url(f"{db.url}?publish_timeout=1&connect_timeout=1")
    before = b.publish("z", "m", "before", KEEP)
    server.pause()
    try:
        t0 = time.monotonic()
        with pytest.raises(BrokerError):
            b.publish("z", "m", "lost", KEEP)
        with pytest.raises(BrokerError):
            await b.apublish("z", "m", "lost too", KEEP)
        assert time.monotonic() - t0 < 6
        await asyncio.sleep(1.5)  # the abandoned attempts are now past their deadline
    finally:
        server.resume()
    after = await until_published(b, "z", "after")
    replay = await b.history("z", Position(before.epoch, 0))
    assert [m.data_json for m in replay.messages] == ["before", "after"]
    assert after.offset == 2
    await b.close()


async def until_published(b: PostgresBroker, topic: str, data: str) -> Position:
    """Publish once the broker gets through again (its pool reconnects on demand)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return await b.apublish(topic, "m", data, KEEP)
        except BrokerError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)


# -- delivery ---------------------------------------------------------------------------
async def test_two_brokers_publishing_at_once_deliver_one_order(url):
    a, got_a = await started(url)
    b, got_b = await started(url)
    try:
        await a.subscribe("t")
        await b.subscribe("t")
        pubs = [Publisher(url, "t", 300).start(), Publisher(url, "t", 300).start()]
        for pub in pubs:
            await pub.join()
            await pub.broker.close()
        await got_a.wait(600)
        await got_b.wait(600)
        assert got_a.offsets == got_b.offsets == list(range(1, 601))
    finally:
        await a.close()
        await b.close()


async def test_terminating_the_listener_s_backend_loses_nothing(broker, pg):
    """pg_terminate_backend of the LISTEN connection, three times, under a stream of
    publishes: they arrive from the table after each reconnect, in order, once."""
    b, got = broker
    await b.subscribe("k")
    pub = Publisher(b.url, "k", 2000).start()
    listener = f"application_name = '{b.options.prefix} listener'"
    for n in (300, 900, 1500):
        await until(lambda n=n: len(pub.acked) >= n and b.health()["connected"], 60)
        assert pg.terminate(listener) == 1
    await pub.join()
    await pub.broker.close()
    assert not pub.failed
    await got.wait(2000)
    await asyncio.sleep(0.3)
    check_delivered(got, pub)
    assert b.health()["reconnects"] >= 3 and b.health()["last_error"]


async def test_published_while_the_listener_is_kept_out_arrives_after_it_is_back(broker, pg):
    """The listener's backend is terminated and kept out (the database refuses new
    connections) while another broker, whose connection stays open, publishes: what it
    published arrives once the listener is back, in order."""
    b, got = broker
    other = broker_from_url(b.url)
    await b.subscribe("d")
    await other.apublish("d", "m", "1", KEEP)  # other's pooled connection is now open
    await got.wait(1)
    pg.allow_connections(False)
    try:
        assert pg.terminate(f"application_name = '{b.options.prefix} listener'") == 1
        await until(lambda: not b.health()["connected"], 20, "the listener to notice")
        await other.apublish("d", "m", "2", KEEP)
        await other.apublish("d", "m", "3", KEEP)
        await asyncio.sleep(0.5)
        assert got.offsets == [1]
    finally:
        pg.allow_connections(True)
        await other.close()
    await got.wait(3)
    await asyncio.sleep(0.2)
    assert [m.data_json for m in got.messages] == ["1", "2", "3"]


async def test_a_listener_too_far_behind_says_what_it_skipped_and_goes_on(broker, pg, caplog):
    """Kept out while 1,200 messages are published to a topic that keeps 10: the table
    holds the newest 1,000 (KEEP), so it delivers those, logs the 200 it cannot, and
    live delivery goes on."""
    b, got = broker
    other = broker_from_url(b.url)
    small = HistoryPolicy(size=10, ttl=300)
    await b.subscribe("far")
    await other.apublish("far", "m", "0", small)
    await got.wait(1)
    pg.allow_connections(False)
    try:
        pg.terminate(f"application_name = '{b.options.prefix} listener'")
        await until(lambda: not b.health()["connected"], 20, "the listener to notice")
        await asyncio.gather(*(other.apublish("far", "m", str(i), small) for i in range(1, 1201)))
    finally:
        pg.allow_connections(True)
        await other.close()
    await got.wait(1001)
    await b.apublish("far", "m", "live", small)
    await got.wait(1002)
    assert got.offsets == [1, *range(202, 1202), 1202]
    assert "messages 2..201 of epoch" in caplog.text and "trimmed" in caplog.text


async def test_a_restarted_server_loses_nothing_acknowledged(own):
    """pg_ctl stop -m fast while 3,000 messages are published, down 3 s, started again:
    each publish returned or raised; the subscribed broker delivers every acknowledged
    one, in order, once, in the same epoch (PostgreSQL keeps what it committed); a
    resume from the start is recovered."""
    server, db = own
    url = f"{db.url}?keepalive=1&publish_timeout=1&connect_timeout=1"
    b, got = await started(url)
    try:
        await b.subscribe("s")
        start = (await b.history("s", None)).position
        pub = Publisher(url, "s", 3000).start()
        await until(lambda: len(pub.acked) >= 500, 60, "500 acknowledged publishes")
        await asyncio.to_thread(server.restart, 3)
        await pub.join()
        await pub.broker.close()
        assert pub.failed, "the restart was not felt"
        head = (await b.history("s", None)).position
        await got.wait(head.offset, 60)
        await asyncio.sleep(0.3)
        check_delivered(got, pub)
        assert len({m.position.epoch for m in got.messages}) == 1
        replay = await b.history("s", start)
        assert replay.recovered and [m.position for m in replay.messages] == [
            m.position for m in got.messages
        ]
        assert b.health()["reconnects"] >= 1
    finally:
        await b.close()


async def test_a_broker_started_while_the_server_is_down_connects_when_it_comes_up(own):
    server, db = own
    server.stop()
    b, got = await started(f"{db.url}?connect_timeout=1")
    try:
        await until(lambda: b.health()["last_error"] is not None, 20, "a failed attempt")
        assert not b.health()["connected"]
        with pytest.raises(BrokerError, match="not listening"):
            await b.subscribe("late")
        await asyncio.to_thread(server.start)
        await until(lambda: b.health()["connected"], 30, "the connection")
        await b.subscribe("late")
        await b.apublish("late", "m", "1", KEEP)
        await got.wait(1)
    finally:
        await b.close()


async def test_a_failing_callback_does_not_stop_delivery_and_it_can_start_again(url, caplog):
    b, got = await started(url)
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
    finally:
        await b.close()


# -- presence ---------------------------------------------------------------------------
async def test_presence_is_refreshed_while_alive_and_expires_after_a_crash(url, pg):
    url += "&presence_ttl=1"
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
    finally:
        await b.close()


# -- servers ----------------------------------------------------------------------------
async def test_a_publish_on_one_server_reaches_the_clients_of_the_other(pg):
    url = f"{pg.url}?prefix=servers"
    env = server_env({"BROKER": url})
    with live_server(APP, env=env) as s1, live_server(APP, env=env) as s2:
        async with Client(s1.ws_url, origin=s1.url) as a, Client(s2.ws_url, origin=s2.url) as b:
            await a.subscribe("test.cross")
            await b.subscribe("test.cross")
            sent = await b.publish("test.cross", {"from": "b"})
            got_a, got_b = await a.next_message(30), await b.next_message(30)
            assert got_a["data"] == got_b["data"] == {"from": "b"}
            assert got_a["position"] == got_b["position"] == sent["position"]


async def test_a_server_s_client_gets_everything_through_a_restart_and_health_says_so(own):
    """A uvicorn server on a PostgreSQL the test restarts under 2,000 publishes from
    another process: /realtime/health answers 503 while it is down and 200 once it is
    back; the WebSocket client that stayed subscribed gets every acknowledged message,
    in order, once (the listener reads what it missed from the table)."""
    import httpx

    from tests.test_redis_servers import messages, offsets

    server, db = own
    url = f"{db.url}?keepalive=1&connect_timeout=1&publish_timeout=2"
    with live_server(APP, env=server_env({"BROKER": url, "QUEUE_SIZE": 50_000})) as s:
        async with httpx.AsyncClient(base_url=s.url) as http, Client(s.ws_url, origin=s.url) as c:
            await c.subscribe("test.restart")
            assert (await http.get("/realtime/health")).status_code == 200
            pub = Publisher(url, "test.restart", 2000).start()
            await until(lambda: len(pub.acked) >= 300, 60, "300 acknowledged publishes")
            await asyncio.to_thread(server.stop)
            deadline = time.monotonic() + 30
            while (await http.get("/realtime/health")).status_code != 503:
                assert time.monotonic() < deadline, "health never said 503"
                await asyncio.sleep(0.1)
            await asyncio.sleep(2)
            await asyncio.to_thread(server.start)
            deadline = time.monotonic() + 30
            while (await http.get("/realtime/health")).status_code != 200:
                assert time.monotonic() < deadline, "health never came back"
                await asyncio.sleep(0.1)
            await pub.join()
            await pub.broker.close()
            assert pub.failed, "the outage was not felt"
            head = pub.acked[max(pub.acked)].offset
            frames = await messages(c, head, timeout=60)
    numbers = [f["data"] for f in frames]
    assert offsets(frames) == list(range(1, head + 1))
    assert set(pub.acked) <= set(numbers) and set(numbers) - set(pub.acked) <= set(pub.failed)
    assert "connected again" in s.log()
