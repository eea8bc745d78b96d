from django.apps import AppConfig


class RoomsConfig(AppConfig):
    name = "demo.rooms"
    label = "rooms"
