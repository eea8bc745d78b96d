"""The Tornado + RethinkDB chat, on tidings: a message is saved, and the model feed, not
the handler, pushes it to everyone, as RethinkDB's changefeed did. Logged-in users only."""

from typing import Any

import tidings
from demo.chat.models import ChatMessage


class ChatFeed(tidings.ModelFeed):
    model = ChatMessage
    name = "chat.messages"

    def serialize(self, obj: Any) -> dict[str, Any]:
        return {"user": obj.user.get_username(), "text": obj.text, "sent": obj.sent}

    def queryset(self, topic: str) -> Any:
        """A snapshot is the last 50 messages."""
        last = ChatMessage.objects.select_related("user").order_by("-sent", "-id")[:50]
        return sorted(last, key=lambda m: (m.sent, m.id))

    def can_subscribe(self, user: Any, topic: str) -> bool:
        return bool(user.is_authenticated)


tidings.feed(ChatFeed)
tidings.allow("chat.say", publish="authenticated")


@tidings.handler("chat.say")
def say(msg: tidings.ClientMessage) -> None:
    text = msg.data.get("text") if isinstance(msg.data, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise tidings.Reject("Say something.")
    if len(text) > 1000:
        raise tidings.Reject("A message may have at most 1000 characters.")
    ChatMessage.objects.create(user=msg.user, text=text.strip())
    return None  # broadcast nothing here: the change feed does
