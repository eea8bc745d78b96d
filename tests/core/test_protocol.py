"""Frames in, requests or errors out: the session's parsing, limits and rate limit.
No socket, no event loop; the clock is a list the test moves."""

import json

import pytest

from tidings.core.frames import error_frame
from tidings.core.messages import Position
from tidings.core.protocol import (
    CLOSE_FLOOD,
    Close,
    Error,
    Limits,
    Ping,
    PresenceQuery,
    Publish,
    Subscribe,
    Unsubscribe,
)
from tidings.core.session import Session

CLOCK = [0.0]


def session(**limits: object) -> Session:
    CLOCK[0] = 0.0
    return Session(Limits(**limits), clock=lambda: CLOCK[0])  # type: ignore[arg-type]


def feed(s: Session, frame: object, now: float | None = None):
    if now is not None:
        CLOCK[0] = now
    return s.receive_text(frame if isinstance(frame, str) else json.dumps(frame))


def test_each_op_parses_to_its_request():
    s = session()
    assert feed(s, {"id": 1, "op": "subscribe", "topic": "a.b", "since": "ep:3"}) == Subscribe(
        1, "a.b", Position("ep", 3), None
    )
    assert feed(s, {"id": "x", "op": "publish", "topic": "a", "data": [1]}) == Publish(
        "x", "a", "message", [1]
    )
    assert feed(s, {"op": "publish", "topic": "a", "event": "e.v", "data": None}) == Publish(
        None, "a", "e.v", None
    )
    assert feed(s, {"id": 5, "op": "ping"}) == Ping(5)
    s.restore(["a"])
    assert feed(s, {"id": 2, "op": "unsubscribe", "topic": "a"}) == Unsubscribe(2, "a")
    assert feed(s, {"id": 3, "op": "presence", "topic": "a"}) == PresenceQuery(3, "a")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_request"),
        ("[1, 2]", "bad_request"),
        ('"text"', "bad_request"),
        ({"id": 1}, "bad_request"),
        ({"id": 1, "op": 7}, "bad_request"),
        ({"id": [1], "op": "ping"}, "bad_request"),
        ({"id": True, "op": "ping"}, "bad_request"),
        ({"id": "x" * 65, "op": "ping"}, "bad_request"),
        ({"id": 1, "op": "dance"}, "unknown_op"),
        ({"id": 1, "op": "subscribe"}, "bad_request"),
        ({"id": 1, "op": "subscribe", "topic": 5}, "invalid_topic"),
        ({"id": 1, "op": "subscribe", "topic": ""}, "invalid_topic"),
        ({"id": 1, "op": "subscribe", "topic": "a b"}, "invalid_topic"),
        ({"id": 1, "op": "subscribe", "topic": "a/b"}, "invalid_topic"),
        ({"id": 1, "op": "subscribe", "topic": "é"}, "invalid_topic"),
        ({"id": 1, "op": "subscribe", "topic": "t" * 201}, "invalid_topic"),
        ({"id": 1, "op": "subscribe", "topic": "a", "since": "nope"}, "bad_request"),
        ({"id": 1, "op": "subscribe", "topic": "a", "since": 3}, "bad_request"),
        ({"id": 1, "op": "subscribe", "topic": "a", "since": "ep:-1"}, "bad_request"),
        ({"id": 1, "op": "subscribe", "topic": "a", "presence": "x"}, "bad_request"),
        ({"id": 1, "op": "publish", "topic": "a"}, "bad_request"),
        ({"id": 1, "op": "publish", "topic": "a", "data": 1, "event": ""}, "bad_request"),
        ({"id": 1, "op": "publish", "topic": "a", "data": 1, "event": "a\nb"}, "bad_request"),
        ({"id": 1, "op": "unsubscribe", "topic": "never"}, "not_subscribed"),
        ({"id": 1, "op": "presence", "topic": "never"}, "not_subscribed"),
    ],
)
def test_bad_frames_get_a_clear_error(frame, code):
    outcome = feed(session(), frame)
    assert isinstance(outcome, Error), outcome
    assert outcome.code == code
    assert outcome.message
    reply = json.loads(error_frame(outcome))
    assert reply["ok"] is False and reply["error"]["code"] == code


def test_error_keeps_the_request_id_when_it_is_valid():
    outcome = feed(session(), {"id": 42, "op": "dance"})
    assert isinstance(outcome, Error) and outcome.id == 42


def test_binary_frames_are_refused():
    outcome = session().receive_bytes(b"\x00\x01")
    assert isinstance(outcome, Error) and outcome.code == "bad_request"


def test_frame_over_the_limit_is_too_large_counting_bytes_not_characters():
    s = session(max_frame_bytes=100)
    ok = json.dumps({"op": "publish", "topic": "a", "data": "x" * 50})
    assert isinstance(feed(s, ok), Publish)
    # 40 characters, but 120 bytes of UTF-8
    big = json.dumps({"op": "publish", "topic": "a", "data": "€" * 40}, ensure_ascii=False)
    assert len(big) < 100 < len(big.encode())
    outcome = feed(s, big)
    assert isinstance(outcome, Error) and outcome.code == "too_large"


def test_subscription_limit():
    s = session(max_subscriptions=2)
    s.restore(["a", "b"])
    outcome = feed(s, {"id": 1, "op": "subscribe", "topic": "c"})
    assert isinstance(outcome, Error) and outcome.code == "too_many_subscriptions"
    # re-subscribing a held topic is not a new subscription
    assert isinstance(feed(s, {"id": 2, "op": "subscribe", "topic": "a"}), Subscribe)


def test_rate_limit_then_flood_close():
    s = session(rate=10.0, burst=5)
    ping = {"op": "ping"}
    assert all(isinstance(feed(s, ping, now=0.0), Ping) for _ in range(5))
    outcomes = [feed(s, ping, now=0.0) for _ in range(5)]
    assert all(isinstance(o, Error) and o.code == "rate_limited" for o in outcomes)
    # tokens come back with time: 0.1 s at 10/s is one more frame; the refusals still
    # count, as the bucket has not filled up again: the next one closes
    assert isinstance(feed(s, ping, now=0.1), Ping)
    assert feed(s, ping, now=0.1) == Close(CLOSE_FLOOD, "rate limit exceeded")


def test_a_client_that_pauses_until_the_bucket_is_full_is_forgiven():
    s = session(rate=10.0, burst=5)
    ping = {"op": "ping"}
    for _ in range(10):
        feed(s, ping, now=0.0)  # 5 served, 5 refused
    assert isinstance(feed(s, ping, now=0.5), Ping)  # full again: strikes forgotten
    for _ in range(4):
        feed(s, ping, now=0.5)
    outcomes = [feed(s, ping, now=0.5) for _ in range(5)]
    assert all(isinstance(o, Error) and o.code == "rate_limited" for o in outcomes)
    assert feed(s, ping, now=0.5) == Close(CLOSE_FLOOD, "rate limit exceeded")


def test_ids_are_strings_or_integers_javascript_can_hold():
    s = session()
    for rid in (2**53 - 1, -(2**53 - 1), "x" * 64, 0):
        assert isinstance(feed(s, {"id": rid, "op": "ping"}), Ping)
    for rid in (2**53, -(2**53), 10**30, 1.5, True, "x" * 65, [1]):
        outcome = feed(s, {"id": rid, "op": "ping"})
        assert isinstance(outcome, Error) and outcome.code == "bad_request", rid
