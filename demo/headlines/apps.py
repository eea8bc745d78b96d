from django.apps import AppConfig


class HeadlinesConfig(AppConfig):
    name = "demo.headlines"
    label = "headlines"
