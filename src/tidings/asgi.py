"""One ASGI application for Django's HTTP views and tidings' realtime endpoints.

    # asgi.py
    from tidings.asgi import get_asgi_application
    application = get_asgi_application()

- ``http`` goes to Django (with static files served as ``runserver`` would when
  ``DEBUG`` is on). Paths under ``TIDINGS["PATH"]`` resolve against ``tidings.urls``
  (SSE, long-poll, publish): no URLconf change is needed.
- ``websocket`` on ``TIDINGS["PATH"] + "ws"`` speaks the tidings protocol. A WebSocket
  on any other path is handed to the Django view its URL resolves to, through the
  usual middleware; the view accepts it by returning
  :func:`tidings.holds.hold_websocket`, anything else refuses it.
- ``lifespan`` starts and stops this process's broker. On SIGTERM the process drains
  (``DRAIN_SECONDS``): every client is closed with 1012 (service restart), spread over
  the window, so they reconnect elsewhere a few at a time; then the server stops.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import django
from django.conf import settings
from django.core import checks
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import response_for_exception
from django.http import HttpRequest, HttpResponseBase
from django.urls import include
from django.urls import path as django_path

from tidings.server.node import get_node
from tidings.transports.websocket import view_websocket, websocket_endpoint
from tidings.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("tidings.asgi")


def get_asgi_application(*, static_files: bool | None = None) -> ASGIApp:
    """Set Django up and return the combined application.

    ``static_files``: serve ``STATIC_URL`` from the finders, as ``runserver`` does
    (``None``: when ``DEBUG`` is on and ``django.contrib.staticfiles`` is installed).
    """
    django.setup(set_prefix=False)
    django_app = Handler()
    http: Any = django_app
    if static_files is None:
        static_files = settings.DEBUG and "django.contrib.staticfiles" in settings.INSTALLED_APPS
    if static_files:
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        http = ASGIStaticFilesHandler(django_app)
    return Router(http, django_app)


class Handler(ASGIHandler):
    """Django's ASGI handler, with tidings' endpoints mounted under ``TIDINGS["PATH"]``.

    Django runs each request in its own asgiref ``ThreadSensitiveContext``: the first
    sync call of the request (``close_old_connections`` on ``request_started``, the
    session lookup) starts a thread that lives as long as the request. For a stream or
    a long-poll that is a thread per idle client, so tidings' endpoints run without
    that context, and their few sync calls share asgiref's one sync thread.
    """

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[Mapping[str, Any]]],
        send: Callable[[Mapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] == "http" and scope["path"].startswith(get_node().settings.path):
            await self.handle(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        path = get_node().settings.path
        if request.path_info.startswith(path):
            # The Host check of every view (DNS rebinding), whatever MIDDLEWARE holds:
            # CommonMiddleware is what calls get_host() for other views.
            try:
                request.get_host()
            except DisallowedHost as e:
                return response_for_exception(request, e)  # 400, logged as Django does
            # Django takes a module or any object with ``urlpatterns`` (URLResolver)
            request.urlconf = _urlconf(path)  # type: ignore[assignment]
        return await super().get_response_async(request)


class _URLConf:
    """The URLconf of requests under ``TIDINGS["PATH"]``: ``tidings.urls`` under that
    prefix. Made when first needed, for the settings of the moment (not at import)."""

    def __init__(self, path: str) -> None:
        self.urlpatterns = [django_path(path.lstrip("/"), include("tidings.urls"))]


_urlconfs: dict[str, _URLConf] = {}


def _urlconf(path: str) -> _URLConf:
    urlconf = _urlconfs.get(path)
    if urlconf is None:
        urlconf = _urlconfs[path] = _URLConf(path)
    return urlconf


class Router:
    """Route by scope type; plain ASGI, no framework."""

    def __init__(self, http: ASGIApp, django_app: Handler) -> None:
        self.http = http
        self.django = django_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "websocket":
            if scope["path"] == get_node().settings.ws_path:
                await websocket_endpoint(scope, receive, send)
            else:
                await view_websocket(self.django, scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                for problem in checks.run_checks(tags=["tidings"]):
                    logger.log(
                        logging.ERROR if problem.is_serious() else logging.WARNING, "%s", problem
                    )
                try:
                    await get_node().start()
                    _chain_shutdown_signals()
                except Exception as e:
                    logger.exception("tidings could not start")
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await get_node().stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _chain_shutdown_signals() -> None:
    """Let the node know the moment SIGTERM/SIGINT arrives.

    ASGI's ``lifespan.shutdown`` comes only after the server has waited for open
    requests to finish, and uvicorn leaves streaming responses running until its grace
    period ends. So tidings chains itself before the server's own handlers (installed
    just before startup). On SIGTERM (a deploy) it drains: readiness says 503 at once,
    the clients are closed with 1012 spread over ``DRAIN_SECONDS``, and only then is
    the server's handler called (so the server keeps listening meanwhile, and a new
    client is told 1012 at once). On SIGINT everyone is closed at once.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous) or getattr(previous, "_tidings", False):
            continue

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            if signum == signal.SIGTERM:  # a deploy: drain first, then the server stops
                then = functools.partial(previous, signum, frame)
                loop.call_soon_threadsafe(get_node().begin_shutdown, then)
                return
            loop.call_soon_threadsafe(get_node().begin_shutdown)  # Ctrl-C: at once
            previous(signum, frame)

        handler._tidings = True  # type: ignore[attr-defined]
        signal.signal(sig, handler)
