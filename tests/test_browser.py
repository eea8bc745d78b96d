"""Real browsers: two Chromium contexts chat in one room of the demo."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def open_room(browser, server, label: str, errors: list[str]) -> Page:
    page = browser.new_context().new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.goto(f"{server.url}/rooms/{label}/")
    expect(page.locator("body")).to_have_attribute("data-subscribed", "1", timeout=10_000)
    return page


def say(page: Page, handle: str, text: str) -> None:
    page.fill("#handle", handle)
    page.fill("#message", text)
    page.click("#go")


def test_two_browsers_chat_in_one_room(browser, server, page_errors):
    label = "browser-chat-1"
    a = open_room(browser, server, label, page_errors)
    b = open_room(browser, server, label, page_errors)
    say(a, "ann", "hello from ann")
    for page in (a, b):
        last = page.locator("#chat li").last
        expect(last).to_contain_text("hello from ann")
        expect(last.locator(".handle")).to_have_text("ann")
    expect(a.locator("#message")).to_have_value("")  # cleared after it was sent
    say(b, "bob", "hi ann <b>not bold</b>")
    expect(a.locator("#chat li").last).to_contain_text("hi ann <b>not bold</b>")  # text, not HTML
    expect(a.locator("#chat li b")).to_have_count(0)
    expect(a.locator("#chat li")).to_have_count(2)
    # a reload renders what was said from the database, oldest first
    b.reload()
    expect(b.locator("#chat li .text")).to_have_text(["hello from ann", "hi ann <b>not bold</b>"])
    a.screenshot(path="/tmp/tidings-room.png")
    assert page_errors == []


def test_a_rejected_message_shows_the_reason(browser, server, page_errors):
    a = open_room(browser, server, "browser-chat-2", page_errors)
    say(a, "ann", "x" * 10)
    expect(a.locator("#chat li")).to_have_count(1)
    say(a, "ann", "y" * 2001)  # the page states the limit and keeps all that was typed
    expect(a.locator("#message-count")).to_have_text("2,001 / 2,000: 1 too many")
    expect(a.locator("#error")).to_contain_text("At most 2,000 characters")
    expect(a.locator("#message")).to_have_value("y" * 2001)
    expect(a.locator("#chat li[data-id]")).to_have_count(1)
    a.evaluate("document.getElementById('message').checkValidity = () => true")
    a.click("#go")  # past the page's check: the server refuses it, and the page says why
    failed = a.locator("#chat li[data-send-state=failed]")
    expect(failed.locator(".send-note")).to_contain_text("at most 2000 characters")
    expect(failed.locator(".retry")).to_be_visible()
    expect(a.locator("#chat li[data-id]")).to_have_count(1)
    assert page_errors == []


def test_a_refused_subscribe_is_told_on_the_console(browser, server, page_errors):
    """tidings.js in Chromium: a refusal rejects ``ready``, fires "error", and is
    warned on the console with its topic, code and message."""
    a = open_room(browser, server, "browser-refusal", page_errors)
    warnings: list[str] = []
    a.on("console", lambda m: m.type == "warning" and warnings.append(m.text))
    got = a.evaluate(
        """async () => {
          const { connect } = await import("/static/tidings/tidings.js");
          const sub = connect().subscribe("deny.browser", () => {});
          const events = [];
          sub.on("error", (error) => events.push(error.code));
          const error = await sub.ready.catch((e) => e);
          return [error.code, error.message, events];
        }"""
    )
    assert got == ["forbidden", "You may not subscribe to 'deny.browser'.", ["forbidden"]]
    expect_text = "tidings: the server refused to subscribe to 'deny.browser' (forbidden): "
    assert [w for w in warnings if w.startswith(expect_text)], warnings
    assert page_errors == []


def test_headline_page_updates_live_from_the_edit_page(browser, server, page_errors):
    import httpx

    h = httpx.post(f"{server.url}/headlines/").json()
    context = browser.new_context()
    show = context.new_page()
    show.on("pageerror", lambda e: page_errors.append(str(e)))
    show.goto(f"{server.url}/headlines/{h['id']}/show/")
    expect(show.locator("body")).to_have_attribute("data-live", "1", timeout=10_000)
    expect(show.locator("#type")).to_have_text("none")
    edit = context.new_page()
    edit.on("pageerror", lambda e: page_errors.append(str(e)))
    edit.goto(f"{server.url}/headlines/{h['id']}/edit/")
    edit.fill("#type", "breaking")
    edit.fill("#title", "Live from tidings")
    edit.fill("#text", "The headline page updated by itself.")
    edit.click("#save")
    expect(edit.locator("#result")).to_contain_text("saved")
    expect(show.locator("#title")).to_have_text("Live from tidings")
    expect(show.locator("#text")).to_have_text("The headline page updated by itself.")
    expect(show.locator("#type")).to_have_text("breaking")
    etag = edit.locator("#result").inner_text().split("ETag ")[1]
    expect(show.locator("#etag")).to_have_text(etag)  # the stream's event id is the API's ETag
    show.screenshot(path="/tmp/tidings-headline.png")
    assert page_errors == []


def test_no_message_is_lost_while_the_network_is_down(browser, server, page_errors):
    from tests.netproxy import proxy

    label = "offline-room-1"
    with proxy(server.host, server.port) as net:
        a = browser.new_context().new_page()
        a.on("pageerror", lambda e: page_errors.append(str(e)))
        a.goto(f"{net.url}/rooms/{label}/")  # a reaches the server through the flaky network
        expect(a.locator("body")).to_have_attribute("data-subscribed", "1", timeout=10_000)
        b = open_room(browser, server, label, page_errors)
        say(b, "bob", "before")
        expect(a.locator("#chat li .text")).to_have_text(["before"])
        net.offline()
        expect(a.locator("#conn")).to_have_attribute("data-state", "reconnecting")
        for i in range(3):
            say(b, "bob", f"while you were away {i}")
            expect(b.locator("#chat li")).to_have_count(2 + i)
        a.wait_for_timeout(2000)  # a few seconds without a network
        expect(a.locator("#chat li")).to_have_count(1)  # nothing could reach it
        net.online()
        expected = ["before"] + [f"while you were away {i}" for i in range(3)]
        expect(a.locator("#chat li .text")).to_have_text(expected, timeout=20_000)
        say(b, "bob", "after")
        expect(a.locator("#chat li .text")).to_have_text([*expected, "after"])
        assert a.evaluate("document.body.dataset.reloaded") is None  # resumed, no reload needed
    assert page_errors == []


def test_a_gap_reloads_the_last_50_messages(browser, make_server, page_errors):
    from tests.netproxy import proxy

    label = "gap-room-1"
    with (
        make_server({"HISTORY": {"rooms.*": {"size": 2, "ttl": 600}}}) as srv,
        proxy(srv.host, srv.port) as net,
    ):
        a = browser.new_context().new_page()
        a.on("pageerror", lambda e: page_errors.append(str(e)))
        a.goto(f"{net.url}/rooms/{label}/")
        expect(a.locator("body")).to_have_attribute("data-subscribed", "1", timeout=10_000)
        b = open_room(browser, srv, label, page_errors)
        net.offline()
        expect(a.locator("#conn")).to_have_attribute("data-state", "reconnecting")
        for i in range(5):  # more than the 2 messages of history
            say(b, "bob", f"missed {i}")
            expect(b.locator("#chat li")).to_have_count(i + 1)
        net.online()
        expect(a.locator("#chat li .text")).to_have_text(
            [f"missed {i}" for i in range(5)], timeout=20_000
        )
        assert a.evaluate("document.body.dataset.reloaded") == "1"
    assert page_errors == []


def test_forced_fallback_to_sse_and_to_long_poll(browser, server, page_errors):
    """WebSocket disabled in the page: SSE; SSE blocked too: long-poll. Same chat."""
    label = "fallback-room-1"
    b = open_room(browser, server, label, page_errors)
    pages = {}
    for name, blocks in (("sse", []), ("longpoll", ["**/realtime/sse*"])):
        context = browser.new_context()
        context.add_init_script("delete window.WebSocket")
        for pattern in blocks:
            context.route(pattern, lambda route: route.abort())
        page = context.new_page()
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.goto(f"{server.url}/rooms/{label}/")
        expect(page.locator("body")).to_have_attribute("data-subscribed", "1", timeout=20_000)
        expect(page.locator("#transport")).to_have_text(name)
        pages[name] = page
    say(b, "bob", "to everyone")
    say(pages["sse"], "sam", "over SSE, published with POST")
    say(pages["longpoll"], "lou", "over long-poll")
    texts = ["to everyone", "over SSE, published with POST", "over long-poll"]
    for page in (b, *pages.values()):
        expect(page.locator("#chat li .text")).to_have_text(texts, timeout=20_000)
    assert page_errors == []


def test_falling_back_mid_stream_keeps_the_position(browser, server, page_errors):
    """WebSocket, then (after a cut) a network that refuses WebSockets: SSE; then one
    that refuses SSE too: long-poll. Every message on screen once, in order."""
    from tests.netproxy import proxy

    label = "midstream-room-1"
    with proxy(server.host, server.port) as net:
        a = browser.new_context().new_page()
        a.on("pageerror", lambda e: page_errors.append(str(e)))
        a.goto(f"{net.url}/rooms/{label}/")
        expect(a.locator("body")).to_have_attribute("data-subscribed", "1", timeout=10_000)
        expect(a.locator("#transport")).to_have_text("websocket")
        b = open_room(browser, server, label, page_errors)
        sent: list[str] = []

        def send(n: int, tag: str) -> None:
            for i in range(n):
                sent.append(f"{tag} {i}")
                say(b, "bob", sent[-1])
                expect(b.locator("#chat li")).to_have_count(len(sent))

        send(3, "on websocket")
        expect(a.locator("#chat li .text")).to_have_text(sent)
        for blocked, now in ((b"upgrade: websocket", "sse"), (b"/realtime/sse", "longpoll")):
            net.offline()
            net.refuse = lambda first, blocked=blocked, old=net.refuse: (
                blocked in first.lower() or (old is not None and old(first))
            )
            send(3, f"while moving to {now}")  # published while a is cut off
            net.online()
            expect(a.locator("#transport")).to_have_text(now, timeout=30_000)
            expect(a.locator("#chat li .text")).to_have_text(sent, timeout=30_000)
            send(2, f"live on {now}")
            expect(a.locator("#chat li .text")).to_have_text(sent, timeout=30_000)
    assert page_errors == []


def _in_thread(fn: Callable[[], None]) -> None:
    """Run ORM work in a thread: Playwright's event loop runs in this one, and Django
    refuses synchronous queries where a loop runs."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(fn).result()


def _users(*names: str, superuser: bool = False) -> None:
    """Create users ``name`` with password ``pw-<name>-1``."""
    from django.contrib.auth.models import User

    def make() -> None:
        for name in names:
            if not User.objects.filter(username=name).exists():
                create = User.objects.create_superuser if superuser else User.objects.create_user
                create(name, password=f"pw-{name}-1")

    _in_thread(make)


def _logged_in(browser, page_errors, url: str, name: str, form: str, submit: str) -> Page:
    """A new browser context logged in as ``name`` through the login form at ``url``;
    returned once the page says it is live."""
    page = browser.new_context().new_page()
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.goto(url)
    page.fill(f"{form}#id_username", name)
    page.fill(f"{form}#id_password", f"pw-{name}-1")
    page.click(submit)
    expect(page.locator("body")).to_have_attribute("data-live", "1", timeout=10_000)
    return page


def test_dashboard_counts_and_who_views_or_edits(browser, server, page_errors):
    """Three browser contexts: bob, and alice in two tabs (two contexts). The dashboard
    counts two active users, shows who views and who edits the document, and the feed."""
    from demo.dashboard.models import Document

    _users("alice", "bob")

    def plan() -> None:
        Document.objects.get_or_create(slug="plan", defaults={"title": "Plan"})

    _in_thread(plan)

    def logged_in(name: str) -> Page:
        url = f"{server.url}/accounts/login/?next=/dashboard/"
        return _logged_in(browser, page_errors, url, name, "", "#login")

    bob = logged_in("bob")
    row = bob.locator('#documents tr[data-slug="plan"]')
    expect(bob.locator("#active-count")).to_have_text("1")
    alice1 = logged_in("alice")
    expect(bob.locator("#active-count")).to_have_text("2")
    alice1.goto(f"{server.url}/dashboard/docs/plan/")
    expect(row.locator(".viewing")).to_have_text("alice")
    expect(row.locator(".editing")).to_have_text("")
    alice2 = logged_in("alice")  # a second tab of alice's: still one active user
    alice2.goto(f"{server.url}/dashboard/docs/plan/edit/")
    expect(row.locator(".editing")).to_have_text("alice")
    expect(row.locator(".viewing")).to_have_text("alice")
    expect(alice1.locator("#here")).to_have_text("alice (editing, viewing)")
    expect(bob.locator("#active-count")).to_have_text("2")
    expect(bob.locator("#active-names")).to_have_text("alice, bob")
    alice2.fill("#id_body", "The plan, version 2.")
    alice2.click("#save")
    expect(bob.locator("#feed li", has_text="alice saved 'Plan'")).to_have_count(1)
    expect(row.locator(".editing")).to_have_text("")  # back on the document: viewing only
    expect(row.locator(".viewing")).to_have_text("alice")
    alice1.context.close()
    alice2.context.close()  # alice's last tab: she leaves, at once
    expect(row.locator(".viewing")).to_have_text("")
    expect(bob.locator("#active-count")).to_have_text("1")
    bob.screenshot(path="/tmp/tidings-dashboard.png")
    assert page_errors == []


def test_chat_two_users_and_logged_out_visitors(browser, server, page_errors):
    _users("cleo", "dan")
    visitor = browser.new_context().new_page()
    visitor.goto(f"{server.url}/chat/")
    expect(visitor.locator("#login-form")).to_be_visible()
    expect(visitor.locator("#signup-form")).to_be_visible()
    expect(visitor.locator("#chat")).to_have_count(0)  # nothing to read
    visitor.fill("#login-form #id_username", "cleo")
    visitor.fill("#login-form #id_password", "wrong")
    visitor.click("#login-form button")
    expect(visitor.locator("#login-error")).to_contain_text("didn't match")

    def chat_as(name: str) -> Page:
        return _logged_in(
            browser, page_errors, f"{server.url}/chat/", name, "#login-form ", "#login-form button"
        )

    cleo, dan = chat_as("cleo"), chat_as("dan")
    cleo.fill("#text", "hello dan")
    cleo.click("#send")
    expect(dan.locator("#chat li .handle").last).to_have_text("cleo")
    expect(dan.locator("#chat li .text").last).to_have_text("hello dan")
    dan.fill("#text", "hi cleo")
    dan.click("#send")
    expect(cleo.locator("#chat li .text").last).to_have_text("hi cleo")
    cleo.reload()  # the snapshot brings back what was said
    expect(cleo.locator("body")).to_have_attribute("data-live", "1", timeout=10_000)
    expect(cleo.locator("#chat li .text").nth(-2)).to_have_text("hello dan")
    assert page_errors == []


def test_counters_live_from_the_page_and_from_the_admin(browser, server, page_errors):
    _users("root", superuser=True)
    page = browser.new_context().new_page()
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.goto(f"{server.url}/counters/")
    expect(page.locator("body")).to_have_attribute("data-live", "1", timeout=10_000)
    page.fill("#name", "visits")
    page.press("#name", "Enter")
    row = page.locator("#counters tr", has_text="visits")
    expect(row.locator(".value")).to_have_text("0")
    row.locator(".inc").click()
    row.locator(".inc").click()
    expect(row.locator(".value")).to_have_text("2")
    other = browser.new_context().new_page()  # a second page sees the same, live
    other.goto(f"{server.url}/counters/")
    expect(other.locator("#counters tr", has_text="visits").locator(".value")).to_have_text("2")
    admin = browser.new_context().new_page()
    admin.goto(f"{server.url}/admin/login/?next=/admin/counters/integervalue/")
    admin.fill("#id_username", "root")
    admin.fill("#id_password", "pw-root-1")
    admin.click("input[type=submit]")
    admin.click("#result_list a:text-is('visits')")
    admin.fill("#id_value", "40")
    admin.click("input[name=_save]")
    expect(row.locator(".value")).to_have_text("40")  # the admin's save, live on the page
    expect(other.locator("#counters tr", has_text="visits").locator(".value")).to_have_text("40")
    row.locator(".del").click()
    expect(other.locator("#counters tr", has_text="visits")).to_have_count(0)
    assert page_errors == []
