"""``manage.py demo_admin``: a superuser for the demo's admin, its password shown once.

``make demo`` runs it. The first run creates the user ``admin`` with a random password
and prints it; later runs say the user exists (``--reset`` draws a new password).
"""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Create the demo's admin superuser and print its password (once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--reset", action="store_true", help="give it a new password")
        parser.add_argument("--url", default="http://127.0.0.1:8000/admin/")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        name, url = options["username"], options["url"]
        user = User.objects.filter(username=name).first()
        if user is not None and not options["reset"]:
            self.stdout.write(
                f"Admin: {url} as '{name}' (the password was shown when it was created;"
                " `python demo/manage.py demo_admin --reset` prints a new one)."
            )
            return
        password = secrets.token_urlsafe(12)
        if user is None:
            User.objects.create_superuser(name, password=password)
        else:
            user.set_password(password)
            user.is_staff = user.is_superuser = True
            user.save()
        self.stdout.write(self.style.SUCCESS(f"Admin: {url}  user: {name}  password: {password}"))
        self.stdout.write("(shown once: note it down; --reset prints a new one)")
