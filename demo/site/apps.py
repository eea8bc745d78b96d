from django.apps import AppConfig


class SiteConfig(AppConfig):
    """The demo site as a whole: its management commands (no models)."""

    name = "demo.site"
    label = "demo_site"
