"""Archive-wide speaker identity, Dagster-free (the clustering asset and the CLI use it).

- ``cluster.py``: the maths: a :class:`~.cluster.VoiceIndex` of centroids per embedding
  model, incremental assignment and warm-started re-clustering with stable ids;
- ``identity.py``: one clustering run as functions over frames (full or incremental), and
  what names do when voices merge (profiles, suggestions);
- ``state.py``: the archive-wide tables on the warehouse (clusters, centroids, profiles,
  suggestions), listing and naming voices;
- ``speaker_map.py``: the 2-D picture of the embeddings shown in the UI.
"""
