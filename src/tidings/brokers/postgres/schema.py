"""The broker's tables and its publish function, made by the broker on first use.

Every name starts with the URL's ``prefix`` (``tidings``), so two sites can share a
database::

    tidings_topics     topic -> epoch, seq (the last offset given), size and ttl (the
                       history policy of its last publish), touched (its last publish
                       or read, server clock, seconds)
    tidings_messages   (topic, seq) -> at (server clock, seconds), event, data, formats
    tidings_presence   (topic, conn_id) -> info JSON, expires (server clock, seconds)
    tidings_receipts   a batch of publishes' id -> its reply (for retries)
    tidings_publish()  the function that publishes a batch (below)
    tidings            the NOTIFY channel; a notification's payload is a topic, nothing else

:func:`acreate` runs ``CREATE TABLE IF NOT EXISTS`` and ``CREATE OR REPLACE FUNCTION``
under a transaction-level advisory lock, so processes starting together do not trip
over each other. No migration is needed, for a ``django://`` database either: the
tables are not models, and nothing of Django's owns them.
"""

from __future__ import annotations

from typing import Any

TABLES = """
CREATE TABLE IF NOT EXISTS {p}_topics (
  topic text PRIMARY KEY,
  epoch text NOT NULL,
  seq bigint NOT NULL,
  size integer NOT NULL,
  ttl double precision NOT NULL,
  touched double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS {p}_messages (
  topic text NOT NULL,
  seq bigint NOT NULL,
  at double precision NOT NULL,
  event text NOT NULL,
  data text NOT NULL,
  formats text,
  PRIMARY KEY (topic, seq)
);
CREATE TABLE IF NOT EXISTS {p}_presence (
  topic text NOT NULL,
  conn_id text NOT NULL,
  info text NOT NULL,
  expires double precision NOT NULL,
  PRIMARY KEY (topic, conn_id)
);
CREATE TABLE IF NOT EXISTS {p}_receipts (
  id text PRIMARY KEY,
  reply text,
  made double precision NOT NULL
);
"""

# One batch of publishes, in one transaction. The caller sorts the batch by topic
# (keeping each topic's publishes in the order they were made), so every batch locks
# topic rows in the same order and two batches never deadlock. For each message: the
# next offset of its topic (the upsert locks the topic's row until commit, so offsets
# are contiguous and commit order is offset order), a new epoch for a topic it makes,
# the row in messages, a trim to the newest max(size, keep), one NOTIFY per topic
# (PostgreSQL folds equal notifications of a transaction into one). NOTIFY is sent at
# commit: a listener woken by it finds the message in the table.
#
# The receipt goes in first: a retry of a batch whose first attempt is still running
# waits on its row, then returns the first attempt's reply instead of publishing
# twice. Past the deadline (server clock) the whole batch is refused: rolled back.
PUBLISH = """
CREATE OR REPLACE FUNCTION {p}_publish(
  receipt text, new_epoch text, deadline double precision, keep integer,
  p_topics text[], p_events text[], p_datas text[], p_formats text[], p_sizes integer[],
  p_ttls double precision[]
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  i integer;
  e text;
  o bigint;
  fresh boolean;
  now_s double precision;
  answer text := '';
BEGIN
  INSERT INTO {p}_receipts (id, made) VALUES (receipt, extract(epoch FROM clock_timestamp()))
    ON CONFLICT (id) DO NOTHING;
  IF NOT FOUND THEN
    SELECT r.reply INTO answer FROM {p}_receipts r WHERE r.id = receipt;
    RETURN answer;
  END IF;
  FOR i IN 1 .. coalesce(array_length(p_topics, 1), 0) LOOP
    INSERT INTO {p}_topics AS t (topic, epoch, seq, size, ttl, touched)
      VALUES (p_topics[i], new_epoch, 1, p_sizes[i], p_ttls[i],
              extract(epoch FROM clock_timestamp()))
      ON CONFLICT (topic) DO UPDATE
        SET seq = t.seq + 1, size = excluded.size, ttl = excluded.ttl, touched = excluded.touched
      RETURNING t.epoch, t.seq, (t.xmax = 0) INTO e, o, fresh;
    now_s := extract(epoch FROM clock_timestamp());  -- after the row lock: ordered per topic
    IF fresh THEN
      DELETE FROM {p}_messages WHERE topic = p_topics[i];  -- of an epoch gone by
    END IF;
    INSERT INTO {p}_messages (topic, seq, at, event, data, formats)
      VALUES (p_topics[i], o, now_s, p_events[i], p_datas[i], p_formats[i]);
    DELETE FROM {p}_messages
      WHERE topic = p_topics[i] AND seq <= o - greatest(p_sizes[i], keep);
    PERFORM pg_notify('{p}', p_topics[i]);
    answer := answer || e || ' ' || o || E'\\n';
  END LOOP;
  IF extract(epoch FROM clock_timestamp()) > deadline THEN
    RAISE EXCEPTION 'tidings: the publish arrived after its deadline';
  END IF;
  UPDATE {p}_receipts SET reply = answer WHERE id = receipt;
  RETURN answer;
END;
$$;
"""

LOCK = "SELECT pg_advisory_xact_lock(hashtext(%s))"


def statements(prefix: str) -> list[str]:
    """What :func:`acreate` runs, in order."""
    tables = [s.strip() for s in TABLES.format(p=prefix).split(";") if s.strip()]
    return [*tables, PUBLISH.replace("{p}", prefix)]


async def acreate(conn: Any, prefix: str) -> None:
    """Make the tables and the function on ``conn`` (an asyncio psycopg connection in
    autocommit mode), in one transaction under an advisory lock."""
    async with conn.transaction():
        await conn.execute(LOCK, (f"tidings-schema:{prefix}",))
        for statement in statements(prefix):
            await conn.execute(statement)
