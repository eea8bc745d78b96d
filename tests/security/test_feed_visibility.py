"""A row that leaves what a subscriber may see is removed for them (#13, item 15).

Two users follow the same feed; a row flips to private for one of them: the one who
lost it gets a ``delete`` of the row as they saw it, the owner gets the update, and
nobody gets the values the update replaced. Over /realtime/ws, /realtime/sse and
/realtime/poll, for ORM saves (signals) and for raw SQL on PostgreSQL (triggers).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.test_feeds import write
from tests.test_pgfeed import pg_database, pg_server, run_sql  # noqa: F401 (fixtures)
from tests.transports.clients import Endpoint, Sub, open_sub
from tidings.testing import LiveServer

KINDS = ["ws", "sse", "poll"]
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def sign_up(server: LiveServer, username: str) -> dict[str, str]:
    """A new user, made through the demo's signup form (in the server's database); its
    session cookie."""
    with httpx.Client(base_url=server.url) as http:
        token = CSRF.search(http.get("/accounts/signup/").text)
        assert token
        password = secrets.token_urlsafe(12)
        r = http.post(
            "/accounts/signup/",
            data={
                "csrfmiddlewaretoken": token.group(1),
                "username": username,
                "password1": password,
                "password2": password,
            },
        )
        assert r.status_code == 302, r.text
        return {"sessionid": http.cookies["sessionid"]}


@asynccontextmanager
async def subs(
    kind: str, server: LiveServer, topic: str, *cookies: dict[str, str]
) -> AsyncIterator[list[Sub]]:
    at = Endpoint(server.url, server.url)
    opened = [await open_sub(kind, at, topic, cookies=c) for c in cookies]
    try:
        yield opened
    finally:
        for sub in opened:
            await sub.close()


async def users(server: LiveServer) -> tuple[str, dict[str, str], dict[str, str]]:
    owner = "olga" + secrets.token_hex(4)
    return (
        owner,
        await asyncio.to_thread(sign_up, server, owner),
        await asyncio.to_thread(sign_up, server, "pete" + secrets.token_hex(4)),
    )


async def next_data(sub: Sub) -> dict[str, Any]:
    data = (await sub.next(timeout=10)).data
    assert "before" not in data, data  # the replaced values never reach a client
    return dict(data)


async def check_flip(
    server: LiveServer, kind: str, make_private: Any, make_public: Any, add_marker: Any
) -> None:
    """The scenario, whatever writes the rows: ``make_private(pk)``, ``make_public(pk)``,
    ``add_marker(owner, text)`` (a public note, to show nothing else came first)."""
    owner, olga_cookies, pete_cookies = await users(server)
    pk = await add_marker(owner, "shared")
    async with subs(kind, server, "notes", olga_cookies, pete_cookies) as (olga, pete):
        await make_private(pk)
        update = await next_data(olga)
        assert (update["action"], update["pk"], update["data"]["private"]) == ("update", pk, True)
        removal = await next_data(pete)
        assert (removal["action"], removal["pk"]) == ("delete", pk)
        assert removal["data"] == {"owner": owner, "text": "shared", "private": False}
        marker = await add_marker(owner, "marker")  # pete got nothing else before it
        assert (await next_data(pete))["pk"] == marker
        assert (await next_data(olga))["pk"] == marker
        await make_public(pk)  # back in sight: both get the update
        for sub in (olga, pete):
            back = await next_data(sub)
            assert (back["action"], back["pk"], back["data"]["private"]) == ("update", pk, False)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_row_made_private_is_removed_for_those_who_lose_it(server, kind):
    async def add(owner: str, text: str) -> int:
        return await write(server, model="note", owner=owner, text=text)

    async def private(pk: int) -> None:
        await write(server, model="note", pk=pk, private=True)

    async def public(pk: int) -> None:
        await write(server, model="note", pk=pk, private=False)

    await check_flip(server, kind, private, public, add)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_row_that_leaves_a_topic_is_removed_there(server, kind):
    """``public-notes`` shows public notes only (its ``topics()``): no ``visible``, and
    yet a note made private leaves it."""
    pk = await write(server, model="note", owner="ann", text="on the board")
    async with subs(kind, server, "public-notes", {}) as (board,):
        await write(server, model="note", pk=pk, private=True)
        removal = await next_data(board)
        assert (removal["action"], removal["pk"]) == ("delete", pk)
        assert removal["data"] == {"owner": "ann", "text": "on the board", "private": False}
        marker = await write(server, model="note", owner="ann", text="marker")
        assert (await next_data(board))["pk"] == marker
        await write(server, model="note", pk=pk, private=False)
        back = await next_data(board)
        assert (back["action"], back["pk"]) == ("update", pk)


@pytest.mark.parametrize("kind", KINDS)
async def test_raw_sql_that_makes_a_row_private_removes_it_too(pg_server, pg_database, kind):  # noqa: F811
    async def add(owner: str, text: str) -> int:
        pk = secrets.randbelow(10**9)
        await run_sql(
            pg_database,
            "INSERT INTO testapp_note (id, owner, text, private) VALUES (%s, %s, %s, false)",
            pk,
            owner,
            text,
        )
        return pk

    async def private(pk: int) -> None:
        await run_sql(pg_database, "UPDATE testapp_note SET private = true WHERE id = %s", pk)

    async def public(pk: int) -> None:
        await run_sql(pg_database, "UPDATE testapp_note SET private = false WHERE id = %s", pk)

    await check_flip(pg_server, kind, private, public, add)
