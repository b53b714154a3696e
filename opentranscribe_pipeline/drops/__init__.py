"""The drop engine, Dagster-free: how folders of media become bounded batches.

The Dagster sensor (``sensors/drop_sensor.py``) and the CLI (``opentranscribe process``) are
two front ends over it; the benchmarks and the tests run the same code a daemon tick runs.

- ``batches.py``: media names, batch ids, planning files into batches by the limits, probing
  durations, claiming a drop name for one source, writing the ``batches`` manifests (create
  only), and :func:`~.batches.register_drop`, the CLI's one-shot registration of a folder;
- ``rules.py``: the engine's settings and what counts as junk, temporary or in progress;
- ``state.py``: the cursor and the per-drop ledgers as typed records with their JSON forms,
  and what a tick and a walk return;
- ``walk.py``: the walk of one complete drop (scan, plan, register, finish) and its ledger;
- ``scanner.py``: one tick over the incoming prefix (new drops, late files, the sweep,
  completion of pending drops), which walks the complete ones.
"""
