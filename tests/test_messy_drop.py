"""A drop nobody here designed: `opentranscribe process` on a seeded messy drop
(``tests/data/make_messy_drop.py``: 1-6 speakers per file, synthetic voices beside real people,
monologues with long pauses, rapid exchanges, overlaps, one-word turns, noise beds, a silent
and a hum-only file, stereo with one speaker per channel, a video without audio, odd
containers and sample rates).

The seed changes on every run and is printed (``OPENTRANSCRIBE_MESSY_SEED=N`` replays one):
exit 0, every table of the warehouse valid against its schema, and for every file with speech
its speaker ids, exports and search passages; no language for a file where nothing is said."""

from __future__ import annotations

import os

import pandera.polars as pa
import polars as pl
import pytest

from opentranscribe_pipeline.query.issues import read_issues
from opentranscribe_pipeline.schemas import TABLES
from opentranscribe_pipeline.speakers.state import read_clusters

from .conftest import MESSY_SEED, run_cli, write_instance_yaml
from .data import make_messy_drop

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

PER_BATCH = [t for t in TABLES if t not in ("speaker_clusters", "speaker_centroids", "speaker_profiles")]


def test_a_seeded_messy_drop_gives_every_good_file_every_output(tmp_path):
    missing = make_messy_drop.missing_tools()
    if missing:  # `make test` installs them; CI must not go green without this test
        why = f"the messy drop needs {', '.join(missing)} (apt-get install espeak-ng flite)"
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(why)
    seed = MESSY_SEED  # printed in the run's header
    print(f"messy drop seed: {seed} (replay: OPENTRANSCRIBE_MESSY_SEED={seed})")
    drop = tmp_path / "messy"
    truth = make_messy_drop.make_drop(drop, seed, n_files=8)["files"]
    home = write_instance_yaml(tmp_path / "home")
    root = tmp_path / "warehouse"
    proc = run_cli(["process", str(drop), "--warehouse", str(root)], home, timeout=2400)
    replay = f"seed {seed}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, replay
    assert "Traceback" not in proc.stderr, replay

    from opentranscribe_pipeline.storage import Warehouse

    wh = Warehouse(str(root))
    [batch] = wh.batch_ids("media")
    # every table the run wrote is valid as a whole
    for table in PER_BATCH:
        df = wh.read_table(table, batch)
        if df is not None:
            try:
                TABLES[table].validate(df, lazy=True)
            except pa.errors.SchemaErrors as exc:
                raise AssertionError(f"seed {seed}: {table}: {exc.failure_cases.head(5)}") from None
    assert read_issues(wh, [batch]).is_empty(), f"seed {seed}: {read_issues(wh, [batch])}"

    media = wh.read_table("media", batch)
    by_name = {uri.rsplit("/", 1)[-1]: row for uri, row in zip(media["source_uri"], media.iter_rows(named=True))}
    assert set(by_name) == set(truth), replay
    transcripts = wh.read_table("transcripts", batch)
    words = wh.read_table("words", batch)
    chunks = wh.read_table("chunks", batch)
    embeddings = wh.read_table("speaker_embeddings", batch)
    turns = wh.read_table("speaker_turns", batch)
    clusters = read_clusters(wh, [batch])
    for name, file in truth.items():
        row = by_name[name]
        if file["expected"] == "skipped":
            assert row["status"] == "skipped", (seed, name, row["error"])
            continue
        assert row["status"] == "ok", (seed, name, row["error"])
        mid = row["media_id"]
        tx = transcripts.filter(pl.col("media_id") == mid) if not row["silent"] else None
        if file["expected"] == "no_speech":
            # nothing said: no language guessed (a silent file never reaches the model)
            assert tx is None or tx.is_empty() or tx["language"][0] is None, (seed, name, tx)
            continue
        assert tx is not None and tx["status"][0] == "ok", (seed, name, tx)
        if words.filter(pl.col("media_id") == mid).is_empty():
            continue  # nothing heard (a whisper under a noise bed): nothing to identify or index
        # speaker ids for every local speaker, exports, search passages
        local = embeddings.filter(pl.col("media_id") == mid)["speaker"].to_list()
        if not turns.filter(pl.col("media_id") == mid).is_empty():  # diarization heard someone
            assert local, (seed, name, "no speaker embeddings")
        ids = clusters.filter(pl.col("media_id") == mid)
        assert sorted(ids["speaker"].to_list()) == sorted(local), (seed, name, ids)
        assert ids["global_speaker_id"].null_count() == 0
        for fmt in ("srt", "vtt", "txt", "json"):
            assert wh.exists(wh.export_path(fmt, batch, mid)), (seed, name, fmt)
        assert not chunks.filter(pl.col("media_id") == mid).is_empty(), (seed, name, "no search passages")
