"""What the load generator says to a server, per wire dialect, and the message it publishes.

Two dialects, so every server does the same job with the least parsing it can:

- ``tidings``: protocol v1 (docs/protocol.md). Subscribe with an ``id`` and wait for
  the ``ok`` reply; publish without ``id`` (no reply on success, so a burst is not
  slowed by replies the generator would have to read).
- ``simple``: the reference servers (raw ``websockets``, plain ASGI, Channels).
  ``sub <topic>`` is answered ``ok``; ``pub <topic>\\n<frame>`` makes the server send
  ``<frame>`` as is to every subscriber of ``<topic>``. The publisher pre-builds a frame
  shaped like tidings' ``message`` frame, so both sides move the same bytes.

Every published message carries ``"t":<time.time_ns()>`` first in its data: a
receiver finds it with one ``bytes.find`` (no JSON decoding per delivery) and works
out the publish-to-receive latency. ``time.time_ns`` is one clock for every process
on the machine, so a second load-generator process could read it too.
"""

from __future__ import annotations

from dataclasses import dataclass

# Every message frame a subscriber counts starts with this; replies never do.
MESSAGE_PREFIX = b'{"op":"message"'
STAMP = b'"t":'
PAD = "x" * 48  # data ~100 bytes, the whole delivered frame ~170 bytes


def data_json(stamp_ns: int, seq: int) -> str:
    """The published data: send time first, then a sequence number and padding."""
    return f'{{"t":{stamp_ns},"seq":{seq},"text":"{PAD}"}}'


@dataclass(frozen=True)
class Wire:
    """How to subscribe and publish in one dialect (see the module docstring)."""

    name: str

    def subscribe(self, topic: str) -> bytes:
        if self.name == "tidings":
            return f'{{"id":1,"op":"subscribe","topic":"{topic}"}}'.encode()
        return f"sub {topic}".encode()

    def subscribed(self, reply: bytes) -> bool:
        """Is ``reply`` the success answer to :meth:`subscribe`?"""
        if self.name == "tidings":
            return b'"ok":true' in reply
        return reply == b"ok"

    def publish(self, topic: str, data: str) -> bytes:
        if self.name == "tidings":
            return f'{{"op":"publish","topic":"{topic}","data":{data}}}'.encode()
        frame = (
            f'{{"op":"message","topic":"{topic}","position":"bench0000:0",'
            f'"event":"message","data":{data}}}'
        )
        return f"pub {topic}\n{frame}".encode()


TIDINGS = Wire("tidings")
SIMPLE = Wire("simple")
