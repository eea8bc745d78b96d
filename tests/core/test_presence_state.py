"""Presence state and its diffs, fed by hand (Phoenix.Presence's shape): no broker, no
process, no clock."""

from __future__ import annotations

from tidings.core.presence import Diff, Entry, PresenceState

ANN = Entry("ann", {"name": "Ann"}, {"state": "viewing"})
ANN_EDITING = Entry("ann", {"name": "Ann"}, {"state": "editing"})
BOB = Entry("bob", {"name": "Bob"}, {})


def test_a_first_join_is_a_join_of_one_meta():
    state = PresenceState()
    diff = state.join("r1", ANN)
    assert diff == Diff(
        {"ann": {"info": {"name": "Ann"}, "metas": [{"ref": "r1", "state": "viewing"}]}}, {}
    )
    assert state.view() == diff.joins


def test_several_connections_of_one_key_are_one_member_with_several_metas():
    state = PresenceState()
    state.join("r1", ANN)
    state.join("r2", ANN_EDITING)
    state.join("r3", BOB)
    view = state.view()
    assert sorted(view) == ["ann", "bob"]
    assert [m["ref"] for m in view["ann"]["metas"]] == ["r1", "r2"]
    assert state.count() == {"members": 2, "connections": 3}


def test_the_same_entry_again_is_no_change():
    state = PresenceState()
    state.join("r1", ANN)
    assert not state.join("r1", ANN)


def test_a_meta_update_is_the_old_meta_leaving_and_the_new_one_joining():
    state = PresenceState()
    state.join("r1", ANN)
    diff = state.join("r1", ANN_EDITING)
    assert diff.leaves == {
        "ann": {"info": {"name": "Ann"}, "metas": [{"ref": "r1", "state": "viewing"}]}
    }
    assert diff.joins == {
        "ann": {"info": {"name": "Ann"}, "metas": [{"ref": "r1", "state": "editing"}]}
    }


def test_leaving_twice_is_one_leave():
    state = PresenceState()
    state.join("r1", ANN)
    assert state.leave("r1").leaves["ann"]["metas"] == [{"ref": "r1", "state": "viewing"}]
    assert not state.leave("r1")
    assert state.view() == {} and state.count() == {"members": 0, "connections": 0}


def test_a_sync_turns_what_the_store_no_longer_has_into_leaves():
    state = PresenceState()
    state.join("r1", ANN)
    state.join("r2", BOB)
    diff = state.sync({"r2": BOB, "r3": ANN_EDITING})  # r1's process died: its entry expired
    assert diff.leaves == {
        "ann": {"info": {"name": "Ann"}, "metas": [{"ref": "r1", "state": "viewing"}]}
    }
    assert diff.joins == {
        "ann": {"info": {"name": "Ann"}, "metas": [{"ref": "r3", "state": "editing"}]}
    }
    assert sorted(state.entries) == ["r2", "r3"]
    assert not state.sync({"r2": BOB, "r3": ANN_EDITING})


def test_stored_entries_round_trip_and_garbage_is_no_entry():
    assert Entry.from_stored(ANN.stored()) == ANN
    assert Entry.from_stored({"key": "k"}) == Entry("k", {}, {})
    assert Entry.from_stored({"key": "k", "info": [1], "meta": "x"}) == Entry("k", {}, {})
    for garbage in (None, [], {"key": 5}, {"info": {}}):
        assert Entry.from_stored(garbage) is None
