"""Telling the proxies of every publish (the node's publish hook).

Every publish is sent to each proxy's control endpoint as two items, each with ``id``
= the position and ``prev-id`` = the one before:

- channel ``<topic>``: the holds' formats (``http-response``, ``http-stream``,
  ``ws-message``), the same as the in-process holds send (:mod:`tidings.formats`);
- channel ``tidings.t.<topic>``: the endpoints' formats: the protocol's message frame
  for WebSockets, and a ``hint`` for SSE and long-poll, so Pushpin asks tidings for
  exactly what each client is missing (cursors differ per client). Before a topic's
  first message of an epoch (offset 1) a WebSocket is sent a ``gap`` frame: Pushpin
  cannot ask tidings what a WebSocket missed, so it is told its history may have been
  lost (a client that joined the topic empty, at ``0:0``, lost nothing and ignores it).

A cut (:func:`tidings.disconnect`) is published on the user's channel
(:func:`~tidings.grip.instructions.user_channel`): a WebSocket is closed with the code,
a stream gets ``tidings.close`` and ends, a held poll is retried (so it is answered as
whoever its cookie now says).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tidings.conf import GripProxy
from tidings.core.frames import close_event, gap_frame
from tidings.core.messages import Message, Position
from tidings.core.protocol import Gap
from tidings.core.topics import RESERVED
from tidings.formats import http_response, stream_chunk, ws_message
from tidings.grip.instructions import (
    channel,
    gripcontrol,
    previous,
    protocol_channel,
    user_channel,
)

logger = logging.getLogger("tidings.grip")


class Publisher:
    """Sends every publish to each proxy's control endpoint, in order, off the caller's
    thread (pubcontrol's client thread). A failure is logged: the message is in tidings'
    history, and Pushpin recovers it at the next publish (its ``prev-id`` will not match)."""

    def __init__(self, proxies: Sequence[GripProxy]) -> None:
        self.pub = gripcontrol().GripPubControl([{"control_uri": p.control_uri} for p in proxies])

    def publish(
        self, topic: str, event: str, data_json: str, formats_json: str | None, position: Position
    ) -> None:
        """A message was just published (the node calls this)."""
        if topic.startswith(RESERVED):
            return
        message = Message(topic, event, data_json, position, formats_json=formats_json)
        try:
            self._send(message)
        except Exception:
            logger.exception("could not publish %r to the GRIP proxy", message)

    def _send(self, message: Message) -> None:
        import pubcontrol  # type: ignore[import-untyped]

        pid, prev = str(message.position), str(previous(message.position))
        response = http_response(message)
        body = response.content.decode(response.charset or "utf-8", errors="replace")
        gc, item = gripcontrol(), pubcontrol.Item
        holds = item(
            [
                gc.HttpResponseFormat(
                    code=response.status_code,
                    reason=response.reason_phrase,
                    headers=dict(response.items()),
                    body=body,
                ),
                gc.HttpStreamFormat(stream_chunk(message)),
                gc.WebSocketMessageFormat(ws_message(message)),
            ],
            id=pid,
            prev_id=prev,
        )
        endpoints = item(
            [
                gc.HttpResponseFormat(action="hint"),
                gc.HttpStreamFormat(action="hint"),
                gc.WebSocketMessageFormat(message.ws_frame),
            ],
            id=pid,
            prev_id=prev,
        )
        topic = message.topic
        self.pub.publish(channel(topic), holds, blocking=False, callback=self._done)
        if message.position.offset == 1:  # a new history: what came before may be lost
            gap = gap_frame(Gap(topic, Position(message.position.epoch, 0)))
            told = item([gc.WebSocketMessageFormat(gap)])
            self.pub.publish(protocol_channel(topic), told, blocking=False, callback=self._done)
        self.pub.publish(protocol_channel(topic), endpoints, blocking=False, callback=self._done)

    def disconnect(self, key: str, code: int, reason: str) -> None:
        """Close the connections the proxy holds for the user ``key`` (the node that was
        asked calls this; a failure is logged)."""
        try:
            import pubcontrol

            gc, item, to = gripcontrol(), pubcontrol.Item, user_channel(key)
            said = item([gc.HttpStreamFormat(close_event(code, reason))])
            cut = item(
                [
                    gc.WebSocketMessageFormat(action="close", code=code, reason=reason),
                    gc.HttpStreamFormat(close=True),
                    gc.HttpResponseFormat(action="hint"),
                ]
            )
            self.pub.publish(to, said, blocking=False, callback=self._done)
            self.pub.publish(to, cut, blocking=False, callback=self._done)
        except Exception:
            logger.exception("could not tell the GRIP proxy to disconnect user %s", key)

    @staticmethod
    def _done(ok: bool, error: str) -> None:
        if not ok:
            logger.warning("publishing to the GRIP proxy failed: %s", error)
