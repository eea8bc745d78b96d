"""Long-polling, ``GET /realtime/poll?topic=a&since=<cursor>&timeout=25``, and client
publishing over HTTP, ``POST /realtime/publish``, for clients without WebSockets.

A poll answers at once when there are messages after ``since``; otherwise it holds until
the first one or the timeout, then answers::

    {"messages": [{"op": "message", "topic", "position", "event", "data"}, ...],
     "since": "<cursor for the next poll>",
     "topics": {"a": {"position": "...", "recovered": true}}}

A client that polls again with the returned ``since`` misses nothing within the
history window (``recovered`` tells it when history no longer reached back).
"""

from __future__ import annotations

import json
import secrets

from django.conf import settings as django_settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from tidings import grip, policy
from tidings.core.topics import event_error, topic_error
from tidings.exceptions import BrokerError, Reject
from tidings.listener import Listener
from tidings.server.node import get_node
from tidings.transports.http import (
    StreamRequest,
    cursor,
    error,
    origin_refused,
    starting_points,
    stream_request,
)


async def poll_view(request: HttpRequest) -> HttpResponseBase:
    node = get_node()
    req = await stream_request(request, node, request.GET.get("since"))
    if not isinstance(req, StreamRequest):
        return req
    limit = node.settings.poll_max_timeout
    try:
        timeout = float(request.GET.get("timeout", node.settings.poll_timeout))
    except ValueError:
        return error("bad_request", "'timeout' must be a number of seconds.")
    if not 0 <= timeout <= limit:
        return error("bad_request", f"'timeout' must be between 0 and {limit:g} seconds.")
    hold = 0.0  # behind Pushpin: answer now, or let it hold (a publish makes it retry)
    if node.settings.grip and not req.presence and grip.proxied(request, node.settings):
        hold, timeout = timeout, 0
    async with Listener(node, req.topics, req.user) as listener:
        await listener.join(req.since)
        if not await listener.wait(timeout) or listener.overflowed:
            messages = []
        else:
            messages = listener.take()
    positions, info = starting_points(listener, req)
    for message in messages:
        positions[message.topic] = message.position
    body = (
        '{"messages":['
        + ",".join(m.ws_frame for m in messages)
        + f'],"since":{json.dumps(cursor(positions, req.topics))},"topics":{json.dumps(info)}'
    )
    if req.presence:  # a snapshot: a poller watches presence, it is not tracked (not connected)
        views = {topic: await node.tracker.query(topic) for topic in req.presence}
        body += f',"presence":{json.dumps(views)}'
    body += "}"
    response = HttpResponse(body, content_type="application/json")
    response["Cache-Control"] = "no-store"
    if hold and not messages:
        channels = {grip.protocol_channel(t): positions[t] for t in req.topics}
        return grip.hold_response(response, dict(channels), hold)
    return response


@csrf_exempt  # checked below, and only where it means something: on cookie sessions
async def publish_view(request: HttpRequest) -> HttpResponseBase:
    """Publish like the WebSocket ``publish`` op: same rules, same topic handlers.

    Body: ``{"topic": ..., "data": ..., "event"?: ...}``. A request carrying a session
    cookie must pass Django's CSRF check (the ``X-CSRFToken`` header), as any unsafe
    request of a session-authenticated browser must.
    """
    if request.method != "POST":
        return error("not_allowed", "Use POST.", Allow="POST")
    node = get_node()
    refused = origin_refused(request, node)
    if refused is not None:
        return refused
    if django_settings.SESSION_COOKIE_NAME in request.COOKIES:
        csrf = CsrfViewMiddleware(lambda r: HttpResponse())
        csrf.process_request(request)
        failed = csrf.process_view(request, lambda r: HttpResponse(), (), {})
        if failed is not None:
            return error("forbidden", "CSRF check failed: send the X-CSRFToken header.")
    limit = node.settings.max_frame_bytes
    if int(request.headers.get("Content-Length") or 0) > limit or len(request.body) > limit:
        return error("too_large", f"The body may be at most {limit} bytes.")
    try:
        frame = json.loads(request.body)
    except ValueError:
        return error("bad_request", "The body must be a JSON object.")
    if not isinstance(frame, dict) or "data" not in frame:
        return error("bad_request", "The body must be a JSON object with 'topic' and 'data'.")
    topic, event = frame.get("topic"), frame.get("event", "message")
    problem = topic_error(topic, node.settings.topic_max_length)
    if problem is not None or not isinstance(topic, str):
        return error("invalid_topic", problem or "Invalid topic.")
    problem = event_error(event)
    if problem is not None:
        return error("bad_request", problem)
    user = await request.auser()
    try:
        position = await policy.client_publish(
            node, user, topic, event, frame["data"], "http-" + secrets.token_urlsafe(9)
        )
    except policy.Forbidden as e:
        return error("forbidden", str(e))
    except Reject as e:
        return error("rejected", e.message)
    except BrokerError:
        return error("unavailable", "The message broker is unavailable.")
    body = {"ok": True, "topic": topic, "position": None if position is None else str(position)}
    return HttpResponse(json.dumps(body), content_type="application/json")
