"""Issue 14 item 4: parsing stops within a block of a cancel or timeout, whitespace and nested HTML
cost linear work, and HTML over its size or depth limit is refused naming the limit.

Speed itself is measured in bench/parse_bench.py (chunking of 8/16/32 MiB); these tests assert
operation counts and bounded state, which do not depend on the machine's load.
"""

from __future__ import annotations

import io
import tracemalloc

import pytest

from easyrag.documents import extract
from easyrag.documents.chunking import iter_chunks, normalize
from easyrag.documents.errors import DocumentLimitError, ParseStoppedError
from easyrag.documents.extract import iter_text


class CountingReader(io.BytesIO):
    """A binary file that counts its read() calls."""

    reads = 0

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        return super().read(size)


def stop_after(calls: int):
    """A should_stop that turns true on its ``calls``-th call, and counts every call."""
    state = {"calls": 0}

    def should_stop() -> bool:
        state["calls"] += 1
        return state["calls"] >= calls

    should_stop.state = state
    return should_stop


def test_a_whitespace_file_stops_within_one_block_of_the_stop_signal():
    # 4 MiB of mostly whitespace: 64 blocks; the signal comes at the 3rd check.
    source = CountingReader((b" \t \n" * (2**20)) + b"end")
    with pytest.raises(ParseStoppedError):
        for _ in normalize(iter_text("text", source, should_stop=stop_after(3))):
            pass
    assert source.reads <= 3  # the signal is checked per 64 KiB block, not only between PDF pages


def test_html_parsing_stops_within_one_feed_of_the_stop_signal():
    source = CountingReader(b"<p>" + b"word " * 200_000 + b"</p>")  # ~1 MiB of markup
    should_stop = stop_after(5)
    with pytest.raises(ParseStoppedError):
        list(iter_text("html", source, should_stop=should_stop))
    assert should_stop.state["calls"] == 5  # checked again and again while the page is parsed


def test_whitespace_carried_between_pieces_stays_small():
    # Quadratic before: the whitespace run was carried (and copied) whole from piece to piece.
    # Now what is carried is squeezed to what it becomes: a few characters, whatever the run.
    pieces = [" \t\r\n  " * (64 * 1024 // 6)] * 64  # 4 MiB of whitespace in 64 KiB pieces
    tracemalloc.start()
    try:
        output = "".join(normalize(["start", *pieces, "end"]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert output == "start\n\nend"
    assert peak < 1 * 2**20, f"peak {peak} bytes: the whitespace run was carried whole"


def test_chunking_whitespace_heavy_text_keeps_its_buffer_bounded():
    text = ("word " + " " * 5000) * 400  # 2 MiB, long runs of spaces between words
    chunks = list(iter_chunks(normalize([text[i:i + 65536] for i in range(0, len(text), 65536)]), 1000, 100))
    assert chunks and all(len(chunk) <= 1000 for chunk in chunks)
    assert " ".join(chunks).split() and set(" ".join(chunks).split()) == {"word"}


def test_deeply_nested_html_is_refused_naming_the_limit():
    depth = extract.MAX_HTML_DEPTH + 1500  # 20 000 levels took 21 s before; refused at once now
    source = io.BytesIO(b"<div>" * depth + b"deep" + b"</div>" * depth)
    limit = extract.MAX_HTML_DEPTH
    with pytest.raises(DocumentLimitError, match=rf"deeper than {limit} elements \(the limit MAX_HTML_DEPTH"):
        list(iter_text("html", source))


def test_html_nested_up_to_the_limit_is_parsed():
    depth = extract.MAX_HTML_DEPTH - 2  # html and body are opened around the divs
    page = b"<html><body>" + b"<div>" * depth + b"deep text" + b"</div>" * depth + b"</body></html>"
    assert "".join(iter_text("html", io.BytesIO(page))) == "deep text"


def test_html_over_the_size_limit_is_refused_naming_the_limit(monkeypatch):
    monkeypatch.setattr(extract, "MAX_HTML_BYTES", 64 * 1024)
    page = b"<p>" + b"x" * (64 * 1024) + b"</p>"
    with pytest.raises(DocumentLimitError, match=r"larger than 65536 bytes .*the limit MAX_HTML_BYTES"):
        list(iter_text("html", io.BytesIO(page)))
    assert "".join(iter_text("html", io.BytesIO(page[:60_000] + b"</p>"))).startswith("xxx")
