"""``summaries`` + ``topics``: what each recording is about.

A model stage on the per-file model step (``assets/modelstep.py``), after translation:
``summaries`` (the state table, one row per transcribed media item) holds the summary, the
key points with their time range and speaker, the topics, in the media's language and in
English (from ``segments_en``), with the method, model and prompt version; ``topics`` has one
row per (media item, language, topic) for joins. Offline by default (extractive, the
packaged MiniLM: ``deliver/summaries.py``); an OpenAI-compatible chat endpoint where one is
configured (``deliver/llm.py``). A file is redone when the method, model, prompt or the
step's code changed (``model_version``), or when its segments or English segments changed
(``source_digest``). A file the step fails on is a ``failed`` row with the error; a file past
the batch's token budget is a ``skipped`` row (``skipped: token budget ...``) that a later
run does; the batch goes on.

Not in the ``gpu`` pool: the extractive method runs the small MiniLM on the CPU with its
threads bounded (``SummaryModelResource.threads``), and the LLM method only waits on a remote
endpoint; neither may hold a GPU slot while transcription waits for it.
"""

import dataclasses

import dagster as dg
import polars as pl

from ..deliver import llm
from ..deliver import summaries as sm
from ..partitions import batch_partitions
from ..resources import WarehouseResource
from ..resources.summaries import SummaryModelResource
from ..schemas import Summary, Topic, conform
from .checks import table_spec
from .modelstep import FileOutput, ModelStage, ReprocessConfig, empty, run_model_step, usable_audio

STAGE = ModelStage(
    name="summaries",
    state_table="summaries",
    row_tables=("topics",),
    sort_keys={"summaries": ("media_id",), "topics": ("media_id", "language", "rank")},
    verb="summarized",
    failed_state={"n_sentences": 0, "input_tokens": 0, "output_tokens": 0},
)
SKIPPED_VERSION = "skipped: token budget"  # a model version no run has: the file is redone next time


def _by_media(df: pl.DataFrame | None) -> dict[str, list[dict]]:
    if df is None or df.is_empty():
        return {}
    return {k[0]: v.to_dicts() for k, v in df.partition_by("media_id", as_dict=True).items()}


def _lines(segments: list[dict]) -> list[llm.Line]:
    rows = sorted(segments, key=lambda s: (float(s["start_s"]), int(s["segment_id"])))
    return [
        llm.Line(i, float(s["start_s"]), float(s["end_s"]), s.get("speaker"), (s.get("text") or "").strip())
        for i, s in enumerate(r for r in rows if (r.get("text") or "").strip())
    ]


def _ranked(topics: list[str]) -> list[tuple[str, float]]:
    """An LLM's topics, best first, as weights from 1 down."""
    return [(t, 1.0 - i / max(1, len(topics))) for i, t in enumerate(topics)]


def _spec(table: str, description: str) -> dg.AssetSpec:
    return table_spec(
        table,
        description,
        group="deliverables",
        deps=["segments", "words", "segments_en", "translations", "transcripts"],
        kinds=("sentence_transformers",),
    )


@dg.multi_asset(
    specs=[
        _spec(
            "summaries",
            "Per media item: a short summary, 3-7 key points (time range, speaker), topics, in its language and in "
            "English; method, model, prompt version; status.",
        ),
        _spec("topics", "Per media item and language: its topics (keyphrases) with a weight, best first."),
    ],
    check_specs=STAGE.check_specs(),
    partitions_def=batch_partitions,
)
def summarize(
    context: dg.AssetExecutionContext,
    config: ReprocessConfig,
    warehouse: WarehouseResource,
    summaries: SummaryModelResource,
):
    """Summaries and topics for every transcribed file of the batch whose summary is missing or stale."""
    batch_id = context.partition_key
    wh = warehouse.get()
    segments = wh.read_table("segments", batch_id)
    transcripts = wh.read_table("transcripts", batch_id)
    if segments is None or transcripts is None:
        raise dg.Failure(f"batch {batch_id!r}: materialize `segments` before `summaries`")
    seg_by = _by_media(segments)
    word_by = _by_media(wh.read_table("words", batch_id))
    en_by = _by_media(wh.read_table("segments_en", batch_id))
    ok = transcripts.filter(pl.col("status") == "ok").select("media_id", "language")
    wanted = usable_audio(wh, batch_id, "summaries").join(ok, on="media_id")
    digests = {m: sm.source_digest(seg_by.get(m, []), en_by.get(m)) for m in wanted["media_id"].to_list()}
    previous = wh.read_table("summaries", batch_id)
    changed = []
    if previous is not None:
        changed = [
            m for m, d in previous.select("media_id", "source_digest").rows() if m in digests and d != digests[m]
        ]
    if changed:
        context.log.info("%d file(s) have new segments since they were summarized: redone", len(changed))
    method = summaries.method_name()
    chat = summaries.chat_config() if method == "llm" else None
    budget = llm.TokenBudget(summaries.token_budget if method == "llm" else None)
    skipped: dict[str, str] = {}

    def topics_of(media_id: str, language, original, english) -> pl.DataFrame:
        by_language = {language: original}
        if english is not None and not sm.is_english(language):
            by_language["en"] = english
        return sm.topic_frame(batch_id, media_id, by_language)

    def extractive(embedder, item: dict) -> FileOutput:
        media_id, language = item["media_id"], item["language"]
        segs = seg_by.get(media_id, [])
        original = sm.extract(sm.sentences_from_segments(segs, word_by.get(media_id)), language, embedder.encode)
        if sm.is_english(language):
            english = original
        elif media_id in en_by:
            english = sm.extract(sm.sentences_from_segments(en_by[media_id]), "en", embedder.encode)
        else:
            english = None
        columns = sm.summary_columns(original, language, english)
        topics = topics_of(media_id, language, original.topics, english.topics if english else None)
        return FileOutput(
            rows={"topics": topics},
            state={**columns, "source_digest": digests[media_id], "input_tokens": 0, "output_tokens": 0},
            summary=f"{len(original.key_points)} key point(s) of {original.n_sentences} sentence(s), "
            f"topics {columns['topics'][:3]}",
        )

    def with_llm(client: llm.ChatClient, item: dict) -> FileOutput:
        media_id, language = item["media_id"], item["language"] or "the original language"
        lines = _lines(seg_by.get(media_id, []))
        english = None if sm.is_english(item["language"]) else en_by.get(media_id)
        en_lines = _lines(english) if english is not None else []
        estimate = llm.estimate_file_tokens(lines, chat) + (llm.estimate_file_tokens(en_lines, chat) if en_lines else 0)
        if not budget.allows(estimate):
            reason = f"{SKIPPED_VERSION}: about {estimate} tokens, {budget.left} of {budget.limit} left in this run"
            skipped[media_id] = reason
            return FileOutput(
                rows={"topics": empty(Topic)},
                state={
                    "model_version": SKIPPED_VERSION,
                    "source_digest": digests[media_id],
                    "n_sentences": 0,
                    "input_tokens": 0,
                    "output_tokens": 0,
                },
                summary=reason,
            )
        original = llm.summarize_llm(client, lines, language)
        budget.charge(original.input_tokens + original.output_tokens)
        en = original if sm.is_english(item["language"]) else None
        if en_lines:
            en = llm.summarize_llm(client, en_lines, "English")
            budget.charge(en.input_tokens + en.output_tokens)
        spent = [original] + ([en] if en is not None and en is not original else [])
        topics = topics_of(media_id, item["language"], _ranked(original.topics), _ranked(en.topics) if en else None)
        return FileOutput(
            rows={"topics": topics},
            state={
                "language": item["language"],
                "summary": original.summary,
                "key_points": original.key_points,
                "topics": original.topics,
                "summary_en": en.summary if en else None,
                "key_points_en": en.key_points if en else None,
                "topics_en": en.topics if en else None,
                "n_sentences": len(lines),
                "input_tokens": sum(s.input_tokens for s in spent),
                "output_tokens": sum(s.output_tokens for s in spent),
                "source_digest": digests[media_id],
            },
            summary=f"{sum(s.requests for s in spent)} request(s), {budget.used} tokens spent in this run",
        )

    step = run_model_step(
        context,
        wh,
        STAGE,
        model=summaries,
        force=[*config.force, *changed],
        process=extractive if method == "extractive" else with_llm,
        wanted=wanted,
    )
    if skipped:  # recorded as skipped, with the reason: a later run (more budget) does them
        state = step.state.with_columns(
            status=pl.when(pl.col("media_id").is_in(list(skipped))).then(pl.lit("skipped")).otherwise("status"),
            error=pl.col("media_id").replace_strict(skipped, default=pl.col("error"), return_dtype=pl.Utf8),
        )
        state = conform(state, Summary)
        wh.write_table("summaries", state, batch_id)
        step = dataclasses.replace(step, tables={**step.tables, "summaries": state})
        context.log.warning("%d file(s) skipped: past the token budget of %s", len(skipped), budget.limit)
    yield from step.results(
        state_extra={
            "method": method,
            "files_skipped_token_budget": len(skipped),
            "tokens_spent": budget.used,
            "token_budget": budget.limit if budget.limit is not None else "none",
        }
    )
