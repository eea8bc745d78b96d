"""GET /realtime/metrics against real servers: the families follow what clients do,
the endpoint is for loopback or a bearer token, several workers add up."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import re
import secrets
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import APP, server_env
from tests.redis_server import redis_server
from tests.test_checks import check
from tests.test_websocket import login
from tidings.client import ClientError, connect
from tidings.testing import LiveServer, live_server

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
FAMILIES = {
    "tidings_connections",
    "tidings_subscriptions",
    "tidings_publishes",
    "tidings_deliveries",
    "tidings_dropped",
    "tidings_resumes",
    "tidings_broker_up",
    "tidings_broker_reconnects",
    "tidings_publish_seconds",
    "tidings_delivery_lag_seconds",
}


async def scrape(server: LiveServer, **headers: str) -> Samples:
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.get("/realtime/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    names = set()
    for family in text_string_to_metric_families(r.text):
        names.add(family.name)
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert names >= FAMILIES
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def until(server: LiveServer, ok: Callable[[Samples], bool], timeout: float = 10) -> Samples:
    """Scrape until ``ok`` (the sampling of other workers, a close, take a moment)."""
    async with asyncio.timeout(timeout):
        while True:
            samples = await scrape(server)
            if ok(samples):
                return samples
            await asyncio.sleep(0.2)


async def test_families_follow_a_clients_life(server):
    before = await scrape(server)
    ws = "websocket"
    async with connect(server.ws_url) as client:
        sub = await client.subscribe("test.metrics")
        now = await scrape(server)
        assert (
            value(now, "tidings_connections", transport=ws)
            == value(before, "tidings_connections", transport=ws) + 1
        )
        assert value(now, "tidings_subscriptions") == value(before, "tidings_subscriptions") + 1

        position = await client.publish("test.metrics", {"n": 1})
        await sub.get(timeout=5)
        async with httpx.AsyncClient(base_url=server.url) as http:  # server code publishes
            r = await http.post("/test/publish", json={"topic": "test.metrics"})
            assert r.status_code == 200
            # a body over MAX_FRAME_BYTES is refused before it is read
            big = await http.post("/realtime/publish", content=b"x" * (64 * 1024 + 1))
            assert big.status_code == 413
        await sub.get(timeout=5)
        with pytest.raises(ClientError):
            await client.subscribe("deny.metrics")
        await client.subscribe("test.metrics-resume", since=position)  # another epoch's
        now = await scrape(server)

        def grew(name: str, by: float = 1, **labels: str) -> bool:
            return value(now, name, **labels) - value(before, name, **labels) >= by

        assert grew("tidings_publishes_total", source="client")
        assert grew("tidings_publishes_total", source="server")
        assert grew("tidings_publish_seconds_count", 2)
        assert grew("tidings_deliveries_total", 2, transport=ws)
        assert grew("tidings_delivery_lag_seconds_count", 2)
        assert grew("tidings_dropped_total", reason="forbidden")
        assert grew("tidings_dropped_total", reason="too_large")
        assert grew("tidings_resumes_total", recovered="true") or grew(
            "tidings_resumes_total", recovered="false"
        )
        assert value(now, "tidings_broker_up") == 1
        assert ("tidings_broker_reconnects_total", ()) in now
    after = await until(
        server,
        lambda s: (
            value(s, "tidings_connections", transport=ws)
            == value(before, "tidings_connections", transport=ws)
        ),
    )
    assert value(after, "tidings_subscriptions") == value(before, "tidings_subscriptions")


async def test_a_slow_consumer_and_a_rate_limit_are_counted(make_server):
    with make_server({"RATE_LIMIT": {"rate": 1, "burst": 2}, "QUEUE_SIZE": 20}) as srv:
        async with ws_connect(srv.ws_url, origin=srv.url) as flood:
            for i in range(5):  # past the burst: answered with an error of no id
                frame = {"id": i, "op": "publish", "topic": "test.rate", "data": i}
                await flood.send(json.dumps(frame))
            codes = []
            with pytest.raises(ConnectionClosed):  # then cut, for flooding
                while reply := json.loads(await asyncio.wait_for(flood.recv(), 10)):
                    codes.append(reply.get("error", {}).get("code"))
            assert "rate_limited" in codes
        samples = await scrape(srv)
        assert value(samples, "tidings_dropped_total", reason="rate_limited") >= 1
        assert value(samples, "tidings_dropped_total", reason="slow_consumer") == 0
        # a client that never reads, behind a small fixed receive buffer
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        sock.connect((srv.host, srv.port))
        slow = await ws_connect(srv.ws_url, origin=srv.url, max_queue=1, max_size=None, sock=sock)
        await slow.send(json.dumps({"id": 1, "op": "subscribe", "topic": "test.slow"}))
        assert json.loads(await asyncio.wait_for(slow.recv(), 10))["ok"]
        async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
            for _ in range(40):
                body = {"topic": "test.slow", "n": 20, "size": 50_000}
                assert (await http.post("/test/publish", json=body)).status_code == 200
                samples = await scrape(srv)
                if value(samples, "tidings_dropped_total", reason="slow_consumer"):
                    break
        assert value(samples, "tidings_dropped_total", reason="slow_consumer") == 1
        slow.transport.abort()


async def test_other_hosts_need_the_token(server, make_server):
    forwarded = {"X-Forwarded-For": "203.0.113.7"}  # as a proxy in front would send
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.get("/realtime/metrics", headers=forwarded)
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "forbidden"
    token = secrets.token_urlsafe(16)
    with make_server({"METRICS_TOKEN": token}) as srv:
        async with httpx.AsyncClient(base_url=srv.url) as http:
            assert (await http.get("/realtime/metrics")).status_code == 401  # even loopback
            wrong = {"Authorization": "Bearer nope", **forwarded}
            assert (await http.get("/realtime/metrics", headers=wrong)).status_code == 401
        await scrape(srv, Authorization=f"Bearer {token}", **forwarded)
    with make_server({"METRICS": False}) as srv:
        async with httpx.AsyncClient(base_url=srv.url) as http:
            assert (await http.get("/realtime/metrics")).status_code == 404


def connections_by_worker(path: str) -> dict[int, float]:
    """Each worker's own ``tidings_connections``, from the files prometheus_client keeps."""
    by_pid = {}
    for name in glob.glob(os.path.join(path, "gauge_livesum_*.db")):
        pid = int(name.rsplit("_", 1)[1].removesuffix(".db"))
        by_pid[pid] = sum(
            v
            for key, v, *_ in MmapedDict.read_all_values_from_file(name)
            if json.loads(key)[0] == "tidings_connections"
        )
    return by_pid


async def test_two_workers_add_up():
    with tempfile.TemporaryDirectory(prefix="tidings-prom-") as path:
        env = {**server_env(), "PROMETHEUS_MULTIPROC_DIR": path}
        with live_server(APP, env=env, args=("--workers", "2")) as srv:
            clients = []
            try:
                for i in range(40):  # until both workers hold some
                    client = connect(srv.ws_url)
                    await client.open()
                    clients.append(client)
                    await client.subscribe(f"test.workers.{i}")
                    await client.publish(f"test.workers.{i}", {"i": i})
                    if i >= 3 and len([n for n in connections_by_worker(path).values() if n]) > 1:
                        break
                n = len(clients)
                total = await until(
                    srv,
                    lambda s: (
                        value(s, "tidings_connections", transport="websocket") == n
                        and value(s, "tidings_deliveries_total", transport="websocket") == n
                    ),
                )
                busy = [c for c in connections_by_worker(path).values() if c]
                assert len(busy) == 2 and sum(busy) == n
                assert value(total, "tidings_publishes_total", source="client") == n
                assert value(total, "tidings_subscriptions") == n
                assert value(total, "tidings_broker_up") == 1
            finally:
                for client in clients:
                    await client.close()
            await until(srv, lambda s: value(s, "tidings_connections", transport="websocket") == 0)


def test_several_workers_without_the_directory_warn(tmp_path):
    lone = check(WEB_CONCURRENCY="2")
    assert "tidings.W003" in lone.stderr + lone.stdout
    assert "PROMETHEUS_MULTIPROC_DIR" in lone.stderr + lone.stdout
    shared = check(WEB_CONCURRENCY="2", PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    assert "tidings.W003" not in shared.stderr + shared.stdout


async def test_a_connection_refused_as_it_opens_is_counted(make_server):
    with make_server({"MAX_CONNECTIONS_PER_USER": 1}) as srv:
        cookies = await asyncio.to_thread(login, srv, "metrics-many", "pw-metrics-many")
        async with connect(srv.ws_url, cookies=cookies) as first:
            await first.subscribe("test.one")
            async with ws_connect(srv.ws_url, origin=srv.url, additional_headers={
                "Cookie": f"sessionid={cookies['sessionid']}"
            }) as second:  # fmt: skip
                with pytest.raises(ConnectionClosed) as e:
                    await asyncio.wait_for(second.recv(), 10)
                assert e.value.rcvd is not None and e.value.rcvd.code == 4029
            samples = await scrape(srv)
        assert value(samples, "tidings_dropped_total", reason="too_many_connections") == 1
        assert value(samples, "tidings_connections", transport="websocket") == 1


async def test_the_broker_going_away_and_coming_back(make_server):
    with redis_server() as redis, make_server({"BROKER": redis.url + "?keepalive=1"}) as srv:
        async with connect(srv.ws_url) as client:
            await client.subscribe("test.broker")  # the listener runs once a topic is wanted
            up = await scrape(srv)
            assert value(up, "tidings_broker_up") == 1
            assert value(up, "tidings_broker_reconnects_total") == 0
            redis.stop()
            await until(srv, lambda s: value(s, "tidings_broker_up") == 0, timeout=30)
            redis.start()
            back = await until(srv, lambda s: value(s, "tidings_broker_up") == 1, timeout=30)
        assert value(back, "tidings_broker_reconnects_total") >= 1


async def test_an_sse_stream_counts_as_sse(server):
    def sse(s: Samples) -> float:
        return value(s, "tidings_connections", transport="sse")

    before = await scrape(server)
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
        http.stream("GET", "/realtime/sse?topic=test.metrics-sse") as stream,
    ):
        assert stream.status_code == 200
        during = await until(server, lambda s: sse(s) == sse(before) + 1)
        assert value(during, "tidings_subscriptions") >= 1
    await until(server, lambda s: sse(s) == sse(before))


async def test_the_grafana_dashboard_asks_for_families_that_exist(server):
    dashboard = json.loads(DASHBOARD.read_text())
    asked = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\btidings_\w+", target["expr"])
    }
    served = {name for name, _ in await scrape(server)}
    assert asked and asked <= served, asked - served
