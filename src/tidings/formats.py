"""Per-transport representations of one published item, as GRIP's formats are.

Most publishes need none: every transport renders ``data``. A view that holds
requests itself (:mod:`tidings.holds`) may want exactly what to send:

    tidings.publish(
        "headlines.1", h.to_data(), event="update",
        http_response=JsonResponse(h.to_data()),   # a held long-poll gets this response
        http_stream="event: update\\ndata: ...\\n\\n",  # a held stream gets this chunk
        ws_message=json.dumps(h.to_data()),         # a held WebSocket gets this text
    )

A held long-poll's response carries the message's position as its ``ETag`` unless the
format sets one, so ``If-None-Match`` resumes exactly after it.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse, HttpResponseBase

from tidings.core.messages import Message


def encode_formats(
    http_response: HttpResponseBase | None = None,
    http_stream: str | None = None,
    ws_message: str | None = None,
) -> str | None:
    """JSON of the given formats, or ``None`` when there are none."""
    formats: dict[str, Any] = {}
    if http_response is not None:
        if not isinstance(http_response, HttpResponse):
            raise TypeError("http_response must be an HttpResponse (not a streaming one)")
        try:
            body = http_response.content.decode(http_response.charset or "utf-8")
        except UnicodeDecodeError:
            raise ValueError("http_response's body must be text") from None
        formats["http_response"] = {
            "status": http_response.status_code,
            "reason": http_response.reason_phrase,
            "headers": list(http_response.items()),
            "body": body,
        }
    if http_stream is not None:
        formats["http_stream"] = str(http_stream)
    if ws_message is not None:
        formats["ws_message"] = str(ws_message)
    if not formats:
        return None
    text = json.dumps(formats, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")  # what every socket will have to do with it
    except UnicodeEncodeError:
        raise ValueError("A format holds a string with an unpaired surrogate.") from None
    return text


def etag(message: Message) -> str:
    return f'"{message.position}"'


def http_response(message: Message) -> HttpResponse:
    """The response a held long-poll gets for ``message``.

    The ``http_response`` format when given; else ``data`` as JSON. Either way with the
    message's position as ETag (unless the format set one).
    """
    fmt = message.formats.get("http_response")
    if fmt is None:
        response = HttpResponse(message.data_json, content_type="application/json")
    else:
        response = HttpResponse(fmt["body"], status=fmt["status"], reason=fmt.get("reason"))
        for name, value in fmt["headers"]:
            response[name] = value
    if not response.has_header("ETag"):
        response["ETag"] = etag(message)
    return response


def stream_chunk(message: Message) -> str:
    """What a held stream writes for ``message``: the ``http_stream`` format, else an SSE event."""
    chunk = message.formats.get("http_stream")
    if chunk is not None:
        return str(chunk)
    return f"id: {message.position}\n{message.sse_body}"


def ws_message(message: Message) -> str:
    """What a held WebSocket gets for ``message``: the ``ws_message`` format, else the data."""
    text = message.formats.get("ws_message")
    return message.data_json if text is None else str(text)
