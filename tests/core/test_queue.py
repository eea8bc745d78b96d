"""The bounded per-subscriber queue, "coalesce by key", and replays past the limit."""

from tidings.core.queue import Queue


def test_bounded():
    box: Queue[str] = Queue(2)
    assert box.put("a") and box.put("b")
    assert not box.put("c")  # full: refused, nothing queued
    assert box.pop_all() == ["a", "b"] and not box


def test_a_newer_item_with_the_same_key_replaces_the_waiting_one():
    box: Queue[str] = Queue(3)
    box.put("x1", key="x")
    box.put("plain")
    box.put("y1", key="y")
    assert box.put("x2", key="x")  # replaces x1 in place of a new slot: not "full"
    assert box.size == 3
    assert box.pop_all() == ["plain", "y1", "x2"]
    box.put("x3", key="x")  # x2 was sent: x3 is just queued
    assert box.pop() == "x3" and box.pop() is None
    assert box._keyed == {}  # no key is remembered once its item is gone


def test_full_queue_still_takes_a_replacement():
    box: Queue[str] = Queue(1)
    box.put("k1", key="k")
    assert box.put("k2", key="k")
    assert not box.put("other")
    assert box.pop_all() == ["k2"]


def test_a_replay_may_exceed_the_limit_and_live_items_still_count_on_top_of_it():
    box: Queue[str] = Queue(2)
    box.replay(["r1", "r2", "r3"])
    assert box.size == 3
    assert box.put("a") and box.put("b")
    assert not box.put("c")  # the limit applies to what came live
    assert box.pop() == "r1"  # a replayed item leaves: its allowance goes with it
    assert not box.put("c")
    assert box.pop_all() == ["r2", "r3", "a", "b"] and not box


def test_clear_forgets_everything():
    box: Queue[str] = Queue(2)
    box.replay(["r"])
    box.put("k1", key="k")
    box.clear()
    assert not box and box.pop() is None
    assert box.put("x") and box.put("y") and not box.put("z")
