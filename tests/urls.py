from demo.urls import urlpatterns as demo_urlpatterns
from django.urls import include, path

from tests.testapp import views

urlpatterns = [
    path("test/publish", views.publish_view),
    path("test/hub", views.hub_view),
    path("accounts/", include("django.contrib.auth.urls")),
    *demo_urlpatterns,
]
