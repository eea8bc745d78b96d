from django.conf import settings
from django.db import models
from django.utils import timezone


class ChatMessage(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    text = models.TextField(max_length=1000)
    sent = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["sent", "id"]

    def __str__(self) -> str:
        return f"{self.user}: {self.text[:50]}"
