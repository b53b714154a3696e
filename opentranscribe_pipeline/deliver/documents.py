"""A media item's transcript as deliverable documents: SRT, WebVTT, TXT and JSON.

:func:`gather` reads what one batch needs from the warehouse once (segments, words, English
segments, clusters, names, model versions); :func:`documents` renders one media item from
it. The shown name of a local speaker is the speaker profile's name when its global speaker
is named, else the global id; a file that was never clustered, or whose diarization failed,
shows the local label or no name at all ("exported without names").

``min_quality`` (``opentranscribe export --min-quality OVRL``) leaves out the segments whose
DNSMOS ``ovrl`` (``segment_quality``) is under the floor, with their words and cues; a
translated segment (``--language en``: its own segmentation) is judged by the
speech-weighted ``ovrl`` of the original segments it overlaps. Unscored segments (no
``segment_quality`` row, or a null score: too short for DNSMOS) are kept. The JSON says what
was left out (``quality``); without ``min_quality`` nothing changes, and nothing is read.

Names are data, never layout: every shown name goes through
:func:`~opentranscribe_pipeline.speakers.names.shown_name` (one line, no control or format
character, at most 100 characters), even though the speaker state only ever holds names the
rule accepted; SRT and WebVTT escape it further for their markup, JSON is written by
``json.dumps`` (controls escaped, and U+2028/U+2029 too, for JavaScript readers).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl

from ..speakers.names import shown_name
from ..storage import Warehouse
from .subtitles import TimedWord, build_cues, one_line, spread_words, timestamp, to_srt, to_vtt

FORMATS = ("srt", "vtt", "txt", "json")
LANGUAGES = ("original", "en")


@dataclass
class BatchSources:
    """One batch's tables as the exports need them (each frame may be empty)."""

    batch_id: str
    media: pl.DataFrame  # ok media items: media_id, source_uri, duration_s
    segments: pl.DataFrame
    words: pl.DataFrame
    segments_en: pl.DataFrame
    transcripts: pl.DataFrame
    diarization: pl.DataFrame
    translations: pl.DataFrame
    clusters: pl.DataFrame  # media_id, speaker, global_speaker_id
    names: dict[str, str] = field(default_factory=dict)  # global_speaker_id -> name
    # media_id, segment_id, start_s, end_s, dnsmos_ovrl (read only for ``min_quality``)
    quality: pl.DataFrame = field(default_factory=pl.DataFrame)
    summaries: pl.DataFrame = field(default_factory=pl.DataFrame)  # the ``summaries`` rows (JSON's "summary")

    def __post_init__(self):
        # defence in depth: whatever reached the names, what is shown is one clean line
        shown = {gid: shown_name(name) for gid, name in self.names.items()}
        self.names = {gid: name for gid, name in shown.items() if name}

    def speaker_names(self, media_id: str) -> dict[str, str]:
        """local label -> shown name for one media item (absent: no global id)."""
        rows = self.clusters.filter(pl.col("media_id") == media_id).select("speaker", "global_speaker_id").rows()
        return {local: self.names.get(gid, gid) for local, gid in rows}

    def global_ids(self, media_id: str) -> dict[str, str]:
        rows = self.clusters.filter(pl.col("media_id") == media_id).select("speaker", "global_speaker_id").rows()
        return dict(rows)

    def names_digest(self) -> str:
        """Changes when a name or a global id shown in this batch's exports changes."""
        shown = sorted(
            (m, s, g, self.names.get(g, ""))
            for m, s, g in self.clusters.select("media_id", "speaker", "global_speaker_id").rows()
        )
        return hashlib.sha256(repr(shown).encode()).hexdigest()[:16]


def _read(wh: Warehouse, table: str, batch_id: str) -> pl.DataFrame:
    df = wh.read_table(table, batch_id)
    return df if df is not None else pl.DataFrame()


def gather(wh: Warehouse, batch_id: str, media_ids: list[str] | None = None, *, quality: bool = False) -> BatchSources:
    """Everything :func:`documents` needs for the batch's ok media items (or those of
    ``media_ids``), read once: per-batch tables, the batch's clusters, every name; with
    ``quality``, the batch's segment scores too (for ``min_quality``)."""
    from ..query.core import profiles
    from ..speakers.state import read_clusters

    media = _read(wh, "media", batch_id)
    if media.height:
        media = media.filter(pl.col("status") == "ok").select("media_id", "source_uri", "duration_s")
        if media_ids is not None:
            media = media.filter(pl.col("media_id").is_in(media_ids))
    clusters = read_clusters(wh, [batch_id])
    names = dict(profiles(wh).select("global_speaker_id", "name").rows())
    return BatchSources(
        batch_id=batch_id,
        media=media,
        segments=_read(wh, "segments", batch_id),
        words=_read(wh, "words", batch_id),
        segments_en=_read(wh, "segments_en", batch_id),
        transcripts=_read(wh, "transcripts", batch_id),
        diarization=_read(wh, "diarization", batch_id),
        translations=_read(wh, "translations", batch_id),
        clusters=clusters.select("media_id", "speaker", "global_speaker_id") if clusters.height else clusters,
        names=names,
        quality=_scores(wh, batch_id) if quality else pl.DataFrame(),
        summaries=_read(wh, "summaries", batch_id),
    )


def _scores(wh: Warehouse, batch_id: str) -> pl.DataFrame:
    from ..query.quality import segment_scores

    return segment_scores(wh, [batch_id])


def _of(df: pl.DataFrame, media_id: str) -> pl.DataFrame:
    return df.filter(pl.col("media_id") == media_id) if df.height and "media_id" in df.columns else pl.DataFrame()


def _first(df: pl.DataFrame, media_id: str) -> dict:
    rows = _of(df, media_id)
    return rows.row(0, named=True) if rows.height else {}


@dataclass(frozen=True)
class Documents:
    """The four renderings of one media item, and what they say about it."""

    media_id: str
    source_uri: str
    language: str
    texts: Mapping[str, str]  # format -> file content
    n_cues: int
    named: bool  # speakers carry names or global ids (False: "exported without names")
    left_out: int = 0  # segments under ``min_quality``
    unscored: int = 0  # segments kept because no score covers them (``min_quality`` only)


def _json_text(doc: dict) -> str:
    """JSON with non-ASCII text as is; controls are escaped by ``json.dumps``, and U+2028 /
    U+2029 too (valid JSON, but line breaks to JavaScript and to many viewers)."""
    text = json.dumps(doc, ensure_ascii=False, indent=1)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029") + "\n"


def _judged(segs: pl.DataFrame, scores: pl.DataFrame, by_id: bool) -> pl.DataFrame:
    """``segs`` with ``quality``: its own ``ovrl`` (``by_id``: the same segmentation), else the
    speech-weighted ``ovrl`` of the scored segments it overlaps (null: unscored)."""
    from ..query.quality import span_quality

    if not segs.height:
        return segs.with_columns(quality=pl.lit(None, pl.Float64))
    if by_id:
        own = scores.select("segment_id", quality="dnsmos_ovrl") if scores.height else None
        if own is None:
            return segs.with_columns(quality=pl.lit(None, pl.Float64))
        return segs.join(own.unique("segment_id"), on="segment_id", how="left", maintain_order="left")
    if not scores.height:
        return segs.with_columns(quality=pl.lit(None, pl.Float64))
    return span_quality(segs, scores)


def documents(
    src: BatchSources, media_id: str, language: str = "original", *, min_quality: float | None = None
) -> Documents:
    """SRT, WebVTT, TXT and JSON of one media item (``language``: ``original`` or ``en``),
    without the segments under ``min_quality`` when it is given (see the module docstring)."""
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, not {language!r}")
    info = _first(src.media, media_id)
    tx = _first(src.transcripts, media_id)
    diar = _first(src.diarization, media_id)
    diarized = diar.get("status") == "ok"
    names = src.speaker_names(media_id) if diarized else {}
    gids = src.global_ids(media_id) if diarized else {}

    def shown(local: str | None) -> str | None:
        if local is None or not diarized:
            return None  # diarization failed: exported without names
        return shown_name(names.get(local, local)) or None

    if language == "en":
        segs = _of(src.segments_en, media_id)
        segs = segs.sort("start_s", "segment_id") if segs.height else segs
        segs, left_out, unscored = _keep(segs, _of(src.quality, media_id), min_quality, by_id=False)
        words_by_seg: dict[int, list[dict]] = {}
        timed = [
            w
            for s in segs.iter_rows(named=True)
            for w in spread_words(s["text"], s["start_s"], s["end_s"], shown(s["speaker"]))
        ]
        seg_lang = "en"
    else:
        segs = _of(src.segments, media_id)
        segs = segs.sort("segment_id") if segs.height else segs
        segs, left_out, unscored = _keep(segs, _of(src.quality, media_id), min_quality, by_id=True)
        words = _of(src.words, media_id)
        words_by_seg = {}
        for w in (words.sort("segment_id", "word_index").iter_rows(named=True)) if words.height else []:
            words_by_seg.setdefault(w["segment_id"], []).append(w)
        timed = [
            TimedWord(w["word"], w["start_s"], w["end_s"], shown(w["speaker"]))
            for s in segs.iter_rows(named=True)
            for w in words_by_seg.get(s["segment_id"], [])
        ]
        seg_lang = tx.get("language") or ""
    cues = build_cues(timed, media_end_s=info.get("duration_s"))  # never past the media's end

    json_segments, txt_turns = [], []
    for s in segs.iter_rows(named=True) if segs.height else []:
        who = shown(s.get("speaker"))
        seg_words = [
            {
                "word": w["word"],
                "start": w["start_s"],
                "end": w["end_s"],
                "score": w.get("score"),
                "speaker": w.get("speaker") if diarized else None,
            }
            for w in words_by_seg.get(s["segment_id"], [])
        ]
        json_segments.append(
            {
                "start": s["start_s"],
                "end": s["end_s"],
                "text": s["text"],
                "speaker": s.get("speaker") if diarized else None,
                "global_speaker_id": gids.get(s.get("speaker")),
                "speaker_name": src.names.get(gids.get(s.get("speaker"), ""), None),
                "words": seg_words,
                **(
                    {"source_language": s.get("source_language"), "translated": s.get("translated")}
                    if language == "en"
                    else {}
                ),
            }
        )
        text = one_line(s["text"])
        if txt_turns and txt_turns[-1][1] == who:
            txt_turns[-1][2].append(text)
        else:
            txt_turns.append((s["start_s"], who, [text]))

    txt = "\n\n".join(
        f"[{timestamp(start, '.')[:-4]}] {(who + ': ') if who else ''}{' '.join(t for t in texts if t)}"
        for start, who, texts in txt_turns
    )
    trans = _first(src.translations, media_id)
    doc = {
        "media_id": media_id,
        "source_uri": info.get("source_uri"),
        "duration_s": info.get("duration_s"),
        "language": seg_lang,
        "segments": json_segments,
        "word_segments": [w for s in json_segments for w in s["words"]],
        "speakers": [
            {"speaker": local, "global_speaker_id": gid, "name": src.names.get(gid)}
            for local, gid in sorted(gids.items())
        ],
        "diarization": diar.get("status") or "not run",
        "models": {
            "asr_model": tx.get("asr_model"),
            "asr_model_version": tx.get("model_version"),
            "timing_method": tx.get("timing_method"),
            "diarization_pipeline": diar.get("pipeline"),
            "diarization_model_version": diar.get("model_version"),
            "embedding_model": diar.get("embedding_model"),
            **(
                {
                    "translation_model": trans.get("translation_model"),
                    "translation_model_version": trans.get("model_version"),
                }
                if language == "en"
                else {}
            ),
        },
    }
    summary = _summary(_first(src.summaries, media_id), language, shown, segs if min_quality is not None else None)
    if summary is not None:
        doc["summary"] = summary
    if min_quality is not None:
        doc["quality"] = {
            "min_quality": min_quality,
            "measure": "DNSMOS ovrl (a translated segment: speech-weighted over the segments it overlaps)",
            "segments_left_out": left_out,
            "unscored_segments_kept": unscored,
        }
    return Documents(
        media_id=media_id,
        source_uri=info.get("source_uri") or media_id,
        language=language,
        texts={
            "srt": to_srt(cues),
            "vtt": to_vtt(cues),
            "txt": txt + ("\n" if txt else ""),
            "json": _json_text(doc),
        },
        n_cues=len(cues),
        named=diarized and bool(gids),
        left_out=left_out,
        unscored=unscored,
    )


def _summary(row: dict, language: str, shown, kept: pl.DataFrame | None) -> dict | None:
    """The JSON export's ``summary``: the summary step's row in the export's language (``en``:
    the English one), key points with their speaker's shown name; with ``min_quality`` only
    the key points inside a kept segment (a poor segment's words leave every format)."""
    if row.get("status") != "ok":
        return None
    english = language == "en" and row.get("language") != "en"
    summary, points, topics = (
        (row.get("summary_en"), row.get("key_points_en"), row.get("topics_en"))
        if english
        else (row.get("summary"), row.get("key_points"), row.get("topics"))
    )
    if summary is None:
        return None
    spans = [] if kept is None or not kept.height else kept.select("start_s", "end_s").rows()
    key_points = [
        {
            "text": p["text"],
            "start": p["start_s"],
            "end": p["end_s"],
            "speaker": p.get("speaker"),
            "speaker_name": shown(p.get("speaker")),
        }
        for p in points or []
        if kept is None or any(a <= p["start_s"] + 0.01 and p["end_s"] <= b + 0.01 for a, b in spans)
    ]
    return {
        "summary": summary,
        "key_points": key_points,
        "topics": list(topics or []),
        "method": row.get("method"),
        "model": row.get("model"),
        "prompt_version": row.get("prompt_version"),
    }


def _keep(
    segs: pl.DataFrame, scores: pl.DataFrame, min_quality: float | None, *, by_id: bool
) -> tuple[pl.DataFrame, int, int]:
    """The segments ``min_quality`` keeps (all without it), how many it left out, and how
    many of those kept are unscored."""
    if min_quality is None or not segs.height:
        return segs, 0, 0
    from ..query.quality import passes

    judged = _judged(segs, scores, by_id)
    kept = judged.filter(passes(pl.col("quality"), min_quality))
    return kept.drop("quality"), judged.height - kept.height, kept["quality"].null_count()
