"""What `opentranscribe process` says about files that miss outputs: a model step that failed
on a file ingest accepted is listed by source name, step and error beside the files a CPU
stage held back, and counts towards exit status 1 (bad inputs refused at ingest do not)."""

from __future__ import annotations

import polars as pl

from opentranscribe_pipeline.cli import report as cli


def test_a_file_a_model_step_failed_on_is_listed_as_missing_outputs(copy_of_shared_archive, capsys):
    archive = copy_of_shared_archive
    wh, batch = archive.wh, archive.batch
    assert cli.print_held_back(wh, [batch]) == 0  # the shared archive: refused links and a silent file only
    assert "held back" not in capsys.readouterr().err

    state = wh.read_table("transcripts", batch)
    victim = state.filter(pl.col("status") == "ok")["media_id"][0]
    failed = state.with_columns(
        status=pl.when(pl.col("media_id") == victim).then(pl.lit("failed")).otherwise("status"),
        error=pl.when(pl.col("media_id") == victim)
        .then(pl.lit("IndexError: boolean index did not match"))
        .otherwise("error"),
    )
    wh.write_table("transcripts", failed, batch)
    source = wh.read_table("media", batch).filter(pl.col("media_id") == victim)["source_uri"][0]
    name = source.rsplit("/", 1)[-1]

    assert cli.print_held_back(wh, [batch]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("held back:  1 file(s) miss some outputs")
    assert err[1:] == [f"  {name}: transcribe: step failed on the file: IndexError: boolean index did not match"]
