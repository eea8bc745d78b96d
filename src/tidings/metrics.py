"""Prometheus metrics of a tidings process, served at ``GET /realtime/metrics``.

Counting must not slow the fan-out, so nothing here runs per delivery. What changes
often is counted where the code already loops once per message or keeps a figure:

- deliveries: the hub adds, per message, how many subscribers of each transport the
  topic has (:attr:`tidings.server.hub.Hub.delivered`), a plain dict;
- connections and subscriptions: read from the node's open clients when sampled;
- the broker: its ``health()`` (``connected``, ``reconnects``) when sampled.

What happens once per publish (its count, how long the broker took, the lag of its
fan-out, taken on the loop turn after it, when the frames queued in that turn have
been written too) is tallied in plain ints (:class:`Tally`); :func:`sample` copies
all of it into the Prometheus families before each scrape. What is rarer (a refusal,
a resume, a slow consumer cut) goes to prometheus_client at once, through
:func:`output` and :func:`dropped`.

Several worker processes: with ``PROMETHEUS_MULTIPROC_DIR`` set (an empty directory,
before the server starts), prometheus_client keeps every process's values in files
there and a scrape, answered by any one worker, sums them. Each worker then samples
its own figures every :data:`SAMPLE_EVERY` seconds (a node service), so the others'
connections and deliveries are at most that old. docs/operations.md says how to set
it up, and lists the families.

Everything is off when prometheus_client is not installed (the ``metrics`` extra) or
``TIDINGS["METRICS"]`` is false: the hooks then cost one ``is None`` test.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import re
import threading
import time
from typing import TYPE_CHECKING, Any

from tidings.core.protocol import CLOSE_SERVICE_RESTART, CLOSE_TOO_MANY, CLOSE_TRY_AGAIN

if TYPE_CHECKING:
    from tidings.server.node import Node

SAMPLE_EVERY = 2.0  # seconds, with several processes: how stale another's gauges may be
PUBLISH_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5)  # fmt: skip
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
               5.0, 10.0)  # fmt: skip


def multiprocess_dir() -> str | None:
    """Where prometheus_client's multiprocess mode keeps every process's values."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Families:
    """The metric families, made once per process (prometheus_client registers them)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.connections = Gauge(
            "tidings_connections",
            "Open client connections, by transport.",
            ["transport"],
            multiprocess_mode="livesum",
        )
        self.subscriptions = Gauge(
            "tidings_subscriptions",
            "Topics subscribed to by the open connections.",
            multiprocess_mode="livesum",
        )
        self.publishes = Counter(
            "tidings_publishes", "Messages published, by who asked: server code or a client.",
            ["source"],
        )  # fmt: skip
        self.deliveries = Counter(
            "tidings_deliveries", "Messages handed to local subscribers, by transport.",
            ["transport"],
        )  # fmt: skip
        self.dropped = Counter(
            "tidings_dropped",
            "Requests refused and messages dropped, by reason (an error code, slow_consumer).",
            ["reason"],
        )
        self.resumes = Counter(
            "tidings_resumes", "Subscribes with a position to resume from, by whether the "
            "history still held it.", ["recovered"],
        )  # fmt: skip
        self.broker_up = Gauge(
            "tidings_broker_up",
            "1 while the broker is connected (with several processes: the least of them).",
            multiprocess_mode="livemin",
        )
        self.broker_reconnects = Counter(
            "tidings_broker_reconnects", "Times the broker's connection was lost and made again."
        )
        self.publish_seconds = Histogram(
            "tidings_publish_seconds", "Time the broker took to take a publish.",
            buckets=PUBLISH_BUCKETS,
        )  # fmt: skip
        self.delivery_lag = Histogram(
            "tidings_delivery_lag_seconds",
            "From a message's publish (the broker's clock) to its fan-out's socket writes.",
            buckets=LAG_BUCKETS,
        )
        # the labels a dashboard expects are there from the start, at 0
        for transport in ("websocket", "sse", "longpoll"):
            self.connections.labels(transport)
            self.deliveries.labels(transport)
        for source in ("server", "client"):
            self.publishes.labels(source)
        for reason in ("slow_consumer", "rate_limited", "too_large", "forbidden"):
            self.dropped.labels(reason)
        for recovered in ("true", "false"):
            self.resumes.labels(recovered)


_families: Families | None = None
_available: bool | None = None
# what was last copied into the counters, per source of figures (hub, broker)
_copied: dict[str, tuple[int, dict[str, int]]] = {}


def available() -> bool:
    """Whether prometheus_client is installed."""
    global _available
    if _available is None:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            _available = False
        else:
            _available = True
    return _available


def attach(node: Node) -> bool:
    """Count ``node``'s traffic (``TIDINGS["METRICS"]`` is on); ``False`` when
    prometheus_client is missing. Several processes: sample it periodically too."""
    global _families
    if not available():
        return False
    if _families is None:
        _families = Families()
    node.hub.dispatched = _dispatched
    if multiprocess_dir() is not None:
        node.services["metrics"] = Sampler(node)
    return True


def families() -> Families | None:
    return _families


# -- hooks: once per publish, per request, per message -------------------------------
class Tally:
    """A histogram's observations kept in plain ints until :meth:`flush` adds them to
    the Prometheus histogram: ``observe`` costs a bisect, not two locked writes."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def flush(self, histogram: Any) -> None:
        """Add what was observed to ``histogram`` (of the same buckets), and start over.
        (prometheus_client has no public call to add counts to a bucket.)"""
        counts, total = self.counts, self.total
        if not any(counts):
            return
        self.counts, self.total = [0] * len(counts), 0.0
        for bucket, n in zip(histogram._buckets, counts, strict=True):
            if n:
                bucket.inc(n)
        histogram._sum.inc(total)


_publishes: dict[str, int] = {}  # by source, since the last sample
_publish_time = Tally(PUBLISH_BUCKETS)
_publish_lock = threading.Lock()  # sync publish() is called from any thread
_lag = Tally(LAG_BUCKETS)


def published(source: str, seconds: float) -> None:
    """A publish the broker took in ``seconds``; ``source``: ``server`` or ``client``."""
    if _families is not None:
        with _publish_lock:
            _publishes[source] = _publishes.get(source, 0) + 1
            _publish_time.observe(seconds)


def dropped(reason: str) -> None:
    f = _families
    if f is not None:
        f.dropped.labels(reason).inc()


REFUSED = {  # a connection refused at once (Node.refusal), by its close code
    CLOSE_TOO_MANY: "too_many_connections",  # MAX_CONNECTIONS_PER_USER
    CLOSE_TRY_AGAIN: "connect_rate",  # CONNECT_RATE: a storm admitted at a bounded rate
    CLOSE_SERVICE_RESTART: "shutting_down",
}


def refused(code: int) -> None:
    """A new connection was closed at once with ``code``."""
    dropped(REFUSED.get(code, str(code)))


def output(item: Any) -> None:
    """What a subscriber queues besides live messages: refusals and resumes count."""
    f = _families
    if f is None:
        return
    code = getattr(item, "code", None)
    if isinstance(code, str):  # an Error output
        f.dropped.labels(code).inc()
        return
    recovered = getattr(item, "recovered", None)
    if isinstance(recovered, bool):  # a Joined output, of a subscribe with `since`
        f.resumes.labels("true" if recovered else "false").inc()


_lags: list[float] = []  # the publish times of this turn's fan-outs


def _dispatched(timestamp: float) -> None:
    """A message was fanned out: its lag is taken on the next turn, after the flush
    (one callback per turn, however many messages)."""
    if not _lags:
        try:
            asyncio.get_running_loop().call_soon(_observe_lags)
        except RuntimeError:
            return
    _lags.append(timestamp)


def _observe_lags() -> None:
    now = time.time()
    for timestamp in _lags:
        _lag.observe(max(0.0, now - timestamp))
    _lags.clear()


# -- sampling: the figures the code keeps anyway -------------------------------------
def sample(node: Node) -> None:
    """Copy ``node``'s figures into the families: open connections and subscriptions,
    deliveries so far, the broker's state."""
    f = _families
    if f is None:
        return
    by_transport: dict[str, int] = {}
    subscriptions = 0
    for client in node.clients:
        transport = getattr(client, "transport", "?")
        by_transport[transport] = by_transport.get(transport, 0) + 1
        session = getattr(client, "session", None)
        if session is not None:
            subscriptions += len(session.topics)
    for transport in _seen_transports | set(by_transport):
        f.connections.labels(transport).set(by_transport.get(transport, 0))
    _seen_transports.update(by_transport)
    f.subscriptions.set(subscriptions)
    with _publish_lock:
        for source in list(_publishes):
            f.publishes.labels(source).inc(_publishes.pop(source))
        _publish_time.flush(f.publish_seconds)
    _lag.flush(f.delivery_lag)
    for transport, n in _news("deliveries", node.hub, node.hub.delivered).items():
        f.deliveries.labels(transport).inc(n)
    health = node.broker.health()
    f.broker_up.set(1 if health.get("connected") else 0)
    reconnects = health.get("reconnects")
    if isinstance(reconnects, int):
        more = _news("reconnects", node.broker, {"": reconnects}).get("", 0)
        if more:
            f.broker_reconnects.inc(more)


_seen_transports: set[str] = set()  # a transport's gauge goes back to 0, not away


def _news(name: str, owner: object, totals: dict[str, int]) -> dict[str, int]:
    """How much each of ``totals`` (kept by ``owner``, counted from its start) grew since
    last asked; a new owner (a node rebuilt for other settings) counts from zero."""
    last_owner, last = _copied.get(name, (0, {}))
    if last_owner != id(owner):
        last = {}
    news = {key: n - last.get(key, 0) for key, n in totals.items() if n > last.get(key, 0)}
    _copied[name] = (id(owner), dict(totals))
    return news


class Sampler:
    """A node service, with several processes: samples this one every few seconds, so
    a scrape answered by another process sees fresh figures of this one."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._task: asyncio.Task[None] | None = None
        self.sampled = 0.0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def health(self) -> dict[str, Any]:
        return {"connected": True, "sampled": self.sampled}

    async def _run(self) -> None:
        while True:
            try:
                sample(self.node)
                self.sampled = time.time()
            except Exception:  # a figure it cannot read must not end the sampling
                import logging

                logging.getLogger("tidings.metrics").exception("sampling failed")
            await asyncio.sleep(SAMPLE_EVERY)


# -- the scrape ------------------------------------------------------------------------
_LIVE_FILE = re.compile(r"^gauge_live\w*?_(\d+)\.db$")


def render(node: Node) -> tuple[bytes, str]:
    """The text exposition of every family (summed over processes in multiprocess
    mode), and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    sample(node)
    path = multiprocess_dir()
    if path is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    from prometheus_client import CollectorRegistry, multiprocess

    _forget_dead(path, multiprocess)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _forget_dead(path: str, multiprocess: Any) -> None:
    """Drop the live gauges of worker processes that are gone (a restarted worker must
    not count its predecessor's connections); their counters stay, as counters do."""
    for pid in {int(m.group(1)) for m in map(_LIVE_FILE.match, os.listdir(path)) if m}:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, path)
        except PermissionError:
            pass  # alive, someone else's
