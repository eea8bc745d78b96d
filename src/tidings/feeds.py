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
``can_subscribe`` says who may subscribe to the feed's topics (default: nobody: say
who), unless a rule (``TIDINGS["RULES"]``, ``tidings.allow``) speaks for them first.

Writes made outside the ORM's ``save()``/``delete()`` (``QuerySet.update()``, raw SQL,
another service) send no signal: see :mod:`tidings.pgfeed` for PostgreSQL triggers.
"""

from __future__ import annotations

from typing import Any, ClassVar

from asgiref.sync import sync_to_async
from django.db import connections, models, router
from django.db.models.signals import post_delete, post_init, post_save

from tidings import api, registry

Row = dict[str, Any]


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

    def __init__(self) -> None:
        meta = self.model._meta
        self.prefix = self.name or f"{meta.app_label}.{meta.model_name}"
        self.field_names = list(self.fields or [f.attname for f in meta.concrete_fields])

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

    def payload(self, action: str, obj: models.Model, changed: list[str]) -> Row:
        row = {"action": action, "pk": obj.pk, "data": self.serialize(obj), "changed": changed}
        if self.version_field is not None:
            row["version"] = getattr(obj, self.version_field)
        return row

    def publish(self, action: str, obj: models.Model, changed: list[str]) -> None:
        payload = self.payload(action, obj, [c for c in changed if c in self.field_names])
        for topic in self.topics(obj):
            api.publish(topic, payload, event=action)  # after commit, never on rollback

    async def apublish(self, action: str, obj: models.Model, changed: list[str]) -> None:
        """Async twin of :meth:`publish` (the PostgreSQL listener's)."""
        payload = await sync_to_async(self.payload, thread_sensitive=True)(
            action, obj, [c for c in changed if c in self.field_names]
        )
        for topic in self.topics(obj):
            await api.apublish(topic, payload, event=action)

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
            for f in _feeds_of(type(instance)):
                f.publish("create" if created else "update", instance, changed)

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


def _values(obj: models.Model) -> dict[str, Any]:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def _by_triggers(model: type[models.Model]) -> bool:
    return any(f.by_triggers for f in _feeds_of(model))


def _feeds_of(model: type[models.Model]) -> list[ModelFeed]:
    return [f for f in registry.feeds() if isinstance(f, ModelFeed) and f.model is model]
