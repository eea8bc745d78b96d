from django.contrib import admin

from demo.dashboard.models import Document


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ["title", "slug", "updated"]
    search_fields = ["title", "body"]
    prepopulated_fields = {"slug": ["title"]}
