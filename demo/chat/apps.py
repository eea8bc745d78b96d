from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "demo.chat"
    label = "chat"
