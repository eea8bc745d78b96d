from typing import Any

from django.db import models


class Headline(models.Model):
    type = models.CharField(max_length=64)
    title = models.CharField(max_length=200, blank=True)
    text = models.TextField(blank=True)
    date = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.type}: {self.text[:100]}"

    @property
    def topic(self) -> str:
        return f"headlines.{self.pk}"

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": str(self.pk), "type": self.type}
        if self.title:
            out["title"] = self.title
        out["date"] = self.date.isoformat()
        out["text"] = self.text
        return out
