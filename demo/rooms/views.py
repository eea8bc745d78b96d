from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from demo.rooms.labels import haiku_label
from demo.rooms.models import Room


def about(request: HttpRequest) -> HttpResponse:
    return render(request, "rooms/about.html")


def new_room(request: HttpRequest) -> HttpResponse:
    """Create a room with a fresh haiku label and go there."""
    while True:
        try:
            with transaction.atomic():
                room = Room.objects.create(label=haiku_label())
        except IntegrityError:
            continue  # label taken: draw another
        return redirect("rooms:room", label=room.label)


def room(request: HttpRequest, label: str) -> HttpResponse:
    """A room's page; an unknown label creates the room (etherpad style)."""
    room, _ = Room.objects.get_or_create(label=label)
    last = list(room.messages.order_by("-timestamp", "-id")[:50])
    last.reverse()
    return render(request, "rooms/room.html", {"room": room, "messages": last})
