"""Positions, messages, history policies: what a publish makes and every transport carries.

A message's data is encoded to JSON once, when it is published; each wire format
encodes the whole message once more, lazily, the first time a transport asks for it
(:attr:`Message.ws_frame`). Fan-out then copies references, never re-encodes.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, NamedTuple

_UNSET: Any = object()
_SSE_LINES = re.compile(r"\r\n|\r|\n")
_POSITION = re.compile(r"([A-Za-z0-9]{1,32}):(0|[1-9][0-9]{0,17})")


class Position(NamedTuple):
    """Where a message stands in a topic: ``offset`` within one continuous ``epoch``.

    Offsets count a topic's messages from 1 with no gaps. An epoch names one unbroken
    history; when history may have been lost the topic gets a new epoch, and positions
    from the old one can no longer be resumed from. The text form ``"<epoch>:<offset>"``
    is safe in URLs and HTTP headers; clients treat it as opaque. (A named tuple: it is
    made for every message, and tuples are the cheapest immutable objects to make.)
    """

    epoch: str
    offset: int

    def __str__(self) -> str:
        return f"{self.epoch}:{self.offset}"

    @classmethod
    def parse(cls, text: object) -> Position:
        """Parse ``"<epoch>:<offset>"``; raise :class:`ValueError` if it is not one."""
        if not isinstance(text, str):
            raise ValueError("A position is a string '<epoch>:<offset>'.")
        m = _POSITION.fullmatch(text)
        if m is None:
            raise ValueError(f"{text[:80]!r} is not a position '<epoch>:<offset>'.")
        return cls(m.group(1), int(m.group(2)))


class HistoryPolicy(NamedTuple):
    """How much of a topic's past the broker keeps: ``size`` messages, ``ttl`` seconds.

    ``size == 0`` or ``ttl == 0`` keeps nothing (offsets still count up).
    """

    size: int
    ttl: float

    @property
    def enabled(self) -> bool:
        return self.size > 0 and self.ttl > 0


EMPTY = Position("0", 0)
"""Where a topic stands when the broker keeps nothing of it. Its epoch ``"0"`` is never
made otherwise (a made epoch has 8 characters), and ``since=EMPTY`` is read as offset
0 of the topic's current epoch: the client saw the topic empty, so every message of an
epoch made since then is one it missed (and no history was lost: no gap)."""


class Message:
    """One published message of one topic, immutable once it has a position."""

    __slots__ = (
        "_data",
        "_formats",
        "_sse_body",
        "_ws_frame",
        "audience",
        "data_json",
        "event",
        "formats_json",
        "key",
        "position",
        "timestamp",
        "topic",
    )

    def __init__(
        self,
        topic: str,
        event: str,
        data_json: str,
        position: Position,
        timestamp: float | None = None,
        formats_json: str | None = None,
    ) -> None:
        self.topic = topic
        self.event = event
        self.data_json = data_json
        self.position = position
        self.timestamp = time.time() if timestamp is None else timestamp
        self.formats_json = formats_json
        self.key: str | None = None  # set by the node for coalescing topics (COALESCE)
        self.audience: Any = None  # set by the node when a feed filters who sees it
        self._data: Any = _UNSET
        self._ws_frame: str | None = None
        self._sse_body: str | None = None
        self._formats: dict[str, Any] | None = None

    @property
    def data(self) -> Any:
        """The data, decoded once (shared: do not modify it)."""
        data = self._data
        if data is _UNSET:
            data = self._data = json.loads(self.data_json)
        return data

    @property
    def ws_frame(self) -> str:
        """The WebSocket text frame, encoded on first use and shared by every subscriber."""
        frame = self._ws_frame
        if frame is None:
            # Topics, event names and positions are made of characters JSON never escapes
            # (tidings.core.topics), so they are quoted as they are.
            frame = self._ws_frame = (
                f'{{"op":"message","topic":"{self.topic}","position":"{self.position}",'
                f'"event":"{self.event}","data":{self.data_json}}}'
            )
        return frame

    @property
    def sse_body(self) -> str:
        """``event:`` and ``data:`` lines of the SSE event, encoded once; the stream adds ``id:``.

        Every line of the data gets its own ``data:`` field, so no CR or LF in it can
        start a field of its own (JSON text has none unescaped anyway).
        """
        body = self._sse_body
        if body is None:
            lines = _SSE_LINES.split(self.data_json)
            data = "".join(f"data: {line}\n" for line in lines)
            body = self._sse_body = f"event: {self.event}\n{data}\n"
        return body

    @property
    def formats(self) -> dict[str, Any]:
        """Per-transport representations given to ``publish()`` (see :mod:`tidings.formats`)."""
        formats = self._formats
        if formats is None:
            formats = self._formats = json.loads(self.formats_json) if self.formats_json else {}
        return formats

    def __repr__(self) -> str:
        return f"Message({self.topic!r}, {self.event!r}, {self.position})"
