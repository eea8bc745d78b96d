"""When a login ends, so do its connections: Django's signals -> :func:`tidings.disconnect`.

A connection knows its user from the session cookie it was opened with, once, at the
handshake. Django ends a login in four ways, and tidings hears each:

- **logout**: ``user_logged_out``;
- **password change**: the user's ``password`` changes on save (the session auth hash
  of every other session is then stale; ``update_session_auth_hash`` moves the current
  one to a new session key, so its connections were opened with a key that is gone);
- **deactivation**: ``is_active`` goes from true to false on save;
- **deletion**: the user is deleted.

Each cuts every connection of that user in every process with close code 4401, after
the transaction commits, so a client that reconnects at once is whoever its cookie now
says. A bulk ``QuerySet.update()`` sends no signal: call :func:`tidings.disconnect`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist

WATCHED = ("password", "is_active")  # the user fields whose change ends a login
_PENDING = "_tidings_disconnect"  # set on the instance between pre_save and post_save


def connect() -> None:
    """Connect the receivers (the app's ``ready()``); nothing without django.contrib.auth."""
    if "django.contrib.auth" not in settings.INSTALLED_APPS:
        return
    from django.contrib.auth.signals import user_logged_out
    from django.db.models.signals import post_delete, post_save, pre_save

    model = settings.AUTH_USER_MODEL
    user_logged_out.connect(_logged_out, dispatch_uid="tidings-logged-out")
    pre_save.connect(_before_save, sender=model, dispatch_uid="tidings-user-pre-save")
    post_save.connect(_after_save, sender=model, dispatch_uid="tidings-user-post-save")
    post_delete.connect(_deleted, sender=model, dispatch_uid="tidings-user-deleted")


def _disconnect(user: Any, reason: str, using: str | None = None) -> None:
    from tidings.api import disconnect

    disconnect(user, reason, using=using)


def _logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        _disconnect(user, "logged out")


def _fields(model: Any) -> list[str]:
    present = []
    for name in WATCHED:
        try:
            model._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        present.append(name)
    return present


def _before_save(
    sender: Any, instance: Any, raw: bool, using: str, update_fields: Any, **kwargs: Any
) -> None:
    """Compare the stored password and ``is_active`` with what is saved (one query,
    only when one of them may be written)."""
    if raw or instance._state.adding or instance.pk is None:
        return
    fields = _fields(sender)
    if update_fields is not None:
        fields = [f for f in fields if f in update_fields]
    if not fields:
        return
    stored = sender._base_manager.using(using).filter(pk=instance.pk).values(*fields).first()
    if stored is None:
        return
    if "password" in stored and stored["password"] != instance.password:
        setattr(instance, _PENDING, "password changed")
    elif stored.get("is_active") and not instance.is_active:
        setattr(instance, _PENDING, "account deactivated")


def _after_save(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
    reason = instance.__dict__.pop(_PENDING, None)
    if reason is not None:
        _disconnect(instance, reason, using)


def _deleted(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
    _disconnect(instance, "account deleted", using)
