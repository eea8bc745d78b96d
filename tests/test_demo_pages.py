"""The demo site as a person finds it: navigation on every page, the links that keep
where you were going, 404s, the admin that `make demo` tells you how to log in to, and
the screenshots README.md shows."""

from __future__ import annotations

import io
import re
from pathlib import Path

import httpx
import pytest
from django.http import HttpResponse
from playwright.sync_api import Page, expect

from tests.test_browser import _in_thread, _logged_in, _users

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
DEMOS = ["Rooms", "Chat", "Counters", "Dashboard", "Headlines"]


def watch(page: Page, errors: list[str]) -> Page:
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    return page


def test_every_page_links_to_every_demo_and_marks_where_you_are(browser, server, page_errors):
    from demo.headlines.models import Headline

    _users("nora")
    holder: list[int] = []
    _in_thread(lambda: holder.append(Headline.objects.create(type="normal", text="hi").pk))
    page = _logged_in(
        browser, page_errors, f"{server.url}/accounts/login/?next=/dashboard/", "nora", "", "#login"
    )
    watch(page, page_errors)
    pages = {
        "/": None,
        "/rooms/": "Rooms",
        "/rooms/nav-room-1/": "Rooms",
        "/chat/": "Chat",
        "/counters/": "Counters",
        "/dashboard/": "Dashboard",
        "/headlines/list/": "Headlines",
        f"/headlines/{holder[0]}/show/": "Headlines",
        f"/headlines/{holder[0]}/edit/": "Headlines",
        "/accounts/signup/": None,
    }
    for path, current in pages.items():
        page.goto(server.url + path)
        nav = page.get_by_role("navigation", name="Demos")
        expect(nav.get_by_role("link")).to_have_text(DEMOS)
        marked = nav.locator("[aria-current=page]")
        if current is None:
            expect(marked).to_have_count(0)
        else:
            expect(marked).to_have_text(current)
        expect(page.locator("#whoami")).to_have_text("nora")
    nav = page.get_by_role("navigation", name="Demos")
    nav.get_by_role("link", name="Counters").click()  # the links go where they say
    expect(page).to_have_url(f"{server.url}/counters/")
    expect(page.locator("h1")).to_have_text("Counters")
    assert page_errors == []


def test_an_unknown_headline_is_a_404_not_a_page_that_reconnects_forever(server):
    for path in ("/headlines/9999/show/", "/headlines/9999/edit/"):
        r = httpx.get(server.url + path)
        assert r.status_code == 404, path
        assert "EventSource" not in r.text


def test_signup_and_login_keep_where_you_were_going(browser, server, page_errors):
    page = watch(browser.new_context().new_page(), page_errors)
    page.goto(f"{server.url}/chat/")
    page.get_by_role("link", name="Log in").first.click()  # the header's
    expect(page).to_have_url(f"{server.url}/accounts/login/?next=/chat/")
    page.click("#signup-link")
    expect(page).to_have_url(f"{server.url}/accounts/signup/?next=/chat/")
    page.click("#login-instead")
    expect(page).to_have_url(f"{server.url}/accounts/login/?next=/chat/")
    page.click("#signup-link")
    page.fill("#id_username", "nextwise")
    page.fill("#id_password1", "a-Long-enough-password-42")
    page.fill("#id_password2", "not the same")
    page.click("#signup")
    expect(page.locator("#id_password2-error")).to_contain_text("didn")  # beside its field
    page.fill("#id_password1", "a-Long-enough-password-42")
    page.fill("#id_password2", "a-Long-enough-password-42")
    page.click("#signup")
    expect(page).to_have_url(f"{server.url}/chat/")  # where they were going
    expect(page.locator("#me")).to_have_text("nextwise")
    page.click("#logout")  # logging out of the chat stays on the chat
    expect(page).to_have_url(f"{server.url}/chat/")
    expect(page.locator("#login-form")).to_be_visible()
    assert page_errors == []


def test_demo_admin_prints_a_password_that_logs_in_to_an_admin_of_every_model(
    browser, server, page_errors
):
    from django.contrib.auth.models import User
    from django.core.management import call_command

    out = io.StringIO()

    def make() -> None:
        User.objects.filter(username="demo-admin").delete()
        call_command("demo_admin", username="demo-admin", url=f"{server.url}/admin/", stdout=out)
        call_command("demo_admin", username="demo-admin", stdout=out)  # again: not reprinted

    _in_thread(make)
    first, *rest = out.getvalue().splitlines()
    password = re.search(r"password: (\S+)", first).group(1)
    assert f"{server.url}/admin/" in first and "demo-admin" in first
    assert not any(password in line for line in rest)
    assert "--reset" in rest[-1]
    page = browser.new_context().new_page()  # (the admin's own 404s, e.g. favicon, aside)
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.goto(f"{server.url}/admin/")
    page.fill("#id_username", "demo-admin")
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    models = page.locator("#content-main th[scope=row] a")
    expect(models).to_contain_text(
        ["Chat messages", "Integer values", "Documents", "Headlines", "Messages", "Rooms"]
    )
    assert page_errors == []


def test_readme_shows_a_screenshot_of_each_page():
    readme = (ROOT / "README.md").read_text()
    shown = re.findall(r"\]\((docs/screenshots/[a-z-]+\.png)\)", readme)
    names = {Path(p).stem for p in shown}
    assert {"home", "rooms", "chat", "counters", "dashboard", "document", "headline"} <= names
    for path in shown:
        data = (ROOT / path).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, path


def test_with_debug_off_a_404_is_a_demo_page_that_says_what_is_missing():
    from django.test import Client, override_settings

    got: list[HttpResponse] = []

    def get() -> None:  # in a thread: a browser test's event loop may run in this one
        with override_settings(DEBUG=False):
            got.append(Client(HTTP_HOST="127.0.0.1").get("/headlines/9999/show/"))

    _in_thread(get)
    r = got[0]
    page = r.content.decode()
    assert r.status_code == 404
    assert "<h1>Not found</h1>" in page and "<code>/headlines/9999/show/</code>" in page
    assert 'aria-label="Demos"' in page  # the navigation, to go on from there
