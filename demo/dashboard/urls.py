from django.urls import path

from demo.dashboard import views

app_name = "dashboard"
urlpatterns = [
    path("", views.index, name="index"),
    path("docs/<slug:slug>/", views.document, name="document"),
    path("docs/<slug:slug>/edit/", views.edit, name="edit"),
]
