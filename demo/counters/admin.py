from django.contrib import admin

from demo.counters.models import IntegerValue

admin.site.register(IntegerValue)
