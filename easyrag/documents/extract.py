"""Text out of a document file: plain text and Markdown, HTML (visible text only) and PDF.

Each extractor reads a binary file object and yields text pieces; plain text and PDF are read
piece by piece (a block of bytes, a page), HTML is parsed whole (a DOM needs the whole page), so
it is capped: MAX_HTML_BYTES of file, MAX_HTML_DEPTH levels of nesting.  Every extractor checks
``should_stop`` per block (64 KiB of text, 16 KiB of HTML markup, a PDF page, 4 096 HTML nodes)
and raises ParseStoppedError once it is true: a cancel or timeout stops the work within a block.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Iterator
from pathlib import PurePosixPath
from typing import BinaryIO

from easyrag.documents.errors import (
    CorruptDocumentError,
    DocumentLimitError,
    ParseStoppedError,
    UnsupportedDocumentTypeError,
)

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

#: HTML is parsed whole, into a tree of ~10x its size in memory: larger files are refused.  A
#: proposed setting (ASYNC_TASK_MAX_HTML_BYTES); 7.5 MiB of prose markup took 7 s on the shared
#: 2-core dev machine (cancellable: should_stop is checked every HTML_FEED characters).
MAX_HTML_BYTES = 8 * 2**20
#: Deeper nesting is refused.  Browsers stop nesting at 512 too (Chromium's HTML parser); real
#: pages stay far below it.  Bounds the tree walk and the parser's stack (issue 14: 20 000 levels).
MAX_HTML_DEPTH = 512
#: HTML markup is fed to the parser this many characters at a time, should_stop checked between.
HTML_FEED = 16 * 1024
#: The HTML tree walk checks should_stop once per this many nodes.
HTML_NODES_PER_CHECK = 4096

#: Called after each PDF page with (pages done, pages in all).
PageCallback = Callable[[int, int], None]
#: True once the parse must stop (its task was cancelled or timed out).
StopCheck = Callable[[], bool]


def never() -> bool:
    """A StopCheck for work that nobody stops."""
    return False


def stop_if(should_stop: StopCheck) -> None:
    """Raise ParseStoppedError if ``should_stop()``."""
    if should_stop():
        raise ParseStoppedError("parse stopped: the task was cancelled or timed out")


def checked(pieces: Iterable[str], should_stop: StopCheck) -> Iterator[str]:
    """``pieces``, with ``should_stop`` checked before each one is taken."""
    for piece in pieces:
        stop_if(should_stop)
        yield piece


def document_kind(name: str) -> str:
    """The extractor kind for a file name, or UnsupportedDocumentTypeError."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in SUPPORTED_TYPES:
        known = ", ".join(sorted(SUPPORTED_TYPES))
        raise UnsupportedDocumentTypeError(f"unsupported document type {suffix or '(no suffix)'!r} of "
                                      f"{PurePosixPath(name).name!r}: supported are {known}")
    return SUPPORTED_TYPES[suffix]


def iter_text(kind: str, source: BinaryIO, on_page: PageCallback | None = None,
              should_stop: StopCheck = never) -> Iterator[str]:
    """Yield the text of ``source`` (a binary file) read as ``kind``; CorruptDocumentError if it cannot
    be, DocumentLimitError if it is over a limit, ParseStoppedError once ``should_stop()``."""
    if kind == "text":
        return checked(_plain_text(source), should_stop)
    if kind == "html":
        return _html_text(source, should_stop)
    if kind == "pdf":
        return checked(_pdf_text(source, on_page), should_stop)
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


def _html_text(source: BinaryIO, should_stop: StopCheck = never) -> Iterator[str]:
    from bs4 import BeautifulSoup
    from bs4.element import CData, NavigableString, Tag

    data = source.read(MAX_HTML_BYTES + 1)
    if len(data) > MAX_HTML_BYTES:
        raise DocumentLimitError(f"HTML file larger than {MAX_HTML_BYTES} bytes ({MAX_HTML_BYTES // 2**20} "
                                 "MiB, the limit MAX_HTML_BYTES): refused")
    if b"\x00" in data and not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise CorruptDocumentError("binary data, not HTML")
    stop_if(should_stop)
    soup = BeautifulSoup(data, builder=_limited_builder(should_stop))
    # One walk over the tree, iterative and linear in its size (inserting break markers with
    # insert_before/insert_after costs the depth each time: quadratic on nested pages).
    parts: list[str] = []
    stack: list[object] = list(reversed(soup.contents))
    nodes = 0
    while stack:
        node = stack.pop()
        nodes += 1
        if nodes % HTML_NODES_PER_CHECK == 0:
            stop_if(should_stop)
        if node is _BREAK:
            parts.append(_BREAK)
        elif isinstance(node, Tag):
            if node.name in HIDDEN_ELEMENTS or node.get("hidden") is not None:
                continue
            if node.name in BLOCK_ELEMENTS:
                parts.append(_BREAK)
                stack.append(_BREAK)
            stack.extend(reversed(node.contents))
        elif type(node) in (NavigableString, CData):  # as get_text(): no comments, doctypes, ...
            parts.append(node)
    text = " ".join("".join(parts).split())  # the page's own line breaks are just spaces
    lines = (line.strip() for line in text.split(_BREAK))
    yield "\n".join(line for line in lines if line)


def _limited_builder(should_stop: StopCheck):
    """html.parser's tree builder, fed HTML_FEED characters at a time (should_stop between), refusing
    an element nested deeper than MAX_HTML_DEPTH as it is opened."""
    from bs4.builder import HTMLParserTreeBuilder, ParserRejectedMarkup
    from bs4.builder._htmlparser import BeautifulSoupHTMLParser

    class Parser(BeautifulSoupHTMLParser):
        def handle_starttag(self, tag, attrs, handle_empty_element=True):
            if len(self.soup.tagStack) > MAX_HTML_DEPTH:  # the root is tagStack[0]: depth = len
                raise DocumentLimitError(f"HTML nested deeper than {MAX_HTML_DEPTH} elements (the limit "
                                         f"MAX_HTML_DEPTH, at <{tag}>): refused")
            return super().handle_starttag(tag, attrs, handle_empty_element)

    class Builder(HTMLParserTreeBuilder):
        def feed(self, markup) -> None:
            args, kwargs = self.parser_args
            parser = Parser(self.soup, *args, **kwargs)
            try:
                for start in range(0, len(markup), HTML_FEED):
                    stop_if(should_stop)
                    parser.feed(markup[start:start + HTML_FEED])
                parser.close()
            except AssertionError as error:  # as HTMLParserTreeBuilder.feed
                raise ParserRejectedMarkup(error) from None
            parser.already_closed_empty_element = []

    return Builder()


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

