"""Reference limit: the ``websockets`` library's own server and ``broadcast()``.

``broadcast()`` writes one already-encoded frame into every connection's transport
synchronously, with no task, no queue and no backpressure: about the least work a
Python server can do per delivery. Run as ``python -m bench.servers.raw_ws --fd N``
on a listening socket the harness bound; compression is off, as for every target.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import threading
import time

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

from bench.wire import THREADS, server_frame

topics: dict[str, set[ServerConnection]] = {}
running: set[asyncio.Task[None]] = set()


def send(topic: str, seq: int) -> None:
    broadcast(topics.get(topic, ()), server_frame(topic, seq, time.time_ns()))


async def publish_loop(topic: str, count: int) -> None:
    """The "loop" pattern: back to back from one task, yielding between messages."""
    for seq in range(count):
        send(topic, seq)
        await asyncio.sleep(0)


def publish_threads(topic: str, count: int) -> None:
    """The "threads" pattern: 16 threads hand each message to the loop."""
    loop = asyncio.get_running_loop()

    def run(first: int) -> None:
        for seq in range(first, count, THREADS):
            loop.call_soon_threadsafe(send, topic, seq)

    for k in range(THREADS):
        threading.Thread(target=run, args=(k,), daemon=True).start()


async def handler(ws: ServerConnection) -> None:
    mine: list[str] = []
    try:
        async for text in ws:
            assert isinstance(text, str)
            if text.startswith("pub "):
                topic, _, frame = text[4:].partition("\n")
                broadcast(topics.get(topic, ()), frame)
            elif text.startswith("sub "):
                topic = text[4:]
                topics.setdefault(topic, set()).add(ws)
                mine.append(topic)
                await ws.send("ok")
            elif text.startswith(("loop ", "threads ")):
                pattern, topic, count = text.split()
                if pattern == "loop":
                    task = asyncio.get_running_loop().create_task(publish_loop(topic, int(count)))
                    running.add(task)
                    task.add_done_callback(running.discard)
                else:
                    publish_threads(topic, int(count))
    finally:
        for topic in mine:
            subscribers = topics.get(topic)
            if subscribers is not None:
                subscribers.discard(ws)


async def main(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    async with serve(
        handler, sock=sock, compression=None, max_size=2**20, ping_interval=None
    ) as server:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, server.close)
        await server.wait_closed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    uvloop.run(main(parser.parse_args().fd))
