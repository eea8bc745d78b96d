"""The load generator: every phase of one (target, N) measurement against a running server.

Phases, in order, on one server process:

1. **accept**: open N WebSockets and subscribe each to ``bench.all`` (at most
   ``accept_concurrency`` handshakes in flight) -> connections/s, server CPU per accept;
   for an SSE target, N ``GET`` streams on ``bench.all``, each open once its
   ``tidings.open`` event arrived;
2. **idle memory**: server RSS with the N idle subscribers minus RSS before them;
3. **lone broadcasts**: one message to ``bench.all``, wait until all N have it, again
   (``warmup`` + ``lone`` times) -> p50/p99 publish-to-receive latency over every
   delivery, and the time until the *last* subscriber had it ("reaches all");
4. **burst**: M messages back-to-back in one write -> deliveries/s = N*M / (time from
   the write until the last subscriber got the last message), server CPU per delivery,
   and each subscriber's count checked against M;
5. **server-side patterns**: the same M messages published by the server itself, as
   application code does (:data:`bench.wire.PATTERNS`): ``loop`` (one task, yielding
   between publishes) and ``threads`` (16 threads) -> deliveries/s, CPU per delivery;
6. **many topics**: each subscriber also subscribes to its own topic; a burst of K
   messages spread round-robin over the N topics -> deliveries/s, CPU per delivery;
   then 20 lone messages to single topics -> latency; then the same K messages
   written at once by 16 publisher sockets (many concurrent publishers over many
   topics) -> deliveries/s, CPU per delivery. Not run for targets that list it
   in ``skip_phases`` (SSE: a stream cannot add a topic); the reason goes in the result.

The publisher is a separate WebSocket that subscribes to nothing (on the first server
process when the target has two; the subscribers are on the second). A phase that stops
making progress for ``stall`` seconds is recorded as incomplete (delivered < expected)
and ends the measurement: the server is then not in a state worth measuring further.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import signal
import statistics
import time
from dataclasses import dataclass, replace
from typing import Any

from bench.procstat import CpuMeter, rss_bytes
from bench.server import HOST, Server
from bench.sseclient import SSEClient, connect_sse
from bench.wire import Wire, data_json
from bench.wsclient import Tally, WSClient, client_frame, connect

Subscriber = WSClient | SSEClient

FANOUT_TOPIC = "bench.all"
PUBLISHERS = 16  # the concurrent publishers of the many-topics pattern
MIB = 1024 * 1024


@dataclass(frozen=True)
class Plan:
    """How much work each phase does; :meth:`for_target` shortens it for slow targets."""

    lone: int = 20
    warmup: int = 2
    lone_budget: float = 10.0  # seconds of lone broadcasts, once min_lone are done
    min_lone: int = 3
    burst_deliveries: int = 200_000  # M = clamp(burst_deliveries / N, min_burst, max_burst)
    min_burst: int = 10
    max_burst: int = 2_000
    topic_messages: int = 20_000
    topic_lone: int = 20
    accept_concurrency: int = 100
    settle: float = 1.0  # seconds between the last accept and the RSS reading
    stall: float = 15.0  # seconds without a delivery: the phase is given up

    def burst(self, n: int) -> int:
        return max(self.min_burst, min(self.max_burst, self.burst_deliveries // n))

    def for_target(self, slow: bool) -> Plan:
        """A tenth of the burst work and one warm-up for targets ~20x slower."""
        if not slow:
            return self
        return replace(
            self,
            burst_deliveries=self.burst_deliveries // 10,
            topic_messages=max(100, self.topic_messages // 10),
            warmup=min(self.warmup, 1),
            min_burst=min(self.min_burst, 4),
        )


class Incomplete(Exception):
    """A phase stopped making progress before everything was delivered."""


async def wait_for_deliveries(tally: Tally, waiter: asyncio.Future[None], stall: float) -> None:
    """Wait until ``tally`` reaches its expected count; raise :class:`Incomplete` on a stall."""
    seen = -1
    while True:
        try:
            await asyncio.wait_for(asyncio.shield(waiter), stall)
            return
        except TimeoutError:
            if tally.count == seen:
                raise Incomplete(f"{tally.count} of {tally.expected} delivered") from None
            seen = tally.count


async def gather_all(coros: list[Any]) -> None:
    """Run ``coros`` concurrently; on the first failure cancel the rest and raise it."""
    try:
        async with asyncio.TaskGroup() as group:
            for coro in coros:
                group.create_task(coro)
    except BaseExceptionGroup as eg:
        raise eg.exceptions[0] from None


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


async def open_subscriber(server: Server, tally: Tally, topic: str) -> Subscriber:
    """Connect one subscriber and subscribe it, over the target's transport."""
    target = server.target
    if target.transport == "sse":
        return await connect_sse(tally, HOST, server.sub_port, target.subscriber_path, topic)
    if target.transport != "ws":
        raise NotImplementedError(f"no {target.transport!r} subscriber")
    client = await connect(tally, HOST, server.sub_port, target.subscriber_path)
    await subscribe(client, target.wire, topic)
    return client


async def subscribe(client: WSClient, wire: Wire, topic: str) -> None:
    reply = await client.request(wire.subscribe(topic))
    if not wire.subscribed(reply):
        raise RuntimeError(f"subscribe {topic!r} refused: {reply[:200]!r}")


class Measurement:
    """One (target, N) measurement; :meth:`run` fills :attr:`result`."""

    def __init__(self, server: Server, n: int, plan: Plan, profile_out: str | None = None) -> None:
        self.server = server
        self.profile_out = profile_out  # the server runs under bench.profiling: profile bursts
        self.n = n
        self.plan = plan.for_target(server.target.slow)
        self.wire = server.target.wire
        self.tally = Tally()
        self.clients: list[Subscriber] = []
        self.publisher: WSClient | None = None
        self.pids: list[int] = server.pids  # the server's processes, then aux_pids
        self.result: dict[str, Any] = {"target": server.target.name, "n": n, "error": None}

    async def run(self) -> dict[str, Any]:
        gc.disable()
        phase = "start"
        steps = (
            ("accept", self.accept),
            ("lone", self.lone),
            ("burst", self.burst),
            ("loop", self.loop),
            ("threads", self.threads),
            ("topics", self.topics),
        )
        try:
            await self.server.ready()
            aux = self.server.target.aux_pids
            self.pids = self.server.pids + (aux() if aux is not None else [])  # workers up now
            self.publisher = await connect(Tally(), HOST, self.server.port, self.server.target.path)
            for name, step in steps:
                phase = name
                await step()
        except Exception as e:
            self.result["error"] = f"{phase}: {type(e).__name__}: {e}"
        finally:
            for client in [*self.clients, self.publisher]:
                if client is not None:
                    client.close()
            await asyncio.sleep(0.2)
            gc.enable()
            gc.collect()
        return self.result

    def meter(self) -> CpuMeter:
        return CpuMeter(self.pids, servers=len(self.server.pids))

    def per_process(self, key: str, cpu: dict[str, float]) -> None:
        """With several server processes, each one's CPU % too: [publisher's, subscribers']."""
        k = len(self.server.pids)
        if k > 1:
            self.result[f"{key}_server_cpu_pct_by_process"] = [
                100 * cpu[f"server{i}"] / cpu["wall"] for i in reversed(range(k))
            ]

    def publish(self, topic: str, seq: int) -> None:
        assert self.publisher is not None
        self.publisher.send(self.wire.publish(topic, data_json(time.time_ns(), seq)))

    async def _profile(self, sig: signal.Signals) -> None:
        """Start (SIGUSR1) or stop (SIGUSR2) the server's profiler, when it has one."""
        if self.profile_out is not None:
            os.kill(self.server.pid, sig)
            await asyncio.sleep(0.2)  # handled between two callbacks of the server's loop

    # -- phases ----------------------------------------------------------------------
    async def accept(self) -> None:
        pid, n, r = self.server.pid, self.n, self.result
        rss0 = rss_bytes(pid)
        limit = asyncio.Semaphore(self.plan.accept_concurrency)

        async def one() -> None:
            async with limit:
                self.clients.append(await open_subscriber(self.server, self.tally, FANOUT_TOPIC))

        await self._profile(signal.SIGUSR1)
        meter = self.meter()
        await gather_all([one() for _ in range(n)])
        cpu = meter.stop()
        self.per_process("accept", cpu)
        await self._profile(signal.SIGUSR2)
        r["accept_per_s"] = n / cpu["wall"]
        r["accept_server_us"] = cpu["server"] / n * 1e6
        r["accept_server_cpu_pct"] = 100 * cpu["server"] / cpu["wall"]
        r["accept_client_cpu_pct"] = 100 * cpu["client"] / cpu["wall"]
        await asyncio.sleep(self.plan.settle)
        rss1 = rss_bytes(pid)
        r["rss_base_mib"] = rss0 / MIB
        r["rss_idle_mib"] = rss1 / MIB
        r["idle_mib_per_1k"] = (rss1 - rss0) / MIB / n * 1000

    async def lone(self) -> None:
        plan, tally, r = self.plan, self.tally, self.result
        latencies: list[int] = []
        reaches: list[int] = []
        started = 0.0
        for i in range(plan.warmup + plan.lone):
            measured = i - plan.warmup
            if measured == 0:
                started = time.perf_counter()
            elif measured >= plan.min_lone and time.perf_counter() - started > plan.lone_budget:
                break
            waiter = tally.arm(self.n, record=measured >= 0)
            sent = time.time_ns()
            self.publish(FANOUT_TOPIC, i)
            await wait_for_deliveries(tally, waiter, plan.stall)
            if measured >= 0:
                reaches.append(tally.last_ns - sent)
                latencies.extend(tally.latencies)
            await asyncio.sleep(0.02)
        r["lone_count"] = len(reaches)
        r["lone_p50_ms"] = percentile(latencies, 0.50) / 1e6
        r["lone_p99_ms"] = percentile(latencies, 0.99) / 1e6
        r["lone_reach_ms"] = statistics.median(reaches) / 1e6
        r["lone_reach_max_ms"] = max(reaches) / 1e6
        r["lone_reaches_ms"] = [round(x / 1e6, 2) for x in reaches]

    async def _burst(self, key: str, topics: list[str], messages: int, expected: int) -> None:
        """Publish ``messages`` frames in one write, round-robin over ``topics``."""
        frames = b"".join(
            client_frame(self.wire.publish(topics[i % len(topics)], data_json(time.time_ns(), i)))
            for i in range(messages)
        )
        await self._deliveries(key, frames, messages, expected)

    async def _deliveries(
        self,
        key: str,
        frames: bytes | list[bytes],
        messages: int,
        expected: int,
        publishers: list[WSClient] | None = None,
    ) -> None:
        """Write ``frames`` on the publisher's socket (or each of ``frames`` on its own
        of ``publishers``, all at once), then count deliveries until ``expected``
        arrived: deliveries/s, server CPU per delivery."""
        assert self.publisher is not None
        pubs = publishers or [self.publisher]
        writes = frames if isinstance(frames, list) else [frames]
        r, tally = self.result, self.tally
        before = [c.received for c in self.clients]
        r[f"{key}_messages"] = messages
        r[f"{key}_expected"] = expected
        waiter = tally.arm(expected, record=False)
        await self._profile(signal.SIGUSR1)
        meter = self.meter()
        sent = time.time_ns()
        for pub, chunk in zip(pubs, writes, strict=True):
            pub.send_raw(chunk)
        try:
            await wait_for_deliveries(tally, waiter, self.plan.stall)
        finally:
            cpu = meter.stop()
            await self._profile(signal.SIGUSR2)
            delivered = tally.count
            r[f"{key}_delivered"] = delivered
            r[f"{key}_complete"] = delivered == expected
            counts = [c.received - b for c, b in zip(self.clients, before, strict=True)]
            r[f"{key}_per_client_min"] = min(counts)
            r[f"{key}_per_client_max"] = max(counts)
            r[f"{key}_publisher_errors"] = sum(len(pub.replies()) for pub in pubs)
            if delivered:
                r[f"{key}_deliveries_per_s"] = delivered / ((tally.last_ns - sent) / 1e9)
                r[f"{key}_server_us_per_delivery"] = cpu["server"] / delivered * 1e6
                r[f"{key}_aux_us_per_delivery"] = cpu["aux"] / delivered * 1e6
            r[f"{key}_server_cpu_pct"] = 100 * cpu["server"] / cpu["wall"]
            r[f"{key}_client_cpu_pct"] = 100 * cpu["client"] / cpu["wall"]
            r[f"{key}_other_cpu_pct"] = 100 * cpu["other"] / cpu["wall"]
            self.per_process(key, cpu)

    async def burst(self) -> None:
        m = self.plan.burst(self.n)
        await self._burst("burst", [FANOUT_TOPIC], m, m * self.n)

    async def pattern(self, name: str) -> None:
        """M messages to every subscriber, published by the server itself in the
        pattern ``name`` (:data:`bench.wire.PATTERNS`), M as for the burst."""
        skipped = self.server.target.skip_phases.get(name)
        if skipped is not None:
            self.result.setdefault("skipped", {})[name] = skipped
            return
        m = self.plan.burst(self.n)
        frame = client_frame(self.wire.control(name, FANOUT_TOPIC, m))
        await self._deliveries(name, frame, m, m * self.n)

    async def loop(self) -> None:
        await self.pattern("loop")

    async def threads(self) -> None:
        await self.pattern("threads")

    async def topics(self) -> None:
        n, plan = self.n, self.plan
        skipped = self.server.target.skip_phases.get("topics")
        if skipped is not None:
            self.result.setdefault("skipped", {}).update(topics=skipped, publishers=skipped)
            return
        own = [f"bench.c{i}" for i in range(n)]
        ws = [c for c in self.clients if isinstance(c, WSClient)]
        pairs = zip(ws, own, strict=True)
        await gather_all([subscribe(client, self.wire, topic) for client, topic in pairs])
        await asyncio.sleep(0.2)
        await self._burst("topics", own, plan.topic_messages, plan.topic_messages)
        latencies: list[int] = []
        for i in random.Random(n).sample(range(n), min(n, plan.topic_lone)):
            waiter = self.tally.arm(1, record=True)
            self.publish(own[i], i)
            await wait_for_deliveries(self.tally, waiter, plan.stall)
            latencies.extend(self.tally.latencies)
            await asyncio.sleep(0.005)
        self.result["topics_p50_ms"] = percentile(latencies, 0.5) / 1e6
        self.result["topics_p99_ms"] = percentile(latencies, 0.99) / 1e6
        await self.publishers(own, plan.topic_messages)

    async def publishers(self, own: list[str], messages: int) -> None:
        """Many concurrent publishers over many topics: :data:`PUBLISHERS` sockets each
        write their share of ``messages`` at once, round-robin over the N topics."""
        server = self.server
        pubs = [
            await connect(Tally(), HOST, server.port, server.target.path) for _ in range(PUBLISHERS)
        ]
        try:
            frames = [
                b"".join(
                    client_frame(self.wire.publish(own[i % len(own)], data_json(time.time_ns(), i)))
                    for i in range(k, messages, PUBLISHERS)
                )
                for k in range(PUBLISHERS)
            ]
            await self._deliveries("publishers", frames, messages, messages, pubs)
        finally:
            for pub in pubs:
                pub.close()
