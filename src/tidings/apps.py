from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class TidingsConfig(AppConfig):
    """``INSTALLED_APPS += ["tidings"]``: registers the checks and imports each app's
    ``realtime`` module (rules and topic handlers), as the admin does with ``admin``."""

    name = "tidings"
    verbose_name = "tidings"

    def ready(self) -> None:
        from tidings import checks  # noqa: F401  (registers the system checks)

        autodiscover_modules("realtime")
