"""One client's subscription session, sans I/O: requests in, asks and outputs out.

Every transport drives a :class:`Session`: the WebSocket endpoint, SSE and long-poll,
requests held in views, and the GRIP endpoints behind Pushpin. It holds what one
client is subscribed to, its rate limit, and the bookkeeping that makes a subscription
gap-free and duplicate-free; and it runs each request's sequence — authorize, check
presence and feeds, listen, read history (and a feed's snapshot), replay, watch and
track presence — written here once.

A sequence is a generator. It yields **asks** (:mod:`tidings.core.asks`: authorize,
listen, read history...) that the driver performs and answers by sending the result
back (or throwing the exception it raised); meanwhile it appends **outputs**
(:mod:`tidings.core.protocol`) that the driver takes with :meth:`Session.take` after
every step, in order. Nothing here awaits, reads a socket, or touches the database.

**Joining without a gap or a duplicate.** A subscriber listens first and reads history
second; live messages that arrive meanwhile wait in ``pending``. After the read, a
message can still arrive live that history already had (a publish from another thread,
or Redis pub/sub latency, races the read): the topic's *floor* drops those, until the
first newer message shows that the live stream has caught up. Per topic, messages come
in offset order, so one comparison per message is all it takes, and only right after a
join (:meth:`Session.admit`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tidings.core.asks import (
    Authorize,
    Describe,
    Facts,
    History,
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
from tidings.core.messages import EMPTY, Message, Position
from tidings.core.protocol import (
    CLOSE_FLOOD,
    Answer,
    Close,
    Error,
    Gap,
    Joined,
    Limits,
    Outcome,
    Output,
    Ping,
    PresenceFrame,
    PresenceQuery,
    Publish,
    Request,
    Snapshot,
    Subscribe,
    Unsubscribe,
    loads,
    parse_request,
)
from tidings.core.rate import Bucket, Verdict
from tidings.core.snapshots import Row, SnapshotFilter
from tidings.exceptions import Forbidden, Refused

GUARD_SECONDS = 10.0  # how long after a snapshot live changes are checked against it


@dataclass(frozen=True, slots=True)
class Features:
    """What a transport can carry; what it cannot is refused with ``unavailable``."""

    presence: bool = True
    snapshots: bool = True
    unavailable: str = "Presence and model snapshots are not available on this transport."


ALL_FEATURES = Features()


@dataclass(slots=True)
class _Joins:
    """Per-topic bookkeeping of recent joins (see the module docstring)."""

    pending: dict[str, list[Message]] = field(default_factory=dict)
    floors: dict[str, Position] = field(default_factory=dict)
    # topic -> (until when, the filter of a snapshot): see Session._join
    guards: dict[str, tuple[float, SnapshotFilter]] = field(default_factory=dict)

    def forget(self, topic: str) -> None:
        self.pending.pop(topic, None)
        self.floors.pop(topic, None)
        self.guards.pop(topic, None)


class Session:
    """One client's protocol state. Feed it requests; perform what it asks; send what
    it outputs. ``clock`` is :func:`time.monotonic` unless a test gives another."""

    __slots__ = (
        "_bucket",
        "_joins",
        "busy",
        "clock",
        "epochs",
        "features",
        "limits",
        "outputs",
        "topics",
        "watching",
    )

    def __init__(
        self,
        limits: Limits,
        features: Features | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.features = features or ALL_FEATURES  # (frozen: one for every session)
        self.clock = clock
        self.topics: set[str] = set()
        self.epochs: dict[str, str] = {}  # topic -> the epoch the client's stream is in
        self.watching: dict[str, bool] = {}  # topics whose presence it watches -> tracked
        self._joins = _Joins()
        self.busy = False  # see _settle
        self.outputs: list[Output] = []  # what to tell the client, in order (take())
        self._bucket = Bucket(limits.rate, limits.burst, clock)

    # -- frames in ---------------------------------------------------------------------
    def receive_text(self, text: str) -> Outcome:
        """A client's text frame as a request, or the error or close it earns."""
        limited = self._rate()
        if limited is not None:
            return limited
        frame = loads(text, self.limits)
        if isinstance(frame, Error):
            return frame
        return parse_request(frame, self.limits, self.topics)

    def receive_bytes(self, data: bytes) -> Outcome:
        binary = Error(None, "bad_request", "Binary frames are not supported; send JSON text.")
        return self._rate() or binary

    def receive_publish(self, body: str) -> Outcome:
        """An HTTP publish body, ``{"topic", "data", "event"?}``, as a :class:`Publish`."""
        frame = loads(body, self.limits, "The body")
        if isinstance(frame, Error):
            return frame
        if not isinstance(frame, dict) or "data" not in frame or "topic" not in frame:
            return Error(
                None, "bad_request", "The body must be a JSON object with 'topic' and 'data'."
            )
        return parse_request({**frame, "op": "publish"}, self.limits, self.topics)

    def _rate(self) -> Error | Close | None:
        """The rate limit (:class:`~tidings.core.rate.Bucket`): errors, then a close."""
        verdict = self._bucket.take()
        if verdict is Verdict.SERVE:
            return None
        if verdict is Verdict.CUT:
            return Close(CLOSE_FLOOD, "rate limit exceeded")
        rate = self.limits.rate
        return Error(None, "rate_limited", f"Slow down: at most {rate:g} frames per second.")

    def restore(self, topics: Iterable[str]) -> None:
        """Take up a client's subscriptions made in earlier requests (WebSocket-over-HTTP:
        each request is a new session; the proxy keeps the topics)."""
        self.topics.update(topics)

    # -- outputs -----------------------------------------------------------------------
    def take(self) -> list[Output]:
        """What to tell the client, in order; the driver calls this after every step."""
        outputs, self.outputs = self.outputs, []
        return outputs

    # -- live messages -------------------------------------------------------------------
    def _settle(self) -> None:
        """Is a join recent enough that :meth:`admit` must see live messages? (Kept in
        :attr:`busy`, a plain attribute: the hub reads it for every live message.)"""
        joins = self._joins
        self.busy = bool(joins.pending or joins.floors or joins.guards)

    def admit(self, message: Message) -> bool:
        """Should a live ``message`` go out now? (``False``: held for a join, or already
        sent.) Only needed while :attr:`busy`."""
        joins, topic = self._joins, message.topic
        pending = joins.pending.get(topic)
        if pending is not None:
            pending.append(message)
            return False
        floor = joins.floors.get(topic)
        if floor is not None:
            p = message.position
            if p.epoch == floor.epoch and p.offset <= floor.offset:
                return False
            del joins.floors[topic]
            self._settle()
        guard = joins.guards.get(topic)
        if guard is not None:
            until, snapshot = guard
            if self.clock() > until:
                del joins.guards[topic]
                self._settle()
            elif not snapshot.passes(message):
                return False
        return True

    def epoch_changed(self, message: Message) -> bool:
        """The hub saw ``message``'s topic enter a new epoch (its history was lost under
        the live stream). Unless this client's stream is in that epoch already, or was
        at :data:`EMPTY` (the topic's first epoch began: nothing lost), output a
        :class:`Gap` (before the message): ``True`` then."""
        known = self.epochs.get(message.topic)
        if known is None or known == message.position.epoch:
            return False
        gap = self._gap(message)
        if known != EMPTY.epoch:
            self.outputs.append(gap)
        return known != EMPTY.epoch

    def _gap(self, message: Message) -> Gap:  # the client's stream is in its epoch from now
        p = message.position
        self.epochs[message.topic] = p.epoch
        return Gap(message.topic, Position(p.epoch, max(p.offset - 1, 0)))

    # -- sequences -----------------------------------------------------------------------
    def handle(self, request: Request) -> Steps:
        """A client's request, whichever transport carried it: the sequence to run."""
        if isinstance(request, Publish):  # the sequence itself, not wrapped: publishes are many
            return self.publish(request)
        if isinstance(request, Subscribe):
            return self.subscribe(request)
        if isinstance(request, Unsubscribe):
            return self.unsubscribe(request)
        if isinstance(request, PresenceQuery):
            return self.presence(request)
        return self.ping(request)

    def ping(self, request: Ping) -> Steps:
        self.outputs.append(Answer(request.id, {}))
        yield from ()

    def subscribe(self, request: Subscribe) -> Steps:
        topic = request.topic
        if topic in self.topics:  # already: say where the topic stands
            result: History = yield ReadHistory(topic, None)
            self.outputs.append(Answer(request.id, {"topic": topic, "position": result.position}))
            return
        yield from self.check(request)
        yield from self.join(request)

    def check(self, request: Subscribe) -> Steps:
        """May the client subscribe as asked? Raises :class:`~tidings.exceptions.Refused`."""
        topic = request.topic
        if not (yield Authorize("subscribe", topic)):
            raise Forbidden(f"You may not subscribe to {topic!r}.", topic=topic)
        wants_presence, wants_snapshot = request.presence is not None, request.initial
        if not (wants_presence or wants_snapshot):
            return
        features = self.features
        if (wants_presence and not features.presence) or (
            wants_snapshot and not features.snapshots
        ):
            raise Refused(features.unavailable, topic=topic)
        facts: Facts = yield Describe(topic)
        if wants_presence and not facts.presence:
            raise Refused(f"Presence is not enabled on {topic!r}.", topic=topic)
        if wants_snapshot and not facts.feed:
            raise Refused(f"{topic!r} is not a model feed.", topic=topic)

    def join(self, request: Subscribe) -> Steps:
        """Listen, read history (and the snapshot), replay; then presence. Outputs
        :class:`Joined`, the :class:`Snapshot`, the replayed messages."""
        yield from self._join(request)
        if request.presence is not None:
            yield from self._watch(request.topic, request.presence)

    def join_all(self, requests: list[Subscribe]) -> Steps:
        """Join every topic, then watch their presence (HTTP streams: the stream's start
        says where every topic stands before any presence frame)."""
        for request in requests:
            yield from self._join(request)
        for request in requests:
            if request.presence is not None:
                yield from self._watch(request.topic, request.presence)

    def _join(self, request: Subscribe) -> Steps:
        topic, since, joins = request.topic, request.since, self._joins
        self.topics.add(topic)
        pending = joins.pending[topic] = []
        self.busy = True
        rows: list[Row] | None = None
        try:
            yield Listen(topic)
            result: History = yield ReadHistory(topic, since)
            if request.initial:
                rows = yield ReadSnapshot(topic)
        except Exception:
            joins.forget(topic)
            self.topics.discard(topic)
            yield Unlisten(topic)
            raise
        finally:
            joins.pending.pop(topic, None)  # (kept in topics on cancellation: left on close)
            self._settle()
        now = result.position
        live = [
            m for m in pending if m.position.epoch != now.epoch or m.position.offset > now.offset
        ]
        messages = [*result.messages, *live]
        joins.floors[topic] = messages[-1].position if messages else now
        self.busy = True
        start = since if since is not None and result.recovered else now
        recovered = None if since is None else result.recovered
        self.outputs.append(Joined(request.id, topic, now, recovered, start))
        self.epochs[topic] = now.epoch
        if rows is not None:
            self.outputs.append(Snapshot(topic, now, rows))
            shown = SnapshotFilter(rows)
            messages = [m for m in messages if shown.passes(m)]
            # a change committed before the snapshot was read may still be published
            # (after its commit) a moment after the subscription is complete
            joins.guards[topic] = (self.clock() + GUARD_SECONDS, shown)
        at = len(self.outputs)
        self.outputs.extend(messages)  # the replay; then a gap, if history was lost meanwhile
        if messages and messages[-1].position.epoch != now.epoch and now != EMPTY:
            i = next(i for i, m in enumerate(messages) if m.position.epoch != now.epoch)
            self.outputs.insert(at + i, self._gap(messages[i]))

    def _watch(self, topic: str, presence: dict[str, Any] | bool) -> Steps:
        self.watching[topic] = False
        state: str = yield Watch(topic)
        self.outputs.append(PresenceFrame(topic, state))
        if isinstance(presence, dict):
            self.watching[topic] = bool((yield Track(topic, presence)))

    def unsubscribe(self, request: Unsubscribe) -> Steps:
        yield from self.leave(request.topic)
        self.outputs.append(Answer(request.id, {"topic": request.topic}))

    def leave(self, topic: str) -> Steps:
        """Stop listening to ``topic`` and watching its presence."""
        self.topics.discard(topic)
        self.epochs.pop(topic, None)
        self._joins.forget(topic)
        self._settle()
        yield Unlisten(topic)
        if topic in self.watching:
            if self.watching.pop(topic):
                yield Untrack(topic)
            yield Unwatch(topic)

    def leave_all(self) -> Steps:
        """The client is gone: leave every topic."""
        for topic in list(self.topics):
            yield from self.leave(topic)

    def publish(self, request: Publish) -> Steps:
        topic = request.topic
        if not (yield Authorize("publish", topic)):
            raise Forbidden(f"You may not publish to {topic!r}.", topic=topic)
        position: Position | None = yield PublishData(topic, request.event, request.data)
        self.outputs.append(Answer(request.id, {"topic": topic, "position": position}))

    def presence(self, request: PresenceQuery) -> Steps:
        """Presence now (no meta), or this client's new meta."""
        topic = request.topic
        if request.meta is None:
            if not self.features.presence:
                raise Refused(self.features.unavailable, topic=topic)
            facts: Facts = yield Describe(topic)
            if not facts.presence:
                raise Refused(f"Presence is not enabled on {topic!r}.", topic=topic)
            fields = yield QueryPresence(topic)
            self.outputs.append(Answer(request.id, {"topic": topic, **fields}))
            return
        if not self.watching.get(topic):
            raise Refused(
                f"This connection is not tracked on {topic!r}: subscribe with a presence meta.",
                topic=topic,
            )
        yield Track(topic, request.meta)
        self.outputs.append(Answer(request.id, {"topic": topic}))

    def query_presence(self, topics: Iterable[str]) -> Steps:
        """Each topic's presence now, as :class:`Answer` outputs (long-polls: a
        poller watches presence, it is not tracked: it is not connected)."""
        for topic in topics:
            fields = yield QueryPresence(topic)
            self.outputs.append(Answer(None, {"topic": topic, **fields}))
