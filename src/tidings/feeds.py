"""Model change feeds: a model's creates, updates and deletes, pushed after commit.

    class CounterFeed(tidings.ModelFeed):
        model = IntegerValue
        fields = ["name", "value"]

        def can_subscribe(self, user, topic):
            return True

    tidings.feed(CounterFeed)

Every saved or deleted object is published, once its transaction commits (never for
rolled-back work), to the feed's topics: by default the collection topic
``"<app_label>.<model_name>"`` and the object's ``"<app_label>.<model_name>.<pk>"``.
The message's event is the action and its data::

    {"action": "create" | "update" | "delete", "pk": 3, "data": {...}, "changed": ["value"]}

A subscription with ``initial: true`` first gets a ``snapshot`` frame of the rows on that
topic the user may see, then every change after it: nothing missed between the two,
and no change the snapshot already shows (:mod:`tidings.core.snapshots`).
``visible(user, row)`` hides rows from a user, in snapshots and in changes.

A row that leaves what a subscriber sees is removed for them with a ``delete`` of the
row as they saw it (``{"action": "delete", "pk", "data": <the row before>, ...}``),
whether it left a topic (``topics()`` of the row before and after differ) or the user's
``visible()`` (an update carries the values it replaced, ``before``, which each
subscriber's delivery reads and strips: :meth:`ModelFeed.shown`).
``can_subscribe`` says who may subscribe to the feed's topics (default: nobody: say
who), unless a rule (``TIDINGS["RULES"]``, ``tidings.allow``) speaks for them first.

Writes made outside the ORM's ``save()``/``delete()`` (``QuerySet.update()``, raw SQL,
another service) send no signal: see :mod:`tidings.pgfeed` for PostgreSQL triggers.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any, ClassVar

from asgiref.sync import sync_to_async
from django.db import connections, models, router
from django.db.models.signals import post_delete, post_init, post_save

from tidings import api, registry
from tidings.core.messages import Message, Position
from tidings.encoding import encode_data

Row = dict[str, Any]
Values = dict[str, Any]  # field values by attname
_GONE: Any = object()
VARIANTS = 256  # per feed: the updates whose per-user variants are remembered


class ModelFeed:
    """Declare what of a model is published, to which topics, and to whom."""

    model: ClassVar[type[models.Model]]
    fields: ClassVar[list[str] | None] = None  # None: every concrete field
    name: ClassVar[str | None] = None  # topic prefix; default "<app_label>.<model_name>"
    # A field that grows with every save of a row (a counter, a precise timestamp): with
    # it, a change that raced a snapshot and is already in it is never sent after it.
    version_field: ClassVar[str | None] = None
    # PostgreSQL: report every write to the table, ORM or not, by trigger (tidings.pgfeed)
    triggers: ClassVar[bool] = False
    # Write each change to the outbox in the save's transaction (tidings.outbox): it is
    # published even if the process dies right after the commit.
    durable: ClassVar[bool] = False

    def __init__(self) -> None:
        meta = self.model._meta
        self.prefix = self.name or f"{meta.app_label}.{meta.model_name}"
        self.field_names = list(self.fields or [f.attname for f in meta.concrete_fields])
        # updates' variants per user (see shown), by topic and position: the latest ones
        self._changes: OrderedDict[tuple[str, Position], tuple[Message, Row, Message]] = (
            OrderedDict()
        )

    def covers(self, topic: str) -> bool:
        """Is ``topic`` one of this feed's (the collection, or one object's)?"""
        prefix = self.prefix
        return topic == prefix or (topic.startswith(prefix) and topic[len(prefix)] == ".")

    # -- hooks ---------------------------------------------------------------------
    def topics(self, obj: models.Model) -> list[str]:
        """Where a change of ``obj`` is published: the collection and the object."""
        return [self.prefix, f"{self.prefix}.{obj.pk}"]

    def serialize(self, obj: models.Model) -> Row:
        """The row as subscribers get it (``data``); JSON-able with Django's encoder."""
        return {name: getattr(obj, name) for name in self.field_names}

    def queryset(self, topic: str) -> models.QuerySet[Any] | None:
        """The rows a ``topic`` shows, for snapshots: the collection, or one object."""
        manager = self.model._default_manager
        if topic == self.prefix:
            return manager.all()
        if topic.startswith(self.prefix + "."):
            return manager.filter(pk=topic[len(self.prefix) + 1 :])
        return None

    def can_subscribe(self, user: Any, topic: str) -> bool:
        """May ``user`` follow ``topic``? Runs in Django's sync thread (may use the ORM)."""
        return False

    def visible(self, user: Any, row: Row) -> bool:
        """May ``user`` see this row? Called for every subscriber of every change, on the
        event loop: decide from the row and the user, without queries."""
        return True

    # -- machinery ---------------------------------------------------------------------
    @property
    def filters(self) -> bool:
        """Does ``visible`` hide rows from some users? (Then every change is checked.)"""
        return type(self).visible is not ModelFeed.visible

    @property
    def by_triggers(self) -> bool:
        """Do PostgreSQL triggers report its changes (``triggers`` on a PostgreSQL table)?"""
        if not self.triggers:
            return False
        return connections[router.db_for_write(self.model)].vendor == "postgresql"

    def payload(
        self, action: str, obj: models.Model, changed: list[str], before: Row | None = None
    ) -> Row:
        """What a change publishes; ``before`` (the row an update replaced) adds the values
        it replaced when ``visible`` filters, so each subscriber's delivery can tell
        who lost the row (:meth:`shown`)."""
        data = self.serialize(obj)
        row = {"action": action, "pk": obj.pk, "data": data, "changed": changed}
        if self.version_field is not None:
            row["version"] = getattr(obj, self.version_field)
        if before is not None and self.filters:
            replaced = {k: v for k, v in before.items() if data.get(k, _GONE) != v}
            if replaced:
                row["before"] = replaced
        return row

    def removal(self, payload: Row, row: Row) -> Row:
        """A ``delete`` of ``row`` (the row as the subscriber saw it) for those who lost it."""
        removed = {"action": "delete", "pk": payload["pk"], "data": row, "changed": []}
        if "version" in payload:
            removed["version"] = payload["version"]
        return removed

    def changes(
        self, action: str, obj: models.Model, changed: list[str], replaced: Values | None
    ) -> list[tuple[str, str, Row]]:
        """``(topic, event, data)`` to publish for a change of ``obj`` (``replaced``: the
        field values an update replaced, by attname): the change on its topics, and a
        removal on the topics the row was on and has left."""
        changed = [c for c in changed if c in self.field_names]
        moves = type(self).topics is not ModelFeed.topics  # (else the row keeps its topics)
        old = None if replaced is None or not (self.filters or moves) else _restored(obj, replaced)
        before = None if old is None else self.serialize(old)
        payload = self.payload(action, obj, changed, before)
        topics = self.topics(obj)
        out = [(topic, action, payload) for topic in topics]
        if old is not None and before is not None:
            left = [t for t in self.topics(old) if t not in topics]
            out += [(t, "delete", self.removal(payload, before)) for t in left]
        return out

    def publish(
        self, action: str, obj: models.Model, changed: list[str], replaced: Values | None = None
    ) -> None:
        using = router.db_for_write(type(obj)) if self.durable else None
        for topic, event, data in self.changes(action, obj, changed, replaced):
            # after commit, never on rollback
            api.publish(topic, data, event=event, durable=self.durable, using=using)

    async def apublish(
        self, action: str, obj: models.Model, changed: list[str], replaced: Values | None = None
    ) -> None:
        """Async twin of :meth:`publish` (the PostgreSQL listener's)."""
        changes = await sync_to_async(self.changes, thread_sensitive=True)(
            action, obj, changed, replaced
        )
        for topic, event, data in changes:
            await api.apublish(topic, data, event=event)

    def shown(self, user: Any, message: Message) -> Message | None:
        """``message`` (a change of this feed) as ``user`` may see it, or ``None``.

        Called by each subscriber's delivery, live and in replays, when ``visible``
        filters. A row the user may see comes as it is (without ``before``); a row the
        update took out of their sight comes as a :meth:`removal` of the row as it was;
        otherwise nothing. Each variant is encoded once per message, for every user.
        """
        data = message.data
        row = data.get("data") if isinstance(data, dict) else None
        if not isinstance(row, dict):
            return None  # not a row's change: visible() cannot tell, so nobody sees it
        if "before" not in data:
            return message if self.visible(user, row) else None
        change = self._changes.get((message.topic, message.position))
        if change is None:
            change = self._change(message, data)
        if self.visible(user, row):
            return change[0]
        return change[2] if self.visible(user, change[1]) else None

    def _change(self, message: Message, data: Row) -> tuple[Message, Row, Message]:
        """An update's variants, made once: itself without ``before``; the row before it;
        the removal of that row."""
        before = {**data["data"], **data["before"]}
        plain = {k: v for k, v in data.items() if k != "before"}
        change = (
            _variant(message, message.event, plain),
            before,
            _variant(message, "delete", self.removal(data, before)),
        )
        self._changes[(message.topic, message.position)] = change
        if len(self._changes) > VARIANTS:
            self._changes.popitem(last=False)
        return change

    def snapshot(self, user: Any, topic: str) -> list[Row]:
        """The rows ``topic`` shows that ``user`` may see (sync: runs in Django's thread)."""
        queryset = self.queryset(topic)
        if queryset is None:
            return []
        rows = [self.snapshot_row(obj) for obj in queryset]
        return [r for r in rows if self.visible(user, r["data"])] if self.filters else rows

    def snapshot_row(self, obj: models.Model) -> Row:
        row = {"pk": obj.pk, "data": self.serialize(obj)}
        if self.version_field is not None:
            row["version"] = getattr(obj, self.version_field)
        return row

    async def asnapshot(self, user: Any, topic: str) -> list[Row]:
        return await sync_to_async(self.snapshot, thread_sensitive=True)(user, topic)


def _variant(message: Message, event: str, data: Row) -> Message:
    """``message`` with another event and data (its position, time and key)."""
    made = Message(
        message.topic,
        event,
        encode_data(data),
        message.position,
        message.timestamp,
        message.formats_json,
    )
    made.key = message.key
    return made


def feed(cls: type[ModelFeed]) -> ModelFeed:
    """Register a feed: its model's changes are published to its topics from now on."""
    instance = cls()
    registry.add_feed(instance)
    model = instance.model
    uid = f"tidings-feed-{instance.prefix}"

    def loaded(sender: Any, instance: models.Model, **kwargs: Any) -> None:
        instance._tidings_loaded = _values(instance)  # type: ignore[attr-defined]

    def saved(sender: Any, instance: models.Model, created: bool, **kwargs: Any) -> None:
        if _by_triggers(type(instance)):
            return  # PostgreSQL triggers report it (tidings.pgfeed)
        before = getattr(instance, "_tidings_loaded", None)
        now = _values(instance)
        if created or before is None:
            changed = list(now)  # all of it is new
        else:
            changed = [k for k in now if before.get(k) != now[k]]
        instance._tidings_loaded = now  # type: ignore[attr-defined]
        if created or changed:
            replaced = None if created else before
            for f in _feeds_of(type(instance)):
                f.publish("create" if created else "update", instance, changed, replaced)

    def deleted(sender: Any, instance: models.Model, **kwargs: Any) -> None:
        if _by_triggers(type(instance)):
            return
        for f in _feeds_of(type(instance)):
            f.publish("delete", instance, [])

    if len(_feeds_of(model)) == 1:  # the model's first feed connects its signals
        post_init.connect(loaded, sender=model, weak=False, dispatch_uid=uid + "-init")
        post_save.connect(saved, sender=model, weak=False, dispatch_uid=uid + "-save")
        post_delete.connect(deleted, sender=model, weak=False, dispatch_uid=uid + "-delete")
    return instance


def _restored(obj: models.Model, values: Values) -> models.Model:
    """A copy of ``obj`` with the field values it had (by attname): the row before."""
    old = copy.copy(obj)  # (Django copies its state and cache of related objects)
    for name, value in values.items():
        setattr(old, name, value)
    return old


def _values(obj: models.Model) -> dict[str, Any]:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def _by_triggers(model: type[models.Model]) -> bool:
    return any(f.by_triggers for f in _feeds_of(model))


def _feeds_of(model: type[models.Model]) -> list[ModelFeed]:
    return [f for f in registry.feeds() if isinstance(f, ModelFeed) and f.model is model]
