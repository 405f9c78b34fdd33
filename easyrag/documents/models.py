"""Document (a file to ingest, with its parse status) and Chunk (a piece of its text, in order)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


def new_document_id() -> str:
    return f"doc_{uuid.uuid4().hex[:24]}"


class Document(models.Model):
    """A file in Django storage that DocumentParseTaskHandler turns into Chunk rows."""

    class Status(models.TextChoices):
        UPLOADED = "uploaded", "uploaded"
        PARSING = "parsing", "parsing"
        PARSED = "parsed", "parsed"
        FAILED = "failed", "failed"

    id = models.CharField(primary_key=True, max_length=64, default=new_document_id)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="documents", help_text="None: any user may parse it")
    file = models.FileField(upload_to="documents/%Y/%m/", max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UPLOADED)
    error = models.TextField(blank=True, default="", help_text="why the last parse failed")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.id} ({self.file.name}, {self.status})"


class Chunk(models.Model):
    """One piece of a document's text; ``index`` counts from 0 in reading order."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    text = models.TextField()

    class Meta:
        ordering = ["index"]
        constraints = [models.UniqueConstraint(fields=["document", "index"], name="unique_chunk_index")]

    def __str__(self) -> str:
        return f"{self.document_id} #{self.index}"
