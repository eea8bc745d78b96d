"""The dashboard demo (the Channels 2 example): auth, documents, the feed of actions."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from tests.test_websocket import login
from tidings.testing import Client, RequestFailed


def csrf(page: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def test_login_required_and_bad_credentials(server):
    with httpx.Client(base_url=server.url) as http:
        r = http.get("/dashboard/")
        assert r.status_code == 302 and r.headers["location"].startswith("/accounts/login/")
        page = http.get("/accounts/login/")
        r = http.post(
            "/accounts/login/",
            data={
                "username": "nobody",
                "password": "wrong",
                "csrfmiddlewaretoken": csrf(page.text),
            },
        )
        assert r.status_code == 200 and "didn't match" in r.text


def test_signup_shows_form_errors_then_logs_in(server):
    with httpx.Client(base_url=server.url) as http:
        page = http.get("/accounts/signup/")
        r = http.post(
            "/accounts/signup/",
            data={
                "username": "newbie",
                "password1": "short",
                "password2": "other",
                "csrfmiddlewaretoken": csrf(page.text),
            },
        )
        assert r.status_code == 200 and "errorlist" in r.text
        page = http.get("/accounts/signup/")
        password = "a-Long-enough-password-42"
        r = http.post(
            "/accounts/signup/",
            data={
                "username": "newbie",
                "password1": password,
                "password2": password,
                "csrfmiddlewaretoken": csrf(page.text),
            },
        )
        assert r.status_code == 302 and r.headers["location"] == "/dashboard/"
        assert http.get("/dashboard/").status_code == 200


async def test_every_action_reaches_the_feed(server):
    cookies = await asyncio.to_thread(login, server, "fern", "pw-fern-1")
    async with Client(server.ws_url, origin=server.url, cookies=cookies) as watcher:
        await watcher.subscribe("dashboard.feed")

        def act() -> None:
            with httpx.Client(base_url=server.url, cookies=cookies) as http:
                page = http.get("/dashboard/")
                r = http.post(
                    "/dashboard/", data={"title": "Plan", "csrfmiddlewaretoken": csrf(page.text)}
                )
                slug = r.headers["location"].rstrip("/").split("/")[-1]
                http.get(f"/dashboard/docs/{slug}/")
                page = http.get(f"/dashboard/docs/{slug}/edit/")
                http.post(
                    f"/dashboard/docs/{slug}/edit/",
                    data={"title": "Plan", "body": "v2", "csrfmiddlewaretoken": csrf(page.text)},
                )

        await asyncio.to_thread(act)
        actions = [(await watcher.next_message())["data"] for _ in range(4)]
        assert [a["action"] for a in actions] == ["create", "open", "edit", "save"]
        assert [a["text"] for a in actions] == [
            "fern created 'Plan'",
            "fern opened 'Plan'",
            "fern is editing 'Plan'",
            "fern saved 'Plan'",
        ]
        assert {a["user"] for a in actions} == {"fern"}


async def test_the_feed_and_presence_are_for_logged_in_users_only(server):
    async with Client(server.ws_url, origin=server.url) as anon:
        for topic in ("dashboard.feed", "dashboard.users", "dashboard.doc.plan"):
            presence = {} if topic == "dashboard.feed" else {"presence": True}
            with pytest.raises(RequestFailed) as e:
                await anon.subscribe(topic, **presence)
            assert e.value.code == "forbidden"
