"""Rules and handlers the tests rely on."""

from typing import Any

import tidings

tidings.allow("test.*", subscribe=True, publish=True)
tidings.allow("readonly.*", subscribe=True)
tidings.allow("members.*", subscribe="authenticated", publish="authenticated")
tidings.allow("deny.*", subscribe=lambda user, topic: False)
tidings.allow("whoami.*", subscribe=True)
tidings.allow("boom.*", subscribe=True)


@tidings.handler("whoami.*")
def whoami(msg: tidings.ClientMessage) -> dict[str, Any]:
    user = msg.user
    return {"user": user.username if user.is_authenticated else None, "said": msg.data}


@tidings.handler("quiet.*")
def quiet(msg: tidings.ClientMessage) -> None:
    return None


@tidings.handler("boom.*")
async def boom(msg: tidings.ClientMessage) -> None:
    raise RuntimeError("handler bug")


# presence: members are logged-in users, known by username; anonymous users may watch
def _member(user, topic):
    return (user.username, {"name": user.username}) if user.is_authenticated else None


tidings.allow("presence.*", subscribe=True, publish=True)
tidings.track("presence.*", member=_member)
tidings.allow("crowd.*", subscribe=True)
tidings.track("crowd.*", member=_member, counts_only=True)
tidings.allow("secret.*", subscribe="authenticated")
tidings.track("secret.*", member=_member)


# a model feed whose rows some users may not see
from tests.testapp.models import Note  # noqa: E402


class NoteFeed(tidings.ModelFeed):
    model = Note
    fields = ["owner", "text", "private"]
    name = "notes"
    triggers = True

    def can_subscribe(self, user, topic):
        return True

    def visible(self, user, row):
        return not row["private"] or row["owner"] == getattr(user, "username", None)


tidings.feed(NoteFeed)


class PublicNoteFeed(tidings.ModelFeed):
    """The public notes, on one topic: a note made private leaves it (no ``visible``)."""

    model = Note
    fields = ["owner", "text", "private"]
    name = "public-notes"
    triggers = True

    def topics(self, obj):
        return [] if obj.private else [self.prefix]

    def queryset(self, topic):
        return Note.objects.filter(private=False) if topic == self.prefix else None

    def can_subscribe(self, user, topic):
        return True


tidings.feed(PublicNoteFeed)


# tidings.signals, for tests/test_signals.py: the life of a connection of a user named
# "signals-...", published on "test.signals.<username>" (a sync receiver, run in a
# thread, reads the database; a receiver that raises is logged and changes nothing)
from django.contrib.auth.models import User  # noqa: E402
from django.dispatch import receiver  # noqa: E402

from tidings import signals  # noqa: E402


def _watched(user: Any) -> bool:
    return bool(user.is_authenticated and user.username.startswith("signals-"))


def _tell(name: str):
    async def told(sender, *, user, connection, transport, **facts):
        if _watched(user):
            facts.update(signal=name, transport=transport, connection=connection)
            await tidings.apublish(f"test.signals.{user.username}", facts)

    return told


for _name in ("subscribed", "unsubscribed", "disconnected"):
    getattr(signals, _name).connect(_tell(_name), weak=False)


@receiver(signals.connected)
def _connected(sender, *, user, connection, transport, **facts):
    if _watched(user):
        joined = User.objects.get(pk=user.pk).date_joined.isoformat()  # the ORM, in a thread
        tidings.publish(
            f"test.signals.{user.username}",
            {
                "signal": "connected",
                "transport": transport,
                "connection": connection,
                "joined": joined,
            },
        )


@receiver(signals.subscribed)
async def _broken(sender, *, topic, **facts):
    if topic.startswith("test.broken-receiver"):
        raise RuntimeError("a receiver's bug")


# a durable feed: its changes go through the outbox (tests/test_outbox.py)
from tests.testapp.models import Entry  # noqa: E402


class EntryFeed(tidings.ModelFeed):
    model = Entry
    fields = ["text"]
    name = "entries"
    durable = True

    def can_subscribe(self, user, topic):
        return True


tidings.feed(EntryFeed)
