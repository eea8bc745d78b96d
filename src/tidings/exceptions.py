"""Every exception of tidings, in one tree::

    TidingsError
    ├── BrokerError      the broker could not do what was asked; clients get "unavailable"
    ├── ClientError      tidings.client: the server refused a request, or the connection closed
    └── Refused          a client's request is refused: ``code`` and ``message`` go to it
        ├── Forbidden    no rule lets this user do this on this topic ("forbidden")
        └── Reject       a topic handler refused a publish ("rejected"): ``tidings.Reject``

A ``Refused`` is the client's business (it is answered, and noted at INFO on
``tidings.auth``: docs/guide.md, "Rules"); a ``BrokerError`` is logged as a warning
and answered "unavailable"; anything else raised while serving a request is a bug:
logged with its traceback and answered "internal_error".
"""

from __future__ import annotations

from typing import Any


class TidingsError(Exception):
    """The root of every exception tidings raises on purpose."""


class BrokerError(TidingsError):
    """The broker could not do what was asked (e.g. its server is unreachable)."""


class ClientError(TidingsError):
    """What :mod:`tidings.client` raises: ``code`` is the server's error code
    (docs/protocol.md) or ``disconnected`` / ``closed``; ``message`` says why."""

    def __init__(self, code: str, message: str, topic: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.topic = topic

    @classmethod
    def from_reply(cls, reply: dict[str, Any]) -> ClientError:
        error = reply.get("error") or {}
        return cls(error.get("code", "error"), error.get("message", ""), error.get("topic"))


class Refused(TidingsError):
    """A client's request is refused; the client gets ``code`` and ``message``."""

    code = "bad_request"

    def __init__(self, message: str, code: str | None = None, topic: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.topic = topic  # the topic refused, for clients of several topics at once
        if code is not None:
            self.code = code


class Forbidden(Refused):
    """The user may not do this on this topic."""

    code = "forbidden"


class Reject(Refused):
    """Refuse a client's publish from a topic handler; ``message`` is shown to the client."""

    code = "rejected"
