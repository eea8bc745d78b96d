"""The headline API of the Fanout/django-grip article, on tidings.

- ``POST /headlines/`` creates an empty headline (type "none") and returns its JSON.
- ``PUT /headlines/<id>/`` updates type/title/text from a JSON body, returns the new
  JSON with an ETag, and publishes the update in three formats (a whole HTTP response
  for held long-polls, an SSE event for streams, a WebSocket message).
- ``GET /headlines/<id>/`` returns it with an ETag and honours ``If-None-Match`` (304);
  with ``Accept: text/event-stream`` it streams ``update`` events; with a matching
  ``If-None-Match`` and ``Wait: N`` it holds until a PUT (200) or N seconds (304).
- A WebSocket to ``/headlines/<id>/`` receives each update as JSON.

The ETag is the headline's stream position, so a GET and a subscription join with no
gap: whatever changes after the ETag you hold is what the hold or stream delivers.
"""

import json
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotModified
from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import csrf_exempt

import tidings
from demo import limits
from demo.headlines.models import Headline

MAX_TEXT = 10_000
FIELDS = {"type": 64, "title": 200, "text": MAX_TEXT}


def _json(data: Any, status: int = 200) -> HttpResponse:
    body = json.dumps(data, indent=4) + "\n"  # pretty, as in the article
    return HttpResponse(body, status=status, content_type="application/json")


def _error(status: int, message: str, **headers: str) -> HttpResponse:
    response = _json({"error": message}, status)
    for name, value in headers.items():
        response[name] = value
    return response


def _etag(position: tidings.Position) -> str:
    return f'"{position}"'


@csrf_exempt  # an API for curl and scripts; the demo pages call it with fetch()
def base(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _error(405, "Use POST to create a headline.", Allow="POST")
    refusal = limits.refusal(request, Headline, "headline")
    if refusal is not None:
        return _error(429, refusal, **{"Retry-After": limits.RETRY_AFTER})
    h = Headline.objects.create(type="none", title="", text="")
    return _json(h.to_data())


@csrf_exempt
async def item(request: HttpRequest, headline_id: int) -> HttpResponseBase:
    h = await Headline.objects.filter(pk=headline_id).afirst()
    if h is None:
        return _error(404, f"There is no headline {headline_id}.")
    if tidings.is_websocket(request):
        return tidings.hold_websocket(request, h.topic)
    if request.method == "GET":
        return await _get(request, h)
    if request.method == "PUT":
        return await _put(request, h)
    return _error(405, f"{request.method} is not allowed here.", Allow="GET, PUT")


async def _get(request: HttpRequest, h: Headline) -> HttpResponseBase:
    if request.headers.get("Accept") == "text/event-stream":
        return tidings.hold_stream(request, h.topic)
    wait = None
    if "Wait" in request.headers:
        try:
            wait = min(max(int(request.headers["Wait"]), 1), 300)
        except ValueError:
            return _error(400, "Wait must be a whole number of seconds (1 to 300).")
    position = await tidings.aposition(h.topic)
    etag = _etag(position)
    if request.headers.get("If-None-Match") == etag:
        if wait is not None:
            timeout_response = HttpResponseNotModified()
            timeout_response["ETag"] = etag
            return await tidings.hold_longpoll(
                request, h.topic, since=position, timeout=wait, timeout_response=timeout_response
            )
        response: HttpResponse = HttpResponseNotModified()
    else:
        response = _json(h.to_data())
    response["ETag"] = etag
    return response


async def _put(request: HttpRequest, h: Headline) -> HttpResponse:
    try:
        body = json.loads(request.body)
    except ValueError:
        return _error(400, "The body must be JSON.")
    if not isinstance(body, dict):
        return _error(400, "The body must be a JSON object.")
    if not isinstance(body.get("type"), str) or not body["type"]:
        return _error(400, "'type' is required (a non-empty string).")
    for field, limit in FIELDS.items():
        value = body.get(field, "")
        if not isinstance(value, str):
            return _error(400, f"'{field}' must be a string.")
        if len(value) > limit:
            return _error(413, f"'{field}' may have at most {limit} characters.")
        setattr(h, field, value)
    await h.asave()
    data = h.to_data()
    position = await tidings.apublish(
        h.topic,
        data,
        event="update",
        http_response=_json(data),  # tidings adds the position as its ETag
        ws_message=json.dumps(data),
    )
    response = _json(data)
    response["ETag"] = _etag(position)
    return response


def page(request: HttpRequest, headline_id: int) -> HttpResponse:
    """A page that follows one headline live (404 for one that does not exist)."""
    h = get_object_or_404(Headline, pk=headline_id)
    return render(request, "headlines/show.html", {"headline_id": h.pk, "h": h})


def edit(request: HttpRequest, headline_id: int) -> HttpResponse:
    h = get_object_or_404(Headline, pk=headline_id)
    return render(request, "headlines/edit.html", {"headline_id": h.pk, "h": h, "limits": FIELDS})


def index(request: HttpRequest) -> HttpResponse:
    return render(
        request, "headlines/index.html", {"headlines": Headline.objects.order_by("-id")[:20]}
    )
