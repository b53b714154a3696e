"""What ``process`` prints at the end about the batches it handled: files, audio, words and
speakers from the tables, counted by ``query.summary.batches_summary`` (the archive
dashboard's counts, for this command's batches only, with their words and segments), then
one line per file some stage left without outputs.
"""

from __future__ import annotations

import sys

MODEL_STEP_STATES = {"transcripts": "transcribe", "diarization": "diarize"}


def _model_step_failures(warehouse, batch_ids: list[str]) -> list[tuple[str, str, str, str]]:
    """(source name, media id, step, error) of every file ingest accepted that a model step
    failed on (its state row says ``failed``): the file misses that step's outputs."""
    import polars as pl

    out = []
    for batch_id in batch_ids:
        media = warehouse.read_table("media", batch_id)
        names = dict(media.select("media_id", "source_uri").iter_rows()) if media is not None else {}
        for table, step in MODEL_STEP_STATES.items():
            state = warehouse.read_table(table, batch_id)
            if state is None or "status" not in state.columns:
                continue
            for media_id, error in state.filter(pl.col("status") == "failed").select("media_id", "error").iter_rows():
                name = (names.get(media_id) or media_id).rsplit("/", 1)[-1]
                out.append((name, media_id, step, error or ""))
    return sorted(out)


def print_held_back(warehouse, batch_ids: list[str]) -> int:
    """One line per file and stage that left the file without some outputs: a model step that
    failed on it (its state table) or a stage that held its rows back (``file_issues``),
    with why. Returns how many files."""

    from ..query.issues import read_issues
    from ..storage import StorageError

    try:
        issues = read_issues(warehouse, batch_ids)
        failed = _model_step_failures(warehouse, batch_ids)
    except StorageError as exc:
        print(f"warning: file issues not readable: {exc}", file=sys.stderr)
        return 0
    if issues.is_empty() and not failed:
        return 0
    files = len(set(issues["media_id"].to_list()) | {media_id for _, media_id, _, _ in failed})
    print(
        f"held back:  {files} file(s) miss some outputs (tables file_issues, transcripts, diarization):",
        file=sys.stderr,
    )
    for name, _, step, error in failed:
        print(f"  {name}: {step}: step failed on the file: {error[:160]}", file=sys.stderr)
    for row in issues.sort("source_uri", "stage").iter_rows(named=True):
        name = (row["source_uri"] or row["media_id"]).rsplit("/", 1)[-1]
        what = f"no `{row['table']}` rows" if row["table"] else "stage failed"
        print(f"  {name}: {row['stage']}: {what}: {row['rule']} {row['values'][:160]}", file=sys.stderr)
    return files


def print_summary(warehouse, batch_ids: list[str], wall_s: float):
    """Print what the tables say about ``batch_ids``. Returns None, or the storage error that
    kept the summary from being read (then what is known without the tables is printed)."""
    from ..query.summary import batches_summary
    from ..storage import StorageError

    try:
        s = batches_summary(warehouse, batch_ids)
    except StorageError as exc:
        print()
        print(f"warehouse:  {warehouse.root_uri}")
        print(f"batches:    {len(batch_ids)} ({', '.join(batch_ids[:5])}{' ...' if len(batch_ids) > 5 else ''})")
        print(f"wall time:  {wall_s:.1f} s")
        print("summary:    not available, the warehouse cannot be read")
        print(f"error: {exc}", file=sys.stderr)
        return exc
    rtf = wall_s / s["audio_s"] if s["audio_s"] else 0.0
    print()
    print(f"warehouse:  {warehouse.root_uri}")
    print(f"batches:    {len(batch_ids)}")
    print(f"files:      {s['files']} total, {s['ok']} ok, {s['failed']} failed, {s['skipped']} skipped")
    if s["transcripts_failed"]:
        print(f"            {s['transcripts_failed']} failed in transcription (see the transcripts table)")
    print(f"audio:      {s['audio_s'] / 3600:.3f} h ({s['audio_s']:.1f} s)")
    print(f"words:      {s['words']} in {s['segments']} segments")
    print(f"speakers:   {s['local_speakers']} per-file speakers, {s['global_speakers']} distinct global speaker ids")
    print(f"wall time:  {wall_s:.1f} s (real-time factor {rtf:.3f}, {1 / rtf if rtf else 0:.1f}x real time)")
    for uri, status, error in s["problems"]:
        print(f"  {status:7s} {uri}: {error}")
    for exc in s["unreadable"]:
        print(f"  unreadable {exc.path}: {exc}")
    return None
