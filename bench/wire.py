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

    def control(self, pattern: str, topic: str, count: int) -> bytes:
        """Ask the server to publish ``count`` messages to ``topic`` itself, in a
        publish ``pattern`` (:data:`PATTERNS`); each message is stamped as it is
        published, by the server, in the same data as :func:`data_json`."""
        if self.name == "tidings":
            data = f'{{"pattern":"{pattern}","topic":"{topic}","count":{count}}}'
            return self.publish(CONTROL_TOPIC, data)
        return f"{pattern} {topic} {count}".encode()


# Publish patterns run by the server itself (Wire.control), besides the client's burst:
# - "loop": one task publishes back to back, yielding to the event loop between
#   publishes (tidings: ``await tidings.apublish()``; raw: ``broadcast()``);
# - "threads": 16 threads publish at once (tidings: sync ``tidings.publish()``, as sync
#   views under ASGI do; raw: ``loop.call_soon_threadsafe(broadcast, ...)``).
PATTERNS = ("loop", "threads")
THREADS = 16
CONTROL_TOPIC = "bench.ctl"  # the tidings target's handler runs the pattern


def server_frame(topic: str, seq: int, stamp_ns: int) -> str:
    """The message frame the reference server broadcasts in a server-side pattern."""
    return (
        f'{{"op":"message","topic":"{topic}","position":"bench0000:{seq}",'
        f'"event":"message","data":{data_json(stamp_ns, seq)}}}'
    )


TIDINGS = Wire("tidings")
SIMPLE = Wire("simple")
