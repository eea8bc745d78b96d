"""The Redis broker: many processes, one Redis. ``TIDINGS = {"BROKER": "redis://host:6379/0"}``.

Each topic has a few keys, all hash-tagged ``{topic}`` so a Redis Cluster would keep
them on one shard (see docs/redis.md for the layout)::

    tidings:{rooms.lobby}:meta      HASH    epoch, offset, ttl      (expires: META_TTL)
    tidings:{rooms.lobby}:history   STREAM  o=offset e=event d=data  (HistoryPolicy size/ttl)
    tidings:{rooms.lobby}:r:<id>    STRING  a publish's receipt      (expires in seconds)
    tidings:{rooms.lobby}:presence  ZSET    connection id -> expiry (ms, Redis clock)
    tidings:{rooms.lobby}:members   HASH    connection id -> member info (JSON)
    tidings:0:{rooms.lobby}         pub/sub channel (the db number is in the name: pub/sub
                                    ignores databases)

**Publish** is one Lua script: take the next offset, append to the stream, trim it by
count and age, PUBLISH the message with its position inside. Redis runs a script
alone, so offsets are contiguous and every process sees a topic in offset order, even
with many publishers. The script is idempotent (a random receipt id per publish), so
it is retried after a broken connection without being published twice; and it
carries a deadline, so a publish stuck in a frozen Redis or a dead socket is refused
when it finally arrives instead of appearing after the caller was told it failed.

**Epochs** live in ``meta`` and are made by whichever script finds none: after a
FLUSHALL, a restart without persistence or a long idle expiry, a topic gets a new
epoch and ``history(since=old)`` answers ``recovered=False``.

**Delivery**: one pub/sub connection per process, one channel per topic that has
local subscribers, driven by a supervised task. It tracks the last offset delivered per
topic; after a reconnect, or when the live stream skips offsets, it reads the gap from
history and delivers it first, so local subscribers see every message once, in order.
When history cannot cover the gap it logs a warning and goes on with live messages:
clients that resume with ``since`` then get ``recovered: false``. It never stops by
itself: failures are logged, retried with backoff, and visible in :meth:`health`.

**Presence** entries expire ``presence_ttl`` seconds (default 60) after they were last
written; this broker rewrites its own process's entries every third of that, so a
crashed process's entries disappear within the TTL.

Options in the URL query (the rest goes to redis-py: ``socket_timeout``, ``protocol``,
``ssl_ca_certs``...): ``prefix`` (``tidings``), ``presence_ttl`` (60), ``meta_ttl``
(86400), ``keepalive`` (10: seconds of pub/sub silence before a PING), ``publish_timeout``
(5: the deadline above), ``retries`` (2), ``max_connections`` (8 per pool).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
from django.core.exceptions import ImproperlyConfigured
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import EqualJitterBackoff, NoBackoff
from redis.retry import Retry

from tidings.brokers.base import Broker, Deliver, HistoryResult, PresenceStore
from tidings.core.messages import HistoryPolicy, Message, Position
from tidings.exceptions import BrokerError

logger = logging.getLogger("tidings.brokers.redis")

# KEYS: meta, history, receipt. Returns {"ok", epoch, offset, ms}, {"again", "<epoch> <offset>
# <ms>"} when this publish already ran (a retry), or {"late", ms} past the deadline.
PUBLISH = """
local channel, event, data, formats, flen = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local size, ttl, meta_ttl = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local receipt = redis.call('GET', KEYS[3])
if receipt then return {'again', receipt} end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if now > tonumber(ARGV[9]) then return {'late', now} end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[10]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
if size > 0 and ttl > 0 then
  if flen == '-1' then
    redis.call('XADD', KEYS[2], 'MAXLEN', '=', size, '*', 'o', offset, 'e', event, 'd', data)
  else
    redis.call('XADD', KEYS[2], 'MAXLEN', '=', size, '*', 'o', offset, 'e', event, 'd', data,
               'f', formats)
  end
  redis.call('XTRIM', KEYS[2], 'MINID', '=', now - ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
else
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[1], 'ttl', ttl)
redis.call('PEXPIRE', KEYS[1], math.max(meta_ttl, ttl))
redis.call('SET', KEYS[3], epoch .. ' ' .. offset .. ' ' .. now, 'PX', ARGV[11])
redis.call('PUBLISH', channel,
           epoch .. ' ' .. offset .. ' ' .. now .. ' ' .. event .. ' ' .. flen .. '\\n'
           .. formats .. data)
return {'ok', epoch, offset, now}
"""

# KEYS: meta, history. ARGV: since epoch ('' for none), since offset, new epoch, meta ttl.
# Returns {epoch, offset} or {epoch, offset, recovered, entries newest first}.
HISTORY = """
local m = redis.call('HMGET', KEYS[1], 'epoch', 'offset', 'ttl')
local epoch, offset, ttl = m[1], tonumber(m[2]) or 0, tonumber(m[3]) or 0
if not epoch then
  epoch = ARGV[3]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[4]), ttl))
if ARGV[1] == '' then return {epoch, offset} end
local since = tonumber(ARGV[2])
if ARGV[1] ~= epoch or since > offset then return {epoch, offset, 0} end
local missed = offset - since
if missed == 0 then return {epoch, offset, 1} end
if ttl > 0 then
  local t = redis.call('TIME')
  redis.call('XTRIM', KEYS[2], 'MINID', '=', t[1] * 1000 + math.floor(t[2] / 1000) - ttl)
end
if redis.call('XLEN', KEYS[2]) < missed then return {epoch, offset, 0} end
return {epoch, offset, 1, redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', missed)}
"""

# KEYS: presence, members. ARGV: ttl ms, then connection id, info JSON pairs.
PRESENCE_ADD = """
local t = redis.call('TIME')
local expires = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], expires, ARGV[i])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
"""

PRESENCE_REMOVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
"""

# KEYS: presence, members. Drops expired entries, returns the rest (flat id, info list).
PRESENCE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #gone > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  for i = 1, #gone, 1000 do
    redis.call('HDEL', KEYS[2], unpack(gone, i, math.min(i + 999, #gone)))
  end
end
return redis.call('HGETALL', KEYS[2])
"""


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
        return cls(**ours), urlunsplit(parts._replace(query=urlencode(theirs)))


RETRY = (redis.ConnectionError, redis.TimeoutError)  # BusyLoadingError is a ConnectionError


def new_id() -> str:
    return secrets.token_hex(4)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class _Topic:
    """A topic this process is subscribed to: the last position delivered, and state."""

    __slots__ = ("last", "ready", "resync")

    def __init__(self, ready: asyncio.Future[None]) -> None:
        self.last: Position | None = None  # None: take the next live message as it comes
        self.ready = ready  # resolved when Redis confirms the subscription
        self.resync = False  # fill the gap from history once re-subscribed


Call = Callable[[str, list[str], list[Any]], Awaitable[Any]]


class RedisPresence(PresenceStore):
    """The presence store: two keys per topic; this process's entries rewritten every
    third of ``presence_ttl`` (:meth:`refresh`, run by the broker between start and close)."""

    def __init__(
        self, call: Call, key: Callable[[str, str], str], options: Options, where: str
    ) -> None:
        self._call = call  # runs one of the broker's scripts
        self._key = key
        self._options = options
        self._where = where
        self._present: dict[str, dict[str, str]] = {}  # this process's entries
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock_of_loop: asyncio.Lock | None = None

    def _lock(self) -> asyncio.Lock:
        """Orders a removal after the refresh of the same entry (one lock per loop)."""
        loop = asyncio.get_running_loop()
        if self._lock_of_loop is None or self._loop is not loop:
            self._lock_of_loop, self._loop = asyncio.Lock(), loop
        return self._lock_of_loop

    def _keys(self, topic: str) -> list[str]:
        return [self._key(topic, "presence"), self._key(topic, "members")]

    async def add(self, topic: str, conn_id: str, info: dict[str, Any]) -> None:
        info_json = json.dumps(info, separators=(",", ":"))
        await self._write(topic, {conn_id: info_json})
        self._present.setdefault(topic, {})[conn_id] = info_json

    async def _write(self, topic: str, entries: dict[str, str]) -> None:
        args: list[Any] = [_ms(self._options.presence_ttl)]
        for conn_id, info_json in entries.items():
            args += [conn_id, info_json]
        try:
            await self._call("presence_add", self._keys(topic), args)
        except (redis.RedisError, OSError) as e:
            raise BrokerError(f"Could not write presence to Redis at {self._where}: {e}") from e

    async def remove(self, topic: str, conn_id: str) -> None:
        entries = self._present.get(topic)
        if entries is None or conn_id not in entries:
            return  # only this process adds its connections' entries: nothing in Redis
        del entries[conn_id]
        if not entries:
            del self._present[topic]
        async with self._lock():  # not interleaved with a refresh of this entry
            try:
                await self._call("presence_remove", self._keys(topic), [conn_id])
            except (redis.RedisError, OSError) as e:
                where = f"Redis at {self._where}"
                raise BrokerError(f"Could not remove presence on {where}: {e}") from e

    async def entries(self, topic: str) -> dict[str, dict[str, Any]]:
        try:
            flat = await self._call("presence", self._keys(topic), [])
        except (redis.RedisError, OSError) as e:
            raise BrokerError(f"Could not read presence from Redis at {self._where}: {e}") from e
        return {flat[i]: json.loads(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def refresh(self) -> None:
        """Rewrite this process's entries every third of their TTL, so they outlive it only
        by the TTL. Errors are logged and retried at the next round; it never stops."""
        failing = False
        while True:
            await asyncio.sleep(self._options.presence_ttl / 3)
            try:
                for topic in list(self._present):
                    async with self._lock():
                        entries = self._present.get(topic)
                        if entries:
                            await self._write(topic, dict(entries))
                if failing:
                    logger.warning("presence refresh works again")
                failing = False
            except Exception as e:
                if not failing:
                    logger.warning("presence refresh failed (retrying): %s", e)
                failing = True


class RedisBroker(Broker):
    presence: RedisPresence

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.options, self._redis_url = Options.split_url(url)
        opts = self.options
        parts = urlsplit(self._redis_url)
        self._db = int(dict(parse_qsl(parts.query)).get("db") or parts.path.strip("/") or 0)
        self._channel_prefix = f"{opts.prefix}:{self._db}:{{"
        self._backoff = EqualJitterBackoff(cap=2.0, base=0.05)
        kwargs = self._pool_kwargs()
        self._timeout = float(kwargs["socket_timeout"])
        # A receipt outlives any attempt whose reply a publisher may still read.
        connect = float(kwargs["socket_connect_timeout"])
        self._receipt_ms = _ms(opts.publish_timeout + connect + self._timeout + 2)
        self._sync = redis.Redis(
            connection_pool=redis.BlockingConnectionPool.from_url(
                self._redis_url,
                retry=Retry(NoBackoff(), 0),  # retried here, within the deadline
                timeout=self._timeout,  # to wait for a free connection
                **kwargs,
            )
        )
        self._publish_sync = self._sync.register_script(PUBLISH)
        self._where = self._describe()
        # Asyncio state: bound to the loop that uses it (see _aio()).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._aio_client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._slots: asyncio.Semaphore | None = None
        # Delivery, owned by the broker's loop.
        self._deliver: Deliver | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._topics: dict[str, _Topic] = {}
        self._pubsub: PubSub | None = None
        self._inflight: dict[str, int] = {}  # SUBSCRIBEs sent on this connection, unconfirmed
        self.presence = RedisPresence(self._call, self._key, opts, self._where)
        # Health.
        self._connected = False
        self._reconnects = 0
        self._last_error: str | None = None
        self._changed = time.time()

    def _pool_kwargs(self) -> dict[str, Any]:
        given = dict(parse_qsl(urlsplit(self._redis_url).query))
        return {
            "decode_responses": True,
            "socket_timeout": float(given.get("socket_timeout", 3.0)),
            "socket_connect_timeout": float(given.get("socket_connect_timeout", 3.0)),
            "max_connections": self.options.max_connections,
        }

    def _describe(self) -> str:
        kw = self._sync.connection_pool.connection_kwargs
        return f"{kw.get('host', kw.get('path', '?'))}:{kw.get('port', '')}/{self._db}"

    # -- naming -----------------------------------------------------------------------
    def _key(self, topic: str, name: str) -> str:
        return f"{self.options.prefix}:{{{topic}}}:{name}"

    def _channel(self, topic: str) -> str:
        return f"{self._channel_prefix}{topic}}}"

    # -- publishing -------------------------------------------------------------------
    def _publish_args(
        self, topic: str, event: str, data_json: str, history: HistoryPolicy, formats: str | None
    ) -> tuple[list[str], list[Any]]:
        receipt = self._key(topic, f"r:{secrets.token_hex(8)}")
        keys = [self._key(topic, "meta"), self._key(topic, "history"), receipt]
        enabled = history.enabled
        args = [
            self._channel(topic),
            event,
            data_json,
            formats or "",
            -1 if formats is None else len(formats),
            history.size if enabled else 0,
            _ms(history.ttl) if enabled else 0,
            _ms(self.options.meta_ttl),
            int((time.time() + self.options.publish_timeout) * 1000),
            new_id(),
            self._receipt_ms,
        ]
        return keys, args

    def publish(
        self,
        topic: str,
        event: str,
        data_json: str,
        history: HistoryPolicy,
        formats_json: str | None = None,
    ) -> Position:
        keys, args = self._publish_args(topic, event, data_json, history, formats_json)
        give_up = time.monotonic() + self.options.publish_timeout
        failures = 0
        while True:
            try:
                reply = self._publish_sync(keys=keys, args=args)
            except RETRY as e:
                failures += 1
                pause = self._backoff.compute(failures)
                if failures > self.options.retries or time.monotonic() + pause > give_up:
                    raise BrokerError(self._unpublished(topic, e)) from e
                time.sleep(pause)
            except (redis.RedisError, OSError, UnicodeError) as e:
                raise BrokerError(self._unpublished(topic, e)) from e
            else:
                return self._published(topic, reply)

    async def apublish(
        self,
        topic: str,
        event: str,
        data_json: str,
        history: HistoryPolicy,
        formats_json: str | None = None,
    ) -> Position:
        keys, args = self._publish_args(topic, event, data_json, history, formats_json)
        try:
            reply = await self._call("publish", keys, args)
        except (redis.RedisError, OSError, UnicodeError) as e:
            raise BrokerError(self._unpublished(topic, e)) from e
        return self._published(topic, reply)

    async def _call(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run one of the scripts; retry a broken connection until ``publish_timeout``
        (every script may safely run twice), then raise what redis-py raised."""
        self._aio()
        assert self._slots is not None
        give_up = time.monotonic() + self.options.publish_timeout
        try:
            await asyncio.wait_for(self._slots.acquire(), self.options.publish_timeout)
        except TimeoutError:
            n = self.options.max_connections
            raise redis.ConnectionError(f"all {n} connections busy for too long") from None
        try:
            failures = 0
            while True:
                try:
                    return await self._scripts[script](keys=keys, args=args)
                except RETRY:
                    failures += 1
                    pause = self._backoff.compute(failures)
                    if failures > self.options.retries or time.monotonic() + pause > give_up:
                        raise
                    await asyncio.sleep(pause)
        finally:
            self._slots.release()

    def _unpublished(self, topic: str, error: BaseException) -> str:
        return (
            f"Could not publish to {topic!r} on Redis at {self._where}: {error}. It was not "
            "published, unless Redis took it just as the connection failed."
        )

    def _published(self, topic: str, reply: list[Any]) -> Position:
        if reply[0] == "ok":
            return Position(reply[1], int(reply[2]))
        if reply[0] == "again":
            epoch, offset, _ = reply[1].split(" ")
            return Position(epoch, int(offset))
        skew = int(reply[1]) / 1000 - time.time()
        raise BrokerError(
            f"Redis at {self._where} refused the publish to {topic!r}: it arrived after its "
            f"{self.options.publish_timeout}s deadline, so it was not published. "
            + (
                f"Redis's clock is {skew:+.1f}s from this machine's: synchronize them."
                if abs(skew) > 1
                else "Redis was slow or unreachable."
            )
        )

    # -- history ------------------------------------------------------------------------
    async def history(self, topic: str, since: Position | None) -> HistoryResult:
        args = ["", 0] if since is None else [since.epoch, since.offset]
        try:
            reply = await self._call(
                "history",
                [self._key(topic, "meta"), self._key(topic, "history")],
                [*args, new_id(), _ms(self.options.meta_ttl)],
            )
        except (redis.RedisError, OSError) as e:
            where = f"Redis at {self._where}"
            raise BrokerError(f"Could not read {topic!r}'s history from {where}: {e}") from e
        position = Position(reply[0], int(reply[1]))
        if since is None:
            return HistoryResult(position, recovered=True)
        if not reply[2]:
            return HistoryResult(position, recovered=False)
        if len(reply) < 4:
            return HistoryResult(position, recovered=True)
        messages = tuple(self._entry(topic, entry, position.epoch) for entry in reversed(reply[3]))
        expected = range(since.offset + 1, position.offset + 1)
        if [m.position.offset for m in messages] != list(expected):
            logger.error("%r: history is not contiguous after %s; not replaying it", topic, since)
            return HistoryResult(position, recovered=False)
        return HistoryResult(position, recovered=True, messages=messages)

    @staticmethod
    def _entry(topic: str, entry: list[Any], epoch: str) -> Message:
        entry_id, fields = entry
        f = dict(zip(fields[::2], fields[1::2], strict=True))
        ms = int(entry_id.partition("-")[0])
        return Message(topic, f["e"], f["d"], Position(epoch, int(f["o"])), ms / 1000, f.get("f"))

    # -- asyncio clients ------------------------------------------------------------------
    def _aio(self) -> aioredis.Redis:
        """The asyncio client of the running loop (made anew when the loop changes)."""
        loop = asyncio.get_running_loop()
        client = self._aio_client
        if client is None or self._loop is not loop:
            client = self._aio_client = aioredis.Redis(
                connection_pool=aioredis.ConnectionPool.from_url(
                    self._redis_url, retry=AsyncRetry(NoBackoff(), 0), **self._pool_kwargs()
                )
            )
            self._loop = loop
            # Callers queue here in turn (FIFO), not in the pool, where some could starve.
            self._slots = asyncio.Semaphore(self.options.max_connections)
            self._scripts = {
                name: client.register_script(source)
                for name, source in [
                    ("publish", PUBLISH),
                    ("history", HISTORY),
                    ("presence_add", PRESENCE_ADD),
                    ("presence_remove", PRESENCE_REMOVE),
                    ("presence", PRESENCE),
                ]
            }
        return client

    # -- delivery ------------------------------------------------------------------------
    async def start(self, deliver: Deliver) -> None:
        self._aio()
        self._deliver = deliver
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._listen_forever(), name="tidings-redis-pubsub"),
                loop.create_task(self.presence.refresh(), name="tidings-redis-presence"),
            ]
            for task in self._tasks:
                task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """Both tasks run until close(): say so loudly if one ends any other way."""
        if task in self._tasks:
            self._connected = False
            error = None if task.cancelled() else task.exception()
            logger.critical("%s ended (%r): this process no longer gets messages from Redis",
                            task.get_name(), error)  # fmt: skip

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sub in self._topics.values():
            if not sub.ready.done():
                sub.ready.set_result(None)
        self._topics.clear()
        self._deliver = None
        client, self._aio_client = self._aio_client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose(close_connection_pool=True)
        self._sync.connection_pool.disconnect()

    def health(self) -> dict[str, Any]:
        """Whether the pub/sub connection is up, how often it came back, the last error."""
        return {
            "connected": self._connected,
            "reconnects": self._reconnects,
            "last_error": self._last_error,
            "since": self._changed,
            "topics": len(self._topics),
            "redis": self._where,
        }

    async def subscribe(self, topic: str) -> None:
        if not self._tasks:
            raise BrokerError("The Redis broker is not started: call start() first.")
        sub = self._topics.get(topic)
        if sub is None:
            sub = self._topics[topic] = _Topic(asyncio.get_running_loop().create_future())
            if self._pubsub is not None:
                await self._send_subscribe(self._pubsub, [topic])
        try:
            await asyncio.wait_for(asyncio.shield(sub.ready), self._timeout + 2)
            position = (await self.history(topic, None)).position
        except BaseException as e:
            if self._topics.get(topic) is sub:
                await self.unsubscribe(topic)
            if isinstance(e, TimeoutError):
                raise BrokerError(
                    f"Redis at {self._where} did not confirm the subscription to {topic!r} "
                    f"(last error: {self._last_error})"
                ) from None
            raise
        if sub.last is None and self._topics.get(topic) is sub:
            sub.last = position

    async def unsubscribe(self, topic: str) -> None:
        sub = self._topics.pop(topic, None)
        if sub is None:
            return
        if not sub.ready.done():
            sub.ready.set_result(None)
        pubsub = self._pubsub
        if pubsub is not None:
            try:
                await pubsub.unsubscribe(self._channel(topic))
            except Exception as e:  # the connection broke: the listener reconnects
                logger.debug("unsubscribe %r: %s (the listener reconnects)", topic, e)

    async def _send_subscribe(self, pubsub: PubSub, topics: list[str]) -> None:
        """SUBSCRIBE ``topics``; confirmations come back through the listener."""
        for topic in topics:
            self._inflight[topic] = self._inflight.get(topic, 0) + 1
        try:
            await pubsub.subscribe(*(self._channel(t) for t in topics))
        except Exception as e:  # the connection broke: the listener reconnects
            logger.debug("subscribe %s: %s (the listener reconnects)", topics[:3], e)

    async def _listen_forever(self) -> None:
        """Supervise the pub/sub connection: connect, subscribe, listen; on failure, again."""
        pool = aioredis.ConnectionPool.from_url(
            self._redis_url,
            # No retries inside redis-py: a failure must surface here, to re-subscribe
            # and fill the gap from history.
            retry=AsyncRetry(NoBackoff(), 0, supported_errors=()),
            **{**self._pool_kwargs(), "max_connections": 2},
        )
        client = aioredis.Redis(connection_pool=pool)
        failures = 0
        warned = 0.0
        up_since: float | None = None
        try:
            while True:
                pubsub = client.pubsub()
                try:
                    await pubsub.subscribe(f"{self._channel_prefix}~{new_id()}}}")
                    up_since = time.monotonic()
                    topics = self._up(pubsub)
                    if topics:
                        await self._send_subscribe(pubsub, topics)
                    await self._listen(pubsub)
                except Exception as e:
                    # Back off from scratch only after a connection that held for a while.
                    held = up_since is not None and time.monotonic() - up_since > 10
                    failures = 1 if held else failures + 1
                    up_since = None
                    if self._connected or time.monotonic() - warned > 30:
                        warned = time.monotonic()
                        self._down(e, failures)
                    else:
                        logger.debug("Redis pub/sub: attempt %d failed: %s", failures, e)
                    self._last_error = f"{type(e).__name__}: {e}"
                finally:
                    self._pubsub = None
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                await asyncio.sleep(self._backoff.compute(failures))
        finally:
            self._connected = False
            await client.aclose(close_connection_pool=True)

    def _up(self, pubsub: PubSub) -> list[str]:
        """Connected: return the topics to subscribe again (gaps are filled as they confirm)."""
        if self._reconnects or self._last_error is not None:
            logger.warning(
                "Redis pub/sub at %s: connected again after %.1fs; re-subscribing %d topic(s)",
                self._where, time.time() - self._changed, len(self._topics),
            )  # fmt: skip
        else:
            logger.info("Redis pub/sub at %s: connected", self._where)
        self._connected = True
        self._changed = time.time()
        self._inflight.clear()
        self._pubsub = pubsub
        topics = list(self._topics)
        for topic in topics:
            sub = self._topics[topic]
            sub.resync = sub.last is not None
        return topics

    def _down(self, error: BaseException, failures: int) -> None:
        if self._connected:
            self._reconnects += 1
            self._changed = time.time()
        self._connected = False
        if isinstance(error, (redis.RedisError, OSError, BrokerError)):
            logger.warning(
                "Redis pub/sub at %s: %s: %s; reconnecting (attempt %d)",
                self._where, type(error).__name__, error, failures,
            )  # fmt: skip
        else:
            logger.exception("Redis pub/sub at %s failed; reconnecting", self._where)

    async def _listen(self, pubsub: PubSub) -> None:
        """Read the connection until it fails; PING when it is quiet, give up when mute."""
        pinged = False
        keepalive = self.options.keepalive
        while True:
            msg = await pubsub.get_message(timeout=keepalive)
            if msg is None:
                if pinged:
                    raise redis.ConnectionError(f"no reply to PING within {keepalive}s")
                pinged = True
                await pubsub.ping()
                continue
            pinged = False
            kind = msg["type"]
            if kind == "message":
                await self._on_message(msg["channel"], msg["data"])
            elif kind == "subscribe":
                await self._on_subscribed(msg["channel"])

    def _topic_of(self, channel: str) -> str:
        return channel[len(self._channel_prefix) : -1]

    async def _on_subscribed(self, channel: str) -> None:
        topic = self._topic_of(channel)
        left = self._inflight.pop(topic, 1) - 1
        if left > 0:
            self._inflight[topic] = left
            return  # a later SUBSCRIBE of the same topic is still on its way
        sub = self._topics.get(topic)
        if sub is None:
            return
        if not sub.ready.done():
            sub.ready.set_result(None)
        if sub.resync and sub.last is not None:
            sub.resync = False
            await self._fill(topic, sub, sub.last, None)

    async def _on_message(self, channel: str, payload: str) -> None:
        topic = self._topic_of(channel)
        sub = self._topics.get(topic)
        if sub is None:
            return
        try:
            head, _, rest = payload.partition("\n")
            epoch, offset, ms, event, flen = head.split(" ")
            n = int(flen)
            formats, data = (None, rest) if n < 0 else (rest[:n], rest[n:])
            position = Position(epoch, int(offset))
        except ValueError:
            logger.error("ignoring a message on %s that no tidings broker sent", channel)
            return
        message = Message(topic, event, data, position, int(ms) / 1000, formats)
        gap = self._take(topic, sub, message)
        if gap is not None:
            await self._fill(topic, sub, gap, message)

    def _take(self, topic: str, sub: _Topic, message: Message) -> Position | None:
        """Deliver ``message`` if it is the next one; when offsets were skipped, return
        the position to fill from instead. Already delivered messages are dropped."""
        position, last = message.position, sub.last
        if last is not None and position.epoch != last.epoch:
            logger.warning(
                "%r: new epoch %s after %s: its history was lost (Redis flushed, restarted "
                "empty, or idle past meta_ttl)", topic, position.epoch, last,
            )  # fmt: skip
            last = sub.last = Position(position.epoch, 0)
        if last is None or position.offset == last.offset + 1:
            sub.last = position
            deliver = self._deliver
            if deliver is not None:
                try:
                    deliver(message)
                except Exception:
                    logger.exception("delivering %r failed", message)
            return None
        if position.offset <= last.offset:
            return None
        return last

    async def _fill(
        self, topic: str, sub: _Topic, since: Position, trigger: Message | None
    ) -> None:
        """Deliver what came after ``since`` from history (after a reconnect or a skip)."""
        result = await self.history(topic, since)
        if self._topics.get(topic) is not sub:
            return
        if result.recovered:
            for message in result.messages:
                self._take(topic, sub, message)
            if result.messages:
                logger.info("%r: %d message(s) after %s delivered from history",
                            topic, len(result.messages), since)  # fmt: skip
            return
        logger.warning(
            "%r: messages after %s cannot be recovered (now at %s: epoch changed or history "
            "window exceeded); clients resuming with since get recovered=false",
            topic, since, result.position,
        )  # fmt: skip
        sub.last = None
        if trigger is not None:
            self._take(topic, sub, trigger)
