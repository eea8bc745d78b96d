"""The session's sequences, driven by hand: each ask answered by the test, in order.

What no end-to-end race reliably hits is tested here deterministically: the floor that
drops a live message history already replayed, messages held during a join, the
snapshot guard, cleanup when a join fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tidings.core.asks import (
    Authorize,
    Describe,
    Facts,
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
from tidings.core.frames import reply_frame, ws_text
from tidings.core.messages import Message, Position
from tidings.core.protocol import (
    Answer,
    Error,
    Joined,
    Limits,
    PresenceFrame,
    PresenceQuery,
    Publish,
    Snapshot,
    Subscribe,
    Unsubscribe,
)
from tidings.core.session import GUARD_SECONDS, Features, Session
from tidings.exceptions import BrokerError, Forbidden, Refused

E = "ep"


def msg(offset: int, topic: str = "t", data: Any = None, epoch: str = E) -> Message:
    return Message(
        topic, "message", json.dumps(data if data is not None else offset), Position(epoch, offset)
    )


@dataclass
class History:
    position: Position
    recovered: bool
    messages: tuple[Message, ...] = ()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run(steps: Steps, answer: Callable[[Any], Any]) -> list[Any]:
    """Drive ``steps``; ``answer(ask)`` returns the answer or raises. Returns the asks."""
    asks = []
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            ask = steps.send(reply) if error is None else steps.throw(error)
        except StopIteration:
            return asks
        asks.append(ask)
        error = reply = None
        try:
            reply = answer(ask)
        except Exception as e:
            error = e


def plain(history: History, **more: Any) -> Callable[[Any], Any]:
    """Answers for a subscriber allowed everything, with this history."""

    def answer(ask: Any) -> Any:
        if isinstance(ask, Authorize):
            return more.get("allowed", True)
        if isinstance(ask, ReadHistory):
            hook = more.get("during_history")
            if hook is not None:
                hook()
            return history
        if isinstance(ask, Describe):
            return more.get("facts", Facts(presence=True, feed=True))
        if isinstance(ask, ReadSnapshot):
            return more["rows"]
        if isinstance(ask, Watch):
            return '{"op":"presence","topic":"t","state":{}}'
        if isinstance(ask, Track):
            return more.get("member", True)
        if isinstance(ask, QueryPresence):
            return {"state": {}}
        if isinstance(ask, PublishData):
            return more.get("position", Position(E, 9))
        return None

    return answer


def session(clock: Clock | None = None, **features: Any) -> Session:
    return Session(Limits(), Features(**features) if features else None, clock or Clock())


# -- joining: the floor, the pending messages ----------------------------------------
def test_a_live_message_history_already_replayed_is_dropped_a_newer_one_admitted():
    s = session()
    history = History(Position(E, 3), True, (msg(2), msg(3)))
    asks = run(s.handle(Subscribe(1, "t", Position(E, 1), None)), plain(history))
    assert [type(a) for a in asks] == [Authorize, Listen, ReadHistory]
    out = s.take()
    assert out[0] == Joined(1, "t", Position(E, 3), True, Position(E, 1))
    assert [m.position.offset for m in out[1:]] == [2, 3]
    assert s.busy
    assert not s.admit(msg(3))  # live, but history already sent it
    assert s.admit(msg(4))  # the live stream caught up: the floor is gone
    assert not s.busy


def test_messages_arriving_during_the_join_wait_then_follow_the_replay_once():
    s = session()
    held: list[bool] = []

    def live() -> None:  # while history is read, the hub delivers 3 (a repeat) and 4
        held.extend([s.admit(msg(3)), s.admit(msg(4))])

    history = History(Position(E, 3), True, (msg(2), msg(3)))
    run(s.handle(Subscribe(1, "t", Position(E, 1), None)), plain(history, during_history=live))
    assert held == [False, False]  # held back, not sent
    out = s.take()
    assert [m.position.offset for m in out if isinstance(m, Message)] == [2, 3, 4]
    assert not s.admit(msg(4))  # the floor is now 4
    assert s.admit(msg(5))


def test_without_since_the_floor_is_the_position_at_the_join():
    s = session()
    run(s.handle(Subscribe(None, "t", None, None)), plain(History(Position(E, 7), True)))
    (joined,) = s.take()
    assert joined == Joined(None, "t", Position(E, 7), None, Position(E, 7))
    assert not s.admit(msg(7)) and s.admit(msg(8))


def test_a_new_epoch_passes_the_floor():
    s = session()
    run(s.handle(Subscribe(1, "t", None, None)), plain(History(Position(E, 7), True)))
    assert s.admit(msg(1, epoch="other"))


def test_other_topics_are_not_held_by_a_join():
    s = session()
    run(s.handle(Subscribe(1, "t", None, None)), plain(History(Position(E, 7), True)))
    assert s.admit(msg(1, topic="u"))


def test_a_resume_that_cannot_be_recovered_starts_from_now():
    s = session()
    since = Position("old", 5)
    run(s.handle(Subscribe(1, "t", since, None)), plain(History(Position(E, 2), False)))
    assert s.take() == [Joined(1, "t", Position(E, 2), False, Position(E, 2))]


def test_a_failed_join_listens_no_more_and_forgets_the_topic():
    s = session()

    def answer(ask: Any) -> Any:
        if isinstance(ask, ReadHistory):
            raise BrokerError("down")
        return True if isinstance(ask, Authorize) else None

    with pytest.raises(BrokerError):
        run(s.handle(Subscribe(1, "t", None, None)), answer)
    assert "t" not in s.topics and not s.busy
    assert s.admit(msg(1))  # nothing held for it


def test_a_join_closed_midway_keeps_the_topic_for_the_cleanup():
    s = session()
    steps = s.handle(Subscribe(1, "t", None, None))
    assert isinstance(next(steps), Authorize)
    assert isinstance(steps.send(True), Listen)
    assert isinstance(steps.send(None), ReadHistory)
    steps.close()  # the client went away while history was read
    assert "t" in s.topics  # so leaving every topic unlistens it
    assert not s.busy  # and nothing waits for it
    assert [type(a) for a in run(s.leave_all(), plain(History(Position(E, 0), True)))] == [Unlisten]


# -- checks ----------------------------------------------------------------------------
def test_a_forbidden_subscription_asks_nothing_more():
    s = session()
    with pytest.raises(Forbidden) as e:
        run(
            s.handle(Subscribe(1, "t", None, None)),
            plain(History(Position(E, 0), True), allowed=False),
        )
    assert e.value.code == "forbidden" and e.value.topic == "t"
    assert s.topics == set()


@pytest.mark.parametrize(
    ("fields", "facts", "message"),
    [
        ({"presence": True}, Facts(presence=False, feed=True), "Presence is not enabled"),
        ({"initial": True}, Facts(presence=True, feed=False), "is not a model feed"),
    ],
)
def test_presence_and_snapshots_need_a_topic_that_has_them(fields, facts, message):
    s = session()
    request = Subscribe(1, "t", None, fields.get("presence"), fields.get("initial", False))
    with pytest.raises(Refused, match=message):
        run(s.handle(request), plain(History(Position(E, 0), True), facts=facts))


def test_a_transport_without_presence_refuses_it_before_asking():
    s = session(presence=False, unavailable="not here")
    asks: list[Any] = []

    def answer(ask: Any) -> Any:
        asks.append(ask)
        return True

    with pytest.raises(Refused, match="not here"):
        run(s.handle(Subscribe(1, "t", None, True)), answer)
    assert [type(a) for a in asks] == [Authorize]


def test_subscribing_again_answers_where_the_topic_stands():
    s = session()
    run(s.handle(Subscribe(1, "t", None, None)), plain(History(Position(E, 3), True)))
    s.take()
    asks = run(s.handle(Subscribe(2, "t", None, None)), plain(History(Position(E, 5), True)))
    assert [type(a) for a in asks] == [ReadHistory]
    assert s.take() == [Answer(2, {"topic": "t", "position": Position(E, 5)})]


# -- snapshots -------------------------------------------------------------------------
def change(offset: int, pk: int, value: int, action: str = "update") -> Message:
    return msg(offset, data={"action": action, "pk": pk, "data": {"v": value}})


def test_a_snapshot_comes_first_and_changes_it_already_shows_are_dropped_for_a_while():
    clock = Clock()
    s = session(clock)
    rows = [{"pk": 1, "data": {"v": 2}}]
    history = History(Position(E, 4), True, (change(4, 1, 2),))  # already in the snapshot
    request = Subscribe(1, "t", Position(E, 3), None, initial=True)
    asks = run(s.handle(request), plain(history, rows=rows))
    assert [type(a) for a in asks] == [Authorize, Describe, Listen, ReadHistory, ReadSnapshot]
    out = s.take()
    assert [type(o) for o in out] == [Joined, Snapshot]
    assert out[1] == Snapshot("t", Position(E, 4), rows)
    assert not s.admit(change(5, 1, 2))  # shown already (a repeat published late)
    assert s.admit(change(6, 1, 3))
    clock.now += GUARD_SECONDS + 1
    assert s.admit(change(7, 1, 3))  # the guard is over
    assert not s.busy


# -- presence --------------------------------------------------------------------------
def test_presence_is_watched_after_the_replay_and_tracked_with_its_meta():
    s = session()
    history = History(Position(E, 2), True, (msg(2),))
    asks = run(s.handle(Subscribe(1, "t", Position(E, 1), {"state": "x"})), plain(history))
    assert [type(a) for a in asks] == [Authorize, Describe, Listen, ReadHistory, Watch, Track]
    assert [type(o) for o in s.take()] == [Joined, Message, PresenceFrame]
    assert s.watching == {"t": True}
    asks = run(s.handle(Unsubscribe(2, "t")), plain(history))
    assert [type(a) for a in asks] == [Unlisten, Untrack, Unwatch]
    assert s.take() == [Answer(2, {"topic": "t"})]


def test_a_meta_update_needs_a_tracked_subscription():
    s = session()
    run(s.handle(Subscribe(1, "t", None, True)), plain(History(Position(E, 0), True)))
    assert s.watching == {"t": False}  # watching only
    with pytest.raises(Refused, match="not tracked"):
        run(s.handle(PresenceQuery(2, "t", {"state": "y"})), plain(History(Position(E, 0), True)))
    s.take()
    run(s.handle(PresenceQuery(3, "t")), plain(History(Position(E, 0), True)))
    assert s.take() == [Answer(3, {"topic": "t", "state": {}})]


def test_an_untracked_user_only_watches():
    s = session()
    run(
        s.handle(Subscribe(1, "t", None, {"m": 1})),
        plain(History(Position(E, 0), True), member=False),
    )
    assert s.watching == {"t": False}
    assert [type(a) for a in run(s.leave_all(), plain(History(Position(E, 0), True)))] == [
        Unlisten,
        Unwatch,
    ]


# -- publishing ------------------------------------------------------------------------
def test_a_publish_is_authorized_then_answered_with_its_position_as_text():
    s = session()
    asks = run(
        s.handle(Publish("a-1", "t", "message", {"x": 1})), plain(History(Position(E, 0), True))
    )
    assert [type(a) for a in asks] == [Authorize, PublishData]
    (answer,) = s.take()
    assert answer == Answer("a-1", {"topic": "t", "position": Position(E, 9)})
    # a string id takes the general path of the frame: the position is still its text
    assert json.loads(ws_text(answer) or "") == {
        "id": "a-1",
        "ok": True,
        "topic": "t",
        "position": "ep:9",
    }
    assert reply_frame(7, answer.fields) == '{"id":7,"ok":true,"topic":"t","position":"ep:9"}'


def test_a_publish_forbidden():
    s = session()
    with pytest.raises(Forbidden):
        run(
            s.handle(Publish(1, "t", "message", 1)),
            plain(History(Position(E, 0), True), allowed=False),
        )


def test_a_handler_that_broadcasts_nothing_answers_a_null_position():
    s = session()
    run(
        s.handle(Publish(1, "t", "message", 1)), plain(History(Position(E, 0), True), position=None)
    )
    (answer,) = s.take()
    assert ws_text(answer) == '{"id":1,"ok":true,"topic":"t","position":null}'


# -- JSON from clients -----------------------------------------------------------------
def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [32, 33, 1000, 100_000])
def test_json_deeper_than_the_limit_is_a_bad_request(depth):
    s = Session(Limits(max_frame_bytes=1_000_000), None, Clock())
    frame = '{"op":"publish","topic":"t","data":' + nested(depth - 1) + "}"
    outcome = s.receive_text(frame)
    if depth <= 32:
        assert isinstance(outcome, Publish)
    else:
        assert isinstance(outcome, Error) and outcome.code == "bad_request"
        assert "at most 32 deep" in outcome.message


def test_a_deep_http_body_is_a_bad_request_too():
    s = Session(Limits(max_frame_bytes=1_000_000), None, Clock())
    outcome = s.receive_publish('{"topic":"t","data":' + nested(5000) + "}")
    assert isinstance(outcome, Error) and outcome.code == "bad_request"
