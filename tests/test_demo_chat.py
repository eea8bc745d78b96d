"""The chat and the rooms as a person sees them: an empty state, times in one zone,
long words that wrap, limits said out loud (never a silent cut)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from tests.test_browser import _in_thread, _users

pytestmark = pytest.mark.browser

ZONE = "America/New_York"
CLOCK = re.compile(r"^\d\d:\d\d:\d\d$")


def chat_as(browser, server, errors: list[str], name: str, **context: str) -> Page:
    """A new browser context (``context``: e.g. its time zone) logged in to the chat."""
    page = browser.new_context(**context).new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server.url}/chat/")
    page.fill("#login-form #id_username", name)
    page.fill("#login-form #id_password", f"pw-{name}-1")
    page.click("#login-form button")
    expect(page.locator("body")).to_have_attribute("data-live", "1", timeout=10_000)
    return page


def near_now_in(zone: str, shown: str) -> bool:
    """Is ``HH:MM:SS`` within two minutes of the time now in ``zone``?"""
    now = datetime.now(ZoneInfo(zone))
    for delta in range(-2, 3):
        t = now + timedelta(minutes=delta)
        if shown[:5] == t.strftime("%H:%M"):
            return True
    return False


def test_chat_empty_then_a_message_with_its_time_in_your_zone(browser, server, page_errors):
    from demo.chat.models import ChatMessage

    _users("ivy", "jon")
    _in_thread(lambda: ChatMessage.objects.all().delete())
    ivy = chat_as(browser, server, page_errors, "ivy", timezone_id=ZONE)
    expect(ivy.locator("#chat-empty")).to_be_visible()
    expect(ivy.locator("#chat-empty")).to_contain_text("No messages yet")
    expect(ivy.locator("[data-time-zone]")).to_have_text(ZONE)
    jon = chat_as(browser, server, page_errors, "jon")
    jon.fill("#text", "first!")
    jon.press("#text", "Enter")  # Enter sends
    line = ivy.locator("#chat li").last
    expect(line.locator(".text")).to_have_text("first!")
    expect(line.locator(".handle")).to_have_text("jon")
    expect(ivy.locator("#chat-empty")).to_be_hidden()
    shown = line.locator("time").inner_text()
    assert CLOCK.match(shown) and near_now_in(ZONE, shown), shown
    ivy.reload()  # the snapshot shows it in the same zone
    expect(ivy.locator("body")).to_have_attribute("data-live", "1", timeout=10_000)
    expect(ivy.locator("#chat li time").last).to_have_text(shown)
    assert page_errors == []


def test_chat_long_words_wrap_and_long_messages_are_refused_not_cut(browser, server, page_errors):
    _users("kim")
    kim = chat_as(browser, server, page_errors, "kim")
    word = "w" * 300
    kim.fill("#text", word)
    kim.click("#send")
    text = kim.locator("#chat li .text", has_text=word)
    expect(text).to_have_count(1)
    expect(kim.locator("#chat li[data-send-state]")).to_have_count(0)  # sent, not pending
    box, chat = text.bounding_box(), kim.locator("#chat").bounding_box()
    assert box["x"] + box["width"] <= chat["x"] + chat["width"] + 1  # wrapped, within the list
    assert kim.evaluate(
        "document.querySelector('#chat').scrollWidth <= document.querySelector('#chat').clientWidth"
    )
    expect(kim.locator("text=Up to 1,000 characters")).to_be_visible()  # the limit, stated
    pasted = "p" * 1500
    kim.fill("#text", pasted)  # as a paste: all of it stays in the box
    expect(kim.locator("#text")).to_have_value(pasted)
    expect(kim.locator("#text-count")).to_have_text("1,500 / 1,000: 500 too many")
    kim.click("#send")
    expect(kim.locator("#error")).to_have_text("At most 1,000 characters; this has 1,500.")
    expect(kim.locator("#text")).to_have_value(pasted)  # nothing lost, nothing sent
    expect(kim.locator("#chat li .text", has_text="ppp")).to_have_count(0)
    kim.fill("#text", "   ")
    kim.click("#send")
    expect(kim.locator("#error")).to_have_text("Say something first.")
    assert page_errors == []


def test_rooms_history_and_live_messages_in_one_time_zone(browser, server, page_errors):
    from demo.rooms.models import Message, Room

    label = "zone-room-1"
    when = datetime(2026, 1, 15, 17, 4, 5, tzinfo=UTC)  # 12:04:05 in New York (EST)

    def history() -> None:
        room, _ = Room.objects.get_or_create(label=label)
        Message.objects.create(room=room, handle="old", message="from the past", timestamp=when)

    _in_thread(history)
    page = browser.new_context(timezone_id=ZONE).new_page()
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.goto(f"{server.url}/rooms/{label}/")
    expect(page.locator("body")).to_have_attribute("data-subscribed", "1", timeout=10_000)
    expect(page.locator("[data-time-zone]")).to_have_text(ZONE)
    expect(page.locator("#chat li time").first).to_have_text("12:04:05")  # not 17:04:05 (UTC)
    page.fill("#handle", "new")
    page.fill("#message", "from now")
    page.click("#go")
    live = page.locator("#chat li[data-id]", has_text="from now").locator("time")
    expect(live).to_have_text(CLOCK)
    assert near_now_in(ZONE, live.inner_text()), live.inner_text()
    page.reload()  # rendered by the server this time: the same zone
    expect(page.locator("#chat li[data-id]", has_text="from now").locator("time")).to_have_text(
        live.inner_text()
    )
    assert page_errors == []


def test_a_new_room_says_nobody_spoke_yet(browser, server, page_errors):
    page = browser.new_context().new_page()
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.goto(f"{server.url}/rooms/")
    page.click("#new-room")
    expect(page.locator("body")).to_have_attribute("data-subscribed", "1", timeout=10_000)
    expect(page.locator("#chat-empty")).to_have_text(
        "Nobody has said anything here yet. Be the first."
    )
    expect(page.locator("#chat")).to_be_hidden()
    page.fill("#handle", "")
    page.fill("#message", "hello")
    page.click("#go")
    expect(page.locator("#error")).to_have_text("Say who you are: your name must not be empty.")
    page.fill("#handle", "pia")
    page.click("#go")
    expect(page.locator("#chat li .text")).to_have_text(["hello"])
    expect(page.locator("#chat-empty")).to_be_hidden()
    assert page_errors == []
