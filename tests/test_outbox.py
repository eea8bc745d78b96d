"""Durable publish (tidings.outbox): a publishing process SIGKILLed right after COMMIT,
before its on_commit publish, and the message still reaches a WebSocket subscriber of
another, serving process: once, in order per topic. Real uvicorn servers, real
redis-server, real processes; an SQLite database of this module's own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest
from django.test import override_settings

from tests.conftest import APP, need, server_env
from tests.redis_server import RedisServer, redis_server
from tidings.core.messages import Position
from tidings.testing import Client, LiveServer, live_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = {"OUTBOX_POLL": 0.2}


@pytest.fixture(scope="module")
def db() -> Iterator[str]:
    """A migrated SQLite database that no other test's server relays from."""
    with tempfile.TemporaryDirectory(prefix="tidings-outbox-") as tmp:
        path = os.path.join(tmp, "db.sqlite3")
        done = subprocess.run(
            [sys.executable, "demo/manage.py", "migrate", "-v0"],
            cwd=ROOT, env=env(path), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        yield path


@pytest.fixture(scope="module")
def pg() -> Iterator[str]:
    """A migrated database of its own on the machine's PostgreSQL, dropped after."""
    try:
        admin = pg_connect("postgres")
    except Exception as e:
        need(f"PostgreSQL on 127.0.0.1:5432 ({e})", False)
    name = f"tidings_outbox_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        done = subprocess.run(
            [sys.executable, "demo/manage.py", "migrate", "-v0"],
            cwd=ROOT, env=env(f"pg:{name}"), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        yield f"pg:{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as r:
        yield r


def where(path: str) -> dict[str, str]:
    """The database of ``path``: an SQLite file, or ``pg:<name>`` on 127.0.0.1:5432."""
    return {"DEMO_PG": path[3:]} if path.startswith("pg:") else {"DEMO_DB": path}


def env(path: str, tidings: dict[str, Any] | None = None) -> dict[str, str]:
    return {**os.environ, **server_env(tidings), **where(path)}


def serving(path: str, **tidings: Any) -> AbstractContextManager[LiveServer]:
    return live_server(APP, env={**server_env({**FAST, **tidings}), **where(path)})


async def manage(path: str, *args: str, **tidings: Any) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "demo/manage.py", *args],
        cwd=ROOT, env=env(path, tidings), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def killed_after_commit(path: str, *args: str, **tidings: Any) -> None:
    done = await manage(path, "outbox_test", "--kill", *args, **tidings)
    assert done.returncode == -signal.SIGKILL, done.stderr


def outbox_rows(path: str) -> int:
    if path.startswith("pg:"):
        with pg_connect(path[3:]) as pg:
            return int(pg.execute("SELECT count(*) FROM tidings_outbox").fetchone()[0])
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM tidings_outbox").fetchone()[0])


def pg_connect(name: str) -> Any:
    import psycopg

    return psycopg.connect(
        host="127.0.0.1", port=5432, user="postgres", dbname=name, autocommit=True
    )


def client(server: LiveServer) -> Client:
    return Client(server.ws_url, origin=server.url)


async def exactly(c: Client, count: int, quiet: float = 1.0) -> list[dict[str, Any]]:
    """The next ``count`` messages, then none for ``quiet`` seconds."""
    got = [await c.next_message(20) for _ in range(count)]
    with pytest.raises(TimeoutError):
        extra = await c.next_message(quiet)
        print("unexpected", extra)
    return got


def in_order(got: list[dict[str, Any]], topics: list[str], n: int) -> None:
    """Each topic got its ``n`` messages, once each, in the order they were written."""
    for t in topics:
        mine = [m for m in got if m["topic"] == t]
        assert [m["data"]["i"] for m in mine] == list(range(n))
        assert [Position.parse(m["position"]).offset for m in mine] == list(range(1, n + 1))


@contextlib.asynccontextmanager
async def three_rows_waiting(path: str, broker: str) -> AsyncIterator[Client]:
    """A server that relays nothing itself, its client subscribed to a new topic, and
    three rows of that topic in the outbox, from a publisher killed after COMMIT."""
    t = topic()
    with serving(path, BROKER=broker, OUTBOX_RELAY=False) as s:
        async with client(s) as c:
            await c.subscribe(t)
            await killed_after_commit(path, "--topic", t, "--n", "3", BROKER=broker)
            assert outbox_rows(path) == 3
            yield c


async def the_rest_once(c: Client, path: str, broker: str, first: dict[str, Any]) -> str:
    """Row 0 of three arrived as ``first``: ``tidings_relay --once`` publishes rows 1 and 2,
    and nothing twice; returns what it printed."""
    done = await manage(path, "tidings_relay", "--once", BROKER=broker)
    assert done.returncode == 0, done.stderr
    rest = await exactly(c, 2)
    assert [m["data"]["i"] for m in rest] == [1, 2]
    assert [Position.parse(m["position"]).offset for m in [first, *rest]] == [1, 2, 3]
    assert outbox_rows(path) == 0
    return done.stdout


def topic() -> str:
    return f"test.outbox.{secrets.token_hex(3)}"


# -- the memory broker: the relay runs in the serving process ------------------------------
async def test_killed_after_commit_is_still_delivered_once_in_order(db):
    t, lost = topic(), topic()
    with serving(db) as s:
        async with client(s) as c:
            await c.subscribe(t)
            await c.subscribe(lost)
            await killed_after_commit(db, "--topic", lost, "--n", "2", "--plain")
            await killed_after_commit(db, "--topic", t, "--n", "5")
            got = await exactly(c, 5)
            async with httpx.AsyncClient() as http:
                health = (await http.get(f"{s.url}/realtime/health")).json()
    assert [m["topic"] for m in got] == [t] * 5  # nothing of the plain publishes: lost
    assert [m["data"] for m in got] == [{"i": i} for i in range(5)]
    assert [Position.parse(m["position"]).offset for m in got] == [1, 2, 3, 4, 5]
    assert outbox_rows(db) == 0
    assert health == {"ok": True}  # the relay counts in it (503 while its passes fail)


async def test_rollback_sends_nothing_and_outside_a_transaction_is_relayed(db):
    t = topic()
    with serving(db) as s:
        async with client(s) as c:
            await c.subscribe(t)
            done = await manage(db, "outbox_test", "--topic", t, "--n", "3", "--rollback")
            assert done.returncode == 0, done.stderr
            assert outbox_rows(db) == 0
            done = await manage(db, "outbox_test", "--topic", t, "--n", "2", "--autocommit")
            assert done.returncode == 0, done.stderr
            got = await exactly(c, 2)
    assert [m["data"] for m in got] == [{"i": 0}, {"i": 1}]


async def test_a_durable_feed_survives_the_kill(db):
    with serving(db) as s:
        async with client(s) as c:
            await c.subscribe("entries")
            await killed_after_commit(db, "--entries", "--n", "3")
            got = await exactly(c, 3)
    assert [m["data"]["action"] for m in got] == ["create"] * 3
    assert [m["data"]["data"]["text"] for m in got] == [f"entry {i}" for i in range(3)]


async def test_a_commit_in_the_serving_process_wakes_its_relay_at_once(db):
    """No waiting for the poll (30 s here) when the relay's own process commits."""
    t = topic()
    with serving(db, OUTBOX_POLL=30) as s:
        async with client(s) as c, httpx.AsyncClient(base_url=s.url) as http:
            await c.subscribe(t)
            await asyncio.sleep(0.5)  # the relay's first pass is over: it waits now
            started = time.monotonic()
            body = {"topic": t, "n": 3, "durable": True, "transaction": "commit"}
            r = await http.post("/test/publish", json=body)
            assert r.status_code == 200 and r.json()["positions"] == [None] * 3
            got = await exactly(c, 3)
            assert time.monotonic() - started < 5
    assert [m["data"]["i"] for m in got] == [0, 1, 2]


# -- Redis: the publisher and the serving processes are different processes ---------------
async def test_redis_two_servers_relay_three_killed_publishers_once_in_order(db, redis):
    """Two serving processes, both relaying; three publishers killed after COMMIT."""
    topics = [topic() for _ in range(3)]
    with serving(db, BROKER=redis.url) as a, serving(db, BROKER=redis.url) as b:
        async with client(a) as ca, client(b) as cb:
            for t in topics:
                await ca.subscribe(t)
                await cb.subscribe(t)
            await asyncio.gather(
                *(killed_after_commit(db, "--topic", t, "--n", "20") for t in topics)
            )
            got_a, got_b = await exactly(ca, 60), await exactly(cb, 60)
    in_order(got_a, topics, 20)
    in_order(got_b, topics, 20)
    assert outbox_rows(db) == 0


async def test_redis_relay_killed_after_publishing_before_deleting_publishes_once(db, redis):
    """The broker's receipt, named after the row: the next relay gets the first one's
    position back instead of publishing it again."""
    async with three_rows_waiting(db, redis.url) as c:
        done = await manage(db, "outbox_test", "--relay-and-die", BROKER=redis.url)
        assert done.returncode == -signal.SIGKILL, done.stderr
        first = await c.next_message(20)
        assert first["data"] == {"i": 0} and outbox_rows(db) == 3  # published, kept
        printed = await the_rest_once(c, db, redis.url, first)
    assert "Published 3 durable message(s)." in printed
    assert redis.client().keys("tidings:r:outbox:*") == []  # receipts gone with the rows


async def test_redis_frozen_mid_pass_keeps_what_was_published_and_the_rest_follows(db, redis):
    """Redis stops (SIGSTOP) after a pass's first publish: the pass fails on the second
    row, yet the first row's delete commits; the rest follows once Redis is back, each
    row once (a try that reached Redis late published nothing)."""
    assert redis.process is not None
    url = f"{redis.url}?publish_timeout=1&retries=0&socket_timeout=1"
    async with three_rows_waiting(db, url) as c:
        frozen = str(redis.process.pid)
        done = await manage(db, "outbox_test", "--relay-and-freeze", frozen, BROKER=url)
        redis.process.send_signal(signal.SIGCONT)
        assert done.returncode == 0 and done.stdout.startswith("BrokerError"), done
        first = await c.next_message(20)
        assert first["data"] == {"i": 0} and outbox_rows(db) == 2
        await the_rest_once(c, db, url, first)


async def test_the_relay_command_refuses_the_memory_broker(db):
    done = await manage(db, "tidings_relay", "--once")
    assert done.returncode != 0 and "memory broker" in done.stderr


# -- PostgreSQL: row locks, NOTIFY -------------------------------------------------------
def relay_command(path: str, broker: str) -> subprocess.Popen[bytes]:
    """``manage.py tidings_relay``, running until terminated."""
    return subprocess.Popen(
        [sys.executable, "demo/manage.py", "tidings_relay"],
        cwd=ROOT,
        env=env(path, {"BROKER": broker, "OUTBOX_POLL": 0.05}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def test_pg_four_relays_at_once_publish_each_row_once_in_order(pg, redis):
    """Four ``tidings_relay`` running while five publishers commit 200 rows each and
    are killed: heads FOR UPDATE SKIP LOCKED share the topics out, no row twice."""
    topics = [topic() for _ in range(5)]
    relays = [relay_command(pg, redis.url) for _ in range(4)]
    try:
        with serving(pg, BROKER=redis.url, OUTBOX_RELAY=False) as s:
            async with client(s) as c:
                for t in topics:
                    await c.subscribe(t)
                await asyncio.sleep(2)  # the relays are up
                await asyncio.gather(
                    *(killed_after_commit(pg, "--topic", t, "--n", "200") for t in topics)
                )
                got = await exactly(c, 1000, quiet=2)
    finally:
        for relay in relays:
            relay.terminate()
        errors = [relay.communicate(timeout=10)[1].decode() for relay in relays]
    assert all(relay.returncode == -signal.SIGTERM for relay in relays), errors
    in_order(got, topics, 200)
    assert outbox_rows(pg) == 0


async def test_pg_notify_wakes_the_relay_of_another_process(pg, redis):
    t = topic()
    with serving(pg, BROKER=redis.url, OUTBOX_POLL=30) as s:
        async with client(s) as c:
            await c.subscribe(t)
            await asyncio.sleep(1)  # the relay has listened and made its first pass
            started = time.monotonic()
            await killed_after_commit(pg, "--topic", t, "--n", "3")
            got = await exactly(c, 3)
            assert time.monotonic() - started < 10
    assert [m["data"]["i"] for m in got] == [0, 1, 2]


def test_durable_refuses_on_commit_false_and_a_topic_too_long_for_the_table():
    import tidings

    with pytest.raises(ValueError, match="on_commit=False"):
        tidings.publish("test.outbox.x", 1, durable=True, on_commit=False)
    with override_settings(TIDINGS={"TOPIC_MAX_LENGTH": 1000}):
        with pytest.raises(ValueError, match="at most 500"):
            tidings.publish("t" * 501, 1, durable=True)


async def test_pg_broker_relay_killed_after_publishing_publishes_once(pg):
    """The PostgreSQL broker on the outbox's own database: its receipt, named after the
    row, spares the second publish when the next relay comes within its sweep's TTL."""
    broker = f"postgresql://postgres@127.0.0.1:5432/{pg[3:]}"
    async with three_rows_waiting(pg, broker) as c:
        done = await manage(pg, "outbox_test", "--relay-and-die", BROKER=broker)
        assert done.returncode == -signal.SIGKILL, done.stderr
        first = await c.next_message(20)
        assert first["data"] == {"i": 0} and outbox_rows(pg) == 3
        await the_rest_once(c, pg, broker, first)


async def test_pg_broker_on_the_same_database_publishes_in_the_transaction(pg):
    """``django://default``: the message goes into the broker's history in the data's
    transaction (one write): no outbox row, no relay, and a rollback leaves nothing."""
    t, broker = topic(), "django://default"
    with serving(pg, BROKER=broker, OUTBOX_RELAY=False) as s:
        async with client(s) as c:
            await c.subscribe(t)
            await c.subscribe("entries")
            done = await manage(pg, "outbox_test", "--topic", t, "--rollback", BROKER=broker)
            assert done.returncode == 0, done.stderr
            await killed_after_commit(pg, "--topic", t, "--n", "3", BROKER=broker)
            await killed_after_commit(pg, "--entries", BROKER=broker)
            assert outbox_rows(pg) == 0
            got = await exactly(c, 4)
    assert [m["data"]["i"] for m in got if m["topic"] == t] == [0, 1, 2]
    assert [Position.parse(m["position"]).offset for m in got if m["topic"] == t] == [1, 2, 3]
    assert [m["data"]["action"] for m in got if m["topic"] == "entries"] == ["create"]
