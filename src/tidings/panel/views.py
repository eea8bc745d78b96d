"""The panel's page in the Django admin, and its two actions (a test publish, and
disconnecting a user); :func:`install` adds it to an admin site."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib import messages
from django.contrib.admin import AdminSite
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path, reverse

from tidings import api
from tidings.core.messages import Position
from tidings.core.topics import topic_error
from tidings.panel.service import ASK, TOPIC
from tidings.server.node import get_node

HISTORY = 20  # messages of a topic the panel shows


def recent(topic: str) -> list[dict[str, Any]]:
    """The last :data:`HISTORY` messages the broker keeps of ``topic``, newest first."""
    broker = get_node().broker
    now = async_to_sync(broker.history)(topic, None).position
    since = Position(now.epoch, max(0, now.offset - HISTORY))
    kept = async_to_sync(broker.history)(topic, since).messages
    return [
        {"position": str(m.position), "event": m.event, "data": m.data_json} for m in reversed(kept)
    ]


def panel_view(request: HttpRequest, site: AdminSite) -> HttpResponse:
    """The page (GET; ``?topic=`` shows that topic's history), or an action (POST)."""
    if request.method == "POST":
        return _act(request)
    topic = request.GET.get("topic", "").strip()
    history = None
    if topic:
        problem = topic_error(topic, get_node().settings.topic_max_length)
        if problem:
            messages.error(request, problem)
        else:
            history = recent(topic)
    context = {
        **site.each_context(request),
        "title": "Realtime",
        "topic": topic,
        "history": history,
        "panel_topic": TOPIC,
        "ask_topic": ASK,
        "ws_path": get_node().settings.ws_path,
    }
    return TemplateResponse(request, "tidings/panel.html", context)


def _act(request: HttpRequest) -> HttpResponse:
    action = request.POST.get("action")
    back = reverse("admin:tidings-panel")
    if action == "publish":
        topic = request.POST.get("topic", "").strip()
        try:
            data = json.loads(request.POST.get("data") or "null")
            position = api.publish(topic, data, on_commit=False)
        except ValueError as e:  # a bad topic, or data that is not JSON
            messages.error(request, f"Not published: {e}")
        else:
            messages.success(request, f"Published to {topic} at {position}.")
        return HttpResponseRedirect(f"{back}?topic={topic}")
    if action == "disconnect":
        key = request.POST.get("user", "")
        api.disconnect(key, reason="disconnected by staff", on_commit=False)
        messages.success(request, f"Disconnected every connection of user {key}.")
        return HttpResponseRedirect(back)
    messages.error(request, f"Unknown action {action!r}.")
    return HttpResponseRedirect(back)


def install(site: AdminSite) -> None:
    """Add the panel to ``site``'s URLs (``<admin>/tidings/panel/``) and its index."""
    if getattr(site, "_tidings_panel", False):
        return
    site._tidings_panel = True  # type: ignore[attr-defined]
    get_urls, get_app_list = site.get_urls, site.get_app_list

    def urls() -> list[URLResolver | URLPattern]:
        view = site.admin_view(lambda request: panel_view(request, site))
        return [path("tidings/panel/", view, name="tidings-panel"), *get_urls()]

    def app_list(request: HttpRequest, app_label: str | None = None) -> list[Any]:
        apps = get_app_list(request, app_label)
        if app_label in (None, "tidings") and request.user.is_staff:
            url = reverse("admin:tidings-panel", current_app=site.name)
            panel: dict[str, Any] = {"name": "Realtime panel", "object_name": "Panel"}
            panel |= {"admin_url": url, "view_only": True, "perms": {"view": True}}
            apps.append(
                {"name": "tidings", "app_label": "tidings", "app_url": url, "models": [panel]}
            )
        return apps

    site.get_urls = urls  # type: ignore[method-assign]
    site.get_app_list = app_list  # type: ignore[method-assign]
