"""A Python asyncio client for tidings' WebSocket endpoint: for services, scripts and
tests (docs/client.md, "The Python client")::

    from tidings.client import connect

    async with connect("wss://example.com/realtime/ws", cookies={"sessionid": key}) as client:
        sub = await client.subscribe("news.sport")          # ClientError if refused
        await client.publish("news.sport", {"title": "Goal!"})
        async for message in sub:                           # Message(topic, position, event, data)
            print(message.data)

It reconnects with backoff and jitter, resumes every subscription from the last
position it saw, and drops repeats, as tidings.js does. It needs no Django settings.
"""

from tidings.client.connection import Client, Message, Subscription
from tidings.client.connection import connect_client as connect
from tidings.client.state import Backoff, Roster, is_newer
from tidings.exceptions import ClientError

__all__ = [
    "Backoff",
    "Client",
    "ClientError",
    "Message",
    "Roster",
    "Subscription",
    "connect",
    "is_newer",
]
