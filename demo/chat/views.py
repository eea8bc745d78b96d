from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def index(request: HttpRequest) -> HttpResponse:
    """One page: the chat for logged-in users, the login and signup forms for others."""
    if not request.user.is_authenticated:
        return render(
            request,
            "chat/index.html",
            {"login": AuthenticationForm(), "signup": UserCreationForm()},
        )
    return render(request, "chat/index.html", {})
