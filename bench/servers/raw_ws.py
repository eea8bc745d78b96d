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

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

topics: dict[str, set[ServerConnection]] = {}


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
