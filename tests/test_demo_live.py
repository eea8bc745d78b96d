"""The connection indicator every demo page shows, through a network that goes away:
live over a transport, reconnecting in N s with "retry now", offline; what is sent
meanwhile is marked pending, then sent (or failed, said in words)."""

from __future__ import annotations

import itertools
import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.netproxy import proxy

pytestmark = pytest.mark.browser

_names = itertools.count(1)
COUNTDOWN = re.compile(r"^reconnecting( in \d+ s|…)$")


def counters(browser, url: str, errors: list[str]) -> Page:
    page = browser.new_context().new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/counters/")
    expect(page.locator("body")).to_have_attribute("data-live", "1", timeout=10_000)
    return page


def test_counters_through_an_outage(browser, server, page_errors):
    name = f"outage-{next(_names)}"
    with proxy(server.host, server.port) as net:
        a = counters(browser, net.url, page_errors)
        conn = a.locator("#conn")
        expect(conn).to_have_attribute("data-state", "live")
        expect(conn).to_contain_text("live")
        expect(a.locator("#transport")).to_have_text("websocket")
        expect(a.locator("#conn-retry")).to_be_hidden()
        b = counters(browser, server.url, page_errors)  # b's network stays up
        a.fill("#name", name)
        a.press("#name", "Enter")
        row_a = a.locator("#counters tr", has_text=name)
        expect(row_a.locator(".value")).to_have_text("0")

        net.offline()
        expect(conn).to_have_attribute("data-state", "reconnecting")
        expect(a.locator("#conn-text")).to_have_text(COUNTDOWN)
        expect(a.locator("#conn-retry")).to_be_visible()
        expect(a.locator("#transport")).to_have_text("")  # no "live · websocket" any more
        row_a.locator(".inc").click()  # made while offline: pending, not an error
        expect(row_a).to_have_attribute("data-send-state", "pending")
        expect(row_a.locator(".send-note")).to_have_text("waiting for the connection…")
        a.wait_for_timeout(11_000)  # past tidings.js' 10 s request timeout: still pending
        expect(conn).not_to_have_attribute("data-state", "live")
        expect(row_a).to_have_attribute("data-send-state", "pending")
        assert "no reply within" not in a.locator("body").inner_text()

        net.online()
        a.click("#conn-retry")  # no waiting out the backoff
        expect(conn).to_have_attribute("data-state", "live", timeout=3000)
        expect(row_a.locator(".value")).to_have_text("1")  # the pending +1 went through
        expect(row_a).not_to_have_attribute("data-send-state", "pending")
        expect(row_a.locator(".send-note")).to_have_count(0)
        expect(b.locator("#counters tr", has_text=name).locator(".value")).to_have_text("1")

        a.fill("#name", name)  # a refusal is said in words, beside the field
        a.press("#name", "Enter")
        expect(a.locator("#error")).to_have_text(f"There is already a counter '{name}'.")
        expect(a.locator("#name")).to_have_attribute("aria-invalid", "true")
        a.fill("#name", "  ")
        a.press("#name", "Enter")
        expect(a.locator("#error")).to_have_text("Give the counter a name.")
    assert page_errors == []


def test_offline_in_the_browser_says_offline(browser, server, page_errors):
    a = counters(browser, server.url, page_errors)
    a.context.set_offline(True)
    expect(a.locator("#conn")).to_have_attribute("data-state", "offline")
    expect(a.locator("#conn-text")).to_have_text("offline")
    expect(a.locator("#conn-retry")).to_be_visible()
    a.context.set_offline(False)
    expect(a.locator("#conn")).to_have_attribute("data-state", "live", timeout=10_000)
    assert page_errors == []


def test_the_headline_page_shows_its_event_stream_state(browser, server, page_errors):
    h = httpx.post(f"{server.url}/headlines/").json()
    with proxy(server.host, server.port) as net:
        page = browser.new_context().new_page()
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.goto(f"{net.url}/headlines/{h['id']}/show/")
        conn = page.locator("#conn")
        expect(conn).to_have_attribute("data-state", "live", timeout=10_000)
        expect(page.locator("#transport")).to_have_text("sse")
        net.offline()
        expect(conn).to_have_attribute("data-state", "reconnecting")
        expect(page.locator("#conn-retry")).to_be_visible()
        httpx.put(
            f"{server.url}/headlines/{h['id']}/", json={"type": "normal", "title": "Back"}
        ).raise_for_status()
        net.online()
        page.click("#conn-retry")
        expect(conn).to_have_attribute("data-state", "live", timeout=5000)
        expect(page.locator("#title")).to_have_text("Back")  # what changed meanwhile
    assert page_errors == []


def test_a_message_said_offline_is_pending_then_sent(browser, server, page_errors):
    label = f"pending-room-{next(_names)}"
    with proxy(server.host, server.port) as net:
        a = browser.new_context().new_page()
        a.on("pageerror", lambda e: page_errors.append(str(e)))
        a.goto(f"{net.url}/rooms/{label}/")
        expect(a.locator("body")).to_have_attribute("data-subscribed", "1", timeout=10_000)
        net.offline()
        expect(a.locator("#conn")).to_have_attribute("data-state", "reconnecting")
        a.fill("#handle", "ola")
        a.fill("#message", "said in the tunnel")
        a.click("#go")
        pending = a.locator("#chat li[data-send-state=pending]")
        expect(pending.locator(".text")).to_have_text("said in the tunnel")
        expect(pending.locator(".send-note")).to_have_text("waiting for the connection…")
        expect(a.locator("#message")).to_have_value("")  # free to type the next one
        net.online()
        # "retry now", if the page has not reconnected by itself already (a check and a
        # click in one step of the page: the button hides the moment it reconnects)
        a.evaluate(
            "() => { const b = document.querySelector('#conn-retry');"
            " if (b && b.offsetParent) b.click(); }"
        )
        sent = a.locator("#chat li[data-id]")
        expect(sent.locator(".text")).to_have_text(["said in the tunnel"], timeout=10_000)
        expect(pending).to_have_count(0)
    assert page_errors == []
