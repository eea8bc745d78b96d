from django import forms
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.text import slugify

from demo.dashboard.models import Document
from demo.dashboard.realtime import feed

TITLE_MAX = 120


class TitleField(forms.CharField):
    """A title of 1 to 120 characters, stated and checked, never cut short by the
    browser: no ``maxlength`` (which silently truncates a paste), a counter instead."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(
            max_length=TITLE_MAX,
            error_messages={
                "required": "Give the document a title (spaces alone are not one).",
                "max_length": "A title may have at most %(limit_value)d characters"
                " (this one has %(show_value)d).",
            },
            **kwargs,  # type: ignore[arg-type]
        )

    def widget_attrs(self, widget: forms.Widget) -> dict[str, str]:
        attrs = super().widget_attrs(widget)
        attrs.pop("maxlength", None)
        return {**attrs, "data-limit": str(TITLE_MAX)}


class NewDocumentForm(forms.Form):
    title = TitleField(widget=forms.TextInput(attrs={"placeholder": "New document title"}))


class DocumentForm(forms.ModelForm):
    title = TitleField()

    class Meta:
        model = Document
        fields = ["title", "body"]
        widgets = {"body": forms.Textarea(attrs={"rows": 10})}


def signup(request: HttpRequest) -> HttpResponse:
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)  # announces itself in the feed (user_logged_in)
        return redirect(_next(request) or "dashboard:index")
    return render(request, "registration/signup.html", {"form": form, "next": _next(request)})


def _next(request: HttpRequest) -> str | None:
    """Where to go after signing up: ``next`` if it stays on this site, as Django's
    ``LoginView`` decides (so ``//evil.example/`` or ``https:evil.example`` are refused)."""
    url = request.POST.get("next", request.GET.get("next", ""))
    safe = url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return url if safe and url else None


def _free_slug(title: str) -> str:
    slug = slugify(title)[:50] or "doc"
    base, n = slug, 1
    while Document.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@login_required
def index(request: HttpRequest) -> HttpResponse:
    form = NewDocumentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        title = form.cleaned_data["title"]
        doc = Document.objects.create(slug=_free_slug(title), title=title)
        feed(request.user, "create", f"{request.user.get_username()} created '{doc.title}'")
        return redirect("dashboard:document", slug=doc.slug)
    status = 400 if form.errors else 200
    context = {"documents": Document.objects.all(), "form": form}
    return render(request, "dashboard/index.html", context, status=status)


@login_required
def document(request: HttpRequest, slug: str) -> HttpResponse:
    doc = get_object_or_404(Document, slug=slug)
    feed(request.user, "open", f"{request.user.get_username()} opened '{doc.title}'")
    return render(request, "dashboard/document.html", {"doc": doc, "state": "viewing"})


@login_required
def edit(request: HttpRequest, slug: str) -> HttpResponse:
    doc = get_object_or_404(Document, slug=slug)
    form = DocumentForm(request.POST or None, instance=doc)
    if request.method == "POST" and form.is_valid():
        form.save()
        feed(request.user, "save", f"{request.user.get_username()} saved '{doc.title}'")
        return redirect("dashboard:document", slug=doc.slug)
    if request.method == "GET":
        feed(request.user, "edit", f"{request.user.get_username()} is editing '{doc.title}'")
    status = 400 if form.errors else 200
    context = {"doc": doc, "form": form, "state": "editing"}
    return render(request, "dashboard/edit.html", context, status=status)
