"""The dashboard's realtime side: presence for who is here and on which document, and a
feed of what everyone does. Logged-in users only."""

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out

import tidings
from demo.dashboard.models import Document

FEED = "dashboard.feed"

tidings.allow("dashboard.*", subscribe="authenticated")


def member(user: Any, topic: str) -> tuple[str, dict[str, Any]] | None:
    """On the dashboard a member is a user, shown by username: nothing else is shared."""
    if not user.is_authenticated:
        return None
    return str(user.pk), {"name": user.get_username()}


tidings.track("dashboard.users", member=member)  # who has a dashboard page open
tidings.track("dashboard.doc.*", member=member)  # who views / edits each document


def feed(user: Any, action: str, text: str) -> None:
    """Tell everyone logged in what happened (after the request's transaction commits)."""
    tidings.publish(FEED, {"user": user.get_username(), "action": action, "text": text})


def _logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    feed(user, "login", f"{user.get_username()} logged in")


def _logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        feed(user, "logout", f"{user.get_username()} logged out")


user_logged_in.connect(_logged_in, dispatch_uid="dashboard-login")
user_logged_out.connect(_logged_out, dispatch_uid="dashboard-logout")


class DocumentFeed(tidings.ModelFeed):
    """Every document, bound to ``dashboard.documents`` (the list) and
    ``dashboard.documents.<pk>`` (one open document): a create or a save shows up on
    every page that lists or shows it, with no reload."""

    model = Document
    fields = ["slug", "title", "body"]
    name = "dashboard.documents"

    def can_subscribe(self, user: Any, topic: str) -> bool:
        return bool(user.is_authenticated)


tidings.feed(DocumentFeed)
