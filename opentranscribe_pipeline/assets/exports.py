"""``exports``: SRT, WebVTT, TXT and JSON files for every ok media item of a batch.

In the ``publish_batch`` job, which runs after speaker clustering (the names and global ids
shown come from ``speaker_clusters`` and ``speaker_profiles``). Files go to
``<root>/exports/<format>/batch_id=<id>/<media_id>.<format>`` (``Warehouse.export_path``);
the batch's folder is rewritten whole, so a media item no longer ok loses its files.

Renaming a speaker (``opentranscribe speakers name``) records a new version of
``speaker_profiles``, which marks ``exports`` stale in the UI; re-materializing (or a
backfill) rewrites the files with the new name. The asset's data version is a digest of the
names and ids it showed and of the transcripts it rendered.
"""

import hashlib

import dagster as dg

from ..deliver.documents import documents, gather
from ..deliver.selection import exported_media
from ..partitions import batch_partitions
from ..resources import WarehouseResource
from ..resources.deliver import ExportsResource
from .isolation import per_file, record_issues

STAGE = "exports"


def write_batch_exports(wh, batch_id: str, formats: list[str]) -> dict:
    """Write the batch's export files; returns counts, the digest of what was shown and the
    issues of the files whose documents could not be rendered (their old files are removed,
    every other file is written: ``assets/isolation.py``)."""
    src = gather(wh, batch_id)
    media_ids = exported_media(src)
    digest = hashlib.sha256(src.names_digest().encode())
    # render first: a file that cannot be rendered has no export files, and no stale ones
    docs, issues = per_file(STAGE, [(m, m) for m in media_ids], lambda _m, m: documents(src, m))
    for fmt in formats:
        keep = {wh.export_path(fmt, batch_id, m) for m in docs}
        for old in wh.files_under(wh.export_dir(fmt, batch_id)):
            if old not in keep:
                wh.remove(old)
    written, n_cues, without_names = 0, 0, []
    for media_id in media_ids:
        doc = docs.get(media_id)
        if doc is None:
            continue
        n_cues += doc.n_cues
        if not doc.named:
            without_names.append(media_id)
        for fmt in formats:
            data = doc.texts[fmt].encode()
            digest.update(hashlib.sha256(data).digest())
            wh.put_bytes(wh.export_path(fmt, batch_id, media_id), data)
            written += 1
    return {
        "media": len(docs),
        "files": written,
        "cues": n_cues,
        "without_names": without_names,
        "digest": digest.hexdigest()[:16],
        "issues": issues,
        "media_table": src.media,
    }


@dg.asset(
    partitions_def=batch_partitions,
    deps=[
        "segments",
        "words",
        "segments_en",
        "speaker_clusters",
        "speaker_profiles",
        "transcripts",
        "diarization",
        "summaries",
    ],
    group_name="deliverables",
    kinds={"srt", "vtt", "json"},
    description="SRT, WebVTT, TXT and JSON per ok media item, with speaker names: `<root>/exports/<format>/batch_id=<id>/`",
)
def exports(context: dg.AssetExecutionContext, warehouse: WarehouseResource, exports_config: ExportsResource):
    """Subtitles and transcripts of the batch with the speakers' names (or global ids)."""
    batch_id = context.partition_key
    wh = warehouse.get()
    if not exports_config.enabled:
        context.log.info("exports are switched off (exports_config.enabled: false): nothing written")
        return dg.MaterializeResult(metadata={"enabled": False, "files": 0})
    formats = exports_config.chosen_formats()
    out = write_batch_exports(wh, batch_id, formats)
    held = record_issues(context, wh, batch_id, STAGE, out["issues"], out["media_table"])
    for row in held.iter_rows(named=True):
        context.log.error("exports: %s not exported: %s", row["source_uri"] or row["media_id"], row["reason"])
    return dg.MaterializeResult(
        data_version=dg.DataVersion(out["digest"]),
        metadata={
            "enabled": True,
            "formats": ", ".join(formats),
            "media_exported": out["media"],
            "files_written": out["files"],
            "cues": out["cues"],
            "exported_without_names": len(out["without_names"]),
            "files_held_back": held["media_id"].n_unique(),
            "location": wh.uri(wh.path("exports")),
        },
    )
