"""The target registry: name -> how to start the server, how to reach and drive it.

A :class:`Target` says everything the harness needs about one server setup:

- **start**: ``argv(fd)`` is the command line, given a listening socket's fd (the
  harness binds it, so there is no race for a port), plus ``env``;
- **subscribe**: ``transport`` (how a subscriber connects: ``"ws"``, then
  ``wire.subscribe(topic)`` (:mod:`bench.wire`); or ``"sse"``, a ``GET`` stream with the
  topic in the query) at ``sub_path`` (default ``path``);
- **publish**: ``wire.publish(topic, data)`` sent on a separate publisher WebSocket at
  ``path``;
- **processes**: with 2, two server processes run (sharing a broker): the publisher
  talks to the first, every subscriber to the second, so each message crosses between
  them. Server CPU is then the sum of both; memory is the subscribers' process.

To add a target, add an entry to :data:`TARGETS`, as ``tidings-redis`` was (``tidings``
with another ``BENCH_TIDINGS_BROKER`` and Redis' CPU counted apart), ``tidings-sse``
(``transport="sse"``, :mod:`bench.sseclient`) and ``tidings-redis-2p`` (``processes=2``
and a ``setup`` that empties its Redis database before each server start).
A phase a target cannot run goes in ``skip_phases`` with the reason, which the report
lists.

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
from tidings.serve import UVICORN_ARGS

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


def flush_redis_db(db: int) -> Callable[[], None]:
    """Empty Redis database ``db`` (before each start: no history left by the last run)."""

    def flush() -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=6379, db=db, socket_timeout=5)
        try:
            client.flushdb()
        finally:
            client.close()

    return flush


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
    sub_path: str | None = None  # where subscribers connect, when not at ``path``
    processes: int = 1  # 2: publisher on the first server process, subscribers on the second
    setup: Callable[[], None] | None = None  # before each server start
    skip_phases: dict[str, str] = field(default_factory=dict)  # phase -> why it is not run

    @property
    def subscriber_path(self) -> str:
        return self.sub_path or self.path


TIDINGS_ENV = {"DJANGO_SETTINGS_MODULE": "bench.servers.tidings_settings"}
# tidings is served as the README says: uvicorn with tidings.serve's protocols (the
# WebSocket one is uvicorn's websockets-sansio implementation with tidings' guards)
SERVED = UVICORN_ARGS
NO_PATTERNS = {  # the server-side publish patterns exist for tidings and raw only
    p: "its bench server has no server-side publish loop" for p in ("loop", "threads")
}
REDIS_2P_DB = 10  # tidings-redis uses 9
CHANNELS_ENV = {"DJANGO_SETTINGS_MODULE": "bench.servers.channels_settings"}

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "tidings",
            "tidings (uvicorn, memory broker)",
            uvicorn("tidings.asgi:get_asgi_application", "--factory", *SERVED),
            "/realtime/ws",
            TIDINGS,
            env=TIDINGS_ENV,
        ),
        Target(
            "tidings-sse",
            "tidings, SSE subscribers (uvicorn, memory broker)",
            uvicorn("tidings.asgi:get_asgi_application", "--factory", *SERVED),
            "/realtime/ws",
            TIDINGS,
            env=TIDINGS_ENV,
            transport="sse",
            sub_path="/realtime/sse",
            skip_phases={
                "topics": "an SSE stream's topics are fixed when it opens (one stream "
                "per topic set), so subscribers cannot add their own topic",
            },
        ),
        Target(
            "tidings-redis",
            "tidings (uvicorn, Redis broker)",
            uvicorn("tidings.asgi:get_asgi_application", "--factory", *SERVED),
            "/realtime/ws",
            TIDINGS,
            env={
                **TIDINGS_ENV,
                "BENCH_TIDINGS_BROKER": "redis://127.0.0.1:6379/9",
            },
            slow=True,
            aux_pids=redis_pids,
            missing=redis_missing,
        ),
        Target(
            "tidings-redis-2p",
            "tidings, 2 processes + Redis (publish on A, subscribers on B)",
            uvicorn("tidings.asgi:get_asgi_application", "--factory", *SERVED),
            "/realtime/ws",
            TIDINGS,
            env={
                **TIDINGS_ENV,
                "BENCH_TIDINGS_BROKER": f"redis://127.0.0.1:6379/{REDIS_2P_DB}",
            },
            slow=True,
            aux_pids=redis_pids,
            missing=redis_missing,
            processes=2,
            setup=flush_redis_db(REDIS_2P_DB),
        ),
        Target(
            "tidings-hypercorn",
            "tidings (hypercorn, memory broker; without tidings.serve's guards)",
            lambda fd: [
                PY,
                "-m",
                "hypercorn",
                "--bind",
                f"fd://{fd}",
                "--log-level",
                "warning",
                "bench.servers.tidings_app:application",
            ],
            "/realtime/ws",
            TIDINGS,
            env=TIDINGS_ENV,
        ),
        Target(
            "tidings-granian",
            "tidings (granian, memory broker; without tidings.serve's guards)",
            lambda fd: [PY, "-m", "bench.servers.granian_fd", str(fd)],
            "/realtime/ws",
            TIDINGS,
            env=TIDINGS_ENV,
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
            skip_phases=NO_PATTERNS,
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
            skip_phases=NO_PATTERNS,
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
            skip_phases=NO_PATTERNS,
        ),
    )
}

DEFAULT_TARGETS = tuple(TARGETS)
