"""Speaker names are data, never markup or layout (speakers/names.py), end to end.

On copies of the session's processed sample warehouse (conftest ``shared_archive``; nothing
is transcribed again here):

- ``speakers name`` refuses a name with a newline, a NUL, a right-to-left override or over
  100 characters: exit 2, one line on stderr saying why, nothing written;
- a hand-written ``speaker_profiles`` file with such names: the rows are refused (a warning
  naming the global id and the reason, the ``profiles_names_are_valid`` check of a
  clustering run) and never reach ``speakers list``, TXT / JSON / SRT / WebVTT exports, the
  query tables or plain search output, while its valid row is used everywhere;
- defence in depth: names that bypass the rule (put straight into the renderer) still give
  one line per TXT paragraph, no raw control or bidi character, and bounded subtitle lines.
"""

from __future__ import annotations

import dataclasses
import json
import re

import dagster as dg
import polars as pl
import pytest

from opentranscribe_pipeline.schemas import SpeakerProfiles, conform, utc_now
from opentranscribe_pipeline.speakers.state import SpeakerState, active_speakers, read_clusters

from .conftest import cli_in_process

pytestmark = pytest.mark.slow  # the session's shared `opentranscribe process` run (conftest.shared_archive)

NEWLINE_NAME = "Ada\n00:00:00,000 --> 00:00:09,000\nInjected line"
NUL_NAME = "Nul\x00Name \u202eevil"
LONG_NAME = "L" * 10_000
GOOD_NAME = "Grace Hopper"
RAW_CHARS = ("\x00", "\u202e", "\u2066")
RAW = (*RAW_CHARS, "00:00:00,000 -->", "Injected line", "L" * 101)


def _gids(wh) -> list[str]:
    active, _ = active_speakers(wh)
    return active["global_speaker_id"].to_list()


def _profiles_file(wh) -> pl.DataFrame:
    return wh.read_table("speaker_profiles")


def _no_raw(text: str, where: str, raw=RAW) -> None:
    for bad in raw:
        assert bad not in text, f"{bad!r} reached {where}"


def _write_hand_profiles(wh, gids: list[str]) -> dict[str, str]:
    """A speaker_profiles file written by hand with polars (as the README allows)."""
    names = {gids[0]: NEWLINE_NAME, gids[1]: NUL_NAME, gids[2]: LONG_NAME, gids[3]: GOOD_NAME}
    frame = conform(
        pl.DataFrame([{"global_speaker_id": g, "name": n, "named_at": utc_now()} for g, n in names.items()]),
        SpeakerProfiles,
    )
    wh.write_table("speaker_profiles", frame)
    return names


def test_speakers_name_refuses_before_reading_the_warehouse(tmp_path):
    nowhere = tmp_path / "no-warehouse"
    proc = cli_in_process(["speakers", "name", "spk-000001", NEWLINE_NAME, "--warehouse", nowhere], tmp_path / "home")
    assert proc.returncode == 2
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert line.startswith("error: name refused: ") and "U+000A (LINE FEED)" in line
    assert not nowhere.exists()


def test_speakers_name_refuses_bad_names_with_exit_2_and_one_line(copy_of_shared_archive):
    archive = copy_of_shared_archive
    wh, root, home = archive.wh, archive.root, archive.home
    gid = _gids(wh)[0]
    state = SpeakerState(wh)
    generation, published = state.current().number, _profiles_file(wh)
    for bad, why in (
        (NEWLINE_NAME, "U+000A (LINE FEED)"),
        ("Ada\r\nLovelace", "U+000D (CARRIAGE RETURN)"),
        (NUL_NAME, "U+0000 (NUL)"),
        ("\u202eecalevoL adA", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        ("Ada\u200bLovelace", "U+200B (ZERO WIDTH SPACE)"),
        (LONG_NAME, "at most 100 characters, this one has 10000"),
        ("x" * 101, "at most 100 characters, this one has 101"),
    ):
        proc = cli_in_process(["speakers", "name", gid, bad, "--warehouse", root], home)
        assert proc.returncode == 2, (bad[:20], proc.stdout, proc.stderr)
        assert proc.stdout == ""
        [line] = proc.stderr.splitlines()  # one line, whatever the name held
        assert line.startswith("error: name refused: ") and why in line, line
        assert len(line) < 200
    # nothing was written: same generation, same published names
    assert state.current().number == generation
    after = _profiles_file(wh)
    assert (after is None and published is None) or after.equals(published)

    # accepted: surrounding whitespace trimmed, NFC, exactly 100 characters allowed
    proc = cli_in_process(["speakers", "name", gid, "  Zoe\u0301   Dupont \n", "--warehouse", root], home)
    assert proc.returncode == 0, proc.stderr
    assert f"{gid} is now 'Zoé Dupont'" in proc.stdout
    names = dict(_profiles_file(wh).select("global_speaker_id", "name").iter_rows())
    assert names[gid] == "Zoé Dupont"
    assert cli_in_process(["speakers", "name", gid, "x" * 100, "--warehouse", root], home).returncode == 0


def test_hand_written_bad_names_are_refused_and_never_reach_outputs(copy_of_shared_archive, tmp_path):
    archive = copy_of_shared_archive
    wh, root, home = archive.wh, archive.root, archive.home
    gids = _gids(wh)
    assert len(gids) >= 4, gids
    names = _write_hand_profiles(wh, gids)
    refused = gids[:3]

    # speakers list: one line per voice, the valid name shown, the refused ones reported
    proc = cli_in_process(["speakers", "list", "--warehouse", root], home)
    assert proc.returncode == 0, proc.stderr
    _no_raw(proc.stdout, "speakers list")
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{len(gids)} global speakers")
    assert len(lines) == 1 + len(gids)
    assert GOOD_NAME in next(line for line in lines if gids[3] in line)
    for gid in refused:
        assert re.search(r" s  -(\s|$)", next(line for line in lines if gid in line))  # shown unnamed
        assert re.search(rf"the name of {gid} is refused and not used: ", proc.stderr), proc.stderr
    assert "LINE FEED" in proc.stderr and "NUL" in proc.stderr and "this one has 10000" in proc.stderr

    # exports through the CLI: every format of every file, none carries a refused name
    out = tmp_path / "subs"
    proc = cli_in_process(["export", "--warehouse", root, "--out", out, "--batch", archive.batch], home)
    assert proc.returncode == 0, proc.stderr
    files = sorted(out.iterdir())
    assert {f.suffix for f in files} == {".srt", ".vtt", ".txt", ".json"}
    shown = set()
    for f in files:
        text = f.read_text(encoding="utf-8")
        _no_raw(text, f.name)
        if f.suffix == ".txt":
            for paragraph in filter(None, text.split("\n\n")):
                # `[00:00:03] Name: ...`: one line per speaker turn, nothing injected between
                assert "\n" not in paragraph.strip("\n"), paragraph[:200]
                assert re.match(r"\[\d\d:\d\d:\d\d\] ", paragraph), paragraph[:200]
        if f.suffix == ".json":
            doc = json.loads(text)
            seg_names = {s["speaker_name"] for s in doc["segments"]}
            shown |= seg_names | {s["name"] for s in doc["speakers"]}
    assert shown <= {None, GOOD_NAME}, shown
    assert GOOD_NAME in shown  # the valid row of the same file is used
    assert any(GOOD_NAME in f.read_text(encoding="utf-8") for f in files if f.suffix == ".txt")

    # the query tables and the name lookup
    proc = cli_in_process(["query", "talk-time", "--warehouse", root], home)
    assert proc.returncode == 0, proc.stderr
    _no_raw(proc.stdout, "query talk-time")
    assert GOOD_NAME in proc.stdout
    proc = cli_in_process(["query", "words", "--speaker", "Nul", "--warehouse", root], home)
    assert proc.returncode == 2 and "no speaker named 'Nul'" in proc.stderr
    _no_raw(proc.stderr, "query words (no match)")

    # plain search output: names resolved at query time through the same rule
    from opentranscribe_pipeline.query import core

    said = core.words(wh, gids[3])
    said = said.collect() if isinstance(said, pl.LazyFrame) else said
    word = max((w.strip(".,?!") for w in said["word"].to_list() if w.strip(".,?!").isalpha()), key=len)
    proc = cli_in_process(["search", word, "--mode", "text", "--speaker", GOOD_NAME, "--warehouse", root], home)
    assert proc.returncode == 0, proc.stderr
    _no_raw(proc.stdout, "search")
    heads = [line for line in proc.stdout.splitlines() if re.search(r"\(score \d", line)]
    assert heads, proc.stdout[:2000]
    assert all(f"]  {GOOD_NAME}  (score " in h for h in heads), heads
    proc = cli_in_process(["search", word, "--mode", "text", "--speaker", "Nul", "--warehouse", root], home)
    assert proc.returncode == 2
    [line] = [line for line in proc.stderr.splitlines() if line.startswith("error:")]  # besides the warnings
    assert "no speaker named 'Nul'" in line and GOOD_NAME in line
    _no_raw(proc.stderr, "search --speaker (no match)")

    # a clustering run adopts the hand-written file without the refused rows and reports them
    from opentranscribe_pipeline.assets import cluster_speakers
    from opentranscribe_pipeline.resources import (
        AsrModelResource,
        DiarizationModelResource,
        SpeakerClusteringResource,
        WarehouseResource,
    )

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [cluster_speakers],
            instance=instance,
            resources={
                "warehouse": WarehouseResource(root=str(root)),
                "asr": AsrModelResource(),
                "diarization": DiarizationModelResource(),
                "clustering": SpeakerClusteringResource(),
            },
            run_config={"ops": {"cluster_speakers": {"config": {"mode": "full", "batch_ids": []}}}},
        )
    assert result.success
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "profiles_names_are_valid"]
    assert not check.passed
    assert check.metadata["refused"].value == 3
    assert set(check.metadata["refused_ids"].value.split(", ")) == set(refused)
    reasons = check.metadata["reasons"].value
    assert reasons.count("\n") == 2 and "LINE FEED" in reasons and "NUL" in reasons and "10000" in reasons
    _no_raw(reasons, "check metadata")
    published = dict(_profiles_file(wh).select("global_speaker_id", "name").iter_rows())
    assert published == {gids[3]: GOOD_NAME}  # the refused rows are never written on
    assert names[gids[3]] == GOOD_NAME


def test_names_that_bypass_the_rule_still_cannot_break_an_output(shared_archive):
    """Defence in depth: the renderer is handed the bad names directly."""
    from opentranscribe_pipeline.deliver.documents import documents, gather

    wh = shared_archive.wh
    src = gather(wh, shared_archive.batch)
    clusters = read_clusters(wh, [shared_archive.batch])
    counts = clusters.group_by("media_id").len().sort("len", "media_id", descending=True)
    media_id = counts["media_id"][0]
    gids = sorted(set(clusters.filter(pl.col("media_id") == media_id)["global_speaker_id"]))

    def render(name: str):
        return documents(dataclasses.replace(src, names=dict.fromkeys(gids, name)), media_id)

    plain = render("Ada")
    for bad in (NEWLINE_NAME, NUL_NAME, LONG_NAME):
        doc = render(bad)
        for fmt, text in doc.texts.items():  # shown on one line, defanged: no raw control or bidi
            _no_raw(text, f"{fmt} of a name that bypassed the rule", (*RAW_CHARS, "L" * 101))
        txt = doc.texts["txt"]
        assert txt.count("\n") == plain.texts["txt"].count("\n")  # no line added
        assert all(re.match(r"\[\d\d:\d\d:\d\d\] ", line) for line in txt.splitlines() if line)
        vtt_lines = doc.texts["vtt"].splitlines()
        assert sum(" --> " in line for line in vtt_lines) == doc.n_cues  # no cue added
        json_names = {s["speaker_name"] for s in json.loads(doc.texts["json"])["segments"]}
        assert all(n is None or (len(n) <= 100 and "\n" not in n) for n in json_names)
        srt_lines = doc.texts["srt"].splitlines()
        assert max(map(len, srt_lines)) <= 100 + 2 + 42  # a name is at most 100 characters (was 10,011)
        assert sum(" --> " in line for line in srt_lines) == doc.n_cues
