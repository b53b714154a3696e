"""The query layer on a small synthetic warehouse written with the project's own writers
(``benchmarks/analyst_queries.build_archive``: per-batch tables through
``Warehouse.write_table``, global speakers through incremental ``cluster_archive`` runs,
names through ``name_speaker``). Every answer is checked against the brute-force answer over
all files; the lookups are checked to open only the files they name."""

from __future__ import annotations

import io
import json

import polars as pl
import pytest

import opentranscribe_pipeline.query as q
from benchmarks.analyst_queries import build_archive
from opentranscribe_pipeline.cli import query as qcli
from opentranscribe_pipeline.query import core, duck
from opentranscribe_pipeline.schemas import TABLES, Media, conform
from opentranscribe_pipeline.speakers.state import read_archive_table, read_clusters
from opentranscribe_pipeline.storage import Warehouse

SMALL = dict(hours_per_batch=1, file_h=0.25, words_per_hour=800, speakers_per_batch=8, n_voices=24)
NAMES = {0: "Ada Lovelace", 1: "Ada King", 2: "Grace Hopper", 9: "Alan Turing"}


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[Warehouse, dict]:
    wh = Warehouse(str(tmp_path_factory.mktemp("query") / "wh"))
    info = build_archive(wh, 6, names=NAMES, **SMALL)
    return wh, info


def everything(wh: Warehouse, table: str) -> pl.DataFrame:
    return read_archive_table(wh, table)


def brute_clusters(wh):
    return read_clusters(wh).select("batch_id", "media_id", "speaker", "global_speaker_id")


def id_of(info: dict, name: str) -> str:
    return next(g for g, n in info["named"].items() if n == name)


# -- transcript ---------------------------------------------------------------------------------
def brute_transcript(wh, media_id: str) -> pl.DataFrame:
    seg = everything(wh, "segments").filter(pl.col("media_id") == media_id)
    prof = everything(wh, "speaker_profiles").select("global_speaker_id", "name")
    return (
        seg.join(brute_clusters(wh).drop("batch_id"), on=["media_id", "speaker"], how="left")
        .join(prof, on="global_speaker_id", how="left")
        .sort("segment_id")
        .select("segment_id", "start_s", "end_s", "speaker", "global_speaker_id", "name", "text")
    )


def test_transcript_by_id_prefix_and_name_equals_brute_force(archive):
    wh, _ = archive
    media = everything(wh, "media").sort("source_uri").row(7, named=True)
    expected = brute_transcript(wh, media["media_id"])
    assert expected.height > 10 and expected["global_speaker_id"].null_count() == 0
    name = media["source_uri"].rsplit("/", 1)[-1]
    for key in (media["media_id"], media["media_id"][:12], name, media["source_uri"]):
        got = q.transcript(wh, key).collect()
        assert got["source_uri"].unique().to_list() == [media["source_uri"]]
        assert got.select(expected.columns).equals(expected), key


def test_transcript_full_id_reads_one_segments_file_via_the_index(archive, monkeypatch):
    wh, _ = archive
    media_id = everything(wh, "media")["media_id"][5]
    opened = spy_scans(monkeypatch)
    q.transcript(wh, media_id).collect()
    assert [t for t, _ in opened] == ["segments"]  # no media table read: the index named the batch
    assert len(opened[0][1]) == 1


def test_ambiguous_media_prefix_lists_candidates(tmp_path):
    wh = Warehouse(str(tmp_path / "wh"))
    ids = ["abcd" + "0" * 60, "abcd" + "1" * 60, "abce" + "2" * 60]
    rows = pl.DataFrame(
        {
            "batch_id": "b1",
            "media_id": ids,
            "source_uri": [f"/in/{n}.wav" for n in ("x", "y", "z")],
            "size_bytes": 1,
            "status": "ok",
        }
    )
    wh.write_table("media", conform(rows, Media), "b1")
    with pytest.raises(q.Ambiguous) as err:
        q.transcript(wh, "ABCD")
    assert sorted(err.value.candidates["media_id"].to_list()) == ids[:2]
    assert all(m in str(err.value) for m in ids[:2]) and ids[2] not in str(err.value)
    assert q.find_media(wh, "abce")["media_id"] == ids[2]
    assert q.find_media(wh, "y.wav")["media_id"] == ids[1]


def test_ambiguous_file_name_part_and_no_match(archive):
    wh, _ = archive
    with pytest.raises(q.Ambiguous) as err:
        q.transcript(wh, "meeting 00001")  # a part of four file names
    assert err.value.candidates.height == 4
    with pytest.raises(q.NoMatch, match="no media item matches"):
        q.transcript(wh, "no such recording.wav")
    with pytest.raises(q.NoMatch):
        q.transcript(wh, "f" * 64)  # a full id that is nowhere


# -- words ---------------------------------------------------------------------------------------
def brute_words(wh, gid: str) -> pl.DataFrame:
    w = everything(wh, "words").join(brute_clusters(wh).drop("batch_id"), on=["media_id", "speaker"])
    return w.filter(pl.col("global_speaker_id") == gid)


def spy_scans(monkeypatch) -> list[tuple[str, list[str]]]:
    """Record every (table, files) the query layer hands to polars."""
    opened: list[tuple[str, list[str]]] = []
    real = core.scan

    def spy(wh, paths, table=None):
        opened.append((table, list(paths)))
        return real(wh, paths, table)

    monkeypatch.setattr(core, "scan", spy)
    return opened


def test_words_by_name_and_id_equal_brute_force(archive):
    wh, info = archive
    gid = id_of(info, "Grace Hopper")
    expected = brute_words(wh, gid).sort("media_id", "segment_id", "word_index")
    assert expected.height > 100
    for who in ("Grace Hopper", "grace hopper", "hopper", gid):
        got = q.words(wh, who).collect()
        assert set(got["global_speaker_id"]) == {gid} and set(got["name"]) == {"Grace Hopper"}
        cols = ["media_id", "segment_id", "word_index", "word", "start_s", "speaker"]
        assert got.sort("media_id", "segment_id", "word_index").select(cols).equals(expected.select(cols))
        assert got["source_uri"].null_count() == 0
    got = q.words(wh, gid, contains="THE").collect()
    assert got.height == expected.filter(pl.col("word").str.to_lowercase().str.contains("the")).height > 0


def test_words_reads_only_the_batches_holding_the_speaker(archive, monkeypatch):
    wh, _ = archive
    clusters = brute_clusters(wh)
    all_batches = set(clusters["batch_id"])
    per_id = clusters.group_by("global_speaker_id").agg(pl.col("batch_id").unique()).sort("global_speaker_id")
    gid, holding = next(
        (g, set(b)) for g, b in per_id.iter_rows() if 0 < len(set(b)) < len(all_batches)
    )  # a voice absent from some batch
    expected = brute_words(wh, gid).height
    opened = spy_scans(monkeypatch)
    reads: list[str] = []
    real_get = wh.backend.get_bytes
    monkeypatch.setattr(wh.backend, "get_bytes", lambda p: reads.append(p) or real_get(p))
    got = q.words(wh, gid).collect()
    assert got.height == expected > 0
    by_table = {t: [p.rsplit("/", 2)[-2].removeprefix("batch_id=") for p in files] for t, files in opened}
    assert set(by_table["words"]) == holding and set(by_table["media"]) == holding
    assert not [p for p in reads if "/words/" in p or "/segments/" in p]  # polars read only the named files
    assert len(holding) < len(all_batches)


def test_speaker_name_errors_list_the_candidates(archive):
    wh, _ = archive
    with pytest.raises(q.Ambiguous) as err:
        q.words(wh, "ada")
    assert sorted(err.value.candidates["name"].to_list()) == ["Ada King", "Ada Lovelace"]
    assert "Ada King" in str(err.value) and "Ada Lovelace" in str(err.value)
    with pytest.raises(q.NoMatch) as err:
        q.words(wh, "Charles Babbage")
    assert set(err.value.candidates["name"]) == set(NAMES.values())  # the known names are listed
    with pytest.raises(q.NoMatch, match="no global speaker"):
        q.words(wh, "spk-999999")


def test_cli_reports_bad_input_with_status_2(archive, capsys):
    wh, _ = archive
    args = parse(["query", "words", "--speaker", "ada", "--warehouse", wh.root_uri])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "2 speakers match 'ada'" in err and "Ada King" in err


# -- talk time / languages / counts --------------------------------------------------------------
def test_talk_time_equals_brute_force(archive):
    wh, info = archive
    turns = everything(wh, "speaker_turns").join(brute_clusters(wh).drop("batch_id"), on=["media_id", "speaker"])
    expected = turns.group_by("global_speaker_id").agg(talk_s=(pl.col("end_s") - pl.col("start_s")).sum())
    got = q.talk_time(wh).collect()
    joined = got.join(expected, on="global_speaker_id", suffix="_brute")
    assert joined.height == expected.height == got.height
    assert (joined["talk_s"] - joined["talk_s_brute"]).abs().max() < 1e-6
    assert got["talk_s"].is_sorted(descending=True)
    assert set(got.filter(pl.col("name").is_not_null())["name"]) == set(NAMES.values())
    top = q.talk_time(wh, top=3).collect()
    assert top.equals(got.head(3))
    emb = q.talk_time(wh, source="embeddings").collect()  # speech alone: never more than turns
    both = emb.join(got, on="global_speaker_id", suffix="_turns")
    assert both.height == got.height and (both["talk_s"] <= both["talk_s_turns"] + 1e-6).all()


def test_words_per_language_equals_counting_words(archive):
    wh, _ = archive
    lang = everything(wh, "transcripts").select("media_id", "language")
    expected = everything(wh, "words").join(lang, on="media_id").group_by("language").agg(n_words=pl.len())
    got = q.words_per_language(wh).collect()
    assert dict(got.select("language", "n_words").iter_rows()) == dict(expected.iter_rows())


def full_scan_counts(wh) -> dict[str, int]:
    return {t: 0 if (f := read_archive_table(wh, t)) is None else f.height for t in TABLES}


def test_counts_equal_full_scans_local(archive):
    wh, _ = archive
    got = q.counts(wh)
    assert dict(got.select("table", "rows").iter_rows()) == full_scan_counts(wh)
    assert got["unreadable"].sum() == 0 and got.filter(pl.col("table") == "words")["files"][0] == 6


def test_counts_report_an_unreadable_part(tmp_path):
    wh = Warehouse(str(tmp_path / "wh"))
    build_archive(wh, 2, names={0: "Ada"}, **SMALL)
    with open(wh.table_file("words", "bench-00001"), "r+b") as f:
        f.seek(-12, 2)
        f.write(b"garbage!PAR1")
    got = q.counts(wh, ["words", "media"]).rows_by_key("table", named=True)
    assert got["words"][0]["unreadable"] == 1 and got["words"][0]["files"] == 2
    assert got["media"][0]["rows"] == 8


@pytest.mark.s3
def test_counts_and_lookups_on_s3(seaweed):
    wh = Warehouse(f"s3://{seaweed.make_bucket('query')}/wh", seaweed.s3_options())
    info = build_archive(wh, 2, names={0: "Ada Lovelace", 3: "Grace Hopper"}, **SMALL)
    got = q.counts(wh)
    assert dict(got.select("table", "rows").iter_rows()) == full_scan_counts(wh)
    assert got.filter(pl.col("table") == "words")["rows"][0] > 0
    gid = id_of(info, "Grace Hopper")
    assert q.words(wh, "Grace Hopper").collect().height == brute_words(wh, gid).height > 0
    media = everything(wh, "media").row(2, named=True)
    assert (
        q.transcript(wh, media["source_uri"].rsplit("/", 1)[-1])
        .collect()
        .equals(q.transcript(wh, media["media_id"]).collect())
    )
    sql = duck.setup_sql(wh, redact=True)
    assert "CREATE OR REPLACE SECRET" in sql and "URL_STYLE 'path'" in sql and "<AWS_SECRET_ACCESS_KEY>" in sql
    assert f"s3://{wh.root}/words/batch_id=*/part-0.parquet" in sql


# -- CLI output formats and DuckDB ------------------------------------------------------------------
def parse(argv: list[str]):
    import argparse

    parser = argparse.ArgumentParser()
    qcli.add_query_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet", "table"])
def test_cli_output_formats_parse_back(archive, fmt, tmp_path, capsys):
    wh, _ = archive
    expected = q.talk_time(wh, top=5).collect()
    out = tmp_path / f"out.{fmt}"
    argv = ["query", "talk-time", "--top", "5", "--format", fmt, "--warehouse", wh.root_uri]
    args = parse(argv + (["--out", str(out)] if fmt == "parquet" else []))
    assert args.func(args) == 0
    text = capsys.readouterr().out
    if fmt == "csv":
        back = pl.read_csv(io.StringIO(text), schema=expected.schema)
    elif fmt == "json":
        back = pl.DataFrame(json.loads(text), schema=expected.schema)
    elif fmt == "parquet":
        back = pl.read_parquet(out)
    else:
        assert "(5 rows)" in text and expected["global_speaker_id"][0] in text
        return
    assert back.equals(expected)


def test_cli_transcript_and_words_as_json(archive, capsys):
    wh, _ = archive
    media_id = everything(wh, "media")["media_id"][0]
    args = parse(["query", "transcript", media_id[:10], "--format", "json", "--warehouse", wh.root_uri])
    assert args.func(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["media_id"] for r in rows} == {media_id} and rows == sorted(rows, key=lambda r: r["segment_id"])
    args = parse(
        [
            "query",
            "words",
            "--speaker",
            "Alan Turing",
            "--contains",
            "the",
            "--format",
            "csv",
            "--warehouse",
            wh.root_uri,
        ]
    )
    assert args.func(args) == 0
    back = pl.read_csv(io.StringIO(capsys.readouterr().out))
    assert back.height > 0 and back["word"].str.contains("the").all()


def one(con, sql: str):
    return con.sql(sql).fetchall()[0][0]


def test_duckdb_views_and_macros_agree_with_the_functions(archive, tmp_path):
    import duckdb

    wh, info = archive
    path = tmp_path / "a.duckdb"
    args = parse(["duckdb", "--warehouse", wh.root_uri, "--file", str(path)])
    assert args.func(args) == 0
    con = duckdb.connect(str(path))
    assert one(con, "SELECT count(*) FROM words") == everything(wh, "words").height
    assert one(con, "SELECT count(*) FROM speaker_clusters") == read_clusters(wh).height
    assert one(con, "SELECT count(*) FROM audio") == 0  # not written: an empty typed view
    assert (
        one(con, "SELECT count(*) FROM speaker_words('grace hopper')") == q.words(wh, "Grace Hopper").collect().height
    )
    media = everything(wh, "media").row(3, named=True)
    name = media["source_uri"].rsplit("/", 1)[-1]
    seg = con.sql(f"SELECT segment_id, global_speaker_id FROM transcript('{name}')").pl()
    assert seg.equals(q.transcript(wh, name).select("segment_id", "global_speaker_id").collect())
    tt = con.sql("SELECT global_speaker_id, talk_s FROM talk_time()").pl()
    assert tt["global_speaker_id"].to_list() == q.talk_time(wh).collect()["global_speaker_id"].to_list()
    wpl = con.sql("SELECT language, n_words FROM words_per_language()").pl()
    assert dict(wpl.iter_rows()) == dict(q.words_per_language(wh).select("language", "n_words").collect().iter_rows())


def test_duckdb_reads_every_stage_part_of_file_issues(archive, tmp_path):
    """``file_issues`` holds one part per stage (``<stage>.parquet``), not ``part-0``: the view
    reads them all (it failed with "No files found" on any warehouse with issues)."""
    import shutil

    import duckdb

    from opentranscribe_pipeline.assets.isolation import Issue, write_issues

    wh, _ = archive
    copy = Warehouse(str(tmp_path / "wh"))
    shutil.copytree(wh.root_uri, copy.root_uri)
    media = everything(copy, "media")
    batch, mid = media.row(0, named=True)["batch_id"], media.row(0, named=True)["media_id"]
    write_issues(copy, batch, "analytics", [Issue(mid, "analytics", "speaker_stats", "exception", "boom")], media)
    write_issues(copy, batch, "attribution", [Issue(mid, "attribution", None, "exception", "bang")], media)
    con = duckdb.connect(":memory:")
    for sql in duck.view_sql(copy):
        con.execute(sql)
    rows = con.sql("SELECT stage, reason FROM file_issues ORDER BY stage").fetchall()
    assert rows == [("analytics", "boom"), ("attribution", "bang")]
