"""#13 item 8: when a login ends, its connections end, on every transport and process.

A real server (and two sharing a real redis-server), Django's real login, logout and
password-change views, real clients. A connection opened while logged in is closed
with 4401 when that user logs out, changes password, is deactivated or deleted; it
comes back as whoever its cookie now says. Everyone else keeps being served.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import APP, server_env
from tests.http_helpers import hub, next_event, sse_events, wait_for
from tests.redis_server import RedisServer, redis_server
from tidings.testing import Client, LiveServer, RequestFailed, live_server

LOGGED_OUT = 4401
TOPIC = "members.lounge"  # subscribe and publish: "authenticated" (tests/testapp/realtime.py)


class Browser:
    """One browser session (its own cookies) through Django's real auth views."""

    def __init__(self, server: LiveServer) -> None:
        self.http = httpx.Client(base_url=server.url, timeout=30)

    def _token(self, path: str) -> str:
        page = self.http.get(path)
        assert page.status_code == 200, (path, page.status_code)
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert found is not None
        return found.group(1)

    def login(self, username: str, password: str) -> dict[str, str]:
        from django.contrib.auth.models import User

        if not User.objects.filter(username=username).exists():
            User.objects.create_user(username, password=password)
        token = self._token("/accounts/login/")
        r = self.http.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        )
        assert r.status_code == 302, r.text
        return self.cookies()

    def cookies(self) -> dict[str, str]:
        return {"sessionid": self.http.cookies["sessionid"]}

    def logout(self) -> None:
        r = self.http.post(
            "/accounts/logout/", headers={"X-CSRFToken": self.http.cookies["csrftoken"]}
        )
        assert r.status_code == 302, r.text

    def change_password(self, old: str, new: str) -> dict[str, str]:
        token = self._token("/accounts/password_change/")
        r = self.http.post(
            "/accounts/password_change/",
            data={
                "old_password": old,
                "new_password1": new,
                "new_password2": new,
                "csrfmiddlewaretoken": token,
            },
        )
        assert r.status_code == 302, r.text
        return self.cookies()


def account(server: LiveServer, username: str, action: str, **fields: Any) -> None:
    r = httpx.post(
        server.url + "/test/account",
        content=json.dumps({"username": username, "action": action, **fields}),
    )
    assert r.status_code == 200, r.text


def user() -> tuple[str, str]:
    return f"u-{secrets.token_hex(4)}", f"pw-{secrets.token_hex(8)}"


def ws(server: LiveServer, cookies: dict[str, str] | None = None) -> Client:
    return Client(server.ws_url, origin=server.url, cookies=cookies or {})


async def closed_with(c: Client, timeout: float = 10) -> tuple[int | None, str | None]:
    await asyncio.wait_for(c.ws.wait_closed(), timeout)
    return c.ws.close_code, c.ws.close_reason


async def still_served(c: Client, topic: str = "test.bystander") -> None:
    """``c`` (subscribed to ``topic``) still publishes and receives."""
    await c.publish(topic, "still here")
    assert (await c.next_message())["data"] == "still here"


async def anonymous_now(server: LiveServer, cookies: dict[str, str]) -> None:
    """A connection opened with ``cookies`` now is nobody's: members' topics refuse it."""
    async with ws(server, cookies) as again:
        with pytest.raises(RequestFailed) as e:
            await again.subscribe(TOPIC)
        assert e.value.code == "forbidden"


# -- /realtime/ws ------------------------------------------------------------------------
async def test_logout_closes_the_users_websocket_4401_and_nobody_elses(server):
    name, pw = user()
    browser, other = Browser(server), Browser(server)
    cookies = await asyncio.to_thread(browser.login, name, pw)
    bob = await asyncio.to_thread(other.login, *user())
    async with ws(server, cookies) as mine, ws(server, bob) as bobs, ws(server) as anon:
        await mine.subscribe(TOPIC)
        await mine.publish(TOPIC, "while logged in")
        await bobs.subscribe("test.bystander")
        await anon.subscribe("test.bystander")
        await asyncio.to_thread(browser.logout)
        assert await closed_with(mine) == (LOGGED_OUT, "logged out")
        await still_served(bobs)
        await still_served(anon)
    await anonymous_now(server, cookies)


async def test_every_connection_of_the_user_is_closed_on_logout(server):
    """Two sessions (two browsers) of one user: logging out of one ends both's sockets;
    the other session is still logged in, so it comes back as the user."""
    name, pw = user()
    laptop, phone = Browser(server), Browser(server)
    first = await asyncio.to_thread(laptop.login, name, pw)
    second = await asyncio.to_thread(phone.login, name, pw)
    async with ws(server, first) as a, ws(server, first) as b, ws(server, second) as c:
        for conn in (a, b, c):
            await conn.subscribe(TOPIC)
        await asyncio.to_thread(laptop.logout)
        for conn in (a, b, c):
            assert (await closed_with(conn))[0] == LOGGED_OUT
    await anonymous_now(server, first)
    async with ws(server, second) as back:
        assert (await back.subscribe(TOPIC))["ok"]


async def test_password_change_closes_every_session_and_only_the_new_cookie_comes_back(server):
    name, pw = user()
    here, elsewhere = Browser(server), Browser(server)
    mine = await asyncio.to_thread(here.login, name, pw)
    stale = await asyncio.to_thread(elsewhere.login, name, pw)
    async with ws(server, mine) as a, ws(server, stale) as b:
        await a.subscribe(TOPIC)
        await b.subscribe(TOPIC)
        new = await asyncio.to_thread(here.change_password, pw, pw + "-New!")
        assert await closed_with(a) == (LOGGED_OUT, "password changed")
        assert await closed_with(b) == (LOGGED_OUT, "password changed")
    await anonymous_now(server, stale)  # its session auth hash is stale
    await anonymous_now(server, mine)  # update_session_auth_hash moved it to a new key
    async with ws(server, new) as back:
        assert (await back.subscribe(TOPIC))["ok"]


@pytest.mark.parametrize(
    ("action", "reason"), [("deactivate", "account deactivated"), ("delete", "account deleted")]
)
async def test_deactivating_or_deleting_the_user_closes_its_connections(server, action, reason):
    name, pw = user()
    cookies = await asyncio.to_thread(Browser(server).login, name, pw)
    async with ws(server, cookies) as c:
        await c.subscribe(TOPIC)
        await asyncio.to_thread(account, server, name, action)
        assert await closed_with(c) == (LOGGED_OUT, reason)
    await anonymous_now(server, cookies)


async def test_a_rolled_back_deactivation_or_a_plain_save_closes_nothing(server):
    name, pw = user()
    cookies = await asyncio.to_thread(Browser(server).login, name, pw)
    async with ws(server, cookies) as c:
        await c.subscribe(TOPIC)
        await asyncio.to_thread(account, server, name, "deactivate", rollback=True)
        await asyncio.to_thread(account, server, name, "rename")
        await c.publish(TOPIC, "still me")  # answered in order: nothing closed it before
        assert (await c.next_message())["data"] == "still me"
        assert c.ws.close_code is None


async def test_tidings_disconnect_and_adisconnect_close_with_the_reason(server):
    name, pw = user()
    cookies = await asyncio.to_thread(Browser(server).login, name, pw)
    async with ws(server, cookies) as c:
        await c.subscribe(TOPIC)
        await asyncio.to_thread(account, server, name, "disconnect", reason="banned")
        assert await closed_with(c) == (LOGGED_OUT, "banned")
    async with ws(server, cookies) as c:  # still logged in: it comes back as the user
        await c.subscribe(TOPIC)
        async with httpx.AsyncClient(base_url=server.url) as http:
            r = await http.get("/test/adisconnect", params={"username": name})
            assert r.status_code == 200
        assert await closed_with(c) == (LOGGED_OUT, "async")


async def test_clients_can_neither_subscribe_nor_publish_to_the_disconnect_topic(server):
    async with ws(server) as c:
        for op in (c.subscribe("tidings.disconnect"), c.publish("tidings.disconnect", {})):
            with pytest.raises(RequestFailed) as e:
                await op
            assert e.value.code == "invalid_topic"


# -- SSE and long-poll -------------------------------------------------------------------
async def test_logout_ends_an_sse_stream_with_tidings_close_4401(server):
    name, pw = user()
    browser = Browser(server)
    cookies = await asyncio.to_thread(browser.login, name, pw)
    async with httpx.AsyncClient(base_url=server.url, timeout=30, cookies=cookies) as http:
        async with http.stream("GET", "/realtime/sse", params={"topic": TOPIC}) as response:
            assert response.status_code == 200
            events = sse_events(response)
            assert (await next_event(events)).event == "tidings.open"
            await asyncio.to_thread(browser.logout)
            closing = await next_event(events)
            assert closing.event == "tidings.close"
            assert json.loads(closing.data) == {"code": LOGGED_OUT, "reason": "logged out"}
        r = await http.get("/realtime/sse", params={"topic": TOPIC})
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "forbidden"


async def test_logout_answers_a_held_poll_at_once_and_the_next_poll_is_refused(server):
    name, pw = user()
    browser = Browser(server)
    cookies = await asyncio.to_thread(browser.login, name, pw)
    async with httpx.AsyncClient(base_url=server.url, timeout=60, cookies=cookies) as http:
        params = {"topic": TOPIC, "timeout": 100}  # held far longer than this test waits
        poll = asyncio.ensure_future(http.get("/realtime/poll", params=params))
        await wait_for(lambda: _held(server, TOPIC))  # the server has it in its hub
        await asyncio.to_thread(browser.logout)
        answer = await asyncio.wait_for(poll, 20)
        assert answer.status_code == 200
        assert answer.json()["messages"] == []
        r = await http.get("/realtime/poll", params={"topic": TOPIC, "timeout": 0})
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "forbidden"


async def test_logout_ends_a_stream_held_by_a_view_of_that_user_only(server):
    """A view's ``tidings.hold_stream`` is its user's connection too."""
    name, pw = user()
    browser = Browser(server)
    cookies = await asyncio.to_thread(browser.login, name, pw)
    topic = "test.held-by-view"
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30, cookies=cookies) as http,
        httpx.AsyncClient(base_url=server.url, timeout=30) as anon,
        http.stream("GET", "/test/hold", params={"topic": topic}) as mine,
        anon.stream("GET", "/test/hold", params={"topic": topic}) as theirs,
    ):
        ours, others = sse_events(mine), sse_events(theirs)
        await next_event(ours, skip_comments=False)  # the keep-alive: held
        await next_event(others, skip_comments=False)
        await asyncio.to_thread(browser.logout)

        async def rest() -> list[Any]:
            return [event async for event in ours]

        assert all(event.id is None for event in await asyncio.wait_for(rest(), 10))  # ended
        await anon.post("/realtime/publish", json={"topic": topic, "data": "still"})
        assert (await next_event(others)).data == '"still"'


async def test_logout_closes_a_websocket_held_by_a_view_4401(server):
    """A view's ``tidings.hold_websocket`` (the demo's /headlines/<id>/) is its user's."""
    from websockets.asyncio.client import connect

    name, pw = user()
    browser = Browser(server)
    cookies = await asyncio.to_thread(browser.login, name, pw)
    made = await asyncio.to_thread(httpx.post, server.url + "/headlines/")
    url = f"{server.ws_url.rsplit('/realtime/', 1)[0]}/headlines/{made.json()['id']}/"
    cookie = {"Cookie": f"sessionid={cookies['sessionid']}"}
    async with connect(url, origin=server.url, additional_headers=cookie) as held:
        await wait_for(lambda: _held(server, f"headlines.{made.json()['id']}"))
        await asyncio.to_thread(browser.logout)
        await asyncio.wait_for(held.wait_closed(), 10)
        assert held.close_code == LOGGED_OUT


async def _held(server: LiveServer, topic: str) -> bool:
    return bool((await hub(server, topic))["subscribers"])


# -- every process -----------------------------------------------------------------------
@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as r:
        yield r


async def test_logout_on_one_server_closes_the_users_connections_on_another(redis):
    env = server_env({"BROKER": redis.url})
    with live_server(APP, env=env) as s1, live_server(APP, env=env) as s2:
        name, pw = user()
        browser = Browser(s1)
        cookies = await asyncio.to_thread(browser.login, name, pw)
        bob = await asyncio.to_thread(Browser(s2).login, *user())
        async with ws(s2, cookies) as there, ws(s1, cookies) as here, ws(s2, bob) as bobs:
            await there.subscribe(TOPIC)
            await here.subscribe(TOPIC)
            await bobs.subscribe("test.bystander")
            await asyncio.to_thread(browser.logout)
            assert await closed_with(here) == (LOGGED_OUT, "logged out")
            assert await closed_with(there) == (LOGGED_OUT, "logged out")
            await still_served(bobs)
        await anonymous_now(s2, cookies)
