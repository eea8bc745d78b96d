"""OpenTelemetry spans from a real server (tidings.tracing): a client's publish and a
publish from server code each make a PRODUCER span with the topic, event, source and
position, and the delivery to this process's subscribers a CONSUMER span linked to it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import APP, server_env
from tests.redis_server import redis_server
from tidings.client import connect
from tidings.testing import live_server


def spans(path: Path, name: str) -> list[dict]:
    found = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [s for s in found if s["name"] == name]


async def until(check, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
    return result


@pytest.mark.parametrize("broker", ["memory", "redis"])
async def test_publish_and_delivery_spans_are_linked(tmp_path, broker):
    out = tmp_path / "spans.jsonl"
    topic = f"test.traced-{secrets.token_hex(3)}"
    with contextlib.ExitStack() as stack:
        overrides = {}
        if broker == "redis":
            overrides["BROKER"] = stack.enter_context(redis_server()).url
        env = {**server_env(overrides), "TIDINGS_TEST_SPANS": str(out)}
        srv = stack.enter_context(live_server(APP, env=env))
        async with connect(srv.ws_url) as client:
            sub = await client.subscribe(topic)
            position = await client.publish(topic, {"n": 1})
            assert (await sub.get(timeout=5)).data == {"n": 1}
            async with httpx.AsyncClient(base_url=srv.url) as http:  # a sync view publishes
                r = await http.post("/test/publish", json={"topic": topic, "n": 1})
                assert r.status_code == 200
            await sub.get(timeout=5)
        published = await until(
            lambda: (
                len(spans(out, f"tidings publish {topic}")) >= 2
                and spans(out, f"tidings publish {topic}")
            )
        )
        delivered = await until(
            lambda: (
                len(spans(out, f"tidings deliver {topic}")) >= 2
                and spans(out, f"tidings deliver {topic}")
            )
        )
    by_source = {s["attributes"]["tidings.source"]: s for s in published}
    client_span = by_source["client"]
    assert set(by_source) == {"client", "server"}
    assert client_span["kind"] == "SpanKind.PRODUCER"
    assert client_span["attributes"]["messaging.destination.name"] == topic
    assert client_span["attributes"]["tidings.position"] == position
    first = next(s for s in delivered if s["attributes"]["tidings.position"] == position)
    assert first["kind"] == "SpanKind.CONSUMER" and first["attributes"]["tidings.subscribers"] == 1
    # the memory broker delivers within the publish's call: a child span; Redis later,
    # from its listener: a span linked to the publish
    publish_id = client_span["context"]["span_id"]
    linked = [link["context"]["span_id"] for link in first["links"]]
    assert first["parent_id"] == publish_id if broker == "memory" else linked == [publish_id]
