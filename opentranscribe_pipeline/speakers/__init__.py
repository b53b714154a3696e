"""Archive-wide speaker identity, Dagster-free (the clustering asset and the CLI use it).

The maths, over arrays:

- ``voices.py``: a :class:`~.voices.VoiceIndex` of centroids per embedding model, its ids
  (minting, the one resolver of merge chains) and the operations that change it (add,
  split, merge);
- ``params.py``: the thresholds per embedding model, and how sure a membership is;
- ``cluster.py``: incremental assignment and warm-started re-clustering with stable ids;
- ``identity.py``: one clustering run as functions over frames (full or incremental), and
  what names do when voices merge (profiles, suggestions).

The state on the warehouse, in generations:

- ``manifest.py``: the archive-wide tables' names and one generation's manifest;
- ``lease.py``: the writer lease (one writer at a time; a dead one does not block);
- ``state.py``: reading, committing and publishing generations, and the readers other
  packages use (clusters, locations, the listing);
- ``index_rows.py``: the index of one model from and to ``speaker_centroids`` rows;
- ``runs.py``: one clustering run: read, cluster, commit;
- ``edits.py``: a person's edits (name, split, merge), each a new generation;
- ``names.py``: the rule a name must follow, and how names are shown;
- ``calibration.py``: ``speakers calibrate``, the thresholds on an archive's own voices;
- ``speaker_map.py``: the 2-D picture of the embeddings shown in the UI.
"""
