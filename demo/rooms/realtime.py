"""The rooms' realtime side: anyone may listen; what is said is validated, stored, then sent.

tidings imports every installed app's ``realtime`` module at startup.
"""

from typing import Any

import tidings
from demo.rooms.models import Message, Room

tidings.allow("rooms.*", subscribe=True)


@tidings.handler("rooms.*")
def say(msg: tidings.ClientMessage) -> dict[str, Any]:
    """Store a message said in a room and broadcast the stored form (with its timestamp)."""
    data = msg.data if isinstance(msg.data, dict) else {}
    handle = data.get("handle")
    text = data.get("message")
    if not isinstance(handle, str) or not handle.strip():
        raise tidings.Reject("Say who you are: 'handle' must not be empty.")
    if not isinstance(text, str) or not text.strip():
        raise tidings.Reject("Say something: 'message' must not be empty.")
    if len(handle) > 64:
        raise tidings.Reject("'handle' may have at most 64 characters.")
    if len(text) > 2000:
        raise tidings.Reject("'message' may have at most 2000 characters.")
    room = Room.objects.filter(label=msg.topic.removeprefix("rooms.")).first()
    if room is None:
        raise tidings.Reject("There is no such room.")
    stored = Message.objects.create(room=room, handle=handle.strip(), message=text.strip())
    return stored.as_dict()
