from typing import Any

from django.db import models
from django.utils import timezone


class Room(models.Model):
    label = models.SlugField(max_length=50, unique=True)

    def __str__(self) -> str:
        return self.label

    @property
    def topic(self) -> str:
        return f"rooms.{self.label}"


class Message(models.Model):
    room = models.ForeignKey(Room, related_name="messages", on_delete=models.CASCADE)
    handle = models.CharField(max_length=64)
    message = models.TextField(max_length=2000)
    timestamp = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["timestamp", "id"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.pk,
            "handle": self.handle,
            "message": self.message,
            "timestamp": self.timestamp.isoformat(),
        }
