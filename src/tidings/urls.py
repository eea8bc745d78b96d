"""tidings' HTTP endpoints. :func:`tidings.asgi.get_asgi_application` serves them under
``TIDINGS["PATH"]`` by itself; include this module only to mount them elsewhere."""

from django.urls import path

from tidings.grip.holds import stream_next_view
from tidings.grip.ws_over_http import ws_over_http_view
from tidings.transports.http import cors, health_view, metrics_view
from tidings.transports.longpoll import poll_view, publish_view
from tidings.transports.sse import sse_view

app_name = "tidings"
urlpatterns = [
    path("sse", cors(sse_view), name="sse"),
    path("poll", cors(poll_view), name="poll"),
    path("publish", cors(publish_view), name="publish"),
    path("health", health_view, name="health"),
    path("metrics", metrics_view, name="metrics"),
    # behind Pushpin (TIDINGS["GRIP"]): WebSocket-over-HTTP, and held streams' next links
    path("ws", ws_over_http_view, name="ws-over-http"),
    path("grip/stream", stream_next_view, name="grip-stream"),
]
