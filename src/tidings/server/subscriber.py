"""The one subscriber: a client's session, its bounded queue, and where the queue goes.

Every transport makes one :class:`Subscriber` per client (a WebSocket, an SSE stream, a
long-poll, a request held in a view, a request through Pushpin) and drives it: it
feeds requests to the session with :meth:`Subscriber.run`, which performs what the
session asks (rules, the hub, history, snapshots, presence, publishing) and queues
what the session outputs, in order. Live messages come from the hub through
:meth:`Subscriber.deliver`, past the session's join bookkeeping and the feed's audience
filter, into the same queue.

The queue is bounded (``QUEUE_SIZE``): a subscriber that cannot keep up is closed with
4009 ("slow consumer") and dropped from the hub at once, so it never holds up the
publisher or anyone else; the client resumes from its last position. The queue drains
into an :class:`Outlet`: the WebSocket :class:`~tidings.server.writer.Writer`, or the
:class:`Mailbox` an HTTP request's task waits on. :meth:`Subscriber.close` ends it with
a code and a reason, which each transport renders its own way.

Every refusal (a rule's ``forbidden``, a handler's ``rejected``...) is answered here,
whatever the transport, and logged: INFO on ``tidings.auth`` (topic, user, transport, code);
and counted (:mod:`tidings.metrics`), as resumes are. The end of a connection it held
is logged on ``tidings.connections`` (:func:`tidings.logging.connection_closed`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from tidings import metrics
from tidings.core.asks import (
    Authorize,
    Describe,
    Listen,
    PublishData,
    QueryPresence,
    ReadHistory,
    ReadSnapshot,
    Steps,
    Track,
    Unlisten,
    Untrack,
    Unwatch,
    Watch,
)
from tidings.core.messages import Message
from tidings.core.presence import Entry
from tidings.core.protocol import (
    CLOSE_LOGGED_OUT,
    CLOSE_SLOW_CONSUMER,
    Close,
    Error,
    Outcome,
    Output,
    PresenceFrame,
    RequestId,
)
from tidings.core.queue import Queue
from tidings.core.session import Features, Session
from tidings.encoding import encode_data
from tidings.exceptions import BrokerError, Refused
from tidings.logging import connection_closed
from tidings.server.clients import who
from tidings.server.node import Node
from tidings.server.outlets import Mailbox, Outlet
from tidings.server.performer import Performer
from tidings.signals import announce, connected, disconnected, subscribed, unsubscribed
from tidings.tokens import Grant

logger = logging.getLogger("tidings.subscriber")
auth_logger = logging.getLogger("tidings.auth")


class Subscriber(Performer):
    __slots__ = (
        "__weakref__",
        "_entries",
        "_expiry",
        "_frames",
        "_grant",
        "_held",
        "_hello",
        "_leaving",
        "_opened",
        "closing",
        "id",
        "node",
        "outlet",
        "queue",
        "session",
        "transport",
        "user",
    )

    def __init__(
        self,
        node: Node,
        user: Any,
        outlet: Outlet,
        *,
        transport: str,
        features: Features | None = None,
        id: str | None = None,
        held: bool = True,
        grant: Grant | None = None,
    ) -> None:
        """``held``: this process holds the client's connection (``False``: a one-off
        request, like an HTTP publish, or one the GRIP proxy holds): it is among the
        node's clients, counts for ``MAX_CONNECTIONS_PER_USER``, and its life is told
        by :mod:`tidings.signals`. ``grant``: the client came with a token
        (:mod:`tidings.tokens`): it is closed when the token expires, and subscribes to
        the topics it grants with no rule checked."""
        self.id = id or secrets.token_urlsafe(12)  # also its presence ref, and handlers'
        self.node = node
        self.user = user
        self.transport = transport  # what carries it ("websocket", "sse"...), for the logs
        self.session = Session(node.limits, features)
        self.queue: Queue[Output | str] = Queue(node.settings.queue_size)
        self.outlet = outlet
        self._frames = outlet.frames
        outlet.attach(self.queue)
        self.closing: tuple[int, str] | None = None
        self._entries: dict[str, Entry] | None = None  # its presence entries, by topic
        self._held = held
        self._leaving = False
        self._hello: asyncio.Future[None] | None = None  # the `connected` signal, sending
        self._grant = grant
        self._expiry: asyncio.TimerHandle | None = None
        self._opened = time.monotonic()
        if held:
            refused = node.refusal(user, admitted=transport != "longpoll")
            if refused is not None:
                self._held = False  # it never counts, nothing is told
                metrics.refused(refused[0])
                self.close(*refused)
                return
            node.clients.add(self)
            if connected.receivers:
                self._hello = asyncio.ensure_future(self._tell(connected))
        if grant is not None:
            delay = max(0.0, grant.expires - time.time())
            self._expiry = asyncio.get_running_loop().call_later(
                delay, self.close, CLOSE_LOGGED_OUT, "token expired"
            )

    def __repr__(self) -> str:
        return f"<Subscriber {self.id}>"

    # -- from the hub and the tracker (sync: must not block) --------------------------
    def deliver(self, message: Message) -> None:
        """A live message of a topic it listens to."""
        session = self.session
        if session.busy and not session.admit(message):
            return
        audience = message.audience
        if audience is not None:
            shown = audience.shown(self.user, message)  # the feed's row as this user sees it
            if shown is None:
                return  # a model feed's row this user may not see
            message = shown
        if self.closing is not None:
            return
        # the hot path, inlined: the frame itself when the outlet writes protocol frames
        item: Output | str = message.ws_frame if self._frames else message
        queue, outlet = self.queue, self.outlet
        if not queue and outlet.write_now(item):
            return
        if queue.put(item, message.key):
            outlet.wake()
        else:
            self._overflow()

    def epoch_changed(self, message: Message) -> None:
        """``message``'s topic lost its history under the live stream: a gap first."""
        if self.closing is None and self.session.epoch_changed(message):
            self._emit(self.session.take())

    def presence_frame(self, topic: str, frame: str) -> None:
        """A presence state or diff of a watched topic."""
        self._put(PresenceFrame(topic, frame))

    def _put(self, item: Output | str, key: str | None = None) -> None:
        if self.closing is not None:
            return
        metrics.output(item)  # (not on the hot path: deliver() queues its own)
        outlet = self.outlet
        if not self.queue and outlet.write_now(item):
            return
        if not self.queue.put(item, key):
            self._overflow()
        else:
            outlet.wake()

    def _emit(self, outputs: list[Output]) -> None:
        """Queue a step's outputs in order; replayed messages bypass the queue's limit
        (a replay is bounded by the history kept)."""
        replay: list[Output | str] = []
        for output in outputs:
            if type(output) is Message:
                audience = output.audience
                shown = output if audience is None else audience.shown(self.user, output)
                if shown is not None:
                    replay.append(shown.ws_frame if self._frames else shown)
                continue
            if replay:
                self._replay(replay)
                replay = []
            self._put(output)
        if replay:
            self._replay(replay)

    def _replay(self, items: list[Output | str]) -> None:
        if self.closing is None:
            self.queue.replay(items)
            self.outlet.wake()

    def _overflow(self) -> None:
        logger.info("%r: more than %d items waiting, closing", self, self.queue.limit)
        metrics.dropped("slow_consumer")
        self.close(CLOSE_SLOW_CONSUMER, "slow consumer", drop=True)
        for topic in list(self.session.topics):
            self.node.unsubscribe_now(topic, self)

    def close(self, code: int, reason: str, *, drop: bool = False) -> None:
        """End it with ``code`` and ``reason``: after what is queued, or at once (``drop``)."""
        if self.closing is not None:
            return
        self.closing = (code, reason)
        if drop:
            self.queue.clear()
        self.outlet.close(code, reason)

    # -- from the transport -------------------------------------------------------------
    async def receive(self, outcome: Outcome) -> None:
        """What the session made of a client frame: answer it, close, or handle it."""
        if isinstance(outcome, Error):
            self._put(outcome)
        elif isinstance(outcome, Close):
            self.close(outcome.code, outcome.reason)
        else:
            await self.run(self.session.handle(outcome), outcome.id)

    async def run(self, steps: Steps, rid: RequestId = None) -> bool:
        """Run one of the session's sequences: perform what it asks, queue what it outputs
        after every step. ``False`` when it failed; the error is queued for the client
        (``rid``: the request's id): a refusal as it is, a broker failure as
        ``unavailable``, anything else as ``internal_error``, logged with its traceback."""
        session = self.session
        ask: Any = None
        answer: Any = None
        failure: Exception | None = None
        try:
            while True:
                try:
                    ask = steps.send(answer) if failure is None else steps.throw(failure)
                except StopIteration:
                    return True
                finally:
                    if session.outputs:
                        self._emit(session.take())
                failure = answer = None
                try:
                    answer = await getattr(self, _PERFORM[type(ask)])(ask)
                except Exception as e:
                    failure = e
        except Refused as e:
            topic = e.topic or getattr(ask, "topic", None)  # a handler's Reject names none
            why = (topic, who(self.user), self.transport, e.code, e.message)
            auth_logger.info("refused %r to %s over %s: %s (%s)", *why)
            self._put(Error(rid, e.code, e.message, e.topic))
        except BrokerError as e:
            logger.warning("%r: broker error: %s", self, e)
            self._put(Error(rid, "unavailable", "The message broker is unavailable."))
        except Exception:
            logger.exception("%r: error serving request %r", self, rid)
            self._put(Error(rid, "internal_error", "Internal server error."))
        finally:
            steps.close()
        return False

    async def leave(self, code: int | None = None) -> None:
        """The connection ended (``code``: the client's close code, if it sent one):
        leave every topic (and its presence)."""
        self.node.clients.discard(self)
        self._leaving = True
        if self._expiry is not None:
            self._expiry.cancel()
        await self.run(self.session.leave_all())
        if self._held:
            code, reason = self.closing or (code, "client went away")
            seconds = time.monotonic() - self._opened
            connection_closed(self.id, self.user, self.transport, code, reason, seconds)
            await self._tell(disconnected, code=code, reason=reason)

    async def _tell(self, signal: Any, **facts: Any) -> None:
        """Send a :mod:`tidings.signals` signal about this connection, after
        ``connected`` (which may still be sending when the client already asks)."""
        if not signal.receivers:
            return
        hello = self._hello
        if hello is not None and signal is not connected and not hello.done():
            await asyncio.shield(hello)
        facts.update(connection=self.id, user=self.user, transport=self.transport)
        await announce(signal, type(self), **facts)

    async def wait(self, timeout: float | None) -> bool:
        """HTTP: until something is queued or it is closing; ``False`` on timeout."""
        if self.queue or self.closing is not None:
            return True
        assert isinstance(self.outlet, Mailbox)
        return await self.outlet.wait(timeout)

    def take(self) -> list[Output]:
        """HTTP: everything queued, oldest first (outputs: a mailbox queues no frames)."""
        return self.queue.pop_all()  # type: ignore[return-value]

    # -- what the session asks (each ask's method is named in _PERFORM; the others are
    # the Performer's) ------------------------------------------------------------
    async def _listen(self, ask: Listen) -> None:
        await self.node.subscribe(ask.topic, self)
        if self._held:
            await self._tell(subscribed, topic=ask.topic)

    async def _unlisten(self, ask: Unlisten) -> None:
        await self.node.unsubscribe(ask.topic, self)
        if self._held:
            reason = "disconnect" if self._leaving else "unsubscribe"
            await self._tell(unsubscribed, topic=ask.topic, reason=reason)

    async def _watch(self, ask: Watch) -> str:
        return await self.node.tracker.watch(ask.topic, self)

    async def _unwatch(self, ask: Unwatch) -> None:
        await self.node.tracker.unwatch(ask.topic, self)

    async def _track(self, ask: Track) -> bool:
        entries = self._entries
        if entries is None:
            entries = self._entries = {}
        known = entries.get(ask.topic)
        if known is not None:
            entry = Entry(known.key, known.info, ask.meta)
        else:
            tracked = self.node.lookup(ask.topic).tracked
            member = None if tracked is None else await tracked.member_of(self.user, ask.topic)
            if member is None:
                return False
            encode_data(member[1])  # strict JSON, or ValueError: this client's request fails
            entry = Entry(member[0], member[1], ask.meta)
        entries[ask.topic] = entry
        await self.node.tracker.join(ask.topic, self.id, entry)
        return True

    async def _untrack(self, ask: Untrack) -> None:
        if self._entries is not None and self._entries.pop(ask.topic, None) is not None:
            await self.node.tracker.leave(ask.topic, self.id)


_PERFORM: dict[type, str] = {  # what the session asks -> the method that does it
    Authorize: "_authorize",
    Describe: "_describe",
    Listen: "_listen",
    Unlisten: "_unlisten",
    ReadHistory: "_history",
    ReadSnapshot: "_snapshot",
    Watch: "_watch",
    Unwatch: "_unwatch",
    Track: "_track",
    Untrack: "_untrack",
    QueryPresence: "_query_presence",
    PublishData: "_publish",
}
