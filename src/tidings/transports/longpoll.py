"""Long-polling, ``GET /realtime/poll?topic=a&since=<cursor>&timeout=25``, and client
publishing over HTTP, ``POST /realtime/publish``, for clients without WebSockets.

A poll answers at once when there are messages after ``since``; otherwise it holds until
the first one or the timeout, then answers::

    {"messages": [{"op": "message", "topic", "position", "event", "data"}, ...],
     "since": "<cursor for the next poll>",
     "topics": {"a": {"position": "...", "recovered": true}}}

A client that polls again with the returned ``since`` misses nothing within the
history window (``recovered`` tells it when history no longer reached back). Behind
Pushpin, a poll with nothing to answer is held by the proxy (``Grip-Hold: response``)
until a publish makes it retry.
"""

from __future__ import annotations

import dataclasses
import json
import secrets

from django.conf import settings as django_settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from tidings import metrics
from tidings.core.frames import gap_frame, joined_info
from tidings.core.messages import Message
from tidings.core.protocol import Answer, Error, Gap
from tidings.core.streams import cursor
from tidings.grip.instructions import hold_response, protocol_channel, with_user
from tidings.grip.signature import proxied
from tidings.handshake import request_caller
from tidings.server.clients import user_key
from tidings.server.node import get_node
from tidings.server.outlets import Mailbox
from tidings.server.subscriber import Subscriber
from tidings.tokens import InvalidToken
from tidings.transports.http import (
    StreamRequest,
    error,
    error_response,
    first_error,
    opened,
    origin_refused,
    stream_request,
)


async def poll_view(request: HttpRequest) -> HttpResponseBase:
    node = get_node()
    behind_proxy = bool(node.settings.grip) and proxied(request, node.settings)
    req = await stream_request(
        request, node, "longpoll", request.GET.get("since"), proxied=behind_proxy
    )
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
    if req.by_proxy:
        hold, timeout = timeout, 0
    subscriber, presence = req.subscriber, req.presence
    # a poller watches presence (a snapshot in each answer): it is not tracked, as it is
    # not connected between polls
    requests = [dataclasses.replace(r, presence=None) for r in req.requests]
    try:
        joined = await subscriber.run(subscriber.session.join_all(requests))
        items = subscriber.take()
        if not joined:
            failed = first_error(items)
            assert failed is not None
            return error_response(failed)
        starts = opened(items)
        messages = [item for item in items if type(item) is Message or type(item) is Gap]
        waited = not messages and timeout > 0 and await subscriber.wait(timeout)
        if waited and subscriber.closing is None:
            messages = [i for i in subscriber.take() if type(i) is Message or type(i) is Gap]
        views = {}
        if presence:
            await subscriber.run(subscriber.session.query_presence(presence))
            for item in subscriber.take():
                if isinstance(item, Answer):
                    views[item.fields.pop("topic")] = item.fields
    finally:
        if not req.by_proxy:
            await subscriber.leave()
    positions = {t: starts[t].start for t in req.topics}
    for message in messages:
        positions[message.topic] = message.position
    info = {t: joined_info(starts[t]) for t in req.topics}
    body = (
        '{"messages":['
        + ",".join(m.ws_frame if isinstance(m, Message) else gap_frame(m) for m in messages)
        + f'],"since":{json.dumps(cursor(positions, req.topics))},"topics":{json.dumps(info)}'
    )
    if presence:
        body += f',"presence":{json.dumps(views)}'
    body += "}"
    response = HttpResponse(body, content_type="application/json")
    response["Cache-Control"] = "no-store"
    if hold and not messages:
        channels = {protocol_channel(t): positions[t] for t in req.topics}
        key = user_key(subscriber.user)  # a logout retries the poll on the user's channel
        return hold_response(response, with_user(channels, key), hold)
    return response


@csrf_exempt  # checked below, and only where it means something: on cookie sessions
async def publish_view(request: HttpRequest) -> HttpResponseBase:
    """Publish like the WebSocket ``publish`` op: the same session, rules and handlers.

    Body: ``{"topic": ..., "data": ..., "event"?: ...}``. Each client address has a
    WebSocket's allowance (``RATE_LIMIT``): past it, 429 ``rate_limited``. A request
    carrying a session cookie must pass Django's CSRF check (the ``X-CSRFToken``
    header), as any unsafe request of a session-authenticated browser must.
    """
    if request.method != "POST":
        return error("not_allowed", "Use POST.", Allow="POST")
    node = get_node()
    refused = origin_refused(request, node)
    if refused is not None:
        return refused
    try:
        user, grant = await request_caller(request)  # a token: no cookie is used, no CSRF
    except InvalidToken as e:
        return error("unauthorized", f"{e}: fetch a new token.")
    if grant is None and django_settings.SESSION_COOKIE_NAME in request.COOKIES:
        csrf = CsrfViewMiddleware(lambda r: HttpResponse())
        csrf.process_request(request)
        failed = csrf.process_view(request, lambda r: HttpResponse(), (), {})
        if failed is not None:
            return error("forbidden", "CSRF check failed: send the X-CSRFToken header.")
    if not node.http_rate.take(request.META.get("REMOTE_ADDR") or ""):
        metrics.dropped("rate_limited")
        rate = node.settings.rate
        return error(
            "rate_limited",
            f"Slow down: at most {rate:g} publishes per second.",
            **{"Retry-After": "1"},
        )
    limit = node.settings.max_frame_bytes
    if int(request.headers.get("Content-Length") or 0) > limit:  # before reading it
        metrics.dropped("too_large")
        return error("too_large", f"The body may be at most {limit} bytes.")
    try:
        body = request.body.decode()
    except UnicodeDecodeError:
        return error("bad_request", "The body must be UTF-8 JSON.")
    rid = "http-" + secrets.token_urlsafe(9)
    subscriber = Subscriber(node, user, Mailbox(), transport="publish", id=rid, held=False)
    outcome = subscriber.session.receive_publish(body)
    await subscriber.receive(outcome)  # (an Error is queued as it is, and counted)
    for item in subscriber.take():
        if isinstance(item, Error):
            return error_response(item)
        if isinstance(item, Answer):
            position = item.fields["position"]
            answer = {"ok": True, "topic": item.fields["topic"]}
            answer["position"] = None if position is None else str(position)
            return HttpResponse(json.dumps(answer), content_type="application/json")
    return error("internal_error", "Internal server error.")
