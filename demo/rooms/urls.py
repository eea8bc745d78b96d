from django.urls import path, re_path

from demo.rooms import views

app_name = "rooms"
urlpatterns = [
    path("", views.about, name="about"),
    path("new/", views.new_room, name="new"),
    re_path(r"^(?P<label>[A-Za-z0-9_-]{1,50})/$", views.room, name="room"),
    re_path(r"^(?P<label>[A-Za-z0-9_-]{1,50})/messages/$", views.last_messages, name="messages"),
]
