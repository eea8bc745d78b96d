"""Django signals for a connection's life: what a Channels consumer's ``connect`` and
``disconnect`` gave, for every transport.

Connect receivers as to any Django signal, typically in your app's ``realtime.py`` or
``AppConfig.ready()``::

    from django.dispatch import receiver
    from tidings.signals import connected, disconnected, subscribed, unsubscribed

    @receiver(subscribed)
    async def joined(sender, *, user, topic, **kwargs):
        ...

Every signal is sent with ``sender`` the class of the connection's subscriber and these
keyword arguments: ``connection`` (the connection's id, also its presence ref),
``user`` (the Django user, possibly anonymous), ``transport`` (``"websocket"``,
``"sse"``, ``"longpoll"``, ``"hold"``, ``"websocket hold"``). Besides:

- :data:`connected`: nothing more.
- :data:`subscribed`: ``topic``, once its stream has started.
- :data:`unsubscribed`: ``topic`` and ``reason``: ``"unsubscribe"`` (the client asked)
  or ``"disconnect"`` (the connection ended).
- :data:`disconnected`: ``code`` and ``reason``: the close code and reason the server
  closed it with (``4009``, ``"slow consumer"``...), or the client's close code (a
  WebSocket's; ``None`` otherwise) and ``"client went away"``.

They are sent in that order for a connection: ``connected`` first, every
``unsubscribed`` before ``disconnected``. Receivers may be async or sync (a sync one runs
in a thread, as Django's ``Signal.asend`` runs it, so it may use the ORM). They are
awaited where the event happens: a slow receiver delays that connection (its
subscribe's answer, say), nobody else's. A receiver that raises is logged on
``tidings.signals`` with its traceback; the connection goes on. With no receivers
connected, sending costs nothing but a check.

Signals fire in the process that holds the connection. A connection held by the GRIP
proxy (Pushpin) is not held by any process between requests: no signals fire for it. A
long-poll is one connection per poll.
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger("tidings.signals")

connected = Signal()
"""A client connected (it may subscribe next)."""

disconnected = Signal()
"""A connection ended, after every ``unsubscribed`` of it."""

subscribed = Signal()
"""A connection's subscription to ``topic`` started."""

unsubscribed = Signal()
"""A connection's subscription to ``topic`` ended."""


async def announce(signal: Signal, sender: type, **facts: Any) -> None:
    """Send ``signal`` to its receivers; log (not raise) what they raise."""
    for receiver, result in await signal.asend_robust(sender, **facts):
        if isinstance(result, Exception):
            logger.error("a receiver of tidings.signals failed: %r", receiver, exc_info=result)
