"""What the Dagster UI shows of the code location: descriptions that render as written, asset
groups in the order of the stages, and no asset floating without the inputs it reads.

The UI renders every description as Markdown and sanitizes raw HTML away, so a bare
``<root>`` in a description is an unknown tag and disappears from the page; inside inline
code (backticks) it is shown as written. Groups are the stages of the lineage: an asset
reads only from its own group or an earlier one, so the graph, grouped, reads left to right.
"""

from __future__ import annotations

import re

import dagster as dg
import pytest

from opentranscribe_pipeline.definitions import BATCH_JOB, defs

# the stages, in the order data flows through them (see docs/dagster.md)
GROUP_ORDER = (
    "ingest",  # media, audio
    "diarization",  # who spoke when; its speech regions are transcription's VAD
    "transcription",  # transcripts, words, segments with a speaker on every word
    "quality",  # segment_quality, media_quality: how usable each segment and file is
    "speakers",  # archive-wide identity: global ids, centroids, names, suggestions
    "analytics",  # speaker_stats, media_stats
    "deliverables",  # English, exports
    "search",  # passages, the search index, the voices index
    "operations",  # the archive dashboard
)

CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)  # `...` and ``...``, as CommonMark pairs them
HTML_TAG = re.compile(r"</?[A-Za-z][^<>]*>")  # what CommonMark reads as raw HTML


def bare_tags(text: str | None) -> list[str]:
    """The ``<word>`` pieces of a Markdown text that would render as HTML (outside code spans)."""
    return HTML_TAG.findall(CODE_SPAN.sub("", text or ""))


def test_bare_tags_finds_what_the_ui_would_drop():
    assert bare_tags("files under <root>/exports/<format>/") == ["<root>", "<format>"]
    assert bare_tags("files under `<root>/exports/<format>/`") == []
    assert bare_tags("``a `<b>` c`` then <id>") == ["<id>"]
    assert bare_tags("media -> audio -> transcripts") == []


@pytest.fixture(scope="module")
def graph():
    return defs.resolve_asset_graph()


def every_description(graph) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key in graph.get_all_asset_keys():
        out[f"asset {key.to_user_string()}"] = graph.get(key).description
    for assets_def in graph.assets_defs:
        for check in assets_def.check_specs:
            out[f"check {check.asset_key.to_user_string()}.{check.name}"] = check.description
        if assets_def.is_executable:
            out[f"op {assets_def.node_def.name}"] = assets_def.node_def.description
    for job in defs.resolve_all_job_defs():
        out[f"job {job.name}"] = job.description
    for schedule in defs.schedules or []:
        out[f"schedule {schedule.name}"] = schedule.description
    for sensor in defs.sensors or []:
        out[f"sensor {sensor.name}"] = sensor.description
    return out


def test_every_description_renders_as_written(graph):
    descriptions = every_description(graph)
    assert any(name.startswith("check ") for name in descriptions)
    assert any(name.startswith("job ") for name in descriptions)
    broken = {name: bare_tags(text) for name, text in descriptions.items() if bare_tags(text)}
    assert not broken, f"wrap these in backticks (inline code) or reword: {broken}"


def test_every_asset_has_a_description(graph):
    missing = [key.to_user_string() for key in graph.get_all_asset_keys() if not graph.get(key).description]
    assert not missing


def test_batch_job_description_names_every_stage():
    job = defs.resolve_job_def(BATCH_JOB)
    steps = {node.name for node in job.graph.node_defs}
    assert {"ingest", "transcribe", "translate", "conversation_analytics", "embed_chunks"} <= steps
    missing = sorted(step for step in steps if f"`{step}`" not in (job.description or ""))
    assert not missing, f"{BATCH_JOB}'s description does not name these steps: {missing}"


def test_archive_summary_has_the_inputs_it_reads(graph):
    parents = {key.to_user_string() for key in graph.get(dg.AssetKey("archive_summary")).parent_keys}
    assert {"media", "transcripts", "diarization", "speaker_embeddings", "speaker_clusters"} <= parents


def test_groups_follow_the_stages(graph):
    groups = {key: graph.get(key).group_name for key in graph.get_all_asset_keys()}
    unknown = {key.to_user_string(): group for key, group in groups.items() if group not in GROUP_ORDER}
    assert not unknown, f"place these groups in GROUP_ORDER: {unknown}"
    backwards = [
        f"{parent.to_user_string()} ({groups[parent]}) -> {key.to_user_string()} ({groups[key]})"
        for key in groups
        for parent in graph.get(key).parent_keys
        if GROUP_ORDER.index(groups[parent]) > GROUP_ORDER.index(groups[key])
    ]
    assert not backwards, f"edges going back to an earlier stage: {backwards}"
    assert len(set(groups.values())) >= 6  # stages, not one big group


def test_every_asset_of_the_batch_job_has_a_code_version_naming_its_step():
    """Without a code version the UI has nothing to compare: a new model or step code would
    never mark the batch's outputs stale (score_quality lacked one when it was added)."""
    job = defs.resolve_job_def(BATCH_JOB)
    missing = [
        spec.key.to_user_string()
        for a in defs.resolve_asset_graph().assets_defs
        if a.is_executable and a.node_def.name in job.graph.node_dict
        for spec in a.specs
        if not spec.code_version
    ]
    assert missing == []
    quality = defs.resolve_assets_def(dg.AssetKey("media_quality")).specs
    assert all(s.code_version.startswith("quality/") and "dnsmos" in s.code_version for s in quality)
