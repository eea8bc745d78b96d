"""How many publishes per second one process gets through one Redis (100-byte messages).

    .venv/bin/python -m tests.test_redis_throughput [count]     # the figures in docs/redis.md

Under pytest it only runs a small round, to keep the measuring code working.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable

import redis

from tests.redis_server import redis_server
from tidings.brokers import broker_from_url
from tidings.brokers.redis import RedisBroker
from tidings.core.messages import HistoryPolicy, Message

POLICY = HistoryPolicy(size=100, ttl=300)
DATA = '{"text":"' + "x" * 89 + '"}'  # 100 bytes of JSON


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>9,.0f}/s"


def sync_publishes(url: str, count: int, threads: int) -> float:
    broker = broker_from_url(url)
    per_thread = count // threads

    def run() -> None:
        for _ in range(per_thread):
            broker.publish("bench.sync", "m", DATA, POLICY)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - t0


async def async_publishes(
    url: str, count: int, tasks: int, subscribe: bool
) -> tuple[float, int, float]:
    """``tasks`` concurrent apublish loops; with ``subscribe``, until all are delivered."""
    broker = broker_from_url(url)
    assert isinstance(broker, RedisBroker)
    count -= count % tasks
    got: list[Message] = []
    done = asyncio.get_running_loop().create_future()

    def deliver(message: Message) -> None:
        got.append(message)
        if len(got) == count and not done.done():
            done.set_result(None)

    await broker.start(deliver)
    if subscribe:
        await broker.subscribe("bench.async")

    slowest = 0.0

    async def run() -> None:
        nonlocal slowest
        for _ in range(count // tasks):
            t = time.perf_counter()
            await broker.apublish("bench.async", "m", DATA, POLICY)
            slowest = max(slowest, time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(run() for _ in range(tasks)))
    if subscribe:
        await asyncio.wait_for(done, 60)
    elapsed = time.perf_counter() - t0
    await broker.close()
    return elapsed, len(got), slowest


async def listener_cost(url: str, count: int) -> tuple[float, float]:
    """Deliveries to a process that only listens, published by another process: the
    rate, and this process's CPU time per delivered message (its capacity)."""
    broker = broker_from_url(url)
    got: list[Message] = []
    await broker.start(got.append)
    await broker.subscribe("bench.listen")
    code = (
        "import sys, threading; from tidings.brokers import broker_from_url\n"
        "from tidings.core.messages import HistoryPolicy\n"
        "b = broker_from_url(sys.argv[1]); p = HistoryPolicy(100, 300)\n"
        "def run():\n"
        "    for _ in range(int(sys.argv[2]) // 4):\n"
        "        b.publish('bench.listen', 'm', sys.argv[3], p)\n"
        "ts = [threading.Thread(target=run) for _ in range(4)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
    )
    cpu, t0 = time.process_time(), time.perf_counter()
    publisher = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, url, str(count), DATA, env={**os.environ, "PYTHONPATH": "src"}
    )
    await publisher.wait()
    deadline = time.monotonic() + 60
    while len(got) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu
    await broker.close()
    assert len(got) == count, len(got)
    return count / elapsed, cpu / count


def plain_publish(url: str, count: int) -> float:
    """redis-py's PUBLISH alone, for scale: the client's own cost per round trip."""
    client = redis.Redis.from_url(url)
    t0 = time.perf_counter()
    for _ in range(count):
        client.publish("bench.plain", DATA)
    return time.perf_counter() - t0


def measure(count: int, report: Callable[[str], None]) -> None:
    with redis_server() as r:
        url = r.url
        report(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {count} messages each")
        report(f"redis-py PUBLISH, 1 thread (reference) {rate(count, plain_publish(url, count))}")
        for threads in (1, 4):
            seconds = sync_publishes(url, count, threads)
            report(f"publish(), {threads} thread(s)              {rate(count, seconds)}")
        for tasks, subscribe in ((1, False), (32, False), (32, True)):
            seconds, delivered, slowest = asyncio.run(async_publishes(url, count, tasks, subscribe))
            what = f"apublish(), {tasks:>2} task(s)" + (", delivered" if subscribe else "")
            report(
                f"{what:<39}{rate(count, seconds)}, slowest {slowest * 1000:.0f} ms"
                + (f" ({delivered} delivered)" if subscribe else "")
            )
        per_second, cpu = asyncio.run(listener_cost(url, count))
        report(
            f"delivered to a listening process       {per_second:>9,.0f}/s, "
            f"{cpu * 1e6:.0f} µs CPU each (published by another process, 4 threads)"
        )


def test_throughput_smoke():
    lines: list[str] = []
    measure(400, lines.append)
    assert len(lines) == 8 and "(384 delivered)" in lines[-2], lines


if __name__ == "__main__":
    measure(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000, print)
