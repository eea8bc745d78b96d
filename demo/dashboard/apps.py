from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "demo.dashboard"
    label = "dashboard"
