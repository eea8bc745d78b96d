from django.contrib import admin

from demo.chat.models import ChatMessage


@admin.register(ChatMessage)
class ChatMessageAdmin(admin.ModelAdmin):
    list_display = ["sent", "user", "text"]
    list_filter = ["user"]
    search_fields = ["text"]
