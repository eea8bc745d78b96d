"""``manage.py runserver``: Django's views and tidings' endpoints, with autoreload.

Django's own ``runserver`` is a WSGI server: ``/realtime/ws``, ``/realtime/sse`` and
``/realtime/poll`` would answer 404 and the JS client would retry forever. This one
keeps everything a developer knows of ``runserver`` (its arguments, the system checks,
the unapplied-migrations notice, the autoreloader, static files from the finders when
``DEBUG`` is on) and serves the project's ASGI application with uvicorn, with
``tidings.serve``'s protocols, as in production (docs/deploy.md). The application is
``settings.ASGI_APPLICATION`` when it is set (the Channels convention), else
:func:`tidings.asgi.get_asgi_application`.

Django runs the command of the first app in ``INSTALLED_APPS`` that has one, so
``"tidings"`` must come before ``"django.contrib.staticfiles"``; system check
``tidings.W002`` says so when it does not. ``--wsgi`` runs Django's own server instead.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from typing import Any, cast

from django.apps import apps
from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.management.base import CommandParser
from django.core.management.commands.runserver import Command as DjangoRunserver
from django.db import connections
from django.utils import autoreload
from django.utils.module_loading import import_string

from tidings.conf import get_settings
from tidings.types import ASGIApp

ERRORS = {
    errno.EACCES: "You don't have permission to access that port.",
    errno.EADDRINUSE: "That port is already in use.",
    errno.EADDRNOTAVAIL: "That IP address can't be assigned to.",
}


class Command(DjangoRunserver):
    help = (
        "Starts a development server for Django's views and tidings' realtime endpoints "
        "(WebSocket, SSE, long-poll) with uvicorn, reloading on code changes."
    )
    addr: str  # set by Django's handle(), from addrport
    port: str
    use_ipv6: bool

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--wsgi",
            action="store_true",
            help="Run Django's own WSGI server instead (no realtime endpoints).",
        )
        if apps.is_installed("django.contrib.staticfiles"):
            parser.add_argument(
                "--nostatic",
                action="store_false",
                dest="use_static_handler",
                help="Tells Django to NOT automatically serve static files at STATIC_URL.",
            )
            parser.add_argument(
                "--insecure",
                action="store_true",
                dest="insecure_serving",
                help="Allows serving static files even if DEBUG is False.",
            )

    def get_handler(self, *args: Any, **options: Any) -> Any:
        """``--wsgi``: Django's handler, with static files as staticfiles' runserver."""
        handler = super().get_handler(*args, **options)
        if self.serves_static(options):
            from django.contrib.staticfiles.handlers import StaticFilesHandler

            return StaticFilesHandler(handler)
        return handler

    def serves_static(self, options: dict[str, Any]) -> bool:
        return bool(options.get("use_static_handler", False)) and (
            settings.DEBUG or options.get("insecure_serving", False)
        )

    def inner_run(self, *args: Any, **options: Any) -> None:
        if options["wsgi"]:
            super().inner_run(*args, **options)
            return
        autoreload.raise_last_exception()
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)  # every check, as Django's runserver
        self.check_migrations()
        for conn in connections.all(initialized_only=True):
            conn.close()
        try:
            sock = self.bind()
        except OSError as e:
            self.stderr.write(f"Error: {ERRORS.get(e.errno or 0, e)}")
            os._exit(1)  # sys.exit would end only the autoreloader's thread
        self.on_bind(sock.getsockname()[1])
        self.stdout.write(
            f"Realtime endpoints (tidings) under {get_settings().path}, served by uvicorn.\n"
        )
        self.serve(self.application(options), sock, options)

    def bind(self) -> socket.socket:
        family = socket.AF_INET6 if self.use_ipv6 else socket.AF_INET
        addr = "0.0.0.0" if self.addr == "0" else self.addr
        return socket.create_server((addr, int(self.port)), family=family)

    def application(self, options: dict[str, Any]) -> ASGIApp:
        """The project's ASGI application, serving static files as Django's would."""
        static = self.serves_static(options)
        path = getattr(settings, "ASGI_APPLICATION", None)
        if not path:
            from tidings.asgi import get_asgi_application

            return get_asgi_application(static_files=static)
        app: Any = import_string(path)
        return cast(ASGIApp, ASGIStaticFilesHandler(app)) if static else cast(ASGIApp, app)

    def serve(self, app: ASGIApp, sock: socket.socket, options: dict[str, Any]) -> None:
        import uvicorn

        from tidings.serve import UVICORN_ARGS

        protocols = dict(zip(UVICORN_ARGS[::2], UVICORN_ARGS[1::2], strict=True))
        config = uvicorn.Config(
            app,
            http=protocols["--http"],
            ws=protocols["--ws"],
            lifespan="on",
            log_level="info",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        # In the autoreloader's thread uvicorn installs no signal handlers: the reloader
        # ends the whole process on a change, and its parent starts another.
        server.run(sockets=[sock])
        if not server.started:
            self.stderr.write("The server did not start: see the log above.")
            if not options["use_reloader"]:
                sys.exit(1)
