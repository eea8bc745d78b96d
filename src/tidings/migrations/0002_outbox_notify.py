"""On PostgreSQL, an insert into the outbox sends ``NOTIFY tidings_outbox`` (at commit),
which wakes the relays (tidings.outbox.relay); once per statement, and PostgreSQL folds
a transaction's equal notifications into one. Other databases: nothing (relays poll)."""

from collections.abc import Callable
from typing import Any

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION tidings_outbox_notify() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('tidings_outbox', '');
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS tidings_outbox_notify ON tidings_outbox;
CREATE TRIGGER tidings_outbox_notify AFTER INSERT ON tidings_outbox
  FOR EACH STATEMENT EXECUTE FUNCTION tidings_outbox_notify();
"""

DROP = """
DROP TRIGGER IF EXISTS tidings_outbox_notify ON tidings_outbox;
DROP FUNCTION IF EXISTS tidings_outbox_notify();
"""


def _run(sql: str) -> Callable[[Any, Any], None]:
    def run(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("tidings", "0001_initial")]

    operations = [migrations.RunPython(_run(CREATE), _run(DROP))]
