"""Account changes inside the server process, for tests/security/test_logout.py: the
signals they send fire where the connections are."""

import json

from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

import tidings


class Rollback(Exception):
    pass


@csrf_exempt
def account_view(request: HttpRequest) -> JsonResponse:
    """``{"username": ..., "action": "deactivate" | "delete" | "disconnect", "rollback"?}``."""
    body = json.loads(request.body)
    try:
        with transaction.atomic():
            user = User.objects.get(username=body["username"])
            if body["action"] == "deactivate":
                user.is_active = False
                user.save()
            elif body["action"] == "delete":
                user.delete()
            elif body["action"] == "rename":  # a save that ends no login
                user.first_name = "renamed"
                user.save()
            else:
                tidings.disconnect(user, reason=body.get("reason", "disconnected"))
            if body.get("rollback"):
                raise Rollback
    except Rollback:
        pass
    return JsonResponse({"ok": True})


async def adisconnect_view(request: HttpRequest) -> JsonResponse:
    """``?username=``: :func:`tidings.adisconnect` from async code."""
    user = await User.objects.aget(username=request.GET["username"])
    await tidings.adisconnect(user, reason="async")
    return JsonResponse({"ok": True})
