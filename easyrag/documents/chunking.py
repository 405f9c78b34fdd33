"""Whitespace normalisation and chunking of a text stream, in characters.

Both work on an iterable of text pieces and keep only a bounded buffer (about one chunk plus one
piece), so a long document is chunked without holding its whole text.

A chunk ends at the best boundary in the second half of its allowed size, in this order: a
paragraph break, a sentence end, a space between words; a text with none there is cut hard at
``size``.  The next chunk starts up to ``overlap`` characters earlier, at the start of a word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

#: Pieces longer than this are fed in slices, which bounds the buffer.
SLICE = 8192

_SPACES = re.compile(r"[^\S\n]+")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")
_BLANK_LINES = re.compile(r"\n{3,}")
_SENTENCE_END = re.compile(r"[.!?\u2026](?:[\"')\]\u201d\u2019])*(?=\s)|[\u3002\uff01\uff1f]")


def normalize(pieces: Iterable[str]) -> Iterator[str]:
    """Yield the text with line breaks as ``\\n``, runs of other whitespace as one space, no space
    around a line break, at most one blank line in a row, and no whitespace at either end."""
    pending = ""  # whitespace at the end of what was seen (squeezed): cleaned with whatever follows it
    started = False
    for piece in pieces:
        raw = pending + piece
        body_end = len(raw.rstrip())
        body, pending = raw[:body_end], _squeeze(raw[body_end:])
        if not body:
            continue
        text = _clean(body)
        if not started:
            text, started = text.lstrip(), True
        yield text


def _squeeze(space: str) -> str:
    """A run of whitespace, as short as what _clean makes of it (a space, one or two line breaks),
    so whitespace carried from piece to piece stays a few characters, however long the run: linear
    time and bounded memory on a file of whitespace (issue 14: it was quadratic)."""
    if len(space) <= 3:
        return space
    tail = "\r" if space.endswith("\r") else ""  # may pair with a "\n" at the start of the next piece
    if tail:
        space = space[:-1]
    breaks = space.replace("\r\n", "\n").count("\n") + space.replace("\r\n", "").count("\r")
    return ("\n" * min(breaks, 2) or " ") + tail


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _SPACES.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text)


def iter_chunks(pieces: Iterable[str], size: int, overlap: int) -> Iterator[str]:
    """Yield chunks of at most ``size`` characters, each sharing up to ``overlap`` characters with
    the one before it, without leading or trailing whitespace."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"need size >= 1 and 0 <= overlap < size, got size={size}, overlap={overlap}")
    lowest = max(size // 2, overlap + 1)  # cutting here or later always moves forward
    buffer = ""
    fresh = 0  # where the text no earlier chunk holds starts in the buffer
    for piece in pieces:
        for start in range(0, len(piece), SLICE):
            buffer += piece[start:start + SLICE]
            while len(buffer) > size:
                end = _cut(buffer, lowest, size)
                if buffer[fresh:end].strip():  # else it would only repeat the overlap
                    yield buffer[:end].strip()
                following = _next_start(buffer, end, overlap)
                buffer, fresh = buffer[following:], max(0, end - following)
    if buffer[fresh:].strip():
        yield buffer.strip()


def split_text(text: str, size: int, overlap: int) -> list[str]:
    """The chunks of a text already in memory (see iter_chunks)."""
    return list(iter_chunks([text], size, overlap))


def _cut(buffer: str, lowest: int, size: int) -> int:
    """Where the chunk at the start of ``buffer`` ends: the best boundary in [lowest, size]."""
    window = buffer[:size + 1]  # buffer[size] tells whether a word or sentence ends at ``size``
    paragraph = window.rfind("\n\n", lowest)
    if lowest <= paragraph <= size:
        return paragraph
    sentence_end = 0
    for match in _SENTENCE_END.finditer(window, lowest):
        if match.end() <= size:
            sentence_end = match.end()
    if sentence_end:
        return sentence_end
    for position in range(size, lowest - 1, -1):
        if window[position].isspace():
            return position
    return size


def _next_start(buffer: str, end: int, overlap: int) -> int:
    """Where the next chunk starts: ``overlap`` characters before ``end``, moved to a word start."""
    start = end - overlap
    if overlap and not buffer[start - 1].isspace():
        space = next((i for i in range(start, end) if buffer[i].isspace()), None)
        if space is not None:
            start = space + 1
    while start < len(buffer) and buffer[start].isspace():
        start += 1
    return start
