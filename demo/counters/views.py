from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from demo.counters.models import IntegerValue


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "counters/index.html", {"values": IntegerValue.objects.all()})
