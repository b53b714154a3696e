"""``media`` and ``audio``: read each file of a batch once, hash, probe, decode to 16 kHz.

One pass per file produces both tables: the bytes are hashed (``media_id``), the container
probed, the audio decoded and checked for truncation, and the 16 kHz mono FLAC written to
``<root>/audio_16k/<id[:2]>/<media_id>.flac`` (content-addressed, so the same bytes under
two names are stored and transcribed once; bytes another batch already holds are found
through the archive-wide media index, one lookup per file). A bad file becomes a ``failed``/``skipped`` row
with the reason; it never fails the batch.

Hostile files cost little: a local source is opened without following a link (a file swapped
for a link or fifo since registration is ``skipped``, never read); decoding stops at the
ceiling on decoded duration (``OPENTRANSCRIBE_MAX_DECODED_HOURS``) or when a file decodes far
longer than its size makes plausible (both ``failed`` with the reason, before any model step
sees them); damaged packets and trailing junk are tolerated and counted (``decode_warnings``);
the number of audio tracks and the one used are recorded; and a cheap energy check on the
16 kHz samples marks ``silent`` files, which the speech models skip (``usable_audio``).
"""

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass

import dagster as dg
import polars as pl

from .. import settings
from ..partitions import batch_partitions
from ..resources import WarehouseResource
from ..schemas import Audio, Media, conform, utc_now
from ..speech.decode import SAMPLE_RATE, MediaError, activity, decode, encode_flac, is_silent
from ..storage import S3Options, StorageUnavailable, Warehouse, filesystem, is_local, iter_chunks
from ..storage.media_index import MediaIndex
from ..storage.sources import NotRegularFile, open_local_regular
from .checks import (
    failed_files_check_result,
    failed_files_check_spec,
    markdown_table,
    schema_check_result,
    schema_check_spec,
    table_spec,
    tag_failed_files,
)
from .modelstep import publish, with_staged

# bump when decoding or resampling changes: files ingested with another version are redone
INGEST_VERSION = "pyav-16k-mono-flac/2"  # /2: silent only when nothing reaches -80 dBFS
KEEP_STATUSES = ("ok", "skipped")  # failed files are retried on every run


@dataclass
class IngestResult:
    media: dict
    audio: dict | None


def _row(batch_id: str, source_uri: str, size: int, **kw) -> dict:
    return {
        "batch_id": batch_id,
        "source_uri": source_uri,
        "size_bytes": size,
        "ingest_version": INGEST_VERSION,
        "processed_at": utc_now(),
        **kw,
    }


def hash_and_decode(source_uri: str, s3: S3Options | None):
    """SHA-256 of the bytes plus decoded audio (or the MediaError). Remote objects are
    streamed once to a temporary file, hashed on the way; a local file is opened once, never
    through a link (:class:`NotRegularFile` otherwise), and decoded from that same open file."""
    fs, path = filesystem(source_uri, s3)
    h = hashlib.sha256()
    limits = {
        "max_duration_s": settings.max_decoded_hours() * 3600,
        "min_bytes_per_second": settings.min_bytes_per_second(),
        "audio_track": settings.audio_track(),
    }
    if is_local(fs):
        with open_local_regular(path) as f:
            for chunk in iter_chunks(f):
                h.update(chunk)
            f.seek(0)
            try:
                decoded = decode(f, name=source_uri, size_bytes=os.fstat(f.fileno()).st_size, **limits)
                return h.hexdigest(), decoded, None
            except MediaError as exc:
                return h.hexdigest(), None, exc
    tmp = tempfile.NamedTemporaryFile(prefix="ot-media-", delete=False)
    try:
        with tmp, fs.open(path, "rb", block_size=8 << 20) as src:
            for chunk in iter_chunks(src):
                h.update(chunk)
                tmp.write(chunk)
    except Exception:
        os.unlink(tmp.name)
        raise
    try:
        try:
            decoded = decode(tmp.name, name=source_uri, size_bytes=os.path.getsize(tmp.name), **limits)
            return h.hexdigest(), decoded, None
        except MediaError as exc:
            return h.hexdigest(), None, exc
    finally:
        os.unlink(tmp.name)


def ingest_file(
    wh: Warehouse,
    batch_id: str,
    source_uri: str,
    size: int,
    seen: dict[str, str],
    index: MediaIndex,
) -> IngestResult:
    """One file -> its media row and (if usable) audio row. Never raises for bad input."""
    if size == 0:
        return IngestResult(_row(batch_id, source_uri, 0, status="failed", error="empty file (0 bytes)"), None)
    try:
        media_id, decoded, problem = hash_and_decode(source_uri, wh.s3)
    except NotRegularFile as exc:  # a link or special file now: never read, not retried
        return IngestResult(_row(batch_id, source_uri, size, status="skipped", error=str(exc)), None)
    except (OSError, StorageUnavailable) as exc:
        return IngestResult(
            _row(batch_id, source_uri, size, status="failed", error=f"cannot read source: {type(exc).__name__}: {exc}"),
            None,
        )

    def duplicate(note: str, first: str) -> IngestResult:
        error = f"duplicate: {note} {first}"
        return IngestResult(
            _row(batch_id, source_uri, size, media_id=media_id, status="skipped", error=error, duplicate_of=first), None
        )

    if media_id in seen:
        return duplicate("same bytes as", seen[media_id])
    held = index.lookup(media_id)
    # an entry naming this very batch was left by a run killed before it staged the row
    if held is not None and held.batch_id != batch_id:
        return duplicate(f"already in the archive (batch {held.batch_id}) as", held.source_uri)
    seen[media_id] = source_uri
    if problem is not None:
        status = "skipped" if problem.skip else "failed"
        return IngestResult(
            _row(batch_id, source_uri, size, media_id=media_id, status=status, error=str(problem)), None
        )
    info = decoded.info
    active = activity(decoded.samples)
    audio_path = wh.audio_path(media_id)
    if not wh.exists(audio_path):
        wh.put_bytes(audio_path, encode_flac(decoded.samples))
    held = index.record(media_id, batch_id, source_uri)  # before the ok row is staged
    if held.batch_id != batch_id:  # another batch claimed the bytes since the lookup
        return duplicate(f"already in the archive (batch {held.batch_id}) as", held.source_uri)
    media = _row(
        batch_id,
        source_uri,
        size,
        media_id=media_id,
        status="ok",
        error=None,
        duration_s=decoded.duration_s,
        container=info.container,
        audio_codec=info.audio_codec,
        sample_rate=info.sample_rate,
        channels=info.channels,
        video_codec=info.video_codec,
        width=info.width,
        height=info.height,
        fps=info.fps,
        decode_warnings=decoded.decode_warnings,
        audio_tracks=decoded.audio_tracks,
        audio_track=decoded.audio_track,
        active_fraction=active,
        silent=is_silent(decoded.samples),  # nothing at all to hear: no speech model runs
    )
    audio = {
        "batch_id": batch_id,
        "media_id": media_id,
        "audio_uri": wh.uri(audio_path),
        "sample_rate": SAMPLE_RATE,
        "num_samples": len(decoded.samples),
        "duration_s": decoded.duration_s,
    }
    return IngestResult(media, audio)


def _reusable(df: pl.DataFrame, manifest: pl.DataFrame) -> pl.DataFrame:
    """Rows from an earlier run that still describe the same file with the same ingest."""
    sizes = manifest.select("source_uri", pl.col("size_bytes").alias("_size"))
    return (
        conform(df, Media)
        .join(sizes, on="source_uri")
        .filter(
            pl.col("status").is_in(KEEP_STATUSES)
            & (pl.col("ingest_version") == INGEST_VERSION)
            & (pl.col("size_bytes") == pl.col("_size"))
        )
        .drop("_size")
    )


def stage_files(
    context: dg.AssetExecutionContext,
    wh: Warehouse,
    batch_id: str,
    todo: pl.DataFrame,
    seen: dict[str, str],
    index: MediaIndex,
) -> tuple[list[pl.DataFrame], list[pl.DataFrame]]:
    """Ingest each file of ``todo`` and stage its rows (audio first: a staged media row
    always has its audio row next to it). Returns the new media and audio rows."""
    new_media, new_audio = [], []
    for i, (source_uri, size) in enumerate(todo.select("source_uri", "size_bytes").iter_rows()):
        result = ingest_file(wh, batch_id, source_uri, size, seen, index)
        key = hashlib.sha256(source_uri.encode()).hexdigest()[:24]
        media_df = conform(pl.DataFrame([result.media]), Media)
        if result.audio is not None:
            audio_df = conform(pl.DataFrame([result.audio]), Audio)
            wh.stage("audio", batch_id, key, audio_df)
            new_audio.append(audio_df)
        wh.stage("media", batch_id, key, media_df)
        new_media.append(media_df)
        if result.media["status"] != "ok":
            context.log.warning("%s: %s (%s)", source_uri, result.media["status"], result.media.get("error"))
        if (i + 1) % 25 == 0:
            context.log.info("ingested %d/%d", i + 1, todo.height)
    return new_media, new_audio


@dg.multi_asset(
    specs=[
        table_spec(
            "media",
            "One row per source file: media_id (SHA-256), probe results, status and error.",
            group="ingest",
            kinds=("pyav",),
        ),
        table_spec(
            "audio",
            "16 kHz mono FLAC per usable media item, and the table that lists them.",
            group="ingest",
            kinds=("flac",),
        ),
    ],
    check_specs=[schema_check_spec("media"), schema_check_spec("audio"), failed_files_check_spec("media")],
    partitions_def=batch_partitions,
)
def ingest(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Hash, probe and decode every file of the batch; resumes where an earlier run stopped."""
    batch_id = context.partition_key
    wh = warehouse.get()
    manifest = wh.read_table("batches", batch_id)
    if manifest is None:
        raise dg.Failure(f"batch {batch_id!r} is not registered in {wh.root_uri} (no batches/batch_id={batch_id})")
    wh.quarantine_corrupt(batch_id, ("media", "audio"))  # unreadable parts moved aside, their files re-ingested
    started = time.perf_counter()

    # what an earlier run finished (visible) or staged before it was killed
    kept = _reusable(with_staged(wh, "media", batch_id, "source_uri"), manifest)
    kept_ok = kept.filter(pl.col("status") == "ok")["media_id"].implode()
    kept_audio = with_staged(wh, "audio", batch_id, "media_id").filter(pl.col("media_id").is_in(kept_ok))

    seen = {m: u for m, u in kept.filter(pl.col("media_id").is_not_null()).select("media_id", "source_uri").iter_rows()}
    todo = manifest.filter(~pl.col("source_uri").is_in(kept["source_uri"].implode()))
    context.log.info(
        "batch %s: %d files, %d already done, %d to ingest", batch_id, manifest.height, kept.height, todo.height
    )
    index = MediaIndex(wh)
    if todo.height:
        built = index.ensure_built()  # once, for warehouses written before the index
        if built:
            context.log.info("media index built from existing media tables: %d entries", built)

    new_media, new_audio = stage_files(context, wh, batch_id, todo, seen, index)
    media = pl.concat([kept, *new_media]).sort("source_uri")
    audio = pl.concat([kept_audio, *new_audio]).unique("media_id", keep="first").sort("media_id")
    publish(wh, batch_id, {"audio": audio, "media": media})  # media last: it is what a re-run trusts
    tag_failed_files(context, "media", media)

    counts = dict(media.group_by("status").len().iter_rows())
    silent = media.filter((pl.col("status") == "ok") & pl.col("silent").fill_null(False))
    hours = float(audio["duration_s"].sum() or 0) / 3600
    problems = media.filter(pl.col("status") != "ok").select("source_uri", "status", "error")
    yield dg.MaterializeResult(
        asset_key="media",
        metadata={
            "dagster/row_count": media.height,
            "files_ok": counts.get("ok", 0),
            "files_failed": counts.get("failed", 0),
            "files_skipped": counts.get("skipped", 0),
            "files_silent": silent.height,  # ok, but no speech model runs on them
            "files_ingested_this_run": todo.height,
            "audio_hours": round(hours, 4),
            "elapsed_s": round(time.perf_counter() - started, 2),
            "ingest_version": INGEST_VERSION,
            "problems": dg.MetadataValue.md(markdown_table(problems.head(100))),
            "path": wh.uri(wh.table_file("media", batch_id)),
        },
    )
    yield dg.MaterializeResult(
        asset_key="audio",
        metadata={
            "dagster/row_count": audio.height,
            "audio_hours": round(hours, 4),
            "path": wh.uri(wh.table_file("audio", batch_id)),
        },
    )
    yield schema_check_result("media", media)
    yield schema_check_result("audio", audio)
    yield failed_files_check_result("media", media)
