"""The Redis broker's URL options, and where a topic lives in Redis.

Options in the URL query (the rest goes to redis-py: ``socket_timeout``, ``protocol``,
``ssl_ca_certs``...): ``prefix`` (``tidings``), ``presence_ttl`` (60), ``meta_ttl``
(86400), ``keepalive`` (10: seconds of pub/sub silence before a PING), ``publish_timeout``
(5: a publish's deadline, retries included), ``retries`` (2), ``max_connections`` (8 per
pool), ``health_interval`` (1: seconds between health PINGs; unhealthy after two
unanswered). ``replicas``: a publish is answered once this many replicas have it (``WAIT``, up to
1 s, or the publish fails); 0 to not wait; by default 1 for ``redis+cluster://`` (capped
by the replicas a slot has) and ``redis+sentinel://``, 0 otherwise. For
``redis+cluster://`` only (:mod:`~tidings.brokers.redis.cluster`): ``shards`` (16: the
shard channels topics are spread over). A bad
value raises ``ImproperlyConfigured`` when the broker is built.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class Options:
    """This broker's own URL query options (see the module docstring)."""

    prefix: str = "tidings"
    presence_ttl: float = 60.0
    meta_ttl: float = 86400.0
    keepalive: float = 10.0
    publish_timeout: float = 5.0
    retries: int = 2
    max_connections: int = 8
    health_interval: float = 1.0
    shards: int = 16
    replicas: int = -1  # -1: the default of the URL's scheme

    @classmethod
    def split_url(cls, url: str) -> tuple[Options, str]:
        """This broker's options, and the URL without them for redis-py."""
        parts = urlsplit(url)
        ours: dict[str, Any] = {}
        theirs = []
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            field = cls.__dataclass_fields__.get(name)
            if field is None:
                theirs.append((name, value))
                continue
            kind = {"str": str, "float": float, "int": int}[str(field.type)]
            try:
                ours[name] = kind(value)
            except ValueError:
                problem = f"{name}={value!r} is not a {kind.__name__}"
                raise ImproperlyConfigured(f"TIDINGS['BROKER'] = {url!r}: {problem}") from None
        rest = urlunsplit(parts._replace(query=urlencode(theirs)))
        if not parts.netloc:  # unix:///path/redis.sock: urlunsplit would drop the "//"
            rest = rest.replace(f"{parts.scheme}:", f"{parts.scheme}://", 1)
        return cls(**ours), rest


class Names:
    """The names of a topic's keys, hash-tagged ``{topic}`` (``prefix:{topic}:meta``), and
    of its pub/sub channel, which carries the database number (``prefix:0:{topic}``):
    pub/sub ignores databases."""

    __slots__ = ("channel_prefix", "prefix")

    def __init__(self, prefix: str, db: int) -> None:
        self.prefix = prefix
        self.channel_prefix = f"{prefix}:{db}:{{"

    def key(self, topic: str, name: str) -> str:
        return f"{self.prefix}:{{{topic}}}:{name}"

    def channel(self, topic: str) -> str:
        return f"{self.channel_prefix}{topic}}}"

    def topic_of(self, channel: str) -> str:
        return channel[len(self.channel_prefix) : -1]

    def private_channel(self) -> str:
        """A channel nobody publishes to: the listener's first subscription."""
        return f"{self.channel_prefix}~{new_id()}}}"


def new_id() -> str:
    return secrets.token_hex(4)


def ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
