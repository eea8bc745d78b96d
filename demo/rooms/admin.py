from django.contrib import admin

from demo.rooms.models import Message, Room


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    ordering = ["-timestamp"]


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["label"]
    search_fields = ["label"]
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["timestamp", "room", "handle", "message"]
    list_filter = ["room"]
    search_fields = ["handle", "message"]
