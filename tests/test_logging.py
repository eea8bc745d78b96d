"""The connection log line (tidings.connections) of a real server, plain and as JSON
(tidings.logging.JsonFormatter)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

from tests.conftest import APP, server_env
from tests.test_websocket import login
from tidings.client import connect
from tidings.logging import JsonFormatter
from tidings.testing import live_server


async def test_a_closed_connection_is_one_log_line(server):
    cookies = await asyncio.to_thread(login, server, "metrics-log", "pw-metrics-log")
    async with connect(server.ws_url, cookies=cookies) as client:
        await client.subscribe("test.log")
    async with asyncio.timeout(10):
        while "user metrics-log (pk" not in server.log():
            await asyncio.sleep(0.1)
    line = next(x for x in server.log().splitlines() if "user metrics-log (pk" in x)
    assert " closed: 1000 client went away, user metrics-log (pk " in line
    assert line.endswith("s") and ", websocket, after " in line


async def test_the_json_formatter_writes_the_facts():
    env = {**server_env(), "TIDINGS_TEST_LOG": "json"}
    with live_server(APP, env=env) as srv:
        async with connect(srv.ws_url) as client:
            await client.subscribe("test.json-log")
        async with asyncio.timeout(10):
            while '"tidings.connections"' not in srv.log():
                await asyncio.sleep(0.1)
        lines = [json.loads(x) for x in srv.log().splitlines() if x.startswith("{")]
    closed = [x for x in lines if x["logger"] == "tidings.connections"]
    assert len(closed) == 1
    entry = closed[0]
    assert entry["level"] == "INFO" and entry["time"].endswith("Z")
    assert entry["transport"] == "websocket" and entry["user"] is None
    assert entry["code"] == 1000 and entry["reason"] == "client went away"
    assert isinstance(entry["duration"], float) and entry["duration"] >= 0
    assert "closed" in entry["message"]


def test_the_json_formatter_keeps_tracebacks_and_odd_values():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "a %s", ("b",), sys.exc_info())
    record.thing = {1, 2}  # not JSON: written as its str
    line: dict[str, Any] = json.loads(JsonFormatter().format(record))
    assert line["message"] == "a b" and line["logger"] == "x" and line["level"] == "ERROR"
    assert "ValueError: boom" in line["exception"]
    assert line["thing"] == "{1, 2}"
