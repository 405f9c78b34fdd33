"""Document and Chunk: ids, defaults, ordering, uniqueness, cascade, admin and migrations."""

from __future__ import annotations

import io

import pytest
from django.contrib import admin
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.db import IntegrityError, transaction

from easyrag.documents.models import Chunk, Document

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)


def make_document(**fields) -> Document:
    document = Document(**fields)
    document.file.save("notes.txt", ContentFile(b"hello"), save=True)
    return document


def test_a_new_document_has_a_string_id_and_is_uploaded():
    document = make_document()
    assert document.id.startswith("doc_") and len(document.id) == 28
    assert (document.status, document.error, document.owner) == ("uploaded", "", None)
    assert document.file.name.startswith("documents/") and document.file.read() == b"hello"
    assert make_document().id != document.id


def test_an_id_may_be_given_as_the_seed_does():
    assert Document.objects.get(pk=make_document(id="doc_123").pk).file.name.endswith("notes.txt")


def test_chunks_come_in_index_order_and_an_index_is_unique_per_document():
    document, other = make_document(), make_document()
    for index in (2, 0, 1):
        Chunk.objects.create(document=document, index=index, text=f"chunk {index}")
    Chunk.objects.create(document=other, index=0, text="another document may use index 0")
    assert [chunk.text for chunk in document.chunks.all()] == ["chunk 0", "chunk 1", "chunk 2"]
    with pytest.raises(IntegrityError), transaction.atomic():
        Chunk.objects.create(document=document, index=1, text="again")


def test_deleting_a_document_deletes_its_chunks(django_user_model):
    owner = django_user_model.objects.create_user(username="ann", password="x")
    document = make_document(owner=owner)
    Chunk.objects.create(document=document, index=0, text="x")
    assert list(owner.documents.all()) == [document]
    owner.delete()  # a user's documents go with them, and their chunks with the documents
    assert not Document.objects.exists() and not Chunk.objects.exists()


def test_both_models_are_in_the_admin(admin_client):
    document = make_document()
    Chunk.objects.create(document=document, index=0, text="visible in the admin")
    assert admin.site.is_registered(Document) and admin.site.is_registered(Chunk)
    listing = admin_client.get("/admin/documents/document/")
    assert listing.status_code == 200 and document.id in listing.content.decode()
    chunks = admin_client.get("/admin/documents/chunk/")
    assert chunks.status_code == 200 and "visible in the admin" in chunks.content.decode()


def test_migrations_match_the_models():
    out = io.StringIO()
    call_command("makemigrations", "documents", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
