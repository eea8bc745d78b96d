"""tidings.publish() / apublish(): from sync views, threads and async code; after commit only."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from django.db import transaction

import tidings
from tests.http_helpers import wait_for
from tidings.core.messages import Message
from tidings.server.node import get_node
from tidings.testing import Client

ROOT = Path(__file__).resolve().parent.parent


async def publish_via_view(server, **body) -> dict:
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.post("/test/publish", json=body)
        assert r.status_code == 200
        return r.json()


async def test_publish_in_a_committed_transaction_arrives_after_commit(server):
    async with Client(server.ws_url, origin=server.url) as c:
        await c.subscribe("test.tx")
        body = await publish_via_view(server, topic="test.tx", n=2, transaction="commit")
        assert body["positions"] == [None, None]  # deferred: not known inside the transaction
        assert [(await c.next_message())["data"]["i"] for _ in range(2)] == [0, 1]


async def test_rolled_back_transaction_publishes_nothing(server):
    async with Client(server.ws_url, origin=server.url) as c:
        await c.subscribe("test.rb")
        await publish_via_view(server, topic="test.rb", n=3, transaction="rollback")
        await publish_via_view(server, topic="test.rb", n=1)  # a marker after it
        m = await c.next_message()
        assert m["data"]["i"] == 0 and m["position"].endswith(":1")  # the marker is the first ever
        with pytest.raises(asyncio.TimeoutError):
            await c.next_message(timeout=0.3)


async def test_on_commit_false_sends_at_once_even_if_rolled_back(server):
    async with Client(server.ws_url, origin=server.url) as c:
        await c.subscribe("test.now")
        body = await publish_via_view(
            server, topic="test.now", n=1, transaction="rollback", on_commit=False
        )
        assert body["positions"][0] is not None
        assert (await c.next_message())["position"] == body["positions"][0]


class Collector:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    def deliver(self, message: Message) -> None:
        self.messages.append(message)

    def epoch_changed(self, message: Message) -> None:
        pass


@pytest.fixture
async def local_node():
    node = get_node()
    await node.start()
    yield node
    await node.stop()


async def test_publish_from_threads_and_apublish_reach_local_subscribers(local_node):
    sub = Collector()
    await local_node.subscribe("test.local", sub)

    def work() -> None:
        for i in range(50):
            tidings.publish("test.local", i, on_commit=False)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    await tidings.apublish("test.local", "async", event="note")
    for t in threads:
        await asyncio.to_thread(t.join)
    # a marker published after all of them: once it is delivered, so is everything before
    # it (delivery is in position order), and nothing is left to come but it
    await tidings.apublish("test.local", "end", event="marker")

    async def marker_delivered() -> bool:
        return any(m.event == "marker" for m in sub.messages)

    await wait_for(marker_delivered)
    assert [m.position.offset for m in sub.messages] == list(range(1, 153))
    assert (sub.messages[-1].event, sub.messages[-1].data) == ("marker", "end")
    assert any(m.event == "note" and m.data == "async" for m in sub.messages)
    await local_node.unsubscribe("test.local", sub)


def test_publish_in_process_inside_atomic_waits_for_commit():
    history = get_node().broker.history
    with transaction.atomic():
        assert tidings.publish("test.atomic", 1) is None
        assert asyncio.run(history("test.atomic", None)).position.offset == 0  # not yet
    assert asyncio.run(history("test.atomic", None)).position.offset == 1  # committed: sent


async def test_sync_publish_from_async_code_is_a_clear_error():
    with pytest.raises(RuntimeError, match="apublish"):
        tidings.publish("test.x", 1)


@pytest.mark.parametrize("topic", ["", "bad topic", "x" * 300])
def test_invalid_topic_is_a_value_error(topic):
    with pytest.raises(ValueError):
        tidings.publish(topic, 1)


def test_unserializable_data_is_a_type_error():
    with pytest.raises(TypeError):
        tidings.publish("test.x", object())


def test_bad_event_is_a_value_error():
    with pytest.raises(ValueError):
        tidings.publish("test.x", 1, event="no spaces")


def run_python(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "demo.settings", **env},
    )


UNSERVED = "in a process that serves no connections"


def test_a_publish_from_a_shell_on_the_memory_broker_warns_once():
    """``manage.py shell -c`` publishes to no one on memory://: it says so, once, and how
    to fix it."""
    code = "import tidings; tidings.publish('news.a', 1); tidings.publish('news.b', 2)"
    r = run_python("demo/manage.py", "shell", "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(UNSERVED) == 1, r.stderr
    assert "'news.a'" in r.stderr and "redis://" in r.stderr and "docs/redis.md" in r.stderr


def test_the_warning_shows_without_any_logging_configured():
    """A project whose LOGGING says nothing of tidings still sees it (Python's last
    resort handler prints warnings to stderr)."""
    code = (
        "import django; from django.conf import settings; "
        "settings.configure(INSTALLED_APPS=['tidings']); django.setup(); "
        "import tidings; tidings.publish('news.a', 1)"
    )
    r = run_python("-c", code, DJANGO_SETTINGS_MODULE="")
    assert r.returncode == 0, r.stderr
    assert UNSERVED in r.stderr


async def test_a_serving_process_does_not_warn(server):
    await publish_via_view(server, topic="test.served", n=2)
    assert "Application startup complete" in server.log()
    assert UNSERVED not in server.log()
