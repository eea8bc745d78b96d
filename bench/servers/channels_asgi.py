"""Django Channels 4 doing the same job: a group per topic, ``group_send`` to publish.

The consumer is the one the Channels tutorial teaches (``AsyncWebsocketConsumer``,
``group_add`` on subscribe, a ``bench.message`` handler that sends the frame on). Run
under uvicorn or daphne with ``DJANGO_SETTINGS_MODULE=bench.servers.channels_settings``.
"""

from __future__ import annotations

import os
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.servers.channels_settings")
django.setup(set_prefix=False)

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

urlpatterns: list[Any] = []


class BenchConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        self.topics: list[str] = []
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for topic in self.topics:
            await self.channel_layer.group_discard(topic, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        text = text_data or ""
        if text.startswith("pub "):
            topic, _, frame = text[4:].partition("\n")
            await self.channel_layer.group_send(topic, {"type": "bench.message", "text": frame})
        elif text.startswith("sub "):
            topic = text[4:]
            await self.channel_layer.group_add(topic, self.channel_name)
            self.topics.append(topic)
            await self.send("ok")

    async def bench_message(self, event: dict[str, Any]) -> None:
        await self.send(event["text"])


application = ProtocolTypeRouter({"websocket": URLRouter([path("ws", BenchConsumer.as_asgi())])})
