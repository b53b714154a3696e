"""What the review app's pages and API read (Dagster-free): thin calls into ``search/``,
``query/``, ``speakers/`` and ``deliver/``, shaped for a page.

Every lookup reads only the files it names: a transcript is one media index GET plus one
batch's tables; the speakers list is the speaker state's small tables (centroids, profiles,
suggestions), paged; a voice's clips read ``segment_quality`` of at most :data:`CLIP_BATCHES`
of the batches it speaks in.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import polars as pl

from .. import settings
from ..query import NoMatch, find_media, scan, table_files, transcript
from ..query.topics import media_summary
from ..speakers.manifest import CENTROIDS, SUGGESTIONS
from ..speakers.state import SpeakerState
from ..storage import Warehouse
from ..storage.media_index import MediaIndex
from .audio import AudioMissing, locate
from .rejections import rejected_suggestions

PAGE_SIZE = 25
MAX_PAGE_SIZE = 200
CLIP_BATCHES = 4  # batches of a voice read for its clips (its biggest files first)
CLIP_S = (1.5, 10.0)  # a clip's length: long enough to hear a voice, short enough to skim
CLIPS = 3
EXPORT_FORMATS = ("srt", "vtt", "txt", "json")


def open_backend(wh: Warehouse):
    """The configured search backend (LanceDB under the warehouse by default), exactly as
    ``opentranscribe search`` opens it from the same settings."""
    from ..search.service import open_search_backend

    return open_search_backend(
        wh,
        settings.search_backend(),
        lancedb_uri=settings.lancedb_uri(),
        opensearch_url=settings.opensearch_url(),
        opensearch_user=settings.opensearch_user(),
        opensearch_password=settings.opensearch_password(),
        index_prefix=settings.opensearch_index_prefix(),
    )


@dataclass
class Services:
    wh: Warehouse
    backend: object | None = None
    model: str = field(default_factory=settings.text_embedding_model)
    _embed: object | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- search ------------------------------------------------------------------------------
    def search_backend(self):
        with self._lock:
            if self.backend is None:
                self.backend = open_backend(self.wh)
            return self.backend

    def embedder(self):
        from ..search.service import query_embedder

        with self._lock:
            if self._embed is None:
                self._embed = query_embedder(self.model)
            return self._embed

    def search(self, q: str, *, mode="hybrid", speaker=None, language=None, drop=None, limit=10, min_quality=None):
        """``search.service.search`` with the app's backend and embedder (raises what it raises)."""
        from ..search.service import search

        return search(
            self.wh,
            self.search_backend(),
            q,
            model=self.model,
            embed=self.embedder() if mode != "text" else None,
            mode=mode,
            speaker=speaker or None,
            language=language or None,
            drop=drop or None,
            limit=limit,
            min_quality=min_quality,
        )

    # -- media ---------------------------------------------------------------------------------
    def item(self, media_id: str) -> dict:
        """``find_media`` of a validated id; an id the built media index lacks is unknown at
        once (no scan of the media tables)."""
        index = MediaIndex(self.wh)
        held = index.lookup(media_id)
        if held is None and index.is_built():
            raise NoMatch(f"no media item {media_id}")
        return find_media(self.wh, media_id)

    def transcript(self, media_id: str) -> dict:
        """Segments (with speaker, global id and name) and their words, the audio's state."""
        item = self.item(media_id)
        segs = transcript(self.wh, media_id).collect()
        words = (
            scan(self.wh, table_files(self.wh, "words", [item["batch_id"]]), "words")
            .filter(pl.col("media_id") == media_id)
            .select("segment_id", "word_index", "word", "start_s", "end_s")
            .sort("segment_id", "word_index")
            .collect()
        )
        by_seg: dict[int, list[dict]] = {}
        for w in words.iter_rows(named=True):
            by_seg.setdefault(w["segment_id"], []).append(w)
        segments = [dict(s, words=by_seg.get(s["segment_id"], [])) for s in segs.iter_rows(named=True)]
        try:
            audio = locate(self.wh, media_id)
            audio_error, duration = None, audio.duration_s
        except AudioMissing as exc:
            audio_error, duration = str(exc), None
        names = {s["speaker"]: s.get("name") or s.get("global_speaker_id") for s in segments if s.get("speaker")}
        return {
            **item,
            "segments": segments,
            "audio_error": audio_error,
            "duration_s": duration,
            "summary": media_summary(self.wh, media_id),  # None before the summary step ran
            "speaker_names": names,  # the key points name file-local speakers
        }

    def export(self, media_id: str, fmt: str) -> str:
        """A fresh export of one item (the names as they are now), as ``opentranscribe export``
        makes it (``deliver.documents``)."""
        from ..deliver.documents import documents, gather

        if fmt not in EXPORT_FORMATS:
            raise NoMatch(f"unknown export format {fmt!r}")
        item = self.item(media_id)
        src = gather(self.wh, item["batch_id"], [media_id])
        if not src.media.height:
            raise NoMatch("this media item has no transcript to export")
        return documents(src, media_id).texts[fmt]

    # -- speakers ------------------------------------------------------------------------------
    def _state(self):
        state = SpeakerState(self.wh)
        return state, state.current()

    def speakers(self, page: int = 1, size: int = PAGE_SIZE) -> dict:
        """Active voices by talk time, one page, with name and best pending suggestion."""
        size = max(1, min(int(size), MAX_PAGE_SIZE))
        state, gen = self._state()
        centroids = state.read(gen, CENTROIDS)
        cols = ["global_speaker_id", "model", "n_members", "speech_s"]
        active = (
            centroids.filter(pl.col("status") == "active").select(cols)
            if centroids.height
            else pl.DataFrame(schema={c: pl.Utf8 for c in cols})
        )
        total = active.height
        pages = max(1, -(-total // size))
        page = max(1, min(int(page), pages))
        rows = active.sort(["speech_s", "global_speaker_id"], descending=[True, False]).slice((page - 1) * size, size)
        names = dict(state.profiles(gen)[0].select("global_speaker_id", "name").iter_rows())
        pending = self._pending(state, gen)
        out = []
        for r in rows.iter_rows(named=True):
            r["name"] = names.get(r["global_speaker_id"])
            r["suggestion"] = pending.get(r["global_speaker_id"])
            out.append(r)
        return {"speakers": out, "page": page, "pages": pages, "size": size, "total": total}

    def _pending(self, state, gen) -> dict[str, dict]:
        """global id -> its best suggestion that nobody rejected (and that is not named yet)."""
        sugg = state.read(gen, SUGGESTIONS)
        if sugg.is_empty():
            return {}
        named = set(state.profiles(gen)[0]["global_speaker_id"].to_list())
        rejected = rejected_suggestions(self.wh)
        out: dict[str, dict] = {}
        for s in sugg.sort("similarity", descending=True).iter_rows(named=True):
            key = (s["global_speaker_id"], s["named_global_speaker_id"], s["suggested_name"])
            if s["global_speaker_id"] in named or key in rejected or s["global_speaker_id"] in out:
                continue
            out[s["global_speaker_id"]] = s
        return out

    def suggestions(self, limit: int = 50) -> list[dict]:
        """The suggestion queue: pending suggestions, most similar first."""
        state, gen = self._state()
        pending = list(self._pending(state, gen).values())
        return sorted(pending, key=lambda s: -s["similarity"])[:limit]

    def speaker(self, gid: str, max_files: int = 100) -> dict:
        """One voice: its row, name, pending suggestion and files (source names)."""
        state, gen = self._state()
        centroids = state.read(gen, CENTROIDS)
        row = centroids.filter(pl.col("global_speaker_id") == gid) if centroids.height else centroids
        if row.is_empty():
            raise NoMatch(f"no global speaker {gid}")
        info = row.drop("centroid").row(0, named=True)
        names = dict(state.profiles(gen)[0].select("global_speaker_id", "name").iter_rows())
        info["name"] = names.get(gid)
        info["suggestion"] = self._pending(state, gen).get(gid)
        if info["status"] != "active":
            return {**info, "files": [], "n_files": 0}
        where = state.locations(gen, [gid]).unique(["media_id", "speaker"])
        index = MediaIndex(self.wh)
        files = []
        for media_id, batch_id in where.select("media_id", "batch_id").unique().sort("media_id").head(max_files).rows():
            held = index.lookup(media_id)
            files.append({"media_id": media_id, "batch_id": batch_id, "source_uri": held.source_uri if held else None})
        return {**info, "files": files, "n_files": where["media_id"].n_unique()}

    def clips(self, gid: str, n: int = CLIPS) -> list[dict]:
        """Up to ``n`` short passages of the voice's clearest speech: its segments of 1.5-10 s
        by DNSMOS ``ovrl`` (then Whisper's log-probability), at most one per file, from the
        ``segment_quality`` of the few batches where it speaks most (``segments`` where a batch
        has no quality table)."""
        state, gen = self._state()
        where = state.locations(gen, [gid]).select("batch_id", "media_id", "speaker").unique()
        if where.is_empty():
            return []
        batches = where.group_by("batch_id").len().sort(["len", "batch_id"], descending=[True, False])
        batch_ids = batches["batch_id"].head(CLIP_BATCHES).to_list()
        mine = where.filter(pl.col("batch_id").is_in(batch_ids)).select("media_id", "speaker")
        ids = pl.Series(mine["media_id"].unique().to_list(), dtype=pl.Utf8).implode()
        quality = table_files(self.wh, "segment_quality", batch_ids)
        if quality:
            lf = scan(self.wh, quality, "segment_quality").select(
                "media_id", "speaker", "start_s", "end_s", pl.col("dnsmos_ovrl").alias("ovrl"), "avg_logprob"
            )
        else:
            lf = scan(self.wh, table_files(self.wh, "segments", batch_ids), "segments").select(
                "media_id", "speaker", "start_s", "end_s", pl.lit(None, pl.Float64).alias("ovrl"), "avg_logprob"
            )
        length = pl.col("end_s") - pl.col("start_s")
        cands = (
            lf.filter(pl.col("media_id").is_in(ids))
            .join(mine.lazy(), on=["media_id", "speaker"], how="semi")
            .filter(length >= CLIP_S[0])
            .with_columns(end_s=pl.min_horizontal("end_s", pl.col("start_s") + CLIP_S[1]))
            .sort(["ovrl", "avg_logprob"], descending=True, nulls_last=True)
            .collect()
        )
        out, seen = [], set()
        for c in cands.iter_rows(named=True):
            if c["media_id"] in seen:
                continue
            seen.add(c["media_id"])
            out.append(c)
            if len(out) == n:
                break
        for c in cands.iter_rows(named=True):  # one voice in one file: more of that file
            if len(out) >= n:
                break
            if c not in out:
                out.append(c)
        return out
