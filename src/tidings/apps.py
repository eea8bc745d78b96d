from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class TidingsConfig(AppConfig):
    """``INSTALLED_APPS += ["tidings"]``: registers the checks, ends a user's connections
    when their login ends (:mod:`tidings.logout`), and imports each app's ``realtime``
    module (rules and topic handlers), as the admin does with ``admin``; adds the
    realtime panel to the admin (:mod:`tidings.panel`)."""

    name = "tidings"
    verbose_name = "tidings"

    def ready(self) -> None:
        from tidings import checks, logout  # noqa: F401  (checks: registers the system checks)

        logout.connect()
        autodiscover_modules("realtime")
        from django.conf import settings

        if "django.contrib.admin" in settings.INSTALLED_APPS:  # the realtime panel
            from django.contrib import admin

            from tidings.panel.views import install

            install(admin.site)
