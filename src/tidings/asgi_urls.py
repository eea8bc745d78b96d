"""The URLconf of requests under ``TIDINGS["PATH"]`` (see :mod:`tidings.asgi`)."""

from django.urls import include, path

from tidings.conf import get_settings

urlpatterns = [path(get_settings().path.lstrip("/"), include("tidings.urls"))]
