"""Channels' data binding, on tidings: IntegerValue rows are bound to the topic
``counters.values`` (a model feed), and pages change them with commands."""

from typing import Any

from django.db import transaction

import tidings
from demo.counters.models import IntegerValue


class CounterFeed(tidings.ModelFeed):
    model = IntegerValue
    fields = ["name", "value"]
    name = "counters.values"
    version_field = "version"
    triggers = True  # on PostgreSQL: QuerySet.update() and raw SQL show up too

    def can_subscribe(self, user: Any, topic: str) -> bool:
        return True  # as the binding example's has_permission: everyone


tidings.feed(CounterFeed)


@tidings.handler("counters.commands")
def command(msg: tidings.ClientMessage) -> None:
    """create / increment / delete; the feed, not this handler, tells everyone."""
    data = msg.data if isinstance(msg.data, dict) else {}
    action = data.get("action")
    if action == "create":
        name = data.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise tidings.Reject("A counter needs a name of 1 to 100 characters.")
        if IntegerValue.objects.filter(name=name.strip()).exists():
            raise tidings.Reject(f"There is already a counter {name.strip()!r}.")
        IntegerValue.objects.create(name=name.strip())
    elif action in ("increment", "delete"):
        value = IntegerValue.objects.filter(pk=data.get("pk")).first()
        if value is None:
            raise tidings.Reject("There is no such counter.")
        if action == "delete":
            value.delete()
        else:
            with transaction.atomic():  # read and write under one lock: no lost increment
                value = IntegerValue.objects.select_for_update().get(pk=value.pk)
                value.value += 1
                value.save(update_fields=["value"])  # published when this commits
    else:
        raise tidings.Reject("'action' must be create, increment or delete.")
    return None
