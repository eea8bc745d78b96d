"""One ASGI application for Django's HTTP views and tidings' realtime endpoints.

    # asgi.py
    from tidings.asgi import get_asgi_application
    application = get_asgi_application()

``http`` goes to Django (with static files served as ``runserver`` would when
``DEBUG`` is on); ``websocket`` on ``TIDINGS["PATH"] + "ws"`` goes to tidings;
``lifespan`` starts and stops this process's broker. On SIGTERM uvicorn closes
every open socket with code 1012 (service restart), so clients reconnect elsewhere.
"""

from __future__ import annotations

import logging
from typing import Any

import django
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

from tidings.node import get_node
from tidings.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("tidings.asgi")


def get_asgi_application() -> ASGIApp:
    """Set Django up and return the combined application."""
    django.setup(set_prefix=False)
    http: Any = ASGIHandler()
    if settings.DEBUG and "django.contrib.staticfiles" in settings.INSTALLED_APPS:
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        http = ASGIStaticFilesHandler(http)
    return Router(http)


class Router:
    """Route by scope type; plain ASGI, no framework."""

    def __init__(self, http: ASGIApp) -> None:
        self.http = http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "websocket":
            from tidings.transports.websocket import websocket_endpoint

            if scope["path"] == get_node().settings.ws_path:
                await websocket_endpoint(scope, receive, send)
            else:
                await receive()
                await send({"type": "websocket.close", "code": 1000})
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                try:
                    await get_node().start()
                except Exception as e:
                    logger.exception("tidings could not start")
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await get_node().stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
