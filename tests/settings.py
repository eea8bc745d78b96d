"""The demo's settings plus a test app; TIDINGS_TEST (JSON) overrides TIDINGS keys."""

import json
import os

from demo.settings import *  # noqa: F403
from demo.settings import INSTALLED_APPS, TIDINGS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
ROOT_URLCONF = "tests.urls"
TIDINGS = {**TIDINGS, **json.loads(os.environ.get("TIDINGS_TEST", "{}"))}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests

if os.environ.get("TIDINGS_TEST_LOG") == "json":  # tests/test_metrics.py: JSON log lines
    LOGGING = {
        **LOGGING,  # noqa: F405
        "formatters": {"json": {"()": "tidings.logging.JsonFormatter"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    }
