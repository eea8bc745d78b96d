"""tidings' ASGI application for servers that take a module attribute, not a factory
(hypercorn, granian): the bench's tidings settings unless the environment says others."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.servers.tidings_settings")

from tidings.asgi import get_asgi_application

application = get_asgi_application()
