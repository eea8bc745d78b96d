"""``make screenshots`` (``python -m demo.screenshots``): every demo page in Chromium.

It builds a fresh demo database in a temporary directory, fills it with a little of
everything (users, rooms, messages, documents, counters, a headline), runs the demo on
a free port, and saves what two people see to ``docs/screenshots/<page>.png``, which
README.md shows. Nothing of the developer's own ``demo/db.sqlite3`` is touched.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1200, "height": 780}
PASSWORD = "screenshots-only-1"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic"]


def seed() -> dict[str, Any]:
    """What the pictures show; returns the ids the pages need."""
    from django.contrib.auth.models import User
    from django.utils import timezone

    from demo.chat.models import ChatMessage
    from demo.counters.models import IntegerValue
    from demo.dashboard.models import Document
    from demo.headlines.models import Headline
    from demo.rooms.models import Message, Room

    alice = User.objects.create_user("alice", password=PASSWORD)
    bob = User.objects.create_user("bob", password=PASSWORD)
    now = timezone.now()
    chat = [
        (alice, "Morning! Is the deploy still on for today?"),
        (bob, "Yes, after lunch. The new indicator in the header shows when we're live."),
        (alice, "Nice. I'll keep this tab open and watch."),
    ]
    for i, (user, text) in enumerate(chat):
        ChatMessage.objects.create(user=user, text=text, sent=now - timedelta(minutes=9 - 3 * i))
    room = Room.objects.create(label="misty-river-4821")
    talk = [
        ("ann", "Has anyone tried the long-poll fallback behind the office proxy?"),
        ("raj", "Works: the page said 'live · longpoll' and nothing was lost."),
        ("ann", "Then we can ship it."),
    ]
    for i, (handle, text) in enumerate(talk):
        Message.objects.create(
            room=room, handle=handle, message=text, timestamp=now - timedelta(minutes=5 - 2 * i)
        )
    for name, value in (("coffees", 7), ("deploys", 3), ("visits", 1204)):
        IntegerValue.objects.create(name=name, value=value)
    Document.objects.create(
        slug="launch-plan", title="Launch plan", body="Monday: freeze.\n\nTuesday: ship."
    )
    Document.objects.create(slug="retro-notes", title="Retro notes", body="What went well.")
    headline = Headline.objects.create(
        type="breaking",
        title="tidings 1.0 is out",
        text="Realtime for Django: WebSocket, SSE, long-poll.",
    )
    return {"room": room.label, "headline": headline.pk}


def log_in(context: Any, url: str, name: str) -> Any:
    page = context.new_page()
    page.goto(f"{url}/accounts/login/?next=/dashboard/")
    page.fill("#id_username", name)
    page.fill("#id_password", PASSWORD)
    page.click("#login")
    page.wait_for_selector("body[data-live='1']")
    return page


def shoot(page: Any, name: str) -> None:
    page.wait_for_selector("body[data-conn='live']")
    page.wait_for_timeout(400)  # the highlight of what just arrived fades
    page.screenshot(path=str(OUT / f"{name}.png"))
    print(f"docs/screenshots/{name}.png")


def pictures(browser: Any, url: str, ids: dict[str, Any]) -> None:
    def context() -> Any:
        return browser.new_context(viewport=VIEWPORT, timezone_id="Europe/Berlin", locale="en-GB")

    home = context().new_page()
    home.goto(f"{url}/")
    home.screenshot(path=str(OUT / "home.png"))
    print("docs/screenshots/home.png")

    room = context().new_page()
    room.goto(f"{url}/rooms/{ids['room']}/")
    room.fill("#handle", "you")
    shoot(room, "rooms")

    alice, bob = context(), context()
    bob_page = log_in(bob, url, "bob")
    bob_page.goto(f"{url}/dashboard/docs/launch-plan/")
    alice_page = log_in(alice, url, "alice")
    alice_page.wait_for_selector("#documents .viewing:text('bob')")
    shoot(alice_page, "dashboard")
    shoot(bob_page, "document")

    chat = alice.new_page()
    chat.goto(f"{url}/chat/")
    chat.wait_for_selector("body[data-live='1']")
    shoot(chat, "chat")

    counters = context().new_page()
    counters.goto(f"{url}/counters/")
    counters.wait_for_selector("body[data-live='1']")
    shoot(counters, "counters")

    headline = context().new_page()
    headline.goto(f"{url}/headlines/{ids['headline']}/show/")
    shoot(headline, "headline")


def main() -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("make screenshots needs Chromium (Debian package 'chromium')", file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix="tidings-screenshots-")
    env = {"DJANGO_SETTINGS_MODULE": "demo.settings", "DEMO_DB": os.path.join(tmp, "db.sqlite3")}
    os.environ.update(env)
    os.environ.pop("DEMO_PG", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from playwright.sync_api import sync_playwright

    from tidings.testing import live_server

    call_command("migrate", verbosity=0)
    # The seed's saves go through the model feeds to a broker no page listens to yet:
    # expected here, so the memory broker's warning about it is not printed.
    quiet = logging.getLogger("tidings.brokers.memory")
    quiet.disabled = True
    ids = seed()
    quiet.disabled = False
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        log = os.path.join(tmp, "server.log")
        with (
            live_server("demo.asgi:application", env=env, log_path=log) as server,
            sync_playwright() as p,
        ):
            browser = p.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
            try:
                pictures(browser, server.url, ids)
            finally:
                browser.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
