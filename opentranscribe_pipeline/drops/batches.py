"""Drops and batches: how an archive folder becomes bounded Dagster partitions.

A *drop* is one folder (or S3 prefix) of media. Registering it lists the folder, keeps the
media files that no batch of the drop holds yet, and splits them into batches of at most
``max_files`` files and ``max_hours`` of audio. Each batch's membership is written once, as
the ``batches`` table partition of that batch, and never changes: files that arrive later
become a new batch of the same drop.

In a local folder, symbolic links and special files (fifos, sockets, devices) are never
opened: registration lists them in ``Registration.skipped`` with the reason, and nothing of
them is registered.

Registration is safe against concurrent registrars (two ``opentranscribe process`` commands,
a command and a sensor tick, on one machine or several), with two create-only writes
(``storage.conditional.create_if_absent``: S3 ``If-None-Match: *``, locally a hard link):

- a drop name belongs to one source: the first registrar creates
  ``<root>/_drop_sources/<prefix>.json`` naming it (:func:`claim_drop`); another source under
  the same name is refused with :class:`DropConflict` (naming both sources and ``--drop``),
  never merged into the drop;
- a batch manifest is created, never replaced: of two registrars planning the same batch
  number one writes it, the other reads it, leaves its files out and plans what is left
  under the next number. The same files are never registered twice, none is lost.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import polars as pl

from ..schemas import Batches, conform, slug
from ..settings import BATCH_MAX_FILES, BATCH_MAX_HOURS
from ..storage import S3Options, SourceObject, Warehouse, filesystem, is_local, list_source, split_uri
from ..storage.sources import open_local_regular

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


DROP_SOURCES = "_drop_sources"  # <root>/_drop_sources/<batch prefix>.json: which source owns a drop name


class DropConflict(ValueError):
    """A drop name already registered from another source."""

    def __init__(self, drop: str, owner: str, source: str):
        self.drop, self.owner, self.source = drop, owner, source
        super().__init__(
            f"drop {drop!r} is already registered from {owner}; {source} is another source and is not "
            f"added to it: give it a drop name of its own (`opentranscribe process {source} --drop NAME`), "
            f"or process {owner}"
        )


class BatchTaken(RuntimeError):
    """Another registrar created this batch's manifest first."""

    def __init__(self, batch_id: str):
        self.batch_id = batch_id
        super().__init__(f"batch {batch_id} was registered by someone else at the same moment")


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


def canonical_source(uri: str) -> str:
    """One spelling per source: an absolute normalised local path, or ``s3://bucket/prefix``
    without a trailing slash."""
    protocol, path = split_uri(uri)
    if protocol == "file":
        return posixpath.normpath(path)
    return f"s3://{path.rstrip('/')}" if protocol in ("s3", "s3a") else f"{protocol}://{path.rstrip('/')}"


def drop_source_path(warehouse: Warehouse, drop: str) -> str:
    return warehouse.path(DROP_SOURCES, f"{batch_prefix(drop)}.json")


def _earlier_source(warehouse: Warehouse, drop: str, source: str) -> str | None:
    """A drop registered before drop names were claimed: the folder of its first batch's
    first file, when that file is not under ``source`` (else None)."""
    prefix = batch_prefix(drop)
    existing = [b for b in warehouse.batch_ids("batches", prefix=prefix + "-") if b[len(prefix) + 1 :].isdigit()]
    if not existing:
        return None
    manifest = warehouse.read_table("batches", existing[0])
    if manifest is None or manifest.is_empty():
        return None
    first = manifest["source_uri"][0]
    return None if first.startswith(source.rstrip("/") + "/") else posixpath.dirname(first)


def claim_drop(warehouse: Warehouse, drop: str, source_uri: str) -> bool:
    """Make sure the drop name ``drop`` belongs to ``source_uri``: claimed now (True), or
    claimed earlier by the same source (False). Another source raises :class:`DropConflict`.
    One GET when claimed already; a create-only write the first time (two registrars racing
    for a new name: exactly one wins)."""
    from ..storage.conditional import create_if_absent

    source = canonical_source(source_uri)
    path = drop_source_path(warehouse, drop)
    for _ in range(2):
        raw = warehouse.get_if_exists(path)
        if raw is not None:
            owner = json.loads(raw)["source"]
            if owner != source:
                raise DropConflict(drop, owner, source)
            return False
        earlier = _earlier_source(warehouse, drop, source)
        if earlier is not None:
            raise DropConflict(drop, earlier, source)
        record = {"drop": drop, "source": source, "claimed_at": dt.datetime.now(dt.UTC).isoformat()}
        if create_if_absent(warehouse, path, json.dumps(record, ensure_ascii=False).encode()):
            log.info("drop %r claimed for %s", drop, source)
            return True
    raise RuntimeError(f"{path}: created by someone else but not readable")  # pragma: no cover


def write_batches(
    warehouse: Warehouse, drop: str, planned: list[list[tuple[SourceObject, float]]], first_seq: int
) -> list[str]:
    """Create one ``batches`` manifest per planned batch (ids ``<prefix>-<seq>`` from
    ``first_seq`` on); membership is fixed from here on. Returns the new batch ids. A
    manifest is never replaced: a batch number someone else took meanwhile raises
    :class:`BatchTaken` (the batches before it are written)."""
    from ..storage.conditional import create_if_absent
    from ..storage.warehouse import to_parquet

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
        if not create_if_absent(warehouse, warehouse.table_file("batches", batch_id), to_parquet(manifest)):
            raise BatchTaken(batch_id)
        ids.append(batch_id)
        log.info("registered batch %s: %d files, %.2f h", batch_id, len(members), sum(d for _, d in members) / 3600)
    return ids


@dataclass
class Written:
    """What :func:`register_planned` wrote: the new batches (id and members), the batch
    numbers other registrars took meanwhile (their files are theirs), the next free number."""

    batches: list[tuple[str, list[tuple[SourceObject, float]]]] = field(default_factory=list)
    taken: list[str] = field(default_factory=list)
    next_seq: int = 0

    @property
    def new_batch_ids(self) -> list[str]:
        return [batch_id for batch_id, _ in self.batches]

    @property
    def new_files(self) -> int:
        return sum(len(members) for _, members in self.batches)


def register_planned(
    warehouse: Warehouse,
    drop: str,
    planned: list[list[tuple[SourceObject, float]]],
    next_seq: int,
    limits: BatchLimits,
) -> Written:
    """Register planned batches from ``next_seq`` on, one manifest each: the one way the CLI
    (:func:`register_drop`) and the drop sensor (``walk.DropWalker``) register files. A batch
    number another registrar took meanwhile (``BatchTaken``) is read: its files are left out
    (registered by it), what is left is planned again (cut the same way) from the next
    number. The same file is never registered twice and none is lost."""
    out = Written(next_seq=next_seq)
    while planned:
        try:
            (batch_id,) = write_batches(warehouse, drop, planned[:1], out.next_seq)
            out.batches.append((batch_id, planned[0]))
            planned = planned[1:]
        except BatchTaken as exc:
            manifest = warehouse.read_table("batches", exc.batch_id)
            held = set(manifest["source_uri"].to_list()) if manifest is not None else set()
            out.taken.append(exc.batch_id)
            log.info("%s; its %d file(s) are not registered again", exc, len(held))
            planned = plan_batches([(o, d) for b in planned for o, d in b if o.uri not in held], limits)
        out.next_seq += 1
    return out


def register_drop(
    warehouse: Warehouse,
    source_uri: str,
    *,
    s3: S3Options | None = None,
    limits: BatchLimits = BatchLimits(),
    drop: str | None = None,
) -> Registration:
    """Register what is new under ``source_uri`` as new batches of its drop.

    Safe to run concurrently with other registrars (see the module doc): a drop name owned by
    another source raises :class:`DropConflict`; a batch number taken meanwhile by a
    registrar of the same source is read, its files count as known, and what is left is
    planned under the next number."""
    drop = drop or posixpath.basename(source_uri.rstrip("/")) or "drop"
    prefix = batch_prefix(drop)
    reg = Registration(drop=drop)
    objects = list_source(source_uri, s3, skipped=reg.skipped)
    for rel, why in reg.skipped:
        log.warning("%s: %s", posixpath.join(source_uri, rel), why)
    media = [o for o in objects if is_media_name(o.relative)]
    reg.ignored = [o.relative for o in objects if not is_media_name(o.relative)]
    claim_drop(warehouse, drop, source_uri)

    existing = [b for b in warehouse.batch_ids("batches", prefix=prefix + "-") if b[len(prefix) + 1 :].isdigit()]
    known = known_sources(warehouse, existing)
    new = [o for o in media if o.uri not in known]
    next_seq = max((int(b[len(prefix) + 1 :]) for b in existing), default=-1) + 1

    planned = plan_batches(list(zip(new, probe_durations(new, s3))), limits)
    written = register_planned(warehouse, drop, planned, next_seq, limits)
    reg.new_batch_ids, reg.new_files, taken = written.new_batch_ids, written.new_files, written.taken
    reg.known_files = len(media) - reg.new_files
    reg.batch_ids = sorted(existing + taken + reg.new_batch_ids)
    return reg
