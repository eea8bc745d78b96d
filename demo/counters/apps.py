from django.apps import AppConfig


class CountersConfig(AppConfig):
    name = "demo.counters"
    label = "counters"
