"""Documents and the chunks that DocumentParseTaskHandler cuts them into (RAG ingestion).

``models``: Document and Chunk.  ``extract``: text out of txt, md, html and pdf files.
``chunking``: whitespace normalisation and size/overlap chunking on sentence or word boundaries.
``pipeline``: the parse stages on storage and database, called by ``tasks.document_parse``.
"""
