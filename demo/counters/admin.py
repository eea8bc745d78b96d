from django.contrib import admin

from demo.counters.models import IntegerValue


@admin.register(IntegerValue)
class IntegerValueAdmin(admin.ModelAdmin):
    list_display = ["name", "value"]
    search_fields = ["name"]
