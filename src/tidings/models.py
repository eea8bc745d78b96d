"""tidings' one model: the outbox of durable publishes (:mod:`tidings.outbox`)."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

TOPIC_MAX = 500  # longest topic a durable publish may name (an indexed column)


class OutboxMessage(models.Model):
    """A message written in the transaction of the data it describes, waiting for a
    relay to publish it (then the row is deleted). ``id`` orders a topic's messages;
    ``receipt`` and ``attempts`` name the broker receipt of the next try, so a relay
    that died after publishing and before deleting the row is not published twice."""

    id = models.BigAutoField(primary_key=True)
    topic = models.CharField(max_length=TOPIC_MAX)
    event = models.CharField(max_length=64)
    data = models.TextField()  # JSON, as encoded for the broker
    formats = models.TextField(null=True)  # tidings.formats' JSON, or none
    receipt = models.UUIDField(default=uuid.uuid4, editable=False)
    attempts = models.PositiveIntegerField(default=0)  # tries the broker refused as late
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "tidings_outbox"
        indexes = [models.Index(fields=["topic", "id"], name="tidings_outbox_topic_id")]

    def __str__(self) -> str:
        return f"{self.topic} #{self.id} ({self.event})"
