"""``python -m bench.brokers``: how fast one process publishes through Redis and through
PostgreSQL, and what the listener costs per message it receives (``make bench`` runs it
after the fan-out matrix).

    python -m bench.brokers                 # 3 runs, medians, writes bench/results/brokers.*
    python -m bench.brokers --runs 1 --messages 5000 --stem partial-brokers
    python -m bench.brokers --brokers redis # Redis only

Every row publishes the same messages to the same ``redis-server`` (127.0.0.1:6379,
database 11, flushed first), one row after another within a run, runs interleaved
(the asyncio rows on uvloop, as uvicorn serves):

- ``redis-py PUBLISH`` one by one, and pipelined by 100: the references. A bare PUBLISH
  does less than a tidings publish (no history, no offset, no receipt), so the ratio
  to it bounds what batching can reach, it is not a like-for-like race;
- ``tidings.publish()`` (the broker's sync call) from 1 thread and from 16 threads;
- ``apublish()`` one after another from one task, and from 64 concurrent tasks.

The listener row: one started broker subscribed to one topic, a second process
publishing to it through the broker from 4 threads; the listening process's CPU
seconds per message it delivered (``time.process_time``, this process only). Its floor:
the same publisher, read by a bare asyncio reader of the pub/sub socket (hiredis, a
timeout per read, nothing delivered): what the event loop and the kernel cost here.

The delivery row: one started broker subscribed to a topic, 200 lone ``apublish()``
calls 5 ms apart, each timed from the call to its delivery in the same process.

The PostgreSQL rows run the same tidings publishers and listener against the machine's
PostgreSQL (127.0.0.1:5432, user postgres, trust; a database ``tidings_bench`` made
afresh each run), after the Redis rows of the same run; without that server they are
left out, and the report says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import uvloop

RESULTS = Path(__file__).resolve().parent / "results"
URL = "redis://127.0.0.1:6379/11"
PG_URL = "postgresql://postgres@127.0.0.1:5432/tidings_bench"
PAYLOAD = json.dumps({"text": "x" * 64})
ROWS = (
    "redis-py PUBLISH, one by one",
    "redis-py PUBLISH, pipelined by 100",
    "publish(), 1 thread",
    "publish(), 16 threads",
    "apublish(), 1 task",
    "apublish(), 64 tasks",
)


PG_ROWS = ROWS[2:]


def _broker(url: str = URL) -> Any:
    from tidings.brokers import broker_from_url

    return broker_from_url(url)


def _close(broker: Any) -> None:
    asyncio.run(broker.close())


def _pg_fresh() -> str | None:
    """Make the PostgreSQL rows' database afresh; why not, when it cannot."""
    try:
        import psycopg

        with psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres",
            autocommit=True,
            connect_timeout=3,
        ) as c:
            c.execute("DROP DATABASE IF EXISTS tidings_bench WITH (FORCE)")
            c.execute("CREATE DATABASE tidings_bench")
    except Exception as e:
        return str(e).strip()
    return None


def _history() -> Any:
    from tidings.core.messages import HistoryPolicy

    return HistoryPolicy(100, 300.0)


def _rate(n: int, run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return n / (time.perf_counter() - started)


def _plain(n: int, batch: int) -> float:
    client = redis.Redis.from_url(URL)

    def run() -> None:
        for start in range(0, n, batch):
            pipe = client.pipeline(transaction=False)
            for _ in range(start, min(n, start + batch)):
                pipe.publish("bench", PAYLOAD)
            pipe.execute()

    try:
        return _rate(n, run)
    finally:
        client.close()


def _threads(n: int, threads: int, url: str = URL) -> float:
    broker, history = _broker(url), _history()
    share = n // threads

    seen: list[tuple[str, Any]] = []

    def work(k: int) -> None:
        for i in range(share):
            topic = f"t{(k * share + i) % 100}"
            seen.append((topic, broker.publish(topic, "m", PAYLOAD, history)))

    def run() -> None:
        pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    rate = _rate(share * threads, run)
    _check(seen, share * threads)
    _close(broker)
    return rate


def _check(seen: list[tuple[str, Any]], n: int) -> None:
    """Every publish was answered with a position of its own."""
    if len(set(seen)) != n or len(seen) != n:
        raise RuntimeError(f"{n} publishes got {len(set(seen))} distinct positions")


def _tasks(n: int, tasks: int, url: str = URL) -> float:
    async def main() -> float:
        broker, history = _broker(url), _history()
        share = n // tasks

        seen: list[tuple[str, Any]] = []

        async def work(k: int) -> None:
            for i in range(share):
                topic = f"t{(k * share + i) % 100}"
                seen.append((topic, await broker.apublish(topic, "m", PAYLOAD, history)))

        await broker.apublish("warm", "m", PAYLOAD, history)
        started = time.perf_counter()
        await asyncio.gather(*(work(k) for k in range(tasks)))
        rate = share * tasks / (time.perf_counter() - started)
        await broker.close()
        _check(seen, share * tasks)
        return rate

    return uvloop.run(main())


def _listener(n: int, url: str = URL) -> float:
    """CPU seconds of the listening process per message delivered."""

    async def main() -> float:
        broker = _broker(url)
        got = 0
        done = asyncio.Event()

        def deliver(message: Any) -> None:
            nonlocal got
            got += 1
            if got == n:
                done.set()

        await broker.start(deliver)
        await broker.subscribe("listened")
        before = time.process_time()
        proc = await _publisher(n, url)
        await asyncio.wait_for(done.wait(), 120)
        cpu = time.process_time() - before
        await proc.wait()
        await broker.close()
        return cpu / n * 1e6

    return uvloop.run(main())


async def _publisher(n: int, url: str) -> asyncio.subprocess.Process:
    """A second process publishing ``n`` messages to "listened" from 4 threads."""
    code = (
        "import sys, threading; sys.path[:0] = sys.argv[3:]\n"
        "from bench.brokers import _broker, _close, _history, PAYLOAD\n"
        "b, h, n = _broker(sys.argv[2]), _history(), int(sys.argv[1]) // 4\n"
        "def work(): [b.publish('listened', 'm', PAYLOAD, h) for _ in range(n)]\n"
        "pool = [threading.Thread(target=work) for _ in range(4)]\n"
        "[t.start() for t in pool]; [t.join() for t in pool]; _close(b)\n"
    )
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, str(n), url, *sys.path[:1], str(RESULTS.parent.parent)
    )


def _listener_floor(n: int) -> float:
    """The listener row's floor: CPU seconds per message of a bare reader of the same
    pub/sub stream (asyncio streams, a timeout per read, hiredis; nothing delivered)."""

    async def main() -> float:
        import hiredis

        from tidings.brokers.redis.options import Names

        reader, writer = await asyncio.open_connection("127.0.0.1", 6379)
        words: tuple[Any, ...] = ("SUBSCRIBE", Names("tidings", 11).channel("listened"))
        writer.write(hiredis.pack_command(words))
        parser, got = hiredis.Reader(encoding="utf-8"), 0
        before = time.process_time()
        proc = await _publisher(n, URL)
        while got < n:
            async with asyncio.timeout(120):
                parser.feed(await reader.read(1 << 16))
            while (reply := parser.gets()) is not False:
                got += reply[0] == "message"
        cpu = time.process_time() - before
        await proc.wait()
        writer.close()
        return cpu / n * 1e6

    return uvloop.run(main())


def _latency(n: int, url: str = URL) -> tuple[float, float]:
    """Milliseconds from ``apublish()`` to the delivery in the same process, for ``n``
    lone publishes 5 ms apart: the median and the 99th percentile."""

    async def main() -> tuple[float, float]:
        broker, history = _broker(url), _history()
        arrived = asyncio.Event()
        await broker.start(lambda message: arrived.set())
        await broker.subscribe("latency")
        waits = []
        for _ in range(n):
            arrived.clear()
            started = time.perf_counter()
            await broker.apublish("latency", "m", PAYLOAD, history)
            await asyncio.wait_for(arrived.wait(), 10)
            waits.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.005)
        await broker.close()
        waits.sort()
        return statistics.median(waits), waits[int(len(waits) * 0.99) - 1]

    return uvloop.run(main())


def one_run(n: int, brokers: list[str]) -> dict[str, float]:
    figures: dict[str, float] = {}
    if "redis" in brokers:
        redis.Redis.from_url(URL).flushdb()
        figures.update(
            {
                ROWS[0]: _plain(n, 1),
                ROWS[1]: _plain(n, 100),
                ROWS[2]: _threads(n // 4, 1),
                ROWS[3]: _threads(n, 16),
                ROWS[4]: _tasks(n // 4, 1),
                ROWS[5]: _tasks(n, 64),
                "listener µs CPU per message": _listener(n // 2 // 4 * 4),
                "listener floor µs CPU per message": _listener_floor(n // 2 // 4 * 4),
            }
        )
        figures["delivery ms p50"], figures["delivery ms p99"] = _latency(200)
    if "postgresql" in brokers:
        why = _pg_fresh()
        if why is not None:
            print(f"PostgreSQL rows left out: {why}", file=sys.stderr)
            return figures
        figures.update(
            {
                f"PostgreSQL {ROWS[2]}": _threads(n // 4, 1, PG_URL),
                f"PostgreSQL {ROWS[3]}": _threads(n, 16, PG_URL),
                f"PostgreSQL {ROWS[4]}": _tasks(n // 4, 1, PG_URL),
                f"PostgreSQL {ROWS[5]}": _tasks(n, 64, PG_URL),
                "PostgreSQL listener µs CPU per message": _listener(n // 2 // 4 * 4, PG_URL),
            }
        )
        p50, p99 = _latency(200, PG_URL)
        figures["PostgreSQL delivery ms p50"], figures["PostgreSQL delivery ms p99"] = p50, p99
    return figures


def report(runs: list[dict[str, float]], machine: dict[str, Any]) -> str:
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    lines = []
    if ROWS[1] in med:
        best = max(med[ROWS[3]], med[ROWS[5]])
        ref = med[ROWS[1]]
        lines += [
            f"Publishing through Redis from one process: medians of {len(runs)} runs "
            f"({machine['date']}, git {machine['git']}).",
            "",
            "| publisher, one process | publishes/s | vs pipelined PUBLISH |",
            "|---|---:|---:|",
        ]
        lines += [f"| {row} | {med[row]:,.0f} | {med[row] / ref:.2f}x |" for row in ROWS]
        lines += [
            "",
            f"Best concurrent tidings rate: {best / ref:.2f}x pipelined PUBLISH; "
            f"16 threads: {med[ROWS[3]] / ref:.2f}x.",
            f"Listener: {med['listener µs CPU per message']:.1f} µs of CPU per message received"
            + (
                f" (a bare reader of the same stream: {floor:.1f} µs)."
                if (floor := med.get("listener floor µs CPU per message")) is not None
                else "."
            ),
            f"A lone apublish() to its delivery: {med['delivery ms p50']:.2f} ms median, "
            f"{med['delivery ms p99']:.2f} ms 99th percentile.",
            "",
        ]
    if f"PostgreSQL {PG_ROWS[0]}" in med:
        lines += [
            f"Publishing through PostgreSQL from one process: medians of {len(runs)} runs "
            f"({machine['date']}, git {machine['git']}).",
            "",
            "| publisher, one process | publishes/s | vs the same on Redis |",
            "|---|---:|---:|",
        ]
        for row in PG_ROWS:
            rate = med[f"PostgreSQL {row}"]
            vs = f"{rate / med[row]:.2f}x" if row in med else "-"
            lines.append(f"| {row} | {rate:,.0f} | {vs} |")
        cpu = med["PostgreSQL listener µs CPU per message"]
        lines += [
            "",
            f"Listener: {cpu:.1f} µs of CPU per message received.",
            f"A lone apublish() to its delivery: {med['PostgreSQL delivery ms p50']:.2f} ms "
            f"median, {med['PostgreSQL delivery ms p99']:.2f} ms 99th percentile.",
            "",
        ]
    else:
        lines += ["PostgreSQL rows: left out (no PostgreSQL at 127.0.0.1:5432).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from bench.runner import machine

    p = argparse.ArgumentParser(prog="python -m bench.brokers", description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--stem", default="brokers")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--brokers", default="redis,postgresql", help="comma-separated")
    args = p.parse_args(argv)
    brokers = args.brokers.split(",")
    info = machine(" ".join(["python -m bench.brokers", *(argv or sys.argv[1:])]))
    runs = []
    for k in range(args.runs):
        runs.append(one_run(args.messages, brokers))
        figures = {row: round(value) for row, value in runs[-1].items()}
        print(f"[run {k + 1}/{args.runs}] " + json.dumps(figures))
    text = report(runs, info)
    args.out.mkdir(parents=True, exist_ok=True)
    data = {"machine": info, "runs": runs}
    (args.out / f"{args.stem}.json").write_text(json.dumps(data, indent=1))
    (args.out / f"{args.stem}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
