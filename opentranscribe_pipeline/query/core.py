"""The lookups behind :mod:`opentranscribe_pipeline.query` (Dagster-free): who a name or id
is, which media item a name means, and the transcript, words, talk time and languages.

Every lookup first finds *where* the answer is (the media index, the speaker state, one
listing of a table's folder: :mod:`.files`), then hands polars only those files through
:func:`scan`, looked up here so that tests can count what a lookup opens. Bad input raises
the errors of :mod:`.errors`. The file helpers and errors stay importable from here, the
documented entry point.
"""

from __future__ import annotations

import logging
import re

import polars as pl

from ..speakers import state as speaker_state
from ..speakers.voices import resolve_merged
from ..storage import Warehouse
from ..storage.media_index import MediaIndex
from .errors import SHOWN_CANDIDATES, Ambiguous, NoMatch, QueryError
from .files import ARCHIVE_TABLES, PART, archive_files, counts, scan, storage_options, table, table_files

__all__ = [
    "ARCHIVE_TABLES",
    "PART",
    "SHOWN_CANDIDATES",
    "Ambiguous",
    "NoMatch",
    "QueryError",
    "archive_files",
    "counts",
    "find_media",
    "profiles",
    "resolve_speaker",
    "scan",
    "speaker_locations",
    "storage_options",
    "table",
    "table_files",
    "talk_time",
    "transcript",
    "words",
    "words_per_language",
]

log = logging.getLogger(__name__)

MEDIA_ID_RE = re.compile(r"^[0-9a-f]{64}$")
HEX_PREFIX_RE = re.compile(r"^[0-9a-f]{4,64}$")
GLOBAL_ID_RE = re.compile(r"^spk-[0-9]{6,}$")


# -- speakers --------------------------------------------------------------------------------------
def profiles(wh: Warehouse) -> pl.DataFrame:
    """``global_speaker_id, name`` of every named voice (a hand-edited profiles file wins)."""
    st = speaker_state.SpeakerState(wh)
    return st.profiles(st.current())[0].select("global_speaker_id", "name")


def _centroid_ids(wh: Warehouse) -> pl.DataFrame:
    """``global_speaker_id, status, merged_into`` of every id ever minted (no vectors read)."""
    lf = scan(wh, archive_files(wh, speaker_state.CENTROIDS), speaker_state.CENTROIDS)
    return lf.select("global_speaker_id", "status", "merged_into").collect()


def resolve_speaker(wh: Warehouse, who: str) -> tuple[str, str | None]:
    """``(global_speaker_id, name)`` for a global id (``spk-000042``; a merged id gives the
    voice that absorbed it) or a person's name from ``speaker_profiles`` (case-insensitive:
    an exact name first, else a unique part of one). Raises :class:`NoMatch` or
    :class:`Ambiguous` listing the candidates."""
    who = who.strip()
    names = profiles(wh)
    if GLOBAL_ID_RE.match(who):
        ids = _centroid_ids(wh)
        merged = dict(ids.filter(pl.col("status") == "merged").select("global_speaker_id", "merged_into").iter_rows())
        if ids.height and who not in set(ids["global_speaker_id"]):
            raise NoMatch(f"no global speaker {who!r} in {wh.root_uri} ({ids.height} ids known)")
        gid = resolve_merged(merged, who)
        if gid != who:
            log.warning("%s was merged into %s: showing %s", who, gid, gid)
        named = names.filter(pl.col("global_speaker_id") == gid)["name"]
        return gid, (named[0] if named.len() else None)
    if not who:
        raise NoMatch("empty speaker name")
    lowered = pl.col("name").str.to_lowercase().str.strip_chars()
    found = names.filter(lowered == who.lower())
    if found.is_empty():
        found = names.filter(lowered.str.contains(who.lower(), literal=True))
    found = found.unique("global_speaker_id").sort("name", "global_speaker_id")
    if found.height == 1:
        return found["global_speaker_id"][0], found["name"][0]
    if found.is_empty():
        raise NoMatch(
            f"no speaker named {who!r} in {wh.root_uri}; {names.height} named speaker(s):",
            names.sort("name").select("name", "global_speaker_id"),
        )
    raise Ambiguous(
        f"{found.height} speakers match {who!r}; name one by its global id:", found.select("global_speaker_id", "name")
    )


def speaker_locations(wh: Warehouse, global_speaker_ids: list[str]) -> pl.DataFrame:
    """``global_speaker_id, batch_id, media_id, speaker``: where these voices speak (the
    speaker state's index; reads no per-batch table)."""
    return speaker_state.speaker_locations(wh, global_speaker_ids)


# -- media -----------------------------------------------------------------------------------------
def find_media(wh: Warehouse, query: str) -> dict:
    """The one media item ``query`` names: ``{"media_id", "batch_id", "source_uri"}``.

    - a full media id: one GET of the media index entry (no table read);
    - a media id prefix (4+ hex digits), a file name, a path or its end: the ``media``
      tables' ``media_id``/``source_uri`` columns only; else a unique part of a file name.

    Raises :class:`Ambiguous` (with the candidates) or :class:`NoMatch`."""
    q = query.strip()
    if MEDIA_ID_RE.match(q.lower()):
        held = MediaIndex(wh).lookup(q.lower())
        if held is not None:
            return {"media_id": q.lower(), "batch_id": held.batch_id, "source_uri": held.source_uri}
        log.warning("media %s is not in the media index of %s: searching the media tables", q, wh.root_uri)
    cols = ["batch_id", "media_id", "source_uri", "status", "error", "duplicate_of"]
    media = scan(wh, table_files(wh, "media"), "media").select(cols)
    uri = pl.col("source_uri")
    exact = (uri == q) | uri.str.ends_with("/" + q.lstrip("/"))
    if HEX_PREFIX_RE.match(q.lower()):
        exact = exact | pl.col("media_id").str.starts_with(q.lower())
    rows = media.filter(exact).collect()
    if rows.is_empty():
        basename = uri.str.split("/").list.last().str.to_lowercase()
        rows = media.filter(basename.str.contains(q.lower(), literal=True)).collect()
    if rows.is_empty():
        raise NoMatch(f"no media item matches {q!r} in {wh.root_uri} (a media id, its first 4+ digits, or a file name)")
    items = rows.filter(pl.col("media_id").is_not_null())
    ids = items["media_id"].unique().sort().to_list()
    if len(ids) > 1:
        cands = (
            items.sort(pl.col("status") != "ok", "source_uri")
            .unique("media_id", keep="first")
            .sort("source_uri")
            .select("media_id", "source_uri", "status", "batch_id")
        )
        raise Ambiguous(f"{len(ids)} media items match {q!r}; give more of the id or the name:", cands)
    if not ids:  # only files that could not be read (no media id)
        bad = rows.select("source_uri", "status", "error")
        raise NoMatch(f"{q!r} names no transcribed media item:", bad)
    media_id = ids[0]
    ok = items.filter(pl.col("status") == "ok")
    if ok.height:
        return {"media_id": media_id, "batch_id": ok["batch_id"][0], "source_uri": ok["source_uri"][0]}
    held = MediaIndex(wh).lookup(media_id)  # a duplicate: the bytes were processed elsewhere
    if held is not None:
        return {"media_id": media_id, "batch_id": held.batch_id, "source_uri": held.source_uri}
    raise NoMatch(f"{q!r} was not transcribed:", items.select("source_uri", "status", "error"))


def _clusters_of(wh: Warehouse, batch_ids: list[str]) -> pl.DataFrame:
    rows = speaker_state.read_clusters(wh, batch_ids)
    return rows.select("media_id", "speaker", "global_speaker_id")


def transcript(wh: Warehouse, media: str) -> pl.LazyFrame:
    """One media item's segments in order, with the local speaker, its global id and name.

    ``media``: a media id, its first 4+ hex digits, a file name or path (see
    :func:`find_media`). Reads one ``segments`` file and that batch's speaker clusters.
    Columns: media_id, source_uri, segment_id, start_s, end_s, speaker, global_speaker_id,
    name, language, text."""
    item = find_media(wh, media)
    media_id, batch_id = item["media_id"], item["batch_id"]
    segments = scan(wh, table_files(wh, "segments", [batch_id]), "segments").filter(pl.col("media_id") == media_id)
    clusters = _clusters_of(wh, [batch_id]).filter(pl.col("media_id") == media_id)
    return (
        segments.join(clusters.lazy(), on=["media_id", "speaker"], how="left")
        .join(profiles(wh).lazy(), on="global_speaker_id", how="left")
        .with_columns(source_uri=pl.lit(item["source_uri"]))
        .select(
            "media_id",
            "source_uri",
            "segment_id",
            "start_s",
            "end_s",
            "speaker",
            "global_speaker_id",
            "name",
            "language",
            "text",
        )
        .sort("segment_id")
    )


# -- words -----------------------------------------------------------------------------------------
def words(wh: Warehouse, speaker: str, contains: str | None = None, *, case_sensitive: bool = False) -> pl.LazyFrame:
    """Every word one global speaker said, across the archive, in file and time order.

    ``speaker``: a global id or a name (:func:`resolve_speaker`). ``contains``: keep words
    containing this text (case-insensitive unless ``case_sensitive``). Finds the batches that
    hold the voice in the speaker state, then reads only those batches' ``words`` and
    ``media`` files. Columns: global_speaker_id, name, source_uri, media_id, batch_id,
    segment_id, word_index, word, start_s, end_s, speaker."""
    gid, name = resolve_speaker(wh, speaker)
    where = speaker_locations(wh, [gid])
    batches = sorted(set(where["batch_id"].to_list()))
    files = table_files(wh, "words", batches)
    if len(files) < len(batches):
        log.warning("%d batch(es) holding %s have no words table yet", len(batches) - len(files), gid)
    media_ids = pl.Series(where["media_id"].unique().sort().to_list(), dtype=pl.Utf8).implode()
    lf = scan(wh, files, "words").filter(pl.col("media_id").is_in(media_ids))
    lf = lf.join(where.lazy().select("media_id", "speaker").unique(), on=["media_id", "speaker"], how="semi")
    if contains:
        col = pl.col("word") if case_sensitive else pl.col("word").str.to_lowercase()
        lf = lf.filter(col.str.contains(contains if case_sensitive else contains.lower(), literal=True))
    uris = (
        scan(wh, table_files(wh, "media", batches), "media")
        .filter((pl.col("status") == "ok") & pl.col("media_id").is_in(media_ids))
        .select("media_id", "source_uri")
        .unique("media_id")
    )
    return (
        lf.join(uris, on="media_id", how="left")
        .with_columns(global_speaker_id=pl.lit(gid), name=pl.lit(name, pl.Utf8))
        .select(
            "global_speaker_id",
            "name",
            "source_uri",
            "media_id",
            "batch_id",
            "segment_id",
            "word_index",
            "word",
            "start_s",
            "end_s",
            "speaker",
        )
        .sort("source_uri", "start_s", "segment_id", "word_index")
    )


# -- talk time -------------------------------------------------------------------------------------
def talk_time(wh: Warehouse, top: int | None = None, *, source: str = "turns") -> pl.LazyFrame:
    """Seconds of speech per global speaker, most first: global_speaker_id, name, talk_s,
    talk_h, n_media, n_batches.

    ``source="turns"`` (default): the length of every ``speaker_turns`` row, so speech that
    overlaps another speaker counts for both (what "talk time" means). Reads the
    ``start_s, end_s, media_id, speaker`` columns of every batch's turns.
    ``source="embeddings"``: ``speaker_embeddings.speech_s``, one row per (media, local
    speaker), cheaper (about 80 rows per batch, the vector column never read) but it is the
    speech a speaker has *alone*: overlapped speech is left out, so it is a lower bound.
    Both are joined with ``speaker_clusters`` (one compact file plus a few deltas)."""
    if source == "turns":
        per_local = (
            scan(wh, table_files(wh, "speaker_turns"), "speaker_turns")
            .group_by("media_id", "speaker")
            .agg(talk_s=(pl.col("end_s") - pl.col("start_s")).sum())
        )
    elif source == "embeddings":
        per_local = (
            scan(wh, table_files(wh, "speaker_embeddings"), "speaker_embeddings")
            .group_by("media_id", "speaker")
            .agg(talk_s=pl.col("speech_s").max())  # one row per model: never add two models' rows
        )
    else:
        raise ValueError(f"source must be 'turns' or 'embeddings', not {source!r}")
    clusters = _clusters_of_all(wh)
    out = (
        per_local.join(clusters.lazy(), on=["media_id", "speaker"], how="inner")
        .group_by("global_speaker_id")
        .agg(
            talk_s=pl.col("talk_s").sum().round(6),  # to the microsecond: the same answer whatever the sum's order
            n_media=pl.col("media_id").n_unique(),
            n_batches=pl.col("batch_id").n_unique(),
        )
        .join(profiles(wh).lazy(), on="global_speaker_id", how="left")
        .with_columns(talk_h=pl.col("talk_s") / 3600)
        .select("global_speaker_id", "name", "talk_s", "talk_h", "n_media", "n_batches")
        .sort(["talk_s", "global_speaker_id"], descending=[True, False])
    )
    return out.head(top) if top else out


def _clusters_of_all(wh: Warehouse) -> pl.DataFrame:
    return speaker_state.read_clusters(wh).select("batch_id", "media_id", "speaker", "global_speaker_id")


# -- per language ----------------------------------------------------------------------------------
def words_per_language(wh: Warehouse) -> pl.LazyFrame:
    """Words, media items and hours per detected language, from ``transcripts`` (one small
    row per media item: ``n_words`` is counted when the transcript is written), never from
    the ``words`` table. Columns: language, n_media, n_words, audio_h."""
    return (
        scan(wh, table_files(wh, "transcripts"), "transcripts")
        .filter(pl.col("status") == "ok")
        .group_by("language")
        .agg(
            n_media=pl.col("media_id").n_unique(),
            n_words=pl.col("n_words").sum(),
            audio_h=pl.col("audio_s").sum() / 3600,
        )
        .sort(["n_words", "language"], descending=[True, False], nulls_last=True)
    )
