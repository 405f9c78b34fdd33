"""Text out of a document file: plain text and Markdown, HTML (visible text only) and PDF.

Each extractor reads a binary file object and yields text pieces; plain text and PDF are read
piece by piece (a block of bytes, a page), HTML is parsed whole (a DOM needs the whole page).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import BinaryIO

from easyrag.documents.errors import CorruptDocumentError, UnsupportedDocumentTypeError

#: File suffix -> kind of extractor.
SUPPORTED_TYPES = {".txt": "text", ".md": "text", ".markdown": "text", ".html": "html", ".htm": "html",
                   ".pdf": "pdf"}
BLOCK = 64 * 1024
#: Elements whose text a browser does not show.
HIDDEN_ELEMENTS = ("head", "title", "script", "style", "noscript", "template", "svg", "iframe", "object")
#: Elements that start a new line of text (the others flow inline).
BLOCK_ELEMENTS = (
    "address", "article", "aside", "blockquote", "br", "caption", "dd", "details", "div", "dl", "dt",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li",
    "main", "nav", "ol", "p", "pre", "section", "summary", "table", "td", "th", "tr", "ul",
)
#: pypdf keeps every object it parsed; its cache is dropped after this many pages, so memory stays
#: flat however long the PDF is (bench/parse_bench.py measures it).
PDF_CACHE_PAGES = 20
_BREAK = "\ue000"  # a private-use character marks block boundaries while whitespace is collapsed

#: Called after each PDF page with (pages done, pages in all).
PageCallback = Callable[[int, int], None]


def document_kind(name: str) -> str:
    """The extractor kind for a file name, or UnsupportedDocumentTypeError."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in SUPPORTED_TYPES:
        known = ", ".join(sorted(SUPPORTED_TYPES))
        raise UnsupportedDocumentTypeError(f"unsupported document type {suffix or '(no suffix)'!r} of "
                                      f"{PurePosixPath(name).name!r}: supported are {known}")
    return SUPPORTED_TYPES[suffix]


def iter_text(kind: str, source: BinaryIO, on_page: PageCallback | None = None) -> Iterator[str]:
    """Yield the text of ``source`` (a binary file) read as ``kind``; CorruptDocumentError if it cannot be."""
    if kind == "text":
        return _plain_text(source)
    if kind == "html":
        return _html_text(source)
    if kind == "pdf":
        return _pdf_text(source, on_page)
    raise UnsupportedDocumentTypeError(f"no extractor for {kind!r}")


def _plain_text(source: BinaryIO) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    offset = 0
    while block := source.read(BLOCK):
        if b"\x00" in block:
            raise CorruptDocumentError(
                f"binary data, not text (a NUL byte at byte {offset + block.index(0)})")
        try:
            yield decoder.decode(block)
        except UnicodeDecodeError as error:
            raise CorruptDocumentError(
                f"not UTF-8 text ({error.reason} at byte {offset + error.start})") from None
        offset += len(block)
    try:
        yield decoder.decode(b"", final=True)
    except UnicodeDecodeError as error:
        raise CorruptDocumentError(f"not UTF-8 text ({error.reason} at the end of the file)") from None


def _html_text(source: BinaryIO) -> Iterator[str]:
    from bs4 import BeautifulSoup

    data = source.read()
    if b"\x00" in data and not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise CorruptDocumentError("binary data, not HTML")
    soup = BeautifulSoup(data, "html.parser")
    for element in soup.find_all(HIDDEN_ELEMENTS):
        element.decompose()
    for element in soup.find_all(hidden=True):
        element.decompose()
    for element in soup.find_all(BLOCK_ELEMENTS):
        element.insert_before(_BREAK)
        element.insert_after(_BREAK)
    # get_text() leaves out comments, doctypes and processing instructions.
    text = " ".join(soup.get_text().split())  # the page's own line breaks are just spaces
    lines = (line.strip() for line in text.split(_BREAK))
    yield "\n".join(line for line in lines if line)


def _pdf_text(source: BinaryIO, on_page: PageCallback | None) -> Iterator[str]:
    from pypdf import PdfReader

    try:
        # A file object, not a path: pypdf then reads objects as pages need them, not the whole file.
        reader = PdfReader(source)
        if reader.is_encrypted and not reader.decrypt(""):
            raise CorruptDocumentError("encrypted PDF: a password is needed")
        total = len(reader.pages)
    except (CorruptDocumentError, OSError):
        raise
    except Exception as error:  # pypdf raises many kinds on a broken file
        raise CorruptDocumentError(f"not a readable PDF ({type(error).__name__}: {error})") from None
    for number in range(total):
        try:
            text = reader.pages[number].extract_text()
        except OSError:
            raise
        except Exception as error:
            raise CorruptDocumentError(f"PDF page {number + 1} of {total} is unreadable "
                                  f"({type(error).__name__}: {error})") from None
        yield text
        yield "\n\n"
        if number % PDF_CACHE_PAGES == PDF_CACHE_PAGES - 1:
            reader.resolved_objects.clear()  # parsed again if a later page shares them (fonts)
        if on_page is not None:
            on_page(number + 1, total)
