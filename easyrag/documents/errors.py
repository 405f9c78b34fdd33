"""Why a document cannot be parsed.  Each is final: running the parse again cannot fix it."""

from __future__ import annotations


class DocumentError(Exception):
    """Base of the parse errors that are the document's (or the request's) fault."""


class DocumentNotFoundError(DocumentError):
    """No Document has this id."""


class DocumentAccessDeniedError(DocumentError):
    """The document belongs to another user."""


class UnsupportedDocumentTypeError(DocumentError):
    """The file's type is not one extract.SUPPORTED_TYPES knows."""


class CorruptDocumentError(DocumentError):
    """The file cannot be read as the type its name says, or has no text."""


class MissingStageOutputError(DocumentError):
    """resume_from names a stage whose input (an earlier stage's output) was never saved."""


class DocumentLimitError(DocumentError):
    """The file is over one of the parser's limits (extract.MAX_HTML_BYTES, extract.MAX_HTML_DEPTH)."""


class ParseStoppedError(Exception):
    """The task was cancelled or timed out: the stage stopped at its next block.  Not a DocumentError:
    the document is not at fault, and the handler reports the cancel or timeout, not this."""
