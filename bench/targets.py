"""The target registry: name -> how to start the server, how to reach and drive it.

A :class:`Target` says everything the harness needs about one server setup:

- **start**: ``argv(fd)`` is the command line, given a listening socket's fd (the
  harness binds it, so there is no race for a port), plus ``env``;
- **subscribe**: ``transport`` (how a subscriber connects: ``"ws"``) at ``path``, then
  ``wire.subscribe(topic)`` (:mod:`bench.wire`);
- **publish**: ``wire.publish(topic, data)`` sent on a separate publisher WebSocket.

To add a target, add an entry to :data:`TARGETS`, as ``tidings-redis`` was (``tidings``
with another ``BENCH_TIDINGS_BROKER`` and Redis' CPU counted apart). Planned next:

- *tidings over SSE*: ``transport="sse"``, ``path`` the SSE endpoint; implement an SSE
  subscriber next to :func:`bench.loadgen.open_subscriber` (the publisher stays a
  WebSocket).

Every uvicorn target runs with ``--ws-per-message-deflate false`` and the raw
``websockets`` server with ``compression=None``: compression is per connection, so
with it on a fan-out would measure zlib N times per message. (The load generator
does not offer the extension either, so no target compresses.)
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.wire import SIMPLE, TIDINGS, Wire

PY = sys.executable


def uvicorn(app: str, *extra: str) -> Callable[[int], list[str]]:
    def argv(fd: int) -> list[str]:
        return [
            PY,
            "-m",
            "uvicorn",
            app,
            "--fd",
            str(fd),
            "--ws-per-message-deflate",
            "false",
            "--log-level",
            "warning",
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "2",
            *extra,
        ]

    return argv


def raw_websockets(fd: int) -> list[str]:
    return [PY, "-m", "bench.servers.raw_ws", "--fd", str(fd)]


def daphne(app: str) -> Callable[[int], list[str]]:
    def argv(fd: int) -> list[str]:
        return [PY, "-m", "daphne", "--fd", str(fd), "-v", "0", app]

    return argv


def redis_pids() -> list[int]:
    """The local Redis server's pid, so its CPU is reported next to the server's."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2)
    try:
        return [int(client.info("server")["process_id"])]
    finally:
        client.close()


def redis_missing() -> str | None:
    try:
        redis_pids()
    except Exception as e:
        return f"Redis at 127.0.0.1:6379 is not reachable ({e})"
    return None


@dataclass(frozen=True)
class Target:
    name: str
    label: str
    argv: Callable[[int], list[str]]
    path: str
    wire: Wire
    env: dict[str, str] = field(default_factory=dict)
    transport: str = "ws"
    slow: bool = False  # phases shortened (see bench.loadgen.Plan)
    max_n: int | None = None  # larger sizes are skipped, with the reason below
    max_n_reason: str = ""
    aux_pids: Callable[[], list[int]] | None = None
    missing: Callable[[], str | None] | None = None  # why it cannot run here, if it cannot


CHANNELS_ENV = {"DJANGO_SETTINGS_MODULE": "bench.servers.channels_settings"}

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "tidings",
            "tidings (uvicorn, memory broker)",
            uvicorn("tidings.asgi:get_asgi_application", "--factory"),
            "/realtime/ws",
            TIDINGS,
            env={"DJANGO_SETTINGS_MODULE": "bench.servers.tidings_settings"},
        ),
        Target(
            "tidings-redis",
            "tidings (uvicorn, Redis broker)",
            uvicorn("tidings.asgi:get_asgi_application", "--factory"),
            "/realtime/ws",
            TIDINGS,
            env={
                "DJANGO_SETTINGS_MODULE": "bench.servers.tidings_settings",
                "BENCH_TIDINGS_BROKER": "redis://127.0.0.1:6379/9",
            },
            slow=True,
            aux_pids=redis_pids,
            missing=redis_missing,
        ),
        Target(
            "raw",
            "raw websockets + broadcast()",
            raw_websockets,
            "/",
            SIMPLE,
        ),
        Target(
            "asgi",
            "plain ASGI (uvicorn), sequential send",
            uvicorn("bench.servers.plain_asgi:app", "--lifespan", "on"),
            "/",
            SIMPLE,
        ),
        Target(
            "channels-redis",
            "Channels 4 + uvicorn + RedisPubSubChannelLayer",
            uvicorn("bench.servers.channels_asgi:application", "--lifespan", "off"),
            "/ws",
            SIMPLE,
            env={**CHANNELS_ENV, "BENCH_CHANNEL_LAYER": "redis-pubsub"},
            slow=True,
            aux_pids=redis_pids,
            missing=redis_missing,
        ),
        Target(
            "channels-daphne",
            "Channels 4 + daphne + InMemoryChannelLayer",
            daphne("bench.servers.channels_asgi:application"),
            "/ws",
            SIMPLE,
            env={**CHANNELS_ENV, "BENCH_CHANNEL_LAYER": "memory"},
            slow=True,
            max_n=1000,
            max_n_reason="one broadcast to 5,000 takes ~13 s: the layer scans every queue "
            "on every receive; a single run at 5,000 takes ~3 minutes",
        ),
    )
}

DEFAULT_TARGETS = tuple(TARGETS)
