"""One load-generator process of the scale run (``bench.scale``): its share of the idle
subscribers, all from one loopback source address, driven by line commands.

Why a process per source address: one process may hold fewer than ~19,000 sockets
(the hard ``nofile`` limit here is 20,000) and one source address has ~28,000
ephemeral ports, so 50,000 subscribers need several processes whatever their speed.
Each socket sets ``IP_BIND_ADDRESS_NO_PORT`` before binding its source address, so
the kernel picks the port at ``connect()`` (unique per 4-tuple), not at ``bind()``
(unique per address): ports of the connections a storm cut do not block new ones.

Each subscriber is one task that lives the way a browser tab with tidings.js does:
connect, subscribe to the topic (with ``since`` = the last position it saw once it
has seen one), stay idle, and when the connection is cut start again after tidings.js'
backoff (:func:`backoff`: 0.25-0.5 s, doubling while attempts fail, up to 15 s). Every
``message`` frame's position is checked against the last one: the same offset again
is a duplicate, a jump is a gap, another epoch is an epoch change (but for the first
message after ``0:0``, where an empty topic stands before it has an epoch). The connections
are :class:`bench.wsclient.WSClient`\\ s, so a message costs one parse of its frame
header and one ``bytes.find`` for the position.

Commands come one JSON object per line on stdin; each is answered with one JSON
line on stdout (logs go to stderr):

- ``connect``: start every subscriber (``concurrency`` first connections in flight)
  and answer once each is subscribed, or at ``deadline``;
- ``probe`` / ``probes``: from now, the latency of every message at each client never
  cut; then those latencies (a storm that cuts some clients: what the others see);
- ``arm``: count the next ``message`` of every subscriber, with its latency from the
  data's ``"t"`` stamp; answered at once (``armed``);
- ``collect``: answer once every subscriber has the armed message (or at
  ``deadline``) with the latencies;
- ``recover``: answer once every subscriber was cut, came back, resumed and holds
  the topic's offset ``final`` (or at ``deadline``), with the counts;
- ``stop``: close everything and exit.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import socket
import sys
import time
from collections import Counter
from typing import Any

import uvloop

from bench.wire import STAMP
from bench.wsclient import Tally, WSClient

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
POSITION = b'"position":"'
ATTEMPT_TIMEOUT = 30.0  # seconds for one connect + handshake + subscribe
# tidings.js' DEFAULT_BACKOFF (static/tidings/backoff.js), in seconds
INITIAL, MAX_DELAY, FACTOR, JITTER = 0.5, 15.0, 2.0, 0.5


def backoff(attempt: int) -> float:
    """The delay before reconnect ``attempt`` (0 after a cut), as tidings.js computes it."""
    return min(MAX_DELAY, INITIAL * FACTOR**attempt) * (1 - JITTER * random.random())


EMPTY_EPOCH = b"0"  # a topic never published stands at 0:0 (docs/delivery.md): no epoch yet


class Connection(WSClient):
    """One connection of a :class:`Subscriber`: hands it every message frame."""

    track = True
    # while probing: the latency of each message at a client never cut (``probe``)
    probes: list[int] | None = None

    def __init__(self, owner: Subscriber, tally: Tally, host: str, port: int, path: str) -> None:
        super().__init__(tally, host, port, path)
        self.owner = owner
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def message(self, data: bytes, start: int, end: int) -> None:
        j = data.find(POSITION, start, end) + len(POSITION)
        self.owner.position(data[j : data.find(b'"', j, end)])
        probes = Connection.probes
        if probes is not None and self.owner.cuts == 0:
            k = data.find(STAMP, start, end) + len(STAMP)
            probes.append(time.time_ns() - int(data[k : data.find(b",", k, end)]))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.lost.done():
            self.lost.set_result(None)


class Subscriber:
    """One client over its whole life: every connection, and what it saw on each."""

    __slots__ = (
        "attempts",
        "cuts",
        "dups",
        "epoch",
        "epoch_changes",
        "failures",
        "gaps",
        "offset",
        "recovered",
        "resumed_ns",
        "unrecovered",
    )

    def __init__(self) -> None:
        self.epoch: bytes | None = None
        self.offset = 0
        self.attempts = 0  # connections tried
        self.failures = 0  # ... that failed before the subscribe was answered
        self.cuts = 0  # connections lost once subscribed
        self.recovered = 0  # resumes answered "recovered": true
        self.unrecovered = 0  # ... answered false (or without it)
        self.dups = 0
        self.gaps = 0
        self.epoch_changes = 0
        self.resumed_ns = 0  # when the last resume was answered

    def position(self, raw: bytes) -> None:
        """Check one message's position against the last one this client saw."""
        epoch, _, digits = raw.rpartition(b":")
        offset = int(digits)
        if epoch != self.epoch:
            if self.epoch not in (None, EMPTY_EPOCH):
                self.epoch_changes += 1
            self.epoch = epoch
        elif offset <= self.offset:
            self.dups += 1
            return
        elif offset > self.offset + 1:
            self.gaps += offset - self.offset - 1
        self.offset = offset

    def subscribe_frame(self, topic: str) -> bytes:
        op: dict[str, Any] = {"id": 1, "op": "subscribe", "topic": topic}
        if self.epoch is not None:
            op["since"] = f"{self.epoch.decode()}:{self.offset}"
        return json.dumps(op, separators=(",", ":")).encode()

    def subscribed(self, reply: dict[str, Any], resumed: bool) -> None:
        """The subscribe was answered ``ok``: where the subscription now stands."""
        if resumed:
            self.resumed_ns = time.time_ns()
            if reply.get("recovered") is True:
                self.recovered += 1
                return
            self.unrecovered += 1
        epoch, _, digits = str(reply["position"]).rpartition(":")
        self.epoch, self.offset = epoch.encode(), int(digits)


class Generator:
    """This process's subscribers and the state of the current command."""

    def __init__(self, opts: dict[str, Any]) -> None:
        self.host: str = opts["host"]
        self.port: int = opts["port"]
        self.path: str = opts["path"]
        self.source: str = opts["source"]
        self.topic: str = opts["topic"]
        self.subs = [Subscriber() for _ in range(opts["n"])]
        self.tally = Tally()
        self.errors: Counter[str] = Counter()
        self.live: set[Connection] = set()
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = False

    async def open(self, sub: Subscriber) -> Connection:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.setblocking(False)
            sock.bind((self.source, 0))
            await loop.sock_connect(sock, (self.host, self.port))
            _, conn = await loop.create_connection(
                lambda: Connection(sub, self.tally, self.host, self.port, self.path), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        try:
            await conn.opened()
        except BaseException:  # refused, lost, or timed out (cancelled): free the socket
            if conn._transport is not None:
                conn._transport.abort()
            raise
        return conn

    async def attempt(self, sub: Subscriber) -> Connection:
        """Connect and subscribe once (resuming when ``sub`` has seen a position)."""
        conn = await self.open(sub)
        try:
            resumed = sub.epoch is not None
            reply = json.loads(await conn.request(sub.subscribe_frame(self.topic), ATTEMPT_TIMEOUT))
            if reply.get("ok") is not True:
                raise ConnectionError(f"subscribe refused: {reply.get('error')}")
            sub.subscribed(reply, resumed)
        except BaseException:
            conn.close()
            raise
        return conn

    async def life(self, sub: Subscriber, first: asyncio.Semaphore) -> None:
        """Connect, stay subscribed, and after every cut wait a jitter and start again."""
        failed = 0
        gate: asyncio.Semaphore | None = first
        while not self.stopping:
            sub.attempts += 1
            try:
                if gate is not None:
                    async with gate:
                        conn = await asyncio.wait_for(self.attempt(sub), ATTEMPT_TIMEOUT)
                else:
                    conn = await asyncio.wait_for(self.attempt(sub), ATTEMPT_TIMEOUT)
            except (OSError, ConnectionError, TimeoutError, ValueError) as e:
                sub.failures += 1
                errno = f" {e.errno}" if isinstance(e, OSError) else ""
                self.errors[type(e).__name__ + errno] += 1
                failed += 1
                await asyncio.sleep(backoff(failed))
                continue
            gate, failed = None, 0
            self.live.add(conn)
            await conn.lost
            self.live.discard(conn)
            if self.stopping:
                return
            sub.cuts += 1
            await asyncio.sleep(backoff(0))

    async def wait(self, done: Any, deadline: float) -> None:
        """Poll ``done()`` every 50 ms until it holds or ``deadline`` (monotonic) passes
        (a poll, not an event: the conditions span thousands of subscribers' counters)."""
        while not done() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    # -- commands --------------------------------------------------------------------
    async def connect(self, concurrency: int, deadline: float) -> dict[str, Any]:
        first = asyncio.Semaphore(concurrency)
        started = time.time_ns()
        self.tasks = [asyncio.create_task(self.life(sub, first)) for sub in self.subs]
        await self.wait(lambda: len(self.live) == len(self.subs), deadline)
        return {
            "started_ns": started,
            "done_ns": time.time_ns(),
            "connected": len(self.live),
            "attempts": sum(s.attempts for s in self.subs),
            "errors": dict(self.errors),
        }

    async def collect(self, deadline: float) -> dict[str, Any]:
        waiter = self.tally.waiter
        if waiter is not None:
            await self.wait(waiter.done, deadline)
        self.tally.record = False  # the storm's messages are not latencies
        return {
            "delivered": self.tally.count,
            "last_ns": self.tally.last_ns,
            "latencies_ns": self.tally.latencies,
        }

    async def recover(self, final: int, deadline: float, kept: bool = False) -> dict[str, Any]:
        self.errors.clear()
        subs = self.subs

        def back(s: Subscriber) -> bool:  # (a client never cut, when not all were: at final)
            resumed = s.cuts > 0 and s.recovered + s.unrecovered >= s.cuts
            return (resumed or (kept and s.cuts == 0)) and s.offset >= final

        await self.wait(lambda: all(back(s) for s in subs), deadline)
        return {
            "done_ns": time.time_ns(),  # within 50 ms of the last client's last message
            "final": final,
            "back": sum(back(s) and s.cuts > 0 for s in subs),
            "connected": len(self.live),
            "cut": sum(s.cuts > 0 for s in subs),
            "cuts": sum(s.cuts for s in subs),
            "recovered_true": sum(s.recovered for s in subs),
            "recovered_false": sum(s.unrecovered for s in subs),
            "at_final": sum(s.offset == final for s in subs),
            "duplicates": sum(s.dups for s in subs),
            "gaps": sum(s.gaps for s in subs),
            "epoch_changes": sum(s.epoch_changes for s in subs),
            "failed_attempts": sum(s.failures for s in subs),
            "errors": dict(self.errors),
            "resumed_ns": [s.resumed_ns for s in subs if s.resumed_ns],
        }

    async def stop(self) -> None:
        self.stopping = True
        for conn in list(self.live):
            conn.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def serve(opts: dict[str, Any]) -> None:
    gen = Generator(opts)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": True}), flush=True)
    while line := await reader.readline():
        cmd = json.loads(line)
        deadline = time.monotonic() + float(cmd.get("timeout", 60))
        name = cmd["cmd"]
        reply: dict[str, Any]
        if name == "connect":
            reply = await gen.connect(int(cmd["concurrency"]), deadline)
        elif name == "arm":
            gen.tally.arm(len(gen.subs), record=True)
            reply = {"armed": True}
        elif name == "collect":
            reply = await gen.collect(deadline)
        elif name == "probe":  # latencies at never-cut clients, from now
            Connection.probes = []
            reply = {"probing": True}
        elif name == "probes":
            reply = {"probes_ns": Connection.probes or []}
            Connection.probes = None
        elif name == "recover":
            reply = await gen.recover(int(cmd["final"]), deadline, bool(cmd.get("kept")))
        elif name == "stop":
            await gen.stop()
            print(json.dumps({"stopped": True}), flush=True)
            return
        else:
            reply = {"error": f"unknown command {name!r}"}
        print(json.dumps(reply), flush=True)
    await gen.stop()  # stdin closed: the orchestrator is gone


def main() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(serve(json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()
