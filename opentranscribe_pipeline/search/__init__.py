"""Search over the archive, Dagster-free: passages, text embeddings, two backends, ranking.

- ``chunking.py``: passages of one speaker's turn, split at sentence ends near 200 words;
- ``embedding.py``: the sentence-transformers text model (packaged MiniLM offline, any id or
  directory in production);
- ``backends.py``: the interface and the documents; ``lance.py`` (embedded, default) and
  ``opensearch.py`` (production);
- ``ranking.py``: reciprocal rank fusion and highlighting;
- ``service.py``: index a batch, search, the speakers index.
"""
