"""Text extraction from real files: plain text, Markdown, HTML (visible text only) and PDF."""

from __future__ import annotations

import io
import random

import pytest
from pypdf import PdfReader

from easyrag.documents.chunking import normalize
from easyrag.documents.errors import CorruptDocumentError, UnsupportedDocumentTypeError
from easyrag.documents.extract import PDF_CACHE_PAGES, document_kind, iter_text
from tests.documents.pdfs import pdf_bytes


def _text(kind: str, data: bytes, on_page=None) -> str:
    return "".join(normalize(iter_text(kind, io.BytesIO(data), on_page)))


@pytest.mark.parametrize(("name", "kind"), [("a.txt", "text"), ("notes.MD", "text"), ("page.htm", "html"),
                                            ("x/y/report.PDF", "pdf")])
def test_kind_follows_the_suffix(name, kind):
    assert document_kind(name) == kind


@pytest.mark.parametrize("name", ["letter.docx", "image.png", "README"])
def test_other_types_are_unsupported_with_the_list(name):
    with pytest.raises(UnsupportedDocumentTypeError, match=r"supported are \.htm, \.html, .*\.pdf"):
        document_kind(name)


def test_plain_text_utf8_with_bom_and_crlf():
    data = "\ufeffCafé déjà vu\r\nsecond line\r\n".encode()
    assert _text("text", data) == "Café déjà vu\nsecond line"


def test_plain_text_split_across_blocks_decodes_whole_characters():
    data = ("é" * 70_000).encode()  # 140 000 bytes: the 64 KiB blocks cut characters in two
    assert _text("text", data) == "é" * 70_000


def test_markdown_is_kept_as_written():
    assert _text("text", b"# Title\n\n- item *one*\n") == "# Title\n\n- item *one*"


@pytest.mark.parametrize(("data", "reason"), [(b"caf\xe9 latin-1", "not UTF-8 text"),
                                              (b"\x89PNG\r\n\x1a\n\x00\x00", "binary data")])
def test_plain_text_that_is_not_utf8_text_is_corrupt(data, reason):
    with pytest.raises(CorruptDocumentError, match=reason):
        _text("text", data)


def test_html_gives_visible_text_only():
    html = b"""<!DOCTYPE html><html><head><title>Tab title</title><style>p { color: red }</style>
    <script>var secret = "script text";</script></head>
    <body><!-- a comment --><h1>Main
        heading</h1><p>Some <b>bold</b> words &amp; an <a href="#">inline link</a>.<br>After a break.</p>
    <div hidden>hidden text</div><noscript>enable scripts</noscript>
    <ul><li>first item</li><li>second item</li></ul><script>alert("more script")</script></body></html>"""
    text = _text("html", html)
    assert text == ("Main heading\nSome bold words & an inline link.\nAfter a break.\n"
                    "first item\nsecond item")


def test_html_encoding_from_its_meta_charset():
    html = '<html><head><meta charset="iso-8859-1"></head><body><p>Café</p></body></html>'
    assert _text("html", html.encode("iso-8859-1")) == "Café"


def test_pdf_pages_in_order_with_a_callback_per_page():
    data = pdf_bytes(["Alpha page text.", "Beta page text.", "Gamma page text."])
    pages = []
    text = _text("pdf", data, lambda done, total: pages.append((done, total)))
    assert text.index("Alpha") < text.index("Beta") < text.index("Gamma")
    assert "Beta page text." in text
    assert pages == [(1, 3), (2, 3), (3, 3)]


def test_pdf_is_read_as_its_pages_need_it():
    rng = random.Random(0)  # numbers compress badly: each page's text is a fair share of the file
    data = pdf_bytes([f"Page {n} " + " ".join(str(rng.randrange(10**6)) for _ in range(300))
                      for n in range(60)])

    class CoverageFile(io.BytesIO):
        """Marks every byte that was read at least once."""

        def __init__(self, data: bytes) -> None:
            super().__init__(data)
            self.seen = bytearray(len(data))

        def read(self, size=-1):
            at = self.tell()
            chunk = super().read(size)
            self.seen[at:at + len(chunk)] = b"\x01" * len(chunk)
            return chunk

    source = CoverageFile(data)
    pages = iter_text("pdf", source)
    first = next(pages)
    assert first.startswith("Page 0")
    assert sum(source.seen) < len(data) / 4  # the first page did not need the whole file
    rest = "".join(pages)
    assert "Page 59" in rest and sum(source.seen) > len(data) * 0.9
    # Dropping pypdf's object cache every PDF_CACHE_PAGES pages changes nothing in the text.
    assert PDF_CACHE_PAGES < 60
    whole = "".join(page.extract_text() + "\n\n" for page in PdfReader(io.BytesIO(data)).pages)
    assert first + rest == whole


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_pdf_is_corrupt(damage):
    good = pdf_bytes(["Some text."] * 3)
    data = b"%PDF-1.7\nthis is not a pdf at all" if damage == "garbage" else good[: len(good) // 3]
    with pytest.raises(CorruptDocumentError, match=r"not a readable PDF|unreadable"):
        _text("pdf", data)


def test_binary_data_named_html_is_corrupt():
    with pytest.raises(CorruptDocumentError, match="binary data, not HTML"):
        _text("html", b"\x00\x01\x02<html>")
