"""Drops and batches: how an archive folder becomes bounded Dagster partitions.

A *drop* is one folder (or S3 prefix) of media. Registering it lists the folder, keeps the
media files that no batch of the drop holds yet, and splits them into batches of at most
``max_files`` files and ``max_hours`` of audio. Each batch's membership is written once, as
the ``batches`` table partition of that batch, and never changes: files that arrive later
become a new batch of the same drop.

In a local folder, symbolic links and special files (fifos, sockets, devices) are never
opened: registration lists them in ``Registration.skipped`` with the reason, and nothing of
them is registered.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import polars as pl

from .schemas import Batches, conform, slug
from .settings import BATCH_MAX_FILES, BATCH_MAX_HOURS
from .storage import S3Options, SourceObject, Warehouse, filesystem, is_local, list_source
from .storage.sources import open_local_regular

log = logging.getLogger(__name__)

MEDIA_EXTENSIONS = frozenset(
    [
        ".wav",
        ".flac",
        ".mp3",
        ".m4a",
        ".aac",
        ".ogg",
        ".oga",
        ".opus",
        ".wma",
        ".aiff",
        ".aif",
        ".mp4",
        ".m4v",
        ".mkv",
        ".mov",
        ".webm",
        ".avi",
        ".mpg",
        ".mpeg",
        ".ts",
    ]
)
# when a header cannot be probed at registration, assume this many bytes per second
FALLBACK_BYTES_PER_SECOND = 16_000


@dataclass(frozen=True)
class BatchLimits:
    max_files: int = BATCH_MAX_FILES
    max_hours: float = BATCH_MAX_HOURS


@dataclass
class Registration:
    drop: str
    new_batch_ids: list[str] = field(default_factory=list)
    batch_ids: list[str] = field(default_factory=list)  # all batches of the drop, old and new
    new_files: int = 0
    known_files: int = 0
    ignored: list[str] = field(default_factory=list)  # non-media names, not registered
    # (relative path, reason): links and special files of a local folder, never opened
    skipped: list[tuple[str, str]] = field(default_factory=list)


def is_media_name(name: str) -> bool:
    return posixpath.splitext(name.lower())[1] in MEDIA_EXTENSIONS and not posixpath.basename(name).startswith(".")


def batch_prefix(drop: str) -> str:
    """Partition-key-safe prefix for a drop; a hash keeps distinct names distinct."""
    s = slug(drop)
    if s == drop:
        return s
    return f"{s}~{hashlib.sha256(drop.encode()).hexdigest()[:6]}"


def probe_duration_s(obj: SourceObject, s3: S3Options | None) -> float:
    """Duration from the container header (a few small reads); size-based guess on failure."""
    import av

    fs, path = filesystem(obj.uri, s3)
    local = is_local(fs)
    known = not local and obj.size_bytes > 0
    try:
        opened = (
            open_local_regular(path)  # never through a link put there since the listing
            if local
            else fs.open(path, "rb", block_size=1 << 18, **({"size": obj.size_bytes} if known else {}))
        )
        with opened as f:
            if known:  # the listing gave the size: s3fs would otherwise HEAD the object before reading
                f.details = {"name": path, "size": obj.size_bytes, "type": "file"}
            with av.open(f, metadata_errors="ignore") as c:
                if c.duration:
                    return c.duration / av.time_base
    except Exception as exc:  # unreadable headers are the media step's business, not ours
        log.debug("cannot probe %s at registration: %s", obj.uri, exc)
    return obj.size_bytes / FALLBACK_BYTES_PER_SECOND


def plan_batches(
    objects: list[tuple[SourceObject, float]], limits: BatchLimits
) -> list[list[tuple[SourceObject, float]]]:
    batches: list[list[tuple[SourceObject, float]]] = []
    current: list[tuple[SourceObject, float]] = []
    seconds = 0.0
    for obj, duration in objects:
        if current and (len(current) >= limits.max_files or seconds + duration > limits.max_hours * 3600):
            batches.append(current)
            current, seconds = [], 0.0
        current.append((obj, duration))
        seconds += duration
    if current:
        batches.append(current)
    return batches


def probe_durations(objects: list[SourceObject], s3: S3Options | None, workers: int = 8) -> list[float]:
    """Durations of ``objects`` (same order); header reads run in parallel (I/O bound)."""
    if len(objects) <= 1:
        return [probe_duration_s(o, s3) for o in objects]
    with ThreadPoolExecutor(max_workers=min(workers, len(objects))) as pool:
        return list(pool.map(lambda o: probe_duration_s(o, s3), objects))


def batch_id_for(prefix: str, seq: int) -> str:
    return f"{prefix}-{seq:04d}"


def known_sources(warehouse: Warehouse, batch_ids: list[str]) -> set[str]:
    """Source URIs held by the given batches (their ``batches`` manifests)."""
    known: set[str] = set()
    for b in batch_ids:
        manifest = warehouse.read_table("batches", b)
        if manifest is not None:
            known.update(manifest["source_uri"].to_list())
    return known


def write_batches(
    warehouse: Warehouse, drop: str, planned: list[list[tuple[SourceObject, float]]], first_seq: int
) -> list[str]:
    """Write one ``batches`` manifest per planned batch (ids ``<prefix>-<seq>`` from
    ``first_seq`` on); membership is fixed from here on. Returns the new batch ids."""
    prefix = batch_prefix(drop)
    now = dt.datetime.now(dt.UTC)
    ids = []
    for i, members in enumerate(planned):
        batch_id = batch_id_for(prefix, first_seq + i)
        manifest = pl.DataFrame(
            {
                "batch_id": [batch_id] * len(members),
                "drop": [drop] * len(members),
                "source_uri": [o.uri for o, _ in members],
                "size_bytes": [o.size_bytes for o, _ in members],
                "registered_at": [now] * len(members),
            }
        )
        manifest = conform(manifest, Batches)
        Batches.validate(manifest)
        warehouse.write_table("batches", manifest, batch_id)
        ids.append(batch_id)
        log.info("registered batch %s: %d files, %.2f h", batch_id, len(members), sum(d for _, d in members) / 3600)
    return ids


def register_drop(
    warehouse: Warehouse,
    source_uri: str,
    *,
    s3: S3Options | None = None,
    limits: BatchLimits = BatchLimits(),
    drop: str | None = None,
) -> Registration:
    """Register what is new under ``source_uri`` as new batches of its drop."""
    drop = drop or posixpath.basename(source_uri.rstrip("/")) or "drop"
    prefix = batch_prefix(drop)
    reg = Registration(drop=drop)
    objects = list_source(source_uri, s3, skipped=reg.skipped)
    for rel, why in reg.skipped:
        log.warning("%s: %s", posixpath.join(source_uri, rel), why)
    media = [o for o in objects if is_media_name(o.relative)]
    reg.ignored = [o.relative for o in objects if not is_media_name(o.relative)]

    existing = [b for b in warehouse.batch_ids("batches", prefix=prefix + "-") if b[len(prefix) + 1 :].isdigit()]
    known = known_sources(warehouse, existing)
    new = [o for o in media if o.uri not in known]
    reg.known_files = len(media) - len(new)
    reg.new_files = len(new)
    next_seq = max((int(b[len(prefix) + 1 :]) for b in existing), default=-1) + 1

    planned = plan_batches(list(zip(new, probe_durations(new, s3))), limits)
    reg.new_batch_ids = write_batches(warehouse, drop, planned, next_seq)
    reg.batch_ids = sorted(existing + reg.new_batch_ids)
    return reg
