import json

import pytest

from tidings.core.messages import Message, Position
from tidings.core.topics import Pattern, topic_error


def test_position_round_trip_and_url_safety():
    p = Position("k3Xq9a", 42)
    assert str(p) == "k3Xq9a:42"
    assert Position.parse(str(p)) == p
    assert Position.parse("e:0").offset == 0


@pytest.mark.parametrize(
    "text", ["", ":1", "e:", "e:01", "e:-1", "e:1:2", "e f:1", "e:1x", None, 5]
)
def test_position_rejects_malformed(text):
    with pytest.raises(ValueError):
        Position.parse(text)


def test_patterns():
    assert Pattern("rooms.*").match("rooms.lobby")
    assert Pattern("rooms.*").match("rooms.a.b")
    assert not Pattern("rooms.*").match("roomsX")
    assert not Pattern("rooms.*").match("other.rooms.x")
    assert Pattern("exact").match("exact") and not Pattern("exact").match("exact2")
    assert Pattern("*.log").match("a.log")
    with pytest.raises(ValueError):
        Pattern("bad pattern")


def test_topic_rules():
    assert topic_error("a.b-c_d:e@f=g+h", 200) is None
    assert topic_error("x" * 11, 10) is not None


def test_message_frame_is_encoded_once_and_is_valid_json():
    m = Message("t", "ev", json.dumps({"a": [1, "é"]}), Position("e", 1))
    frame = m.ws_frame
    assert m.ws_frame is frame  # cached: one encoding shared by every subscriber
    assert json.loads(frame) == {
        "op": "message",
        "topic": "t",
        "position": "e:1",
        "event": "ev",
        "data": {"a": [1, "é"]},
    }
