"""OpenTelemetry spans from publish to delivery, when ``opentelemetry-api`` is installed
(``pip install "tidings[otel]"``) and ``TIDINGS["TRACING"]`` is on (the default).

- ``tidings publish <topic>`` (kind PRODUCER): one publish's broker call, in the trace
  of whatever made it (your view's request span, a task). Attributes:
  ``messaging.system`` = ``tidings``, ``messaging.destination.name`` (the topic),
  ``messaging.operation.type`` = ``send``, ``tidings.event``, ``tidings.source``
  (``server``: your code; ``client``: a client's publish), ``tidings.position``.
- ``tidings deliver <topic>`` (kind CONSUMER): a message handed to this process's
  subscribers of its topic, once per message and process, with
  ``tidings.subscribers`` and ``tidings.position``. When the publish was made in this
  process, the span is its child (the memory broker delivers within the publish) or
  links to it (Redis, PostgreSQL: the listener delivers later); from another process,
  the position (the same on both spans) ties them together, as the broker carries no
  trace context.

Configure the SDK (a ``TracerProvider`` with an exporter) as for any Python service,
before tidings serves its first request; tidings only asks ``opentelemetry.trace`` for
its tracer. Without the package, without a configured SDK, or with ``TRACING`` off,
nothing here runs: the node checks :func:`enabled` once and skips it all.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tidings.core.messages import Message, Position

try:
    from opentelemetry import trace

    ON = True
except ImportError:  # the optional dependency is not installed
    ON = False
RECENT = 1024  # publishes of this process whose span a delivery can link to
# (topic, data) of this process's last publishes -> each one's span context
_recent: OrderedDict[tuple[str, str], Any] = OrderedDict()


def enabled() -> bool:
    """Is there something to trace to: the package, and an SDK configured (a tracer
    provider set: ``opentelemetry-instrument``, or your settings / ``AppConfig.ready``)?
    Without one every span would be a no-op that still costs a few microseconds."""
    return ON and not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _tracer() -> Any:
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("tidings")
    except PackageNotFoundError:
        release = None
    return trace.get_tracer("tidings", release)


@contextmanager
def publishing(topic: str, event: str, data_json: str, source: str) -> Iterator[Any]:
    """A span around one publish's broker call; tell it the position with
    :func:`published`."""
    attributes = {
        "messaging.system": "tidings",
        "messaging.destination.name": topic,
        "messaging.operation.type": "send",
        "tidings.event": event,
        "tidings.source": source,
    }
    with _tracer().start_as_current_span(
        f"tidings publish {topic}", kind=trace.SpanKind.PRODUCER, attributes=attributes
    ) as span:
        context = span.get_span_context()
        if context.is_valid:  # known before the broker answers: a delivery may come first
            _recent[(topic, data_json)] = context
            if len(_recent) > RECENT:
                _recent.popitem(last=False)
        yield span


def published(span: Any, position: Position) -> None:
    """The publish of ``span`` stands at ``position``."""
    span.set_attribute("tidings.position", str(position))


@contextmanager
def delivering(message: Message, subscribers: int) -> Iterator[None]:
    """A span around handing ``message`` to this process's ``subscribers``."""
    position = str(message.position)
    publish = _recent.get((message.topic, message.data_json))
    links = [trace.Link(publish)] if publish is not None else None
    attributes = {
        "messaging.system": "tidings",
        "messaging.destination.name": message.topic,
        "messaging.operation.type": "process",
        "tidings.event": message.event,
        "tidings.position": position,
        "tidings.subscribers": subscribers,
    }
    with _tracer().start_as_current_span(
        f"tidings deliver {message.topic}",
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
        links=links,
    ):
        yield
