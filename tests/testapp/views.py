import json
import os

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

import tidings


class Rollback(Exception):
    pass


@csrf_exempt
def publish_view(request: HttpRequest) -> JsonResponse:
    """Publish from a sync view: ``n`` messages of ``size`` bytes, optionally in a transaction.

    The padding is random so that permessage-deflate cannot shrink it on the wire.
    """
    body = json.loads(request.body)
    topic = body["topic"]
    n, size = int(body.get("n", 1)), int(body.get("size", 0))
    mode = body.get("transaction")  # None, "commit" or "rollback"
    positions = []

    def run() -> None:
        for i in range(n):
            p = tidings.publish(
                topic,
                {"i": i, "pad": os.urandom(size // 2).hex()},
                on_commit=body.get("on_commit", True),
                durable=body.get("durable", False),
            )
            positions.append(None if p is None else str(p))

    if mode is None:
        run()
    else:
        try:
            with transaction.atomic():
                run()
                if mode == "rollback":
                    raise Rollback
        except Rollback:
            pass
    return JsonResponse({"positions": positions})


async def hub_view(request: HttpRequest) -> JsonResponse:
    """What this server process holds: subscribers of a topic, threads, asyncio tasks."""
    import asyncio
    import threading

    from tidings.server.node import get_node

    topic = request.GET.get("topic", "")
    hub = get_node().hub
    entry = hub._topics.get(topic)  # (a test's view may look inside)
    subscribers = list(entry.subscribers) if entry is not None else []
    return JsonResponse(
        {
            "subscribers": hub.count(topic),
            # ... whose join is done: its history read, its stream's epoch known
            "joined": sum(topic in s.session.epochs for s in subscribers if hasattr(s, "session")),
            "threads": threading.active_count(),
            "tasks": len(asyncio.all_tasks()),
        }
    )


@csrf_exempt
def write_view(request: HttpRequest) -> JsonResponse:
    """Model writes inside the server process: ``{"model": "counter"|"note", ...}``.

    A note with ``pk`` is updated (the fields given), else created.
    ``rollback``: do it in a transaction that is rolled back. ``bulk``: ``QuerySet.update``
    (no signal). ``increments``: that many increments of one counter.
    """
    from demo.counters.models import IntegerValue

    from tests.testapp.models import Note

    body = json.loads(request.body)
    try:
        with transaction.atomic():
            if body["model"] == "note" and "pk" in body:  # an update: save the given fields
                note = Note.objects.get(pk=body["pk"])
                for name in ("owner", "text", "private"):
                    if name in body:
                        setattr(note, name, body[name])
                note.save()
                pk = note.pk
            elif body["model"] == "note":
                note = Note.objects.create(
                    owner=body["owner"], text=body["text"], private=body.get("private", False)
                )
                pk = note.pk
            else:
                value, _ = IntegerValue.objects.get_or_create(name=body["name"])
                pk = value.pk
                for _ in range(int(body.get("increments", 0))):
                    value.value += 1
                    value.save()
                if "delete" in body:
                    value.delete()
                if body.get("bulk"):
                    IntegerValue.objects.filter(pk=pk).update(value=12345)
            if body.get("rollback"):
                raise Rollback
    except Rollback:
        pass
    return JsonResponse({"pk": pk})


async def hold_view(request: HttpRequest):
    """A stream held by a view: ``?topic=``'s items as SSE events (tidings.hold_stream)."""
    return tidings.hold_stream(request, request.GET["topic"])


async def hold_poll_view(request: HttpRequest):
    """A long-poll held by a view: ``?topic=``'s next item (tidings.hold_longpoll)."""
    return await tidings.hold_longpoll(request, request.GET["topic"], timeout=1)
