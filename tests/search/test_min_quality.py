"""``search(..., min_quality=X)`` on a copy of the shared processed archive (its real chunks
and embedded LanceDB index), with quality rows the test chose on the real segments: one
file scored poor, one left unscored, one with poor and clean segments alternating, the
rest clean. Poor passages are left out, unscored ones are kept, a mixed passage is judged
by the speech-weighted score of the segments it covers, and the over-fetch goes deeper when
the first candidates are mostly poor."""

from __future__ import annotations

import polars as pl
import pytest

from opentranscribe_pipeline.query.quality import segment_scores, span_quality
from opentranscribe_pipeline.search import service
from opentranscribe_pipeline.search.service import judge_passages, open_search_backend, search

from ..quality_rows import write_quality

pytestmark = pytest.mark.timeout(2400)  # the shared archive is built once per session
MODEL = "packaged:all-minilm-l6-v2"
FLOOR = 3.0


@pytest.fixture(scope="module")
def scored(_shared_archive_built, tmp_path_factory):
    copy = _shared_archive_built.copy(tmp_path_factory.mktemp("min-quality"))
    wh = copy.wh
    batch = copy.batch
    chunks = wh.read_table("chunks", batch)
    per_file = chunks.group_by("media_id").len().sort("len", "media_id", descending=[True, False])
    poor, unscored, mixed = per_file["media_id"][:3].to_list()

    def score(s):
        if s["media_id"] == poor:
            return 1.6, ["noisy"]
        if s["media_id"] == mixed:
            return (1.5 if s["segment_id"] % 2 else 4.2), []
        return 4.0, []

    media_ids = set(chunks["media_id"].unique().to_list()) - {unscored}
    sq, _ = write_quality(wh, batch, score, media_ids=media_ids, floor=FLOOR)
    return {"wh": wh, "batch": batch, "poor": poor, "unscored": unscored, "mixed": mixed, "chunks": chunks, "sq": sq}


def words_of(chunks: pl.DataFrame, media_id: str) -> str:
    """A query that finds the passages of one file: its most frequent long words."""
    text = " ".join(chunks.filter(pl.col("media_id") == media_id)["text"].to_list()).lower()
    words = [w.strip(".,?!'\"") for w in text.split()]
    counts: dict[str, int] = {}
    for w in words:
        if len(w) > 5:
            counts[w] = counts.get(w, 0) + 1
    return " ".join(sorted(counts, key=lambda w: (-counts[w], w))[:4])


def key(r) -> tuple[str, int]:
    return (r.media_id, r.chunk_index)


def passing(wh, outcome) -> list[tuple[str, int]]:
    """The results of an unfiltered search that the floor keeps, in their order."""
    docs = [
        {"id": f"{r.media_id}:{r.chunk_index}", "batch_id": r.batch_id, "media_id": r.media_id}
        | {"start_s": r.start_s, "end_s": r.end_s}
        for r in outcome.results
    ]
    q = judge_passages(wh, docs)
    return [key(r) for r, d in zip(outcome.results, docs) if q[d["id"]] is None or q[d["id"]] >= FLOOR]


def shared_words(chunks: pl.DataFrame, media_id: str) -> str:
    """A query whose best passages are the file's, but which other files match too: the
    words of the file that the most other files also use, most frequent in the file first."""

    def tokens(text: str) -> list[str]:
        return [w.strip(".,?!'\"").lower() for w in text.split() if len(w.strip(".,?!'\"")) > 4]

    mine: dict[str, int] = {}
    for t in chunks.filter(pl.col("media_id") == media_id)["text"].to_list():
        for w in tokens(t):
            mine[w] = mine.get(w, 0) + 1
    others: dict[str, set[str]] = {}
    for m, t in chunks.filter(pl.col("media_id") != media_id).select("media_id", "text").iter_rows():
        for w in tokens(t):
            others.setdefault(w, set()).add(m)
    ranked = sorted(mine, key=lambda w: (-len(others.get(w, ())), -mine[w], w))
    return " ".join(ranked[:3] + sorted(mine, key=lambda w: (-mine[w], w))[:3])


def test_poor_passages_are_left_out_and_unscored_kept(scored):
    wh, chunks = scored["wh"], scored["chunks"]
    backend = open_search_backend(wh)
    for target in ("poor", "unscored"):
        query = words_of(chunks, scored[target])
        plain = search(wh, backend, query, model=MODEL, mode="text", limit=20)
        assert any(r.media_id == scored[target] for r in plain.results), (target, query)
        filtered = search(wh, backend, query, model=MODEL, mode="text", limit=20, min_quality=FLOOR)
        got = {r.media_id for r in filtered.results}
        if target == "poor":
            assert scored["poor"] not in got and filtered.left_out > 0
        else:
            assert scored["unscored"] in got and filtered.unscored > 0
            assert all(r.quality is None for r in filtered.results if r.media_id == scored["unscored"])
        assert all(r.quality is None or r.quality >= FLOOR for r in filtered.results)
        # what passes keeps its order: the filtered list starts with the plain one minus the poor
        assert [key(r) for r in filtered.results][: len(passing(wh, plain))] == passing(wh, plain)


def test_a_passage_is_judged_by_the_speech_weighted_score_of_its_segments(scored):
    wh, chunks = scored["wh"], scored["chunks"]
    mixed = chunks.filter(pl.col("media_id") == scored["mixed"])
    docs = [
        {
            "id": f"{r['media_id']}:{r['chunk_index']}",
            "batch_id": scored["batch"],
            "media_id": r["media_id"],
            "start_s": r["start_s"],
            "end_s": r["end_s"],
        }
        for r in mixed.iter_rows(named=True)
    ]
    got = judge_passages(wh, docs)
    seg = scored["sq"].filter(pl.col("media_id") == scored["mixed"])
    for d in docs:  # brute force over the segments, written out here
        num = den = 0.0
        for s in seg.iter_rows(named=True):
            overlap = min(d["end_s"], s["end_s"]) - max(d["start_s"], s["start_s"])
            if overlap > 0 and s["dnsmos_ovrl"] is not None:
                num += s["dnsmos_ovrl"] * overlap
                den += overlap
        assert got[d["id"]] == pytest.approx(num / den), d
    # alternating poor (1.5) and clean (4.2) segments: passages land on both sides of the floor
    assert all(1.5 <= q <= 4.2 for q in got.values())
    scores = segment_scores(wh, [scored["batch"]], [scored["unscored"]])
    assert scores.is_empty()  # the unscored file has no rows: its passages are null, kept
    unscored = chunks.filter(pl.col("media_id") == scored["unscored"]).select("media_id", "start_s", "end_s")
    assert span_quality(unscored, scores)["quality"].null_count() == unscored.height


def test_overfetch_goes_deeper_when_the_first_candidates_are_poor(scored, monkeypatch):
    """With a tiny first depth, the best candidates of a query for the poor file are poor:
    search asks again, deeper, until enough pass (or the lists run out)."""
    wh, chunks = scored["wh"], scored["chunks"]
    backend = open_search_backend(wh)
    query = shared_words(chunks, scored["poor"])
    plain = search(wh, backend, query, model=MODEL, mode="text", limit=50)
    assert plain.results[0].media_id == scored["poor"]  # the query's best passage is a poor one
    expected = passing(wh, plain)
    assert len(expected) >= 2
    depths: list[int] = []
    real = backend.text_search

    def recording(q, filters, limit):
        depths.append(limit)
        return real(q, filters, limit)

    monkeypatch.setattr(backend, "text_search", recording)
    monkeypatch.setattr(service, "CANDIDATES", 1)
    monkeypatch.setattr(service, "OVERFETCH", 1)
    out = search(wh, backend, query, model=MODEL, mode="text", limit=2, min_quality=FLOOR)
    assert len(depths) >= 2 and depths == sorted(depths) and depths[0] == 2
    assert [key(r) for r in out.results] == expected[:2]


def test_bad_floor_is_refused(scored):
    wh = scored["wh"]
    with pytest.raises(ValueError, match="DNSMOS"):
        search(wh, open_search_backend(wh), "anything", model=MODEL, mode="text", min_quality=9)


def test_cli_search_min_quality(scored, tmp_path):
    import json

    from ..conftest import cli_in_process

    wh, chunks = scored["wh"], scored["chunks"]
    query = shared_words(chunks, scored["poor"])
    base = ["search", query, "--warehouse", wh.root_uri, "--mode", "text", "--limit", "20"]
    plain = cli_in_process([*base, "--json"], tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert scored["poor"] in {json.loads(line)["media_id"] for line in plain.stdout.splitlines()}
    out = cli_in_process([*base, "--json", "--min-quality", "3"], tmp_path)
    got = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.returncode == 0 and got and scored["poor"] not in {r["media_id"] for r in got}
    assert all(r["quality"] is None or r["quality"] >= 3 for r in got)
    text = cli_in_process([*base, "--min-quality", "3"], tmp_path)
    assert "under the floor left out" in text.stdout
    refused = cli_in_process([*base, "--min-quality", "0"], tmp_path)
    assert refused.returncode == 2 and "DNSMOS" in refused.stderr
