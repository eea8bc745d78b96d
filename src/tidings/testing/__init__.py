"""Test helpers: a real server in a subprocess, and a protocol client for it.

    with live_server("demo.asgi:application") as srv:
        async with Client(srv.ws_url, origin=srv.url) as client:
            await client.subscribe("rooms.lobby")

:mod:`~tidings.testing.server` runs the server (uvicorn on a free loopback port),
:mod:`~tidings.testing.clients` has the client (requires the ``websockets`` package).
:mod:`tidings.testing.broker_contract` is the broker contract as a pytest kit, for
brokers of your own (docs/guide.md); it needs pytest and pytest-asyncio, so it is not
imported here.
"""

from __future__ import annotations

import sys

from tidings.testing.clients import Client, RequestFailed
from tidings.testing.server import LiveServer, live_server

if "pytest" in sys.modules:  # the kit's asserts explain themselves when they fail
    import pytest

    pytest.register_assert_rewrite("tidings.testing.broker_contract")

__all__ = ["Client", "LiveServer", "RequestFailed", "live_server"]
