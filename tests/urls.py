from demo.urls import urlpatterns as demo_urlpatterns
from django.urls import path

from tests.testapp import accounts, views

urlpatterns = [
    path("test/publish", views.publish_view),
    path("test/hub", views.hub_view),
    path("test/write", views.write_view),
    path("test/hold", views.hold_view),
    path("test/hold-poll", views.hold_poll_view),
    path("test/account", accounts.account_view),
    path("test/adisconnect", accounts.adisconnect_view),
    *demo_urlpatterns,
]
