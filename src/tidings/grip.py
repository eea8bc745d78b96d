"""Running behind Pushpin (GRIP): the same views, the proxy holds the connections.

With ``TIDINGS["GRIP"]`` set, a request that came through the proxy (its ``Grip-Sig``
verifies against the proxy's key) is answered with GRIP instructions instead of being
held in this process:

- :func:`tidings.hold_stream` answers with a ``Grip-Link`` to tidings' own
  ``PATH + "grip/stream"``, which Pushpin follows at once: that answer replays what the
  client missed, then ``Grip-Hold: stream`` on the topic's channel, ``prev-id`` = its
  position, ``Grip-Keep-Alive`` and a new next link (for recovery).
- :func:`tidings.hold_longpoll` answers at once from history, or ``Grip-Hold: response``
  with ``prev-id``, ``Grip-Timeout`` and the timeout response (a 304 travels as
  ``Grip-Status``).
- :func:`tidings.hold_websocket` answers a WebSocket-over-HTTP request: ``OPEN`` and a
  ``subscribe`` control message per topic.
- ``/realtime/sse`` and ``/realtime/poll`` answer with their usual bodies plus hold
  instructions on the protocol channels; ``/realtime/ws`` speaks the tidings protocol
  over WebSocket-over-HTTP (:func:`ws_over_http_view`).

Every publish (``Node.publish``/``apublish``) is also sent to each proxy's control
endpoint as two items, each with ``id`` = the position and ``prev-id`` = the one before:

- channel ``<topic>``: the holds' formats (``http-response``, ``http-stream``,
  ``ws-message``), the same as the in-process holds send (:mod:`tidings.formats`);
- channel ``tidings.t.<topic>``: the endpoints' formats: the protocol's message frame
  for WebSockets, and a ``hint`` for SSE and long-poll, so Pushpin asks tidings for
  exactly what each client is missing (cursors differ per client).

Pushpin notices a missed publish by its ``prev-id`` and recovers through the next link
(streams, with ``Grip-Last``) or by retrying the request (long-polls), both answered
from tidings' history. Channel names are topics with ``=`` written ``%3D`` (a Pushpin
header parameter separator); no other topic character needs mapping.

The wire format uses gripcontrol (formats, items, WebSocket events, control messages)
and pubcontrol (the publishing client: one background thread per process, in order).
``Grip-Sig`` is verified with PyJWT directly, HS256 only, ``exp`` required.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import struct
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from tidings.conf import GripProxy, Settings
from tidings.core.messages import Message, Position
from tidings.core.topics import RESERVED
from tidings.formats import http_response, stream_chunk, ws_text

if TYPE_CHECKING:
    from tidings.server.node import Node

logger = logging.getLogger("tidings.grip")

PROTOCOL_PREFIX = "tidings.t."  # the endpoints' channels (tidings.* topics are reserved)
WS_EVENTS = "application/websocket-events"
_SALT = "tidings.grip"
_LINK_MAX_AGE = 24 * 3600  # a next link is good for a day (Pushpin keeps it to itself)
_LEEWAY = 5  # seconds of clock skew allowed on Grip-Sig's exp


def _gc() -> Any:
    """gripcontrol (the ``grip`` extra), imported when GRIP is used."""
    import gripcontrol  # type: ignore[import-untyped]

    return gripcontrol


def _pc() -> Any:
    import pubcontrol  # type: ignore[import-untyped]

    return pubcontrol


# -- channels -------------------------------------------------------------------------
def channel(topic: str) -> str:
    """The GRIP channel of a topic's holds."""
    return topic.replace("=", "%3D")


def protocol_channel(topic: str) -> str:
    """The GRIP channel of a topic on tidings' own endpoints."""
    return PROTOCOL_PREFIX + channel(topic)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def channel_header(channels: dict[str, Position | None]) -> str:
    """``Grip-Channel``: each channel with its ``prev-id`` (quoted: positions hold ':')."""
    return ", ".join(
        name if prev is None else f"{name}; prev-id={_quote(str(prev))}"
        for name, prev in channels.items()
    )


def previous(position: Position) -> Position:
    return Position(position.epoch, max(position.offset - 1, 0))


def _cstring(text: str) -> str:
    out = []
    for c in text:
        if c == "\\":
            out.append("\\\\")
        elif c == "\r":
            out.append("\\r")
        elif c == "\n":
            out.append("\\n")
        elif ord(c) < 0x20:
            raise ValueError("not cstring encodable")
        else:
            out.append(c)
    return "".join(out)


def keep_alive_header(data: str, timeout: float) -> str:
    return f"{_cstring(data)}; format=cstring; timeout={max(1, math.ceil(timeout))}"


# -- is this request from the proxy? ----------------------------------------------------
def enabled(settings: Settings) -> bool:
    return bool(settings.grip)


def verify_sig(token: str, proxies: Sequence[GripProxy]) -> bool:
    """Does ``token`` (a ``Grip-Sig``) verify against one of ``proxies``' keys?

    HS256 only (the algorithm is pinned: a token naming another one fails), ``exp``
    required and checked, ``iss`` checked where the proxy's ``ISS`` is set.
    """
    import jwt

    for proxy in proxies:
        try:
            jwt.decode(
                token,
                proxy.key,
                algorithms=["HS256"],
                options={"require": ["exp"], "verify_iss": proxy.iss is not None},
                issuer=proxy.iss,
                leeway=_LEEWAY,
            )
        except jwt.PyJWTError:
            continue
        return True
    return False


def proxied(request: HttpRequest, settings: Settings | None = None) -> bool:
    """Did ``request`` come through a configured GRIP proxy (a valid ``Grip-Sig``)?

    ``False`` when GRIP is off. Proxy-only headers (``Grip-Last``, ``Meta-*``,
    ``Connection-Id``) mean something only when this is true.
    """
    cached = getattr(request, "_tidings_grip", None)
    if cached is not None:
        return bool(cached)
    if settings is None:
        from tidings.conf import get_settings

        settings = get_settings()
    token = request.headers.get("Grip-Sig")
    ok = bool(settings.grip) and bool(token) and verify_sig(str(token), settings.grip)
    request._tidings_grip = ok  # type: ignore[attr-defined]
    return ok


def grip_last(request: HttpRequest) -> dict[str, str]:
    """``Grip-Last`` (channel -> last id), only from a verified proxy request."""
    if not proxied(request):
        return {}
    out: dict[str, str] = {}
    for part in request.headers.get("Grip-Last", "").split(","):
        name, _, params = part.strip().partition(";")
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip() == "last-id" and name:
                out[name.strip()] = value.strip().strip('"')
    return out


def last_positions(request: HttpRequest, names: dict[str, str]) -> dict[str, Position]:
    """Positions by topic from ``Grip-Last``; ``names`` maps channel -> topic."""
    out: dict[str, Position] = {}
    for name, last in grip_last(request).items():
        topic = names.get(name)
        if topic is not None:
            with contextlib.suppress(ValueError):
                out[topic] = Position.parse(last)
    return out


# -- links ------------------------------------------------------------------------------
def sign(value: Any) -> str:
    return signing.dumps(value, salt=_SALT, compress=True)


def unsign(token: str) -> Any:
    """The signed value, or ``None`` when the token is bad or older than a day."""
    try:
        return signing.loads(token, salt=_SALT, max_age=_LINK_MAX_AGE)
    except signing.BadSignature:
        return None


def link_header(url: str) -> str:
    return f"<{url}>; rel=next"


# -- holds in views ---------------------------------------------------------------------
def stream_link_response(
    settings: Settings,
    topics: list[str],
    since: Position | None,
    content_type: str,
    keep_alive: str | None,
) -> HttpResponse:
    """What :func:`tidings.hold_stream` answers through the proxy: a next link to
    ``PATH/grip/stream``, which Pushpin follows at once (see :func:`stream_next`)."""
    token = sign({"t": topics, "c": content_type, "k": keep_alive})
    response = HttpResponse(b"", content_type=content_type)
    response["Cache-Control"] = "no-cache"
    response["Grip-Link"] = link_header(_stream_url(settings, token, since))
    return response


def _stream_url(settings: Settings, token: str, since: Position | None) -> str:
    query = {"h": token}
    if since is not None:
        query["since"] = str(since)
    return f"{settings.path}grip/stream?{urlencode(query)}"


async def stream_next(request: HttpRequest, node: Node) -> HttpResponseBase:
    """``GET PATH/grip/stream``: a held stream's start, and its recovery.

    Only for the proxy (a valid ``Grip-Sig``) with a link tidings signed. Replays what
    came after ``Grip-Last`` (else ``since``), then holds the stream on the topics'
    channels with their positions as ``prev-id`` and a new next link.
    """
    if not proxied(request, node.settings):
        return HttpResponse("Only the GRIP proxy may follow this link.\n", status=403)
    hold = unsign(request.GET.get("h", ""))
    if not isinstance(hold, dict) or not isinstance(hold.get("t"), list):
        return HttpResponse("Bad link.\n", status=400)
    topics: list[str] = hold["t"]
    content_type = str(hold.get("c") or "text/event-stream")
    keep_alive = hold.get("k")
    names = {channel(t): t for t in topics}
    since: dict[str, Position | None] = {}
    if request.GET.get("since") and topics:
        with contextlib.suppress(ValueError):
            since[topics[0]] = Position.parse(request.GET["since"])
    since.update(last_positions(request, names))
    chunks: list[str] = []
    positions: dict[str, Position] = {}
    for topic in topics:
        result = await node.broker.history(topic, since.get(topic))
        positions[topic] = result.position
        if since.get(topic) is not None and result.recovered:
            chunks.extend(stream_chunk(m) for m in result.messages)
    response = HttpResponse("".join(chunks), content_type=content_type)
    response["Cache-Control"] = "no-cache"
    response["Grip-Hold"] = "stream"
    response["Grip-Channel"] = channel_header({channel(t): p for t, p in positions.items()})
    if keep_alive:
        response["Grip-Keep-Alive"] = keep_alive_header(
            str(keep_alive), node.settings.sse_keepalive
        )
    first = positions[topics[0]] if topics else None
    response["Grip-Link"] = link_header(_stream_url(node.settings, request.GET["h"], first))
    return response


def hold_response(
    response: HttpResponse, channels: dict[str, Position | None], timeout: float
) -> HttpResponse:
    """``response`` (sent when the hold times out) with ``Grip-Hold: response``."""
    if response.status_code == 304:  # a 304 may not carry the instructions: say it apart
        response.status_code = 200
        response.reason_phrase = "OK"
        response["Grip-Status"] = "304 Not Modified"
    response["Grip-Hold"] = "response"
    response["Grip-Channel"] = channel_header(channels)
    response["Grip-Timeout"] = str(max(1, math.ceil(timeout)))
    return response


# -- WebSocket-over-HTTP ----------------------------------------------------------------
def is_ws_over_http(request: HttpRequest) -> bool:
    """A WebSocket-over-HTTP request from a verified proxy."""
    content_type = request.content_type if hasattr(request, "content_type") else ""
    return request.method == "POST" and content_type == WS_EVENTS and proxied(request)


def ws_events(request: HttpRequest) -> list[Any]:
    """The request's WebSocket events; ``ValueError`` when the body is not that format."""

    return list(_gc().decode_websocket_events(request.body))


def ws_control(kind: str, **fields: Any) -> bytes:

    return b"c:" + str(_gc().websocket_control_message(kind, fields or None)).encode()


def ws_answer(events: list[Any], out: list[tuple[str, bytes | None]]) -> HttpResponse:
    """Encode ``out`` (event type, content) as the answer; ``OPEN`` first when opening.

    Pings are answered with pongs and a close with a close, as a WebSocket peer would.
    """

    opening = bool(events) and events[0].type == "OPEN"
    result = [_gc().WebSocketEvent("OPEN")] if opening else []
    for e in events:
        if e.type == "PING":
            result.append(_gc().WebSocketEvent("PONG", e.content or None))
        elif e.type == "CLOSE":
            code = e.content if e.content and len(e.content) == 2 else struct.pack(">H", 1000)
            out.append(("CLOSE", code))
    result.extend(_gc().WebSocketEvent(kind, content) for kind, content in out)
    response = HttpResponse(_gc().encode_websocket_events(result), content_type=WS_EVENTS)
    if opening:
        response["Sec-WebSocket-Extensions"] = "grip"
    return response


def ws_meta(request: HttpRequest, name: str) -> str | None:
    """A ``Meta-<name>`` header, only from a verified proxy request."""
    if not proxied(request):
        return None
    return request.headers.get(f"Meta-{name}")


# -- publishing -------------------------------------------------------------------------
class Publisher:
    """Sends every publish to each proxy's control endpoint, in order, off the caller's
    thread (pubcontrol's client thread). A failure is logged: the message is in tidings'
    history, and Pushpin recovers it at the next publish (its ``prev-id`` will not match)."""

    def __init__(self, proxies: Sequence[GripProxy]) -> None:

        self.pub = _gc().GripPubControl([{"control_uri": p.control_uri} for p in proxies])

    def publish(self, message: Message) -> None:

        topic = message.topic
        pid, prev = str(message.position), str(previous(message.position))
        response = http_response(message)
        body = response.content.decode(response.charset or "utf-8", errors="replace")
        gc, item = _gc(), _pc().Item
        holds = item(
            [
                gc.HttpResponseFormat(
                    code=response.status_code,
                    reason=response.reason_phrase,
                    headers=dict(response.items()),
                    body=body,
                ),
                gc.HttpStreamFormat(stream_chunk(message)),
                gc.WebSocketMessageFormat(ws_text(message)),
            ],
            id=pid,
            prev_id=prev,
        )
        endpoints = item(
            [
                gc.HttpResponseFormat(action="hint"),
                gc.HttpStreamFormat(action="hint"),
                gc.WebSocketMessageFormat(message.ws_frame),
            ],
            id=pid,
            prev_id=prev,
        )
        self.pub.publish(channel(topic), holds, blocking=False, callback=self._done)
        self.pub.publish(protocol_channel(topic), endpoints, blocking=False, callback=self._done)

    @staticmethod
    def _done(ok: bool, error: str) -> None:
        if not ok:
            logger.warning("publishing to the GRIP proxy failed: %s", error)

    def wait_all_sent(self) -> None:
        self.pub.wait_all_sent()


_publishers: dict[tuple[GripProxy, ...], Publisher] = {}


def publisher(settings: Settings) -> Publisher:
    pub = _publishers.get(settings.grip)
    if pub is None:
        pub = _publishers[settings.grip] = Publisher(settings.grip)
    return pub


def publish(
    node: Node,
    topic: str,
    event: str,
    data_json: str,
    formats_json: str | None,
    position: Position | None,
) -> None:
    """Send a message just published to the proxies (``Node.publish`` calls this)."""
    if position is None or topic.startswith(RESERVED):
        return
    message = Message(topic, event, data_json, position, formats_json=formats_json)
    try:
        publisher(node.settings).publish(message)
    except Exception:
        logger.exception("could not publish %r to the GRIP proxy", message)


# -- endpoints --------------------------------------------------------------------------
async def stream_next_view(request: HttpRequest) -> HttpResponseBase:
    """``GET PATH/grip/stream``: see :func:`stream_next`."""
    from tidings.server.node import get_node

    return await stream_next(request, get_node())


@csrf_exempt  # the proxy's POSTs carry no CSRF token; Grip-Sig and Origin are checked
async def ws_over_http_view(request: HttpRequest) -> HttpResponseBase:
    """``POST PATH/ws`` from Pushpin: the tidings protocol over WebSocket-over-HTTP.

    Each request carries the client's frames; the answer carries the replies, the
    replays and ``subscribe``/``unsubscribe`` control messages for the topics' protocol
    channels (Pushpin then sends them each message's frame). The subscribed topics live
    in the connection's ``Meta-Topics`` (set with ``Set-Meta-Topics``), trusted only on
    a verified request. Presence is not available this way.
    """
    from tidings import policy
    from tidings.auth import origin_allowed
    from tidings.core.protocol import (
        Close,
        Error,
        Ping,
        PresenceQuery,
        Publish,
        Session,
        Subscribe,
        Unsubscribe,
        error_frame,
        reply_frame,
    )
    from tidings.exceptions import BrokerError, Reject
    from tidings.server.node import get_node

    node = get_node()
    if not node.settings.grip or not is_ws_over_http(request):
        return HttpResponse("WebSocket-over-HTTP requests come from the GRIP proxy.\n", status=403)
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, request.get_host(), node.settings.allowed_origins):
        return HttpResponse("Requests from this origin are not allowed.\n", status=403)
    try:
        events = ws_events(request)
    except ValueError:
        return HttpResponse("Bad WebSocket events.\n", status=400)
    before = [t for t in (ws_meta(request, "Topics") or "").split(",") if t]
    now = time.monotonic()
    session = Session(node.limits, now)
    for t in before:
        session.subscribed(t)
    user = await request.auser()
    out: list[tuple[str, bytes | None]] = []

    def send(frame: str) -> None:
        out.append(("TEXT", b"m:" + frame.encode()))

    for event in events:
        if event.type == "BINARY":
            outcome: Any = session.receive_bytes(event.content or b"", now)
        elif event.type == "TEXT":
            outcome = session.receive_text((event.content or b"").decode("utf-8", "replace"), now)
        else:
            continue
        try:
            if isinstance(outcome, Error):
                send(outcome.frame())
            elif isinstance(outcome, Close):
                out.append(("CLOSE", struct.pack(">H", outcome.code) + outcome.reason.encode()))
                break
            elif isinstance(outcome, Ping):
                if outcome.id is not None:
                    send(reply_frame(outcome.id))
            elif isinstance(outcome, Subscribe):
                topic = outcome.topic
                if not await policy.may(node, user, "subscribe", topic):
                    send(
                        error_frame(outcome.id, "forbidden", f"You may not subscribe to {topic!r}.")
                    )
                    continue
                if outcome.presence is not None or outcome.initial:
                    message = "Presence and model snapshots are not available through the proxy."
                    send(error_frame(outcome.id, "bad_request", message))
                    continue
                result = await node.broker.history(topic, outcome.since)
                out.append(("TEXT", ws_control("subscribe", channel=protocol_channel(topic))))
                session.subscribed(topic)
                fields: dict[str, Any] = {"topic": topic, "position": str(result.position)}
                if outcome.since is not None:
                    fields["recovered"] = result.recovered
                if outcome.id is not None:
                    send(reply_frame(outcome.id, **fields))
                for m in result.messages:
                    send(m.ws_frame)
            elif isinstance(outcome, Unsubscribe):
                session.unsubscribed(outcome.topic)
                out.append(
                    ("TEXT", ws_control("unsubscribe", channel=protocol_channel(outcome.topic)))
                )
                if outcome.id is not None:
                    send(reply_frame(outcome.id, topic=outcome.topic))
            elif isinstance(outcome, Publish):
                conn = "grip-" + (request.headers.get("Connection-Id") or "")[:64]
                try:
                    position = await policy.client_publish(
                        node, user, outcome.topic, outcome.event, outcome.data, conn
                    )
                except policy.Forbidden as e:
                    send(error_frame(outcome.id, "forbidden", str(e)))
                except Reject as e:
                    send(error_frame(outcome.id, "rejected", e.message))
                else:
                    if outcome.id is not None:
                        send(reply_frame(outcome.id, topic=outcome.topic, position=position))
            elif isinstance(outcome, PresenceQuery):
                message = "Presence is not available through the proxy."
                send(error_frame(outcome.id, "bad_request", message))
        except BrokerError:
            send(error_frame(outcome.id, "unavailable", "The message broker is unavailable."))
    response = ws_answer(events, out)
    after = sorted(session.topics)
    if after != sorted(before):
        response["Set-Meta-Topics"] = ",".join(after)
    return response


# -- tidings' SSE and long-poll endpoints ------------------------------------------------
async def sse_hold(
    request: HttpRequest,
    node: Node,
    topics: list[str],
    since: dict[str, Position | None],
    first: bool,
) -> HttpResponse:
    """``/realtime/sse`` through the proxy: the replay after ``since`` (with the open
    event when the stream starts), then ``Grip-Hold: stream`` on the topics' protocol
    channels and a next link carrying the cursor, which Pushpin follows on each publish
    (a hint) or gap."""
    from tidings.transports.http import cursor

    settings = node.settings
    positions: dict[str, Position] = {}
    info: dict[str, Any] = {}
    current: dict[str, Position] = {}
    replay: list[Message] = []
    for topic in topics:
        start = since.get(topic)
        result = await node.broker.history(topic, start)
        current[topic] = result.position
        positions[topic] = start if result.recovered and start is not None else result.position
        info[topic] = {"position": str(result.position)}
        if start is not None:
            info[topic]["recovered"] = result.recovered
            if result.recovered:
                replay.extend(result.messages)
    chunks = []
    if first:
        data = json.dumps({"topics": info}, separators=(",", ":"))
        chunks.append(
            f"retry: {settings.sse_retry_ms}\n"
            f"id: {cursor(positions, topics)}\nevent: tidings.open\ndata: {data}\n\n"
        )
    for m in replay:
        positions[m.topic] = m.position
        chunks.append(f"id: {cursor(positions, topics)}\n{m.sse_body}")
    response = HttpResponse("".join(chunks), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["Grip-Hold"] = "stream"
    response["Grip-Channel"] = channel_header({protocol_channel(t): current[t] for t in topics})
    response["Grip-Keep-Alive"] = keep_alive_header(": keep-alive\n\n", settings.sse_keepalive)
    query = [("topic", t) for t in topics]
    query += [("since", cursor(current, topics)), ("link", sign({"t": topics}))]
    response["Grip-Link"] = link_header(f"{settings.path}sse?{urlencode(query)}")
    return response


async def sse_next(request: HttpRequest, node: Node) -> HttpResponse | None:
    """A stream's next link (``?link=``, signed by tidings, from the proxy): what came
    after its cursor. ``None`` when the request is not one."""
    from tidings.transports.http import parse_cursor

    token = request.GET.get("link")
    if token is None or not proxied(request, node.settings):
        return None
    link = unsign(token)
    if not isinstance(link, dict) or not isinstance(link.get("t"), list):
        return HttpResponse("Bad link.\n", status=400)
    topics: list[str] = link["t"]
    try:
        since = parse_cursor(request.GET.get("since", ""), topics)
    except ValueError:
        since = {}
    return await sse_hold(request, node, topics, since, first=False)
