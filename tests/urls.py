from demo.urls import urlpatterns as demo_urlpatterns
from django.urls import path

from tests.testapp import views

urlpatterns = [
    path("test/publish", views.publish_view),
    path("test/hub", views.hub_view),
    path("test/write", views.write_view),
    path("test/hold", views.hold_view),
    *demo_urlpatterns,
]
