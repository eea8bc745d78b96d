"""PostgreSQL change feeds: every write to a feed's table, made through the ORM or not.

``QuerySet.update()``, ``bulk_update()``, raw SQL and other services send no Django
signal. With ``triggers = True`` on a :class:`~tidings.feeds.ModelFeed` and PostgreSQL,
a trigger on the table reports each row change instead:

- ``manage.py tidings_triggers`` installs the function and the triggers (``--remove``
  drops them); it is idempotent.
- The trigger sends ``NOTIFY tidings`` with ``{"table", "op", "pk", "changed"}`` (and,
  when they fit, the old row of a delete and the replaced values of an update: they
  tell who lost sight of a row, :meth:`tidings.feeds.ModelFeed.shown`). Only the key
  travels, so no row is too big for NOTIFY's 8,000 bytes: the listener reads the row.
  NOTIFY is transactional: nothing for rolled-back work, and notifications arrive in
  commit order.
- :class:`NotifyListener` (psycopg 3, ``LISTEN tidings``) turns them into the feed's
  usual messages and publishes them. It reconnects by itself, with backoff, and logs. Run it
  in the server (``TIDINGS["PG_LISTEN"] = True``: one process) or as its own process,
  ``manage.py tidings_listen`` (several server processes sharing Redis: exactly one
  listener, or every change is published once per listener).

A change made while no listener is connected is not seen (NOTIFY keeps nothing):
clients then resume with ``recovered: true`` but without it, so after a listener
outage the safe course is a fresh snapshot (``initial: true``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from django.db import connections, models, router

from tidings import registry
from tidings.registry import Feed

logger = logging.getLogger("tidings.pgfeed")

CHANNEL = "tidings"
MAX_OLD = 7000  # bytes of an old row that still fit in a notification

FUNCTION = """
CREATE OR REPLACE FUNCTION tidings_notify() RETURNS trigger AS $$
DECLARE
  row_json jsonb := to_jsonb(COALESCE(NEW, OLD));
  changed text[];
  old_row jsonb;
BEGIN
  IF TG_OP = 'UPDATE' THEN
    SELECT coalesce(array_agg(n.key), '{}') INTO changed FROM jsonb_each(to_jsonb(NEW)) n
      WHERE n.value IS DISTINCT FROM (to_jsonb(OLD) -> n.key);
    IF cardinality(changed) = 0 THEN RETURN NULL; END IF;
  END IF;
  IF TG_OP = 'DELETE' AND octet_length(to_jsonb(OLD)::text) < 7000 THEN  -- MAX_OLD
    old_row := to_jsonb(OLD);
  ELSIF TG_OP = 'UPDATE' THEN  -- the values it replaced
    SELECT jsonb_object_agg(o.key, o.value) INTO old_row FROM jsonb_each(to_jsonb(OLD)) o
      WHERE o.key = ANY(changed);
    IF octet_length(old_row::text) >= 7000 THEN old_row := NULL; END IF;
  END IF;
  PERFORM pg_notify('tidings', json_build_object(  -- CHANNEL
    'table', TG_TABLE_NAME, 'op', TG_OP, 'pk', row_json ->> TG_ARGV[0],
    'changed', changed, 'old', old_row)::text);
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""


def trigger_feeds() -> list[Feed]:
    """The registered feeds that use triggers and whose database is PostgreSQL."""
    return [f for f in registry.feeds() if f.by_triggers]


def install(remove: bool = False) -> list[str]:
    """Create (or drop) the function and one trigger per trigger feed's table."""
    done = []
    for feed in trigger_feeds():
        meta = feed.model._meta
        table, pk = meta.db_table, meta.pk.column
        name = f"tidings_{table}"
        with connections[router.db_for_write(feed.model)].cursor() as cursor:
            cursor.execute(f'DROP TRIGGER IF EXISTS "{name}" ON "{table}"')
            if not remove:
                cursor.execute(FUNCTION)
                cursor.execute(
                    f'CREATE TRIGGER "{name}" AFTER INSERT OR UPDATE OR DELETE ON "{table}" '
                    f"FOR EACH ROW EXECUTE FUNCTION tidings_notify(%s)",
                    [pk],
                )
        done.append(table)
    return done


def _dsn(alias: str) -> dict[str, Any]:
    params = dict(connections[alias].get_connection_params())
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    params.pop("server_side_binding", None)
    return params


class NotifyListener:
    """``LISTEN tidings`` on each database with trigger feeds; publish what it hears."""

    def __init__(self) -> None:
        self.connected = False
        self.reconnects = 0
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None and trigger_feeds():
            self._task = asyncio.get_running_loop().create_task(self.run())

    def health(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
        }

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def run(self) -> None:
        """Listen until cancelled; reconnect with backoff when the connection is lost."""
        import psycopg

        aliases = {router.db_for_write(f.model) for f in trigger_feeds()}
        alias = sorted(aliases)[0]  # (one database; several would need one listener each)
        delay = 0.2
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(**_dsn(alias), autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.connected, delay = True, 0.2
                    logger.info("listening for row changes on database %r", alias)
                    async for notify in conn.notifies():
                        await self.handle(notify.payload)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.last_error = f"{type(e).__name__}: {e}"
                if self.connected:
                    logger.warning("lost the database listener: %s; reconnecting", e)
            self.connected = False
            self.reconnects += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def handle(self, payload: str) -> None:
        """One row change: read the row (or take the deleted one) and publish it."""
        try:
            note = json.loads(payload)
            table, op, pk = note["table"], note["op"], note["pk"]
        except (ValueError, KeyError, TypeError):
            logger.warning("ignored a malformed notification: %.200s", payload)
            return
        for feed in trigger_feeds():
            if feed.model._meta.db_table != table:
                continue
            try:
                await self._publish(feed, op, pk, note)
            except Exception:
                logger.exception("could not publish the %s of %s %s", op, table, pk)

    async def _publish(self, feed: Feed, op: str, pk: str, note: dict[str, Any]) -> None:
        model = feed.model
        columns = {f.column: f.attname for f in model._meta.concrete_fields}
        changed = [columns.get(c, c) for c in note.get("changed") or []]
        if op == "DELETE":
            obj = model(**_attrs(model, note.get("old") or {}))
            obj.pk = model._meta.pk.to_python(pk)
            await feed.apublish("delete", obj, [])
            return
        found = await model._default_manager.filter(pk=pk).afirst()
        if found is None:
            return  # deleted since; its own notification follows
        if op == "INSERT":
            await feed.apublish("create", found, list(columns.values()))
            return
        replaced = note.get("old")  # (None: too big to notify; then who lost it is unknown)
        values = None if replaced is None else _attrs(model, replaced)
        await feed.apublish("update", found, changed, values)


def _attrs(model: type[models.Model], row: dict[str, Any]) -> dict[str, Any]:
    """Field values of a row given as JSON by PostgreSQL, as Django would load them."""
    values = {}
    for field in model._meta.concrete_fields:
        if field.column in row:
            values[field.attname] = field.to_python(row[field.column])
    return values
