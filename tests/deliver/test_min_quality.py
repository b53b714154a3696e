"""``documents(..., min_quality=X)`` (``opentranscribe export --min-quality X``) on a copy of
the shared processed archive with quality rows the test chose on the real segments: one
file with poor and clean segments alternating, one unscored. Poor segments leave the SRT,
WebVTT, TXT and JSON with their words; unscored ones stay; translated segments are judged
by the speech-weighted score of the segments they overlap; without a floor nothing
changes."""

from __future__ import annotations

import json

import polars as pl
import pytest

from opentranscribe_pipeline.deliver.documents import documents, gather
from opentranscribe_pipeline.deliver.subtitles import one_line
from opentranscribe_pipeline.query.quality import span_quality

from ..quality_rows import write_quality

pytestmark = pytest.mark.timeout(2400)  # the shared archive is built once per session
FLOOR = 3.0


@pytest.fixture(scope="module")
def scored(_shared_archive_built, tmp_path_factory):
    copy = _shared_archive_built.copy(tmp_path_factory.mktemp("export-min-quality"))
    wh, batch = copy.wh, copy.batch
    segments = wh.read_table("segments", batch)
    per_file = segments.group_by("media_id").len().sort("len", "media_id", descending=[True, False])
    mixed, unscored = per_file["media_id"][:2].to_list()

    def score(s):
        if s["media_id"] == mixed:
            return (1.5 if s["segment_id"] % 2 else 4.2), ([] if s["segment_id"] % 2 == 0 else ["noisy"])
        return 4.0, []

    sq, _ = write_quality(wh, batch, score, media_ids=set(segments["media_id"].to_list()) - {unscored}, floor=FLOOR)
    return {"wh": wh, "batch": batch, "mixed": mixed, "unscored": unscored, "segments": segments, "sq": sq}


def test_poor_segments_leave_every_format_with_their_words(scored):
    src = gather(scored["wh"], scored["batch"], quality=True)
    segs = scored["segments"].filter(pl.col("media_id") == scored["mixed"]).sort("segment_id")
    poor = segs.filter(pl.col("segment_id") % 2 == 1)
    clean = segs.filter(pl.col("segment_id") % 2 == 0)
    assert poor.height >= 2 and clean.height >= 2
    doc = documents(src, scored["mixed"], min_quality=FLOOR)
    body = json.loads(doc.texts["json"])
    assert [s["start"] for s in body["segments"]] == clean["start_s"].to_list()
    assert body["quality"]["segments_left_out"] == poor.height == doc.left_out
    assert body["quality"]["unscored_segments_kept"] == 0 and body["quality"]["min_quality"] == FLOOR
    words = src.words.filter(pl.col("media_id") == scored["mixed"])
    kept_words = words.filter(pl.col("segment_id").is_in(clean["segment_id"].implode()))
    assert len(body["word_segments"]) == kept_words.height
    # no cue of the SRT or WebVTT starts inside a poor segment; the TXT has no poor text
    full = documents(src, scored["mixed"])
    assert doc.n_cues < full.n_cues
    for text in poor["text"].to_list():
        if one_line(text) and not any(one_line(text) in one_line(c) for c in clean["text"].to_list()):
            assert one_line(text) not in doc.texts["txt"]
    for text in clean["text"].to_list():
        assert one_line(text) in doc.texts["txt"]


def test_unscored_segments_are_kept_and_no_floor_changes_nothing(scored):
    src = gather(scored["wh"], scored["batch"], quality=True)
    plain_src = gather(scored["wh"], scored["batch"])
    assert plain_src.quality.is_empty()  # nothing read without a floor
    unscored = scored["unscored"]
    n = scored["segments"].filter(pl.col("media_id") == unscored).height
    doc = documents(src, unscored, min_quality=4.9)
    assert doc.left_out == 0 and doc.unscored == n
    assert len(json.loads(doc.texts["json"])["segments"]) == n
    for media_id in (unscored, scored["mixed"]):
        assert documents(src, media_id).texts == documents(plain_src, media_id).texts


def test_translated_segments_are_judged_by_the_segments_they_overlap(scored):
    src = gather(scored["wh"], scored["batch"], quality=True)
    en = src.segments_en.filter(pl.col("media_id") == scored["mixed"]).sort("start_s", "segment_id")
    if en.is_empty():
        pytest.skip("the sample archive has no English segments for this file")
    judged = span_quality(en, scored["sq"].filter(pl.col("media_id") == scored["mixed"]))
    keep = judged.filter(pl.col("quality").is_null() | (pl.col("quality") >= FLOOR))
    doc = documents(src, scored["mixed"], "en", min_quality=FLOOR)
    body = json.loads(doc.texts["json"])
    assert [s["start"] for s in body["segments"]] == keep["start_s"].to_list()
    assert doc.left_out == en.height - keep.height > 0


def test_cli_export_min_quality(scored, tmp_path):
    from ..conftest import cli_in_process

    wh = scored["wh"]
    base = ["export", "--warehouse", wh.root_uri, "--media", scored["mixed"], "--format", "txt,json"]
    out = cli_in_process([*base, "--out", tmp_path / "kept", "--min-quality", "3"], tmp_path)
    assert out.returncode == 0, out.stderr
    segs = scored["segments"].filter(pl.col("media_id") == scored["mixed"])
    n_poor = segs.filter(pl.col("segment_id") % 2 == 1).height
    assert f"{n_poor} segment(s) under the floor left out" in out.stdout
    [body] = [json.loads(p.read_text()) for p in (tmp_path / "kept").glob("*.json")]
    assert len(body["segments"]) == segs.height - n_poor and body["quality"]["segments_left_out"] == n_poor
    full = cli_in_process([*base, "--out", tmp_path / "all"], tmp_path)
    [whole] = [json.loads(p.read_text()) for p in (tmp_path / "all").glob("*.json")]
    assert full.returncode == 0 and len(whole["segments"]) == segs.height and "quality" not in whole
    refused = cli_in_process([*base, "--out", tmp_path / "x", "--min-quality", "6"], tmp_path)
    assert refused.returncode == 2 and "DNSMOS" in refused.stderr
