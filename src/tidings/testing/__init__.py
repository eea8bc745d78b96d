"""Testing with tidings (docs/testing.md).

For your app's tests, in this process, with the test's database::

    async with connect(user=alice) as client:          # a tidings.client.Client
        sub = await client.subscribe("rooms.lobby")
    with capture() as published:                        # like mail.outbox
        ...
    published.assert_published("rooms.lobby", data={"message": "hi"})

:mod:`~tidings.testing.inprocess` has :func:`connect`, :func:`stream` (SSE) and
:func:`poll` (long-poll), which drive this process's ASGI application without a
server; :mod:`~tidings.testing.recorder` records publishes. The pytest plugin
(:mod:`~tidings.testing.pytest_plugin`, loaded by itself when tidings is installed)
has them as fixtures.

For a real server: :func:`live_server` runs one in a subprocess (uvicorn on a free
loopback port) and :class:`Client` is a minimal protocol client for it (both need the
``websockets`` package). :mod:`tidings.testing.broker_contract` is the broker contract
as a pytest kit, for brokers of your own (docs/guide.md); it needs pytest and
pytest-asyncio, so it is not imported here.
"""

from __future__ import annotations

import sys

from tidings.testing.clients import Client, RequestFailed
from tidings.testing.inprocess import Events, connect, poll, stream
from tidings.testing.recorder import Published, Publishes, capture
from tidings.testing.server import LiveServer, live_server

if "pytest" in sys.modules:  # the kit's asserts explain themselves when they fail
    import pytest

    pytest.register_assert_rewrite("tidings.testing.broker_contract")

__all__ = [
    "Client",
    "Events",
    "LiveServer",
    "Published",
    "Publishes",
    "RequestFailed",
    "capture",
    "connect",
    "live_server",
    "poll",
    "stream",
]
