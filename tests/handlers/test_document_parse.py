"""DocumentParseTaskHandler on a real in-process worker, real Redis, real files and the test database.

Stages are observed as Redis itself saw the record written (MONITOR), so a stage that went by in
a millisecond is still seen, in order.
"""

from __future__ import annotations

import itertools
import re
import threading
import uuid

import pytest
import redis
from django.core.files.base import ContentFile
from fpdf import FPDF

from easyrag.documents.models import Chunk, Document
from easyrag.documents.pipeline import chunks_name, text_name
from easyrag.task_app.async_task_framework import TaskStatus, cancel_task, get_task_status, submit_task
from tests.documents.pdfs import pdf_bytes
from tests.handlers.conftest import assert_failed_at_once, wait_final
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)  # worker threads have their own connections

PROSE = " ".join(f"Sentence {n} tells the parser something worth keeping." for n in range(60))


class RecordWrites:
    """Every command that wrote a task record, as the Redis server saw it (MONITOR), in order."""

    STATE = re.compile(r'"progress":(\d+),"message":"((INIT|EXTRACT|CHUNK|STORE|DONE)[^"]*)"')

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.commands: list[str] = []
        self.sentinel = f"record-writes-stop-{uuid.uuid4().hex}"

    def __enter__(self) -> RecordWrites:
        self.monitor = self.client.monitor().__enter__()  # returns once Redis answered OK
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def _read(self) -> None:
        while True:
            command = self.monitor.next_command()["command"]
            if self.sentinel in command:
                return
            if '"progress":' in command:
                self.commands.append(command)

    def __exit__(self, *exc_info: object) -> None:
        self.client.echo(self.sentinel)  # the reader stops when Redis shows it this
        self.thread.join(timeout=10)
        self.monitor.__exit__(*exc_info)

    def states(self, task_id: str) -> list[tuple[int, str]]:
        """(progress, message) of each write of ``task_id``'s record, repeats of one write dropped."""
        mine = (command for command in self.commands if f'"task_id":"{task_id}"' in command)
        states = [(int(match[1]), match[2]) for command in mine for match in self.STATE.finditer(command)]
        return [state for state, _ in itertools.groupby(states)]


@pytest.fixture
def record_writes(redis_test_url):
    with RecordWrites(redis_test_url) as writes:
        yield writes


def make_document(name: str, content: bytes, owner=None) -> Document:
    document = Document(owner=owner)
    document.file.save(name, ContentFile(content), save=True)
    return document


def parse(document_id: str, max_retries: int = 3, **task_data) -> object:
    return wait_final(submit_task("DocumentParseTaskHandler", {"document_id": document_id, **task_data},
                                  max_retries=max_retries), timeout=30)


def parse_as(owner: object, document_id: str, /, **task_data) -> object:
    """Parse with a user-owned record, as the API submits: ``owner`` is the record's ``user_id``."""
    return wait_final(submit_task("DocumentParseTaskHandler", {"document_id": document_id, **task_data},
                                  user_id=owner, max_retries=3), timeout=30)


def chunk_texts(document: Document) -> list[str]:
    return list(Chunk.objects.filter(document=document).values_list("text", flat=True))


def assert_parsed(task, document: Document) -> list[str]:
    assert task.status is TaskStatus.COMPLETED, task.error
    texts = chunk_texts(document)
    assert set(task.result) == {"document_id", "chunks", "characters"}
    assert (task.result["document_id"], task.result["chunks"]) == (document.id, len(texts))
    indexes = Chunk.objects.filter(document=document).values_list("index", flat=True)
    assert list(indexes) == list(range(len(texts)))
    document.refresh_from_db()
    assert (document.status, document.error) == ("parsed", "")
    return texts


HTML = f"""<html><head><title>Not shown</title><style>body {{ margin: 0 }}</style></head>
<body><h1>Parser handbook</h1><script>var leaked = "script text";</script>
<p>{PROSE}</p><noscript>noscript text</noscript></body></html>""".encode()

SOURCES = {
    "notes.txt": PROSE.encode(),
    "guide.md": f"# Guide\n\n{PROSE}\n".encode(),
    "page.html": HTML,
    "report.pdf": pdf_bytes([PROSE[:1500], PROSE[1500:]]),
}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_each_supported_format_is_parsed_into_chunks(live_worker, folders, name):
    document = make_document(name, SOURCES[name])
    task = parse(document.id)
    texts = assert_parsed(task, document)
    saved_text = document.file.storage.open(text_name(document)).read().decode()
    assert task.result["characters"] == len(saved_text) >= len(PROSE)
    joined = " ".join(texts)
    assert len(texts) >= 3  # ~3 300 characters in chunks of at most 1 000
    assert all(len(text) <= 1000 for text in texts)
    assert "Sentence 0 tells the parser" in joined and "Sentence 59 tells the parser" in joined
    if name == "page.html":
        assert texts[0].startswith("Parser handbook")
        assert not any(hidden in joined for hidden in ("Not shown", "script text", "margin", "noscript"))


def test_progress_goes_through_every_stage_in_order(live_worker, folders, record_writes):
    document = make_document("long.pdf", pdf_bytes([PROSE] * 4))
    task = parse(document.id)
    assert task.status is TaskStatus.COMPLETED, task.error
    states = record_writes.states(task.task_id)
    stages = [stage for stage, _ in itertools.groupby(message.split(":")[0] for _, message in states)]
    assert stages == ["INIT", "EXTRACT", "CHUNK", "STORE", "DONE"], states
    percents = [percent for percent, _ in states]
    assert percents == sorted(percents) and percents[-1] == 100
    assert [message for _, message in states if "page" in message] == [
        f"EXTRACT: page {n} of 4" for n in range(1, 5)]
    assert (task.progress, task.message) == (100, f"DONE: {task.result['chunks']} chunks, "
                                                   f"{task.result['characters']} characters")


def test_resume_from_chunk_uses_the_saved_text_not_the_file(live_worker, folders, record_writes):
    document = make_document("notes.txt", PROSE.encode())
    assert_parsed(parse(document.id), document)
    storage = document.file.storage
    storage.delete(document.file.name)  # the source is gone: extracting again would fail
    storage.delete(text_name(document))
    storage.save(text_name(document), ContentFile(b"Replaced saved text. It is what CHUNK reads."))
    task = parse(document.id, resume_from="CHUNK")
    assert assert_parsed(task, document) == ["Replaced saved text. It is what CHUNK reads."]
    assert task.result["characters"] == len("Replaced saved text. It is what CHUNK reads.")
    stages = {message.split(":")[0] for _, message in record_writes.states(task.task_id)}
    assert stages == {"INIT", "CHUNK", "STORE", "DONE"}
    assert "resuming from CHUNK" in record_writes.states(task.task_id)[1][1]


def test_resume_from_store_uses_the_saved_chunks(live_worker, folders):
    document = make_document("notes.txt", PROSE.encode())
    first = assert_parsed(parse(document.id), document)
    storage = document.file.storage
    storage.delete(text_name(document))  # CHUNK could not run again
    Chunk.objects.filter(document=document).delete()
    assert chunk_texts(document) == []
    assert assert_parsed(parse(document.id, resume_from="STORE"), document) == first


def test_resume_with_nothing_saved_fails_clearly(live_worker, folders):
    document = make_document("notes.txt", PROSE.encode())
    task = parse(document.id, resume_from="CHUNK")
    assert_failed_at_once(task, "no extracted text saved", document.id, "resume from INIT or EXTRACT")
    document.refresh_from_db()
    assert document.status == "failed" and "no extracted text saved" in document.error


def test_chunk_size_and_overlap_come_from_the_settings(live_worker, folders, env):
    env(ASYNC_TASK_CHUNK_SIZE="150", ASYNC_TASK_CHUNK_OVERLAP="40")
    document = make_document("notes.txt", PROSE.encode())
    texts = assert_parsed(parse(document.id), document)
    assert len(texts) > 20 and all(len(text) <= 150 for text in texts)
    for previous, following in itertools.pairwise(texts):
        shared = next(n for n in range(40, -1, -1) if following.startswith(previous[len(previous) - n:]))
        assert 0 < shared <= 40  # words of PROSE are short: every overlap carries some words


def test_a_new_parse_replaces_the_earlier_chunks(live_worker, folders):
    document = make_document("notes.txt", PROSE.encode())
    assert len(assert_parsed(parse(document.id), document)) > 1
    storage = document.file.storage
    storage.delete(document.file.name)
    storage.save(document.file.name, ContentFile(b"Now a single short sentence."))
    assert assert_parsed(parse(document.id), document) == ["Now a single short sentence."]


def test_damaged_saved_chunks_fail_the_store_and_keep_the_earlier_chunks(live_worker, folders):
    document = make_document("notes.txt", PROSE.encode())
    before = assert_parsed(parse(document.id), document)
    storage = document.file.storage
    lines = storage.open(chunks_name(document)).read().splitlines()
    storage.delete(chunks_name(document))
    storage.save(chunks_name(document), ContentFile(b"\n".join([*lines[:-2], b'"trunc'])))
    task = parse(document.id, resume_from="STORE")
    assert_failed_at_once(task, "is not JSON", "resume from CHUNK")
    assert chunk_texts(document) == before  # the transaction rolled back
    document.refresh_from_db()
    assert document.status == "failed"


def long_pdf(pages: int) -> bytes:
    """Many short pages, quick to write and slow enough to read (pypdf: ~0.5 ms a page here)."""
    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for number in range(pages):
        pdf.add_page()
        pdf.text(20, 20, f"Page {number}: a few words for the parser to extract.")
    return bytes(pdf.output())


def test_a_cancelled_parse_ends_cancelled_and_marks_the_document_failed(live_worker, folders):
    document = make_document("long.pdf", long_pdf(3000))
    task_id = submit_task("DocumentParseTaskHandler", {"document_id": document.id})
    wait_until(lambda: (task := get_task_status(task_id)) and task.message.startswith("EXTRACT: page"),
               timeout=30, message="the extraction to be under way")
    assert cancel_task(task_id) is True
    task = wait_final(task_id)
    assert task.status is TaskStatus.CANCELLED, (task.status, task.error)
    document.refresh_from_db()
    assert (document.status, document.error) == ("failed", "parse cancelled or timed out")
    assert chunk_texts(document) == []


def not_found(document_id: str) -> str:
    """The one error text of a missing document and of someone else's."""
    return f"document {document_id!r} does not exist (or is not yours)"


def test_missing_document_fails_at_once(live_worker, folders):
    task = parse("doc_does_not_exist")
    assert_failed_at_once(task, not_found("doc_does_not_exist"))


@pytest.mark.parametrize(("name", "content", "words"), [
    ("letter.docx", b"PK\x03\x04 not ours", ("unsupported document type '.docx'", "supported are")),
    ("broken.pdf", b"%PDF-1.7\n1 0 obj <<", ("not a readable PDF",)),
    ("scan.pdf", pdf_bytes([""]), ("no text found", "OCR")),
    ("latin1.txt", "café".encode("latin-1"), ("not UTF-8 text",)),
])
def test_bad_files_fail_at_once_and_mark_the_document_failed(live_worker, folders, name, content, words):
    document = make_document(name, content)
    task = parse(document.id)
    assert_failed_at_once(task, *words)
    document.refresh_from_db()
    assert document.status == "failed"
    assert all(word in document.error for word in words), document.error
    assert chunk_texts(document) == []


def test_a_file_missing_from_storage_fails_clearly(live_worker, folders):
    document = make_document("notes.txt", PROSE.encode())
    document.file.storage.delete(document.file.name)
    assert_failed_at_once(parse(document.id), "is missing from storage")


def document_state(document: Document) -> tuple:
    """What a refused parse must leave as it was: status, error, time of change, chunks, saved files."""
    document.refresh_from_db()
    storage = document.file.storage
    saved = [storage.open(name).read() if storage.exists(name) else None
             for name in (text_name(document), chunks_name(document))]
    return document.status, document.error, document.updated_at, chunk_texts(document), saved


def test_someone_elses_document_fails_like_a_missing_one_and_is_left_untouched(live_worker, folders,
                                                                              django_user_model):
    owner = django_user_model.objects.create_user(username="owner", password="x")
    other = django_user_model.objects.create_user(username="other", password="x")
    document = make_document("notes.txt", PROSE.encode(), owner=owner)
    # An unowned record (submitted from Python) takes task_data's user_id, as before.
    missing_id = "doc_0123456789abcdef01234567"
    task, missing = parse(document.id, user_id=other.pk), parse(missing_id, user_id=other.pk)
    assert_failed_at_once(task, not_found(document.id))
    assert_failed_at_once(missing, not_found(missing_id))
    # Nothing in the records tells the two apart but the id.
    seen = [(record.error, record.message, record.progress) for record in (task, missing)]
    assert repr(seen[0]).replace(document.id, "X") == repr(seen[1]).replace(missing_id, "X"), seen
    document.refresh_from_db()
    assert (document.status, document.error) == ("uploaded", "")
    # The owner may; so may a submission that names no user.
    assert_parsed(parse(document.id, user_id=owner.pk), document)
    assert_parsed(parse(document.id), document)


def test_the_submitters_user_id_is_checked_when_task_data_has_none(live_worker, folders, django_user_model):
    owner = django_user_model.objects.create_user(username="owner", password="x")
    document = make_document("notes.txt", PROSE.encode(), owner=owner)
    assert_failed_at_once(parse_as(owner.pk + 1, document.id), not_found(document.id))
    document.refresh_from_db()
    assert (document.status, document.error) == ("uploaded", "")


def test_a_user_owned_record_parses_the_users_document(live_worker, folders, django_user_model):
    bob = django_user_model.objects.create_user(username="bob", password="x")
    document = make_document("notes.txt", PROSE.encode(), owner=bob)
    unowned = make_document("guide.md", f"# Guide\n\n{PROSE}\n".encode())
    # As the API submits: the record is Bob's; task_data may repeat his id, as an int or as text.
    for task_data in ({}, {"user_id": bob.pk}, {"user_id": str(bob.pk)}):
        task = parse_as(bob.pk, document.id, **task_data)
        assert task.user_id == bob.pk
        assert len(assert_parsed(task, document)) >= 3
    # A document with no owner may be parsed by anyone's record.
    assert_parsed(parse_as(bob.pk, unowned.id), unowned)


def test_a_forged_user_id_in_task_data_is_refused_and_bobs_document_untouched(live_worker, folders,
                                                                             django_user_model):
    alice = django_user_model.objects.create_user(username="alice", password="x")
    bob = django_user_model.objects.create_user(username="bob", password="x")
    document = make_document("notes.txt", PROSE.encode(), owner=bob)
    bobs_chunks = assert_parsed(parse_as(bob.pk, document.id), document)
    before = document_state(document)
    storage = document.file.storage
    storage.delete(document.file.name)  # a parse that got through would store these words instead
    storage.save(document.file.name, ContentFile(b"Alice's words, which must never land in Bob's chunks."))
    # Alice (the record's owner, set by the API) names Bob in task_data, as an int or as text.
    for forged in (bob.pk, str(bob.pk)):
        for resume_from in ("INIT", "STORE"):
            task = parse_as(alice.pk, document.id, user_id=forged, resume_from=resume_from)
            assert_failed_at_once(task, f"user_id {forged!r}", "is not the user who submitted this task")
            assert document.id not in task.error and task.result is None
    assert document_state(document) == before
    assert chunk_texts(document) == bobs_chunks
    # Alice naming herself gets the same answer as for a document that does not exist.
    assert_failed_at_once(parse_as(alice.pk, document.id, user_id=alice.pk), not_found(document.id))
    assert document_state(document) == before


@pytest.mark.parametrize(("task_data", "words"), [
    ({}, ("document_id is required",)),
    ({"document_id": "x", "resume_from": "LATER"}, ("resume_from must be one of", "LATER")),
])
def test_bad_task_data_names_the_field(live_worker, folders, task_data, words):
    task = wait_final(submit_task("DocumentParseTaskHandler", task_data))
    assert_failed_at_once(task, *words)


# --- issue 14 item 1: stage outputs belong to their document ---------------------------------------

def test_bobs_parse_never_touches_alices_file_and_her_chunks_hold_only_her_text(live_worker, folders,
                                                                                 django_user_model):
    alice = django_user_model.objects.create_user(username="alice", password="x")
    bob = django_user_model.objects.create_user(username="bob", password="x")
    alices_words = b"Alice keeps her private notes here. Nobody else may read them."
    bobs_words = b"Bob wrote this text himself. It must never reach Alice's chunks."
    # The names collide as in the issue: Bob's file plus ".extracted.txt" is Alice's file.
    alices = make_document("notes.txt.extracted.txt", alices_words, owner=alice)
    bobs = make_document("notes.txt", bobs_words, owner=bob)
    assert alices.file.name == bobs.file.name + ".extracted.txt"
    storage = alices.file.storage
    assert assert_parsed(parse_as(bob.pk, bobs.id), bobs) == [bobs_words.decode()]
    assert storage.open(alices.file.name).read() == alices_words  # neither deleted nor overwritten
    assert assert_parsed(parse_as(alice.pk, alices.id), alices) == [alices_words.decode()]
    # Either parsed again, in any order, keeps to its own text and leaves the other's file alone.
    assert assert_parsed(parse_as(bob.pk, bobs.id), bobs) == [bobs_words.decode()]
    resumed = parse_as(alice.pk, alices.id, resume_from="CHUNK")
    assert assert_parsed(resumed, alices) == [alices_words.decode()]
    assert storage.open(alices.file.name).read() == alices_words
    assert storage.open(bobs.file.name).read() == bobs_words


def test_stage_outputs_live_under_the_documents_own_folder(live_worker, folders):
    document = make_document("report.txt", PROSE.encode())
    assert_parsed(parse(document.id), document)
    assert text_name(document) == f"parse/{document.id}/extracted.txt"
    assert chunks_name(document) == f"parse/{document.id}/chunks.jsonl"
    assert (folders.media / text_name(document)).is_file()
    assert (folders.media / chunks_name(document)).is_file()
    # Nothing new beside the source: its folder holds only the uploaded file.
    beside = (folders.media / document.file.name).parent.iterdir()
    assert sorted(path.name for path in beside) == ["report.txt"]


def test_a_document_file_inside_the_stage_folder_is_refused_and_left_alone(live_worker, folders):
    victim = make_document("victim.txt", PROSE.encode())
    assert_parsed(parse(victim.id), victim)
    saved = victim.file.storage.open(text_name(victim)).read()
    # A document whose file *is* another document's stage output must not be parsed (it would be
    # read, and its own outputs could be written over another's).
    intruder = Document(file=text_name(victim))
    intruder.save()
    task = parse(intruder.id)
    assert_failed_at_once(task, "stage outputs")
    assert victim.file.storage.open(text_name(victim)).read() == saved


# --- issue 14 item 4: a timeout stops the stage's thread within a block ------------------------------

def test_a_timed_out_parse_stops_its_extraction_within_a_block(live_worker, folders, monkeypatch):
    import time

    from easyrag.documents import pipeline

    real_iter_text, real_extract = pipeline.iter_text, pipeline.extract
    seen = {"blocks": 0}

    def slow_iter_text(*args, **kwargs):  # 50 ms a 64 KiB block: 128 blocks would take 6.4 s
        for piece in real_iter_text(*args, **kwargs):
            time.sleep(0.05)
            seen["blocks"] += 1
            yield piece

    def watched_extract(*args, **kwargs):
        try:
            return real_extract(*args, **kwargs)
        except BaseException as error:
            seen["error"] = type(error).__name__
            raise
        finally:
            seen["ended"] = True

    monkeypatch.setattr(pipeline, "iter_text", slow_iter_text)
    monkeypatch.setattr(pipeline, "extract", watched_extract)
    document = make_document("spaces.txt", b"start" + b" \n\t " * (2 * 2**20) + b"end")  # 8 MiB
    task = wait_final(submit_task("DocumentParseTaskHandler", {"document_id": document.id}, timeout=1),
                      timeout=30)
    assert task.status is TaskStatus.TIMEOUT, (task.status, task.error)
    wait_until(lambda: seen.get("ended"), timeout=30, message="the extraction thread to end")
    assert seen.get("error") == "ParseStoppedError"
    assert seen["blocks"] < 64, seen  # stopped about a second in, not after the whole file
    document.refresh_from_db()
    assert (document.status, document.error) == ("failed", "parse cancelled or timed out")


def test_html_over_a_limit_fails_at_once_naming_it(live_worker, folders):
    depth = 2000
    document = make_document("deep.html", b"<div>" * depth + b"deep" + b"</div>" * depth)
    assert_failed_at_once(parse(document.id), "nested deeper than 512", "MAX_HTML_DEPTH")
    document.refresh_from_db()
    assert document.status == "failed" and "MAX_HTML_DEPTH" in document.error


def test_deleting_a_document_deletes_its_stage_outputs_so_a_reused_id_starts_clean(live_worker, folders):
    first = Document(id="doc_reused")
    first.file.save("first.txt", ContentFile(b"The first document's private words."), save=True)
    assert_parsed(parse(first.id), first)
    storage = first.file.storage
    assert storage.exists(text_name(first)) and storage.exists(chunks_name(first))
    first.delete()
    assert not storage.exists(text_name(first)) and not storage.exists(chunks_name(first))
    second = Document(id="doc_reused")
    second.file.save("second.txt", ContentFile(b"Someone else's document."), save=True)
    assert_failed_at_once(parse(second.id, resume_from="STORE"), "no chunks saved")
    assert chunk_texts(second) == []
