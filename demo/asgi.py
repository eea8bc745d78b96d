import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")

from tidings.asgi import get_asgi_application

application = get_asgi_application()
