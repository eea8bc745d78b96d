"""PostgreSQL change feeds: writes made outside the ORM arrive, through triggers and
LISTEN/NOTIFY, against the real PostgreSQL on 127.0.0.1:5432, in a database made here."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import APP, need, server_env
from tidings.testing import Client, LiveServer, live_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def connect(dbname: str = "postgres"):
    import psycopg

    return psycopg.connect(**PG, dbname=dbname, autocommit=True, connect_timeout=5)


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    try:
        admin = connect()
    except Exception as e:
        need(f"PostgreSQL on 127.0.0.1:5432 ({e})", False)
    name = f"tidings_test_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module")
def pg_server(pg_database: str) -> Iterator[LiveServer]:
    env = {**os.environ, **server_env({"PG_LISTEN": True}), "DEMO_PG": pg_database}
    for command in (["migrate", "-v0"], ["tidings_triggers"]):
        r = subprocess.run(
            [sys.executable, "demo/manage.py", *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
    assert "Installed the trigger on counters_integervalue" in r.stdout
    with live_server(APP, env={**server_env({"PG_LISTEN": True}), "DEMO_PG": pg_database}) as srv:
        yield srv


def sql(pg_database: str, statement: str, *params: object) -> None:
    with connect(pg_database) as conn:
        conn.execute(statement, params)


async def run_sql(pg_database: str, statement: str, *params: object) -> None:
    await asyncio.to_thread(sql, pg_database, statement, *params)


async def test_raw_sql_and_queryset_update_arrive(pg_server, pg_database):
    async with Client(pg_server.ws_url, origin=pg_server.url) as c:
        await c.subscribe("counters.values")
        await run_sql(
            pg_database,
            "INSERT INTO counters_integervalue (name, value, version) VALUES ('raw', 1, 1)",
        )
        created = (await c.next_message())["data"]
        assert created["action"] == "create" and created["data"] == {"name": "raw", "value": 1}
        pk = created["pk"]
        await run_sql(pg_database, "UPDATE counters_integervalue SET value = 7 WHERE id = %s", pk)
        updated = (await c.next_message())["data"]
        assert (updated["action"], updated["pk"], updated["data"]["value"]) == ("update", pk, 7)
        assert updated["changed"] == ["value"]

        # QuerySet.update() and bulk_update() in another process: no signal, yet it arrives
        code = (
            "import django; django.setup();"
            "from demo.counters.models import IntegerValue;"
            f"IntegerValue.objects.filter(pk={pk}).update(value=99)"
        )
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DEMO_PG": pg_database}
        r = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        assert (await c.next_message())["data"]["data"]["value"] == 99

        await run_sql(pg_database, "DELETE FROM counters_integervalue WHERE id = %s", pk)
        deleted = (await c.next_message())["data"]
        assert (deleted["action"], deleted["pk"], deleted["data"]["name"]) == ("delete", pk, "raw")


async def test_a_rolled_back_write_sends_nothing_and_orm_saves_are_sent_once(
    pg_server, pg_database
):
    def rolled_back() -> None:
        with connect(pg_database) as conn:
            conn.autocommit = False
            conn.execute(
                "INSERT INTO counters_integervalue (name, value, version) VALUES ('never', 1, 1)"
            )
            conn.rollback()

    async with Client(pg_server.ws_url, origin=pg_server.url) as c:
        await c.subscribe("counters.values")
        await asyncio.to_thread(rolled_back)
        await c.publish("counters.commands", {"action": "create", "name": "orm"})
        first = (await c.next_message())["data"]
        assert first["data"]["name"] == "orm"  # 'never' was rolled back: nothing came
        # the ORM save came once (trigger, not signal too): a raw write after it comes next.
        # A second publish of the save, by a signal (sent at commit, before the publish
        # above was answered) or by a second notification (PostgreSQL delivers them in
        # commit order, the listener handles them one by one), would come before it.
        await run_sql(
            pg_database,
            "INSERT INTO counters_integervalue (name, value, version) VALUES ('marker', 1, 1)",
        )
        after = (await c.next_message())["data"]
        assert (after["action"], after["data"]["name"]) == ("create", "marker")


async def test_rows_far_over_notifys_8000_bytes(pg_server, pg_database):
    big = "x" * 20_000
    async with Client(pg_server.ws_url, origin=pg_server.url) as c:
        await c.subscribe("notes", initial=True)
        await c.next_frame()
        await run_sql(
            pg_database,
            "INSERT INTO testapp_note (owner, text, private) VALUES ('ann', %s, false)",
            big,
        )
        created = (await c.next_message())["data"]
        assert created["data"]["text"] == big  # only the key was notified; the row was read
        await run_sql(pg_database, "DELETE FROM testapp_note WHERE id = %s", created["pk"])
        deleted = (await c.next_message())["data"]
        assert (deleted["action"], deleted["pk"]) == ("delete", created["pk"])


async def test_the_listener_reconnects_by_itself(pg_server, pg_database):
    async with Client(pg_server.ws_url, origin=pg_server.url) as c:
        await c.subscribe("counters.values")
        await run_sql(
            pg_database,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND query LIKE 'LISTEN%%'",
            pg_database,
        )
        for attempt in range(50):  # once it is back, changes flow again
            await run_sql(
                pg_database,
                "INSERT INTO counters_integervalue (name, value, version) VALUES (%s, 0, 1)",
                f"after-{attempt}",
            )
            try:
                got = (await c.next_message(timeout=0.5))["data"]
                break
            except TimeoutError:
                continue
        else:
            pytest.fail("no change arrived after the listener's connection was killed")
        assert got["data"]["name"].startswith("after-")
        assert "lost the database listener" in pg_server.log()  # it noticed, and said so
