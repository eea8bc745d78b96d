"""Structured logs: one line per closed connection, and a JSON formatter for any log.

Every connection this process held ends with one INFO line on ``tidings.connections``
(:func:`connection_closed`), saying how it ended (the close code and reason), whose it
was, over what and for how long. The same facts ride on the record as attributes
(``connection``, ``user``, ``transport``, ``code``, ``reason``, ``duration``), so
:class:`JsonFormatter` writes them as fields a log pipeline can filter on::

    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "tidings.logging.JsonFormatter"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
        "loggers": {"tidings": {"handlers": ["console"], "level": "INFO"}},
    }

docs/operations.md describes both.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from tidings.server.clients import user_key, who

connections = logging.getLogger("tidings.connections")

# what every LogRecord has: the rest of its attributes are the caller's `extra`
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def connection_closed(
    connection: str, user: Any, transport: str, code: int | None, reason: str, seconds: float
) -> None:
    """Log the end of a connection, once: INFO on ``tidings.connections``."""
    if not connections.isEnabledFor(logging.INFO):
        return
    key = user_key(user)
    connections.info(
        "connection %s closed: %s %s, user %s, %s, after %.1fs",
        connection,
        code,
        reason,
        who(user),
        transport,
        seconds,
        extra={
            "connection": connection,
            "user": None if key is None else str(user),
            "user_id": key,
            "transport": transport,
            "code": code,
            "reason": reason,
            "duration": round(seconds, 3),
        },
    )


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON: ``time`` (UTC, ISO 8601), ``level``,
    ``logger``, ``message``, the ``extra`` fields the call gave, and ``exception`` (its
    traceback) when there is one. A value JSON cannot hold is written as its ``str``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, tz=UTC)
        line: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)
