from django.db import models


class Note(models.Model):
    """For feed tests: private notes are seen by their owner only."""

    owner = models.CharField(max_length=50)
    text = models.TextField()
    private = models.BooleanField(default=False)


class Entry(models.Model):
    """For outbox tests: a model whose feed is durable (tests/test_outbox.py)."""

    text = models.TextField()
