"""The public demo against hostile visitors: no open redirect after signing up, and no
unbounded creation of rooms and headlines (#13, item 14). Real servers, httpx."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import httpx
import pytest

from tidings.testing import LiveServer

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def sign_up(server: LiveServer, next_url: str) -> httpx.Response:
    """Sign up a fresh user through the form, with ``?next=next_url``; the answer."""
    with httpx.Client(base_url=server.url) as http:
        url = "/accounts/signup/?" + httpx.QueryParams({"next": next_url}).__str__()
        token = CSRF.search(http.get(url).text)
        assert token, "the signup form has a CSRF token"
        password = secrets.token_urlsafe(12)
        return http.post(
            url,
            data={
                "csrfmiddlewaretoken": token.group(1),
                "username": "u" + secrets.token_hex(6),
                "password1": password,
                "password2": password,
            },
        )


@pytest.mark.parametrize(
    "next_url",
    ["https://evil.example/", "//evil.example/", "https:evil.example", "/\\evil.example"],
)
def test_signup_never_redirects_off_site(server, next_url):
    r = sign_up(server, next_url)
    assert r.status_code == 302
    assert r.headers["location"] == "/dashboard/"  # the default page, not evil.example


def test_signup_still_follows_a_next_on_this_site(server):
    r = sign_up(server, "/chat/")
    assert r.status_code == 302 and r.headers["location"] == "/chat/"


@pytest.fixture
def limited(make_server, monkeypatch) -> Iterator[LiveServer]:
    """A demo server that lets a client create 3 rooms and 3 headlines a minute."""
    monkeypatch.setenv("DEMO_NEW_PER_MINUTE", "3")
    with make_server() as srv:
        yield srv


def test_a_client_creates_rooms_at_a_bounded_rate(limited):
    with httpx.Client(base_url=limited.url) as http:
        for _ in range(3):
            assert http.get("/rooms/new/").status_code == 302
        r = http.get("/rooms/new/")
        assert r.status_code == 429 and r.headers["retry-after"] == "60"
        assert "3 rooms a minute" in r.text
        # an unknown label makes a room too: the same limit
        r = http.get(f"/rooms/made-by-url-{secrets.token_hex(3)}/")
        assert r.status_code == 429 and "3 rooms a minute" in r.text
        # rooms that exist stay open to everyone
        assert http.get("/rooms/").status_code == 200


def test_a_client_creates_headlines_at_a_bounded_rate(limited):
    with httpx.Client(base_url=limited.url) as http:
        ids = [http.post("/headlines/").json()["id"] for _ in range(3)]
        r = http.post("/headlines/")
        assert r.status_code == 429 and r.headers["retry-after"] == "60"
        assert "3 headlines a minute" in r.json()["error"]
        assert http.get(f"/headlines/{ids[0]}/").status_code == 200  # reading is free


def test_the_demo_holds_a_bounded_number_of_rooms_and_headlines(make_server, monkeypatch):
    from demo.headlines.models import Headline
    from demo.rooms.models import Room

    cap = max(Room.objects.count(), Headline.objects.count()) + 1
    monkeypatch.setenv("DEMO_MAX_NEW", str(cap))
    for _ in range(cap - Room.objects.count()):
        Room.objects.create(label=f"filler-{secrets.token_hex(4)}")
    for _ in range(cap - Headline.objects.count()):
        Headline.objects.create(type="none", title="", text="")
    with make_server() as srv, httpx.Client(base_url=srv.url) as http:
        r = http.get("/rooms/new/")
        assert r.status_code == 429 and f"at most {cap} rooms" in r.text
        r = http.post("/headlines/")
        assert r.status_code == 429 and f"at most {cap} headlines" in r.json()["error"]
