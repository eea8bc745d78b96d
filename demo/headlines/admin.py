from django.contrib import admin

from demo.headlines.models import Headline


@admin.register(Headline)
class HeadlineAdmin(admin.ModelAdmin):
    list_display = ["id", "type", "title", "date"]
    list_filter = ["type"]
    search_fields = ["title", "text"]
