"""The tidings target's control topic: the load generator asks the server to publish
in a server-side pattern (:data:`bench.wire.PATTERNS`), as application code does.

Imported by tidings' autodiscovery (``bench.servers`` is in the target's
``INSTALLED_APPS``). A publish to ``bench.ctl`` starts the pattern and returns at once;
the load generator then counts deliveries until the last subscriber has them all.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import tidings
from bench.wire import PAD, THREADS

_running: set[asyncio.Task[None]] = set()


def _data(seq: int) -> dict[str, Any]:
    return {"t": time.time_ns(), "seq": seq, "text": PAD}  # "t" first, as data_json


async def _loop(topic: str, count: int) -> None:
    for seq in range(count):
        await tidings.apublish(topic, _data(seq))
        await asyncio.sleep(0)  # yield to the loop between publishes


def _threads(topic: str, count: int) -> None:
    def run(first: int) -> None:
        for seq in range(first, count, THREADS):
            tidings.publish(topic, _data(seq))

    for k in range(THREADS):
        threading.Thread(target=run, args=(k,), daemon=True).start()


@tidings.handler("bench.ctl")
async def control(msg: Any) -> dict[str, Any]:
    data = msg.data
    topic, count = str(data["topic"]), int(data["count"])
    if data["pattern"] == "loop":
        task = asyncio.get_running_loop().create_task(_loop(topic, count))
        _running.add(task)
        task.add_done_callback(_running.discard)
    elif data["pattern"] == "threads":
        _threads(topic, count)
    return {"started": data["pattern"]}
