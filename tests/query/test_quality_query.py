"""``query quality`` (needs_attention) and the span rule of ``--min-quality``.

Two parts: a small warehouse whose quality rows the test chooses (two drops, a file of an
older batch without quality rows), where every answer is checked against a brute-force
filter over all rows and the drop lookup is checked to open only that drop's files; and the
shared processed warehouse, where the real tables of the quality step are read (the
training-set query of docs/quality.md runs there and its rows are checked)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from opentranscribe_pipeline.query import core
from opentranscribe_pipeline.query import quality as qq
from opentranscribe_pipeline.schemas import Batches, Media, Segments, conform
from opentranscribe_pipeline.storage import Warehouse

from ..conftest import ROOT
from ..quality_rows import write_quality

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
# drop -> batch -> file names; "old.wav" is in a batch processed before the quality step
# drop-c was processed before the quality step: none of its files is scored
LAYOUT = {
    "drop-a": {"drop-a-0000": ["studio.wav", "phone.wav"]},
    "drop-b": {"drop-b-0000": ["hall.wav", "old.wav"]},
    "drop-c": {"drop-c-0000": ["tape.wav"]},
}
# per file: the ovrl of its segments in order (None: too short to score) and flags by index
SCORES = {
    "studio.wav": ([4.2, 3.9, None, 4.0], {}),
    "phone.wav": ([2.1, 2.9, 3.4, 1.8], {0: ["noisy"], 3: ["noisy", "low_confidence"]}),
    "hall.wav": ([3.0, 2.99, 3.6, None], {2: ["repetition"], 3: ["speech_mismatch"]}),
}
MEDIA_FLAGS = {"phone.wav": ["telephone_band"]}


def media_id(name: str) -> str:
    import hashlib

    return hashlib.sha256(name.encode()).hexdigest()


def build(wh: Warehouse) -> None:
    for drop, batches in LAYOUT.items():
        for batch_id, names in batches.items():
            uris = [f"s3://in/{drop}/{n}" for n in names]
            wh.write_table(
                "batches",
                conform(
                    pl.DataFrame(
                        {
                            "batch_id": batch_id,
                            "drop": drop,
                            "source_uri": uris,
                            "size_bytes": 1000,
                            "registered_at": NOW,
                        }
                    ),
                    Batches,
                ),
                batch_id,
            )
            media = pl.DataFrame(
                {
                    "batch_id": batch_id,
                    "media_id": [media_id(n) for n in names],
                    "source_uri": uris,
                    "size_bytes": 1000,
                    "duration_s": 40.0,
                    "status": "ok",
                    "ingest_version": "test",
                    "processed_at": NOW,
                }
            )
            wh.write_table("media", Media.validate(conform(media, Media)), batch_id)
            segs = [
                {
                    "batch_id": batch_id,
                    "media_id": media_id(n),
                    "segment_id": i,
                    "start_s": 8.0 * i,
                    "end_s": 8.0 * i + (0.2 if SCORES.get(n, ([], {}))[0][i : i + 1] == [None] else 6.0),
                    "text": f"{n} segment {i}",
                    "language": "en",
                    "speaker": f"SPEAKER_0{i % 2}",
                }
                for n in names
                for i in range(4)
            ]
            wh.write_table("segments", Segments.validate(conform(pl.DataFrame(segs), Segments)), batch_id)
            by_id = {media_id(n): n for n in names if n in SCORES}
            if not by_id:
                continue

            def score(s, by_id=by_id):
                ovrl, flags = SCORES[by_id[s["media_id"]]]
                return ovrl[s["segment_id"]], flags.get(s["segment_id"], [])

            write_quality(
                wh,
                batch_id,
                score,
                media_ids=set(by_id),
                media_flags={media_id(n): f for n, f in MEDIA_FLAGS.items()},
            )


@pytest.fixture(scope="module")
def wh(tmp_path_factory) -> Warehouse:
    w = Warehouse(str(tmp_path_factory.mktemp("quality") / "wh"))
    build(w)
    return w


def all_rows(wh: Warehouse, table: str) -> pl.DataFrame:
    return wh.scan(table)


def brute_segments(wh: Warehouse, keep) -> set[tuple[str, int]]:
    sq = all_rows(wh, "segment_quality")
    mq = all_rows(wh, "media_quality").select("media_id", "quality_floor")
    rows = sq.join(mq, on="media_id").iter_rows(named=True)
    return {(r["media_id"], r["segment_id"]) for r in rows if keep(r)}


def listed(att: qq.Attention) -> set[tuple[str, int]]:
    return set(att.segments.select("media_id", "segment_id").iter_rows())


def name_of(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


def test_default_lists_segments_under_their_floor_or_flagged(wh):
    att = qq.needs_attention(wh)
    want = brute_segments(
        wh, lambda r: (r["dnsmos_ovrl"] is not None and r["dnsmos_ovrl"] < r["quality_floor"]) or bool(r["flags"])
    )
    assert listed(att) == want and len(want) == 6  # phone 2.1, 2.9, 1.8; hall 2.99 and its two flagged ones
    assert att.segments.columns == list(qq.SEGMENT_COLUMNS)
    first = att.segments.filter(pl.col("source_uri").str.ends_with("phone.wav")).row(0, named=True)
    assert first["flags"] == "noisy" and first["reasons"] == "noisy: set by the test" and first["start_s"] == 0.0
    # files: phone (telephone band, flagged segments) and hall; studio has nothing to look at,
    # old.wav was never scored (not a problem of its quality, and not listed as one)
    files = {name_of(u): n for u, n in att.files.select("source_uri", "segments_listed").iter_rows()}
    assert files == {"phone.wav": 3, "hall.wav": 3}
    assert name_of(att.files["source_uri"][0]) == "phone.wav"  # poorest first
    assert att.files.filter(pl.col("source_uri").str.ends_with("phone.wav"))["flags"][0] == "telephone_band"


def test_below_is_strict_and_unscored_segments_are_never_below(wh):
    att = qq.needs_attention(wh, below=3.0)
    want = brute_segments(wh, lambda r: r["dnsmos_ovrl"] is not None and r["dnsmos_ovrl"] < 3.0)
    assert listed(att) == want and len(want) == 4  # phone 2.1, 2.9, 1.8; hall 2.99 (3.0 is not below)
    assert att.segments["dnsmos_ovrl"].null_count() == 0


def test_flag_and_below_together_and_media_level_flags(wh):
    noisy = qq.needs_attention(wh, flag="noisy")
    assert listed(noisy) == brute_segments(wh, lambda r: "noisy" in r["flags"])
    both = qq.needs_attention(wh, flag="noisy", below=2.0)
    assert listed(both) == {(media_id("phone.wav"), 3)}
    phone = qq.needs_attention(wh, flag="telephone_band")  # a media-level flag: the file, no segment
    assert phone.segments.is_empty() and [name_of(u) for u in phone.files["source_uri"]] == ["phone.wav"]
    unflagged = qq.needs_attention(wh, flag="clipped")  # a known flag nothing carries: empty, no error
    assert unflagged.segments.is_empty() and unflagged.files.is_empty()


def test_drop_reads_only_its_own_batches(wh, monkeypatch):
    opened: list[tuple[str | None, list[str]]] = []
    real = core.scan

    def spy(w, paths, table=None):
        opened.append((table, list(paths)))
        return real(w, paths, table)

    monkeypatch.setattr(qq, "scan", spy)
    att = qq.needs_attention(wh, drop="drop-b")
    assert {name_of(u) for u in att.segments["source_uri"]} == {"hall.wav"} and att.batches == ["drop-b-0000"]
    per_batch = [p for t, paths in opened if t != "batches" for p in paths]
    assert per_batch and all("batch_id=drop-b-0000" in p for p in per_batch)


def test_bad_input_says_what_exists(wh):
    with pytest.raises(core.NoMatch) as exc:
        qq.needs_attention(wh, drop="drop-z")
    assert "drop-a" in str(exc.value) and "drop-b" in str(exc.value)
    with pytest.raises(core.NoMatch) as exc:
        qq.needs_attention(wh, flag="hiss")
    assert "telephone_band" in str(exc.value) and "repetition" in str(exc.value)
    for bad in (0.5, 7, "loud"):
        with pytest.raises(core.QueryError):
            qq.needs_attention(wh, below=bad)


def test_span_quality_is_speech_weighted_and_unscored_spans_are_null():
    scores = pl.DataFrame(
        {
            "media_id": ["m", "m", "m", "n"],
            "segment_id": [0, 1, 2, 0],
            "start_s": [0.0, 10.0, 20.0, 0.0],
            "end_s": [10.0, 20.0, 21.0, 5.0],
            "dnsmos_ovrl": [4.0, 2.0, None, 3.0],
        }
    )
    spans = pl.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e"],
            "media_id": ["m", "m", "m", "m", "x"],
            "start_s": [5.0, 0.0, 20.0, 12.0, 0.0],
            "end_s": [20.0, 10.0, 21.0, 12.0, 9.0],
        }
    )
    got = dict(qq.span_quality(spans, scores).select("id", "quality").iter_rows())
    assert got["a"] == pytest.approx((4.0 * 5 + 2.0 * 10) / 15)  # 5 s at 4.0, 10 s at 2.0
    assert got["b"] == 4.0  # one segment: its own score
    assert got["c"] is None  # covers only an unscored segment
    assert got["d"] == 2.0  # an instant: the segment holding it
    assert got["e"] is None  # another media item's scores never count
    kept = spans.pipe(qq.span_quality, scores).filter(qq.passes(pl.col("quality"), 3.0))["id"].to_list()
    assert kept == ["b", "c", "e"]  # a: 2.67 < 3; d: 2.0; unscored kept


# -- the training-set query of docs/quality.md -----------------------------------------------------
DOC = ROOT / "docs" / "quality.md"
TRAINING_HEADING = "### A training set of clean, single-speaker segments"


def training_sql() -> str:
    """The first ```sql block after the training-set heading of docs/quality.md, as written."""
    text = DOC.read_text(encoding="utf-8")
    after = text[text.index(TRAINING_HEADING) :]
    return after.split("```sql\n", 1)[1].split("```", 1)[0]


def brute_training_set(wh: Warehouse, floor: float | None = None) -> set[tuple[str, int]]:
    """The conditions the docs state, checked row by row in polars (``floor``: a fixed floor
    instead of each file's ``quality_floor``)."""
    sq = all_rows(wh, "segment_quality")
    mq = all_rows(wh, "media_quality").filter(pl.col("status") == "ok")
    segs = all_rows(wh, "segments")
    turns = all_rows(wh, "speaker_turns")
    out = set()
    floors = dict(mq.select("media_id", "quality_floor").iter_rows())
    phone = set(mq.filter(pl.col("telephone_band").fill_null(False))["media_id"].to_list())
    speakers = dict(((m, i), s) for m, i, s in segs.select("media_id", "segment_id", "speaker").iter_rows())
    for r in sq.iter_rows(named=True):
        m, dur = r["media_id"], r["end_s"] - r["start_s"]
        spk = speakers.get((m, r["segment_id"]))
        if m not in floors or m in phone or spk is None or r["dnsmos_ovrl"] is None:
            continue
        if r["dnsmos_ovrl"] < (floors[m] if floor is None else floor) or r["flags"] or not 1.0 <= dur <= 20.0:
            continue
        others = turns.filter(
            (pl.col("media_id") == m)
            & (pl.col("speaker") != spk)
            & (pl.col("start_s") < r["end_s"])
            & (pl.col("end_s") > r["start_s"])
        )
        if others.is_empty():
            out.add((m, r["segment_id"]))
    return out


TRAINING_TABLES = (
    "segment_quality",
    "media_quality",
    "segments",
    "audio",
    "media",
    "speaker_clusters",
    "speaker_turns",
)


def training_connection(wh: Warehouse):
    """DuckDB with the views of ``opentranscribe duckdb`` (query/duck.py's view_sql) for the
    tables the query reads. (Only those: duck.connect fails on a warehouse holding
    ``file_issues``, whose parts are ``<stage>.parquet``, not the ``part-0.parquet`` its view
    globs; reported, not this test's subject.)"""
    import duckdb

    from opentranscribe_pipeline.query import duck

    con = duckdb.connect(":memory:")
    for sql in duck.view_sql(wh):
        if sql.split(" VIEW ", 1)[1].split(" ", 1)[0] in TRAINING_TABLES:
            con.execute(sql)
    return con


def check_training_rows(wh: Warehouse, rows: pl.DataFrame, floor: float | None = None) -> None:
    """Every row meets the stated conditions, and the query finds every segment that does."""
    from pathlib import Path

    assert rows.height > 0
    assert set(rows.select("media_id", "segment_id").iter_rows()) == brute_training_set(wh, floor)
    assert rows["speaker"].null_count() == 0 and rows["text"].null_count() == 0
    assert rows.filter((pl.col("duration_s") < 1.0) | (pl.col("duration_s") > 20.0)).is_empty()
    for media_id, uri in rows.select("media_id", "audio_uri").unique().iter_rows():  # real 16 kHz files
        # a copied warehouse's rows still name the original's files: look in this one too
        assert uri.endswith(f"/{media_id}.flac") and (
            Path(uri).is_file() or Path(wh.root, *uri.split("/")[-3:]).is_file()
        )


def test_training_set_query_of_the_docs_on_the_sample_archive(copy_of_shared_archive):
    """On a copy of the processed sample archive (real segments, turns, audio) with quality
    rows the test chose: a third of the segments poor, a third flagged, one file telephone
    band; the docs' query returns exactly the segments meeting its stated conditions."""
    wh = copy_of_shared_archive.wh
    batch = copy_of_shared_archive.batch
    media = wh.read_table("segments", batch)["media_id"].unique().sort().to_list()

    def score(s):
        kind = s["segment_id"] % 3
        return (2.0, []) if kind == 0 else (4.0, ["low_confidence"]) if kind == 1 else (4.0, [])

    write_quality(wh, batch, score, media_flags={media[0]: ["telephone_band"]})
    mq = wh.read_table("media_quality", batch)
    wh.write_table("media_quality", mq.with_columns(telephone_band=pl.col("media_id") == media[0]), batch)
    rows = training_connection(wh).sql(training_sql()).pl()
    check_training_rows(wh, rows)
    assert media[0] not in set(rows["media_id"].to_list())
    assert set(rows["segment_id"].to_list()) <= {i for i in range(0, 10_000) if i % 3 == 2}


# -- the real tables of the quality step, on the shared processed archive ---------------------------
def test_needs_attention_and_the_training_set_on_the_quality_step_tables(shared_archive):
    """``opentranscribe process`` scored the sample archive (segment_quality, media_quality
    written by the quality step itself): what needs attention is exactly what the rule
    says, and the docs' training-set query runs and returns rows meeting its conditions."""
    wh = shared_archive.wh
    assert wh.batch_ids("segment_quality") == [shared_archive.batch], "the quality step did not run in process"
    att = qq.needs_attention(wh)
    want = brute_segments(
        wh, lambda r: (r["dnsmos_ovrl"] is not None and r["dnsmos_ovrl"] < r["quality_floor"]) or bool(r["flags"])
    )
    assert listed(att) == want
    assert att.segments["source_uri"].null_count() == 0
    below = qq.needs_attention(wh, below=5.0)  # everything scored is under the top of the scale
    scored = all_rows(wh, "segment_quality").filter(pl.col("dnsmos_ovrl").is_not_null())
    assert below.segments.height == scored.height > 0
    con = training_connection(wh)
    rows = con.sql(training_sql()).pl()  # as written: each file's floor (3.0 by default)
    assert set(rows.select("media_id", "segment_id").iter_rows()) == brute_training_set(wh)
    # the sample's espeak voices score 2.3-3.0 (DNSMOS ovrl): with the docs' fixed-floor variant
    # at 2.5 the set is not empty, and still exactly the segments meeting the conditions
    assert "q.dnsmos_ovrl >= mq.quality_floor" in training_sql()
    lower = con.sql(training_sql().replace("q.dnsmos_ovrl >= mq.quality_floor", "q.dnsmos_ovrl >= 2.5")).pl()
    check_training_rows(wh, lower, floor=2.5)
    assert lower.height > rows.height and lower["dnsmos_ovrl"].min() >= 2.5


# -- the command -----------------------------------------------------------------------------------
def test_cli_query_quality_prints_files_then_segments_and_refuses_bad_input(wh, tmp_path):
    from ..conftest import cli_in_process

    base = ["--warehouse", wh.root_uri]
    out = cli_in_process(["query", "quality", *base], tmp_path)
    assert out.returncode == 0, out.stderr
    files_at, segments_at = out.stdout.index("files that need attention: 2"), out.stdout.index("segments that need")
    assert files_at < segments_at and "phone.wav" in out.stdout[files_at:segments_at]
    assert "segments that need attention: 6" in out.stdout and "telephone_band" in out.stdout
    csv = cli_in_process(
        ["query", "quality", "--drop", "drop-b", "--flag", "repetition", "--format", "csv", *base], tmp_path
    )
    assert csv.returncode == 0, csv.stderr
    rows = pl.read_csv(csv.stdout.encode())
    assert rows.columns == list(qq.SEGMENT_COLUMNS) and rows["segment_id"].to_list() == [2]
    files = cli_in_process(
        ["query", "quality", "--level", "files", "--below", "3", "--format", "json", *base], tmp_path
    )
    assert {name_of(r["source_uri"]) for r in pl.read_json(files.stdout.encode()).to_dicts()} == {
        "phone.wav",
        "hall.wav",
    }
    for bad in (["--flag", "hiss"], ["--below", "9"], ["--drop", "nowhere"]):
        refused = cli_in_process(["query", "quality", *bad, *base], tmp_path)
        assert refused.returncode == 2 and refused.stderr.startswith("error:"), bad
