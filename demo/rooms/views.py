from django.db import IntegrityError, transaction
from django.db.models import Count, Max
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render

from demo import limits
from demo.rooms.labels import haiku_label
from demo.rooms.models import Message, Room


def about(request: HttpRequest) -> HttpResponse:
    """What the rooms are, and the rooms most recently talked in."""
    rooms = (
        Room.objects.annotate(n=Count("messages"), last=Max("messages__timestamp"))
        .filter(n__gt=0)
        .order_by("-last")[:8]
    )
    return render(request, "rooms/about.html", {"rooms": rooms})


def _refused(request: HttpRequest, message: str) -> HttpResponse:
    response = render(request, "refused.html", {"message": message, "back": "/rooms/"}, status=429)
    response["Retry-After"] = limits.RETRY_AFTER
    return response


def new_room(request: HttpRequest) -> HttpResponse:
    """Create a room with a fresh haiku label and go there (within the demo's limits)."""
    refusal = limits.refusal(request, Room, "room")
    if refusal is not None:
        return _refused(request, refusal)
    while True:
        try:
            with transaction.atomic():
                room = Room.objects.create(label=haiku_label())
        except IntegrityError:
            continue  # label taken: draw another
        return redirect("rooms:room", label=room.label)


def _last_50(room: Room) -> list[Message]:
    last = list(room.messages.order_by("-timestamp", "-id")[:50])
    last.reverse()
    return last


def room(request: HttpRequest, label: str) -> HttpResponse:
    """A room's page; an unknown label creates the room (etherpad style, within the
    demo's limits)."""
    room = Room.objects.filter(label=label).first()
    if room is None:
        refusal = limits.refusal(request, Room, "room")
        if refusal is not None:
            return _refused(request, refusal)
        room, _ = Room.objects.get_or_create(label=label)
    return render(request, "rooms/room.html", {"room": room, "messages": _last_50(room)})


def last_messages(request: HttpRequest, label: str) -> JsonResponse:
    """The last 50 messages, oldest first: what the page reloads after a gap."""
    room = get_object_or_404(Room, label=label)
    return JsonResponse({"messages": [m.as_dict() for m in _last_50(room)]})
