from django.contrib import admin
from django.urls import include, path
from django.views.generic import TemplateView

from demo.dashboard import views as dashboard_views

urlpatterns = [
    path("", TemplateView.as_view(template_name="index.html"), name="index"),
    path("rooms/", include("demo.rooms.urls")),
    path("headlines/", include("demo.headlines.urls")),
    path("dashboard/", include("demo.dashboard.urls")),
    path("counters/", include("demo.counters.urls")),
    path("chat/", include("demo.chat.urls")),
    path("accounts/signup/", dashboard_views.signup, name="signup"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
