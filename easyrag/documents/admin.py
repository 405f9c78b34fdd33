from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from easyrag.documents.models import Chunk, Document


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ("id", "owner", "file", "status", "chunk_count", "updated_at")
    list_filter = ("status",)
    search_fields = ("id", "file")
    raw_id_fields = ("owner",)
    readonly_fields = ("created_at", "updated_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(chunk_count=Count("chunks"))

    @admin.display(description="chunks", ordering="chunk_count")
    def chunk_count(self, document: Document) -> int:
        return document.chunk_count


@admin.register(Chunk)
class ChunkAdmin(admin.ModelAdmin):
    list_display = ("document", "index", "preview")
    list_select_related = ("document",)
    search_fields = ("document__id", "text")
    raw_id_fields = ("document",)

    @admin.display(description="text")
    def preview(self, chunk: Chunk) -> str:
        return chunk.text[:80]
