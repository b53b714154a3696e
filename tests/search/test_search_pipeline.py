"""Search end to end: `opentranscribe process` on the sample archive builds `chunks` and the
embedded index (real models, real Dagster runs), then `opentranscribe search` answers the
committed query set; renaming, re-chunking, other models, OpenSearch (osmem-server) and an
unreachable OpenSearch on the same warehouse."""

from __future__ import annotations

import json
import os
import re
import shutil

import dagster as dg
import polars as pl
import pytest

from opentranscribe_pipeline.schemas import Chunks
from opentranscribe_pipeline.search.backends import Filters
from opentranscribe_pipeline.search.service import open_search_backend, search
from opentranscribe_pipeline.storage import Warehouse

from ..conftest import DATA, TRUTH, cli_in_process, run_cli, write_instance_yaml

# the sample archive through the real models once per module (about a minute on a quiet machine;
# the ceiling is for a shared one)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

MODEL = "packaged:all-minilm-l6-v2"
QUERIES = json.loads((DATA / "search_queries.json").read_text())["queries"]
RECALL_FLOOR = {"text": 0.5, "semantic": 0.75, "hybrid": 0.75}  # recall@5 on the 14 queries (tiny.en transcripts)


@pytest.fixture(scope="module")
def archive(_shared_archive_built, tmp_path_factory):
    """The session's processed sample archive (tiny.en), copied for this module, its voices
    named after truth.json."""
    copy = _shared_archive_built.copy(tmp_path_factory.mktemp("search"))
    assert "indexing for search" in copy.stdout
    wh = Warehouse(str(copy.root))
    names = name_voices_after_truth(wh, copy.home)
    return {"wh": wh, "root": copy.root, "home": copy.home, "names": names, "batch": wh.batch_ids("chunks")[0]}


def name_voices_after_truth(wh: Warehouse, home) -> dict[str, str]:
    """Each global speaker gets the truth voice most of its passages overlap (slt, rms, ...)."""
    chunks = wh.scan("chunks")
    media = wh.scan("media").select("media_id", "source_uri")
    clusters = pl.read_parquet(f"{wh.root}/speaker_clusters/*.parquet").select(
        "media_id", "speaker", "global_speaker_id"
    )
    votes: dict[str, dict[str, float]] = {}
    for row in chunks.join(media, on="media_id").join(clusters, on=["media_id", "speaker"]).iter_rows(named=True):
        truth = TRUTH["drop-2026-11-24/" + row["source_uri"].rsplit("/", 1)[-1]]
        for turn in truth["turns"]:
            overlap = min(row["end_s"], turn["end_s"]) - max(row["start_s"], turn["start_s"])
            if overlap > 0:
                v = votes.setdefault(row["global_speaker_id"], {})
                v[turn["speaker"]] = v.get(turn["speaker"], 0.0) + overlap
    names = {}
    for gid, v in votes.items():
        voice = max(v, key=v.get)
        if voice not in names.values():
            out = cli_in_process(["speakers", "name", gid, voice, "--warehouse", str(wh.root_uri)], home)
            assert out.returncode == 0, out.stderr
            names[gid] = voice
    return names


def hit_matches(result, expect) -> bool:
    name = (result.source_uri or "").rsplit("/", 1)[-1]
    return any(name == f and result.start_s < e and result.end_s > s for f, s, e in expect)


def test_chunks_table_is_passages_of_one_speaker_with_embeddings(archive):
    wh, batch = archive["wh"], archive["batch"]
    chunks = wh.read_table("chunks", batch)
    Chunks.validate(chunks)
    state = wh.read_table("chunk_files", batch)
    assert state.height == 8 and set(state["status"]) == {"ok"} and set(state["model"]) == {MODEL}
    assert chunks.height >= 30 and set(chunks["model"]) == {MODEL}
    assert chunks["speaker"].null_count() == 0
    norms = chunks.select(pl.col("embedding").arr.eval(pl.element().pow(2)).arr.sum().sqrt())
    assert norms.to_series().min() > 0.999
    words = wh.read_table("words", batch)
    for row in chunks.head(10).iter_rows(named=True):  # every word of the passage's span has its speaker
        span = words.filter(
            (pl.col("media_id") == row["media_id"])
            & (pl.col("start_s") >= row["start_s"])
            & (pl.col("end_s") <= row["end_s"])
        )
        assert set(span["speaker"]) == {row["speaker"]}
    backend = open_search_backend(wh)
    assert backend.count(Filters(model=MODEL, batch_id=batch)) == chunks.height


def test_query_set_recall(archive):
    wh = archive["wh"]
    backend = open_search_backend(wh)
    from opentranscribe_pipeline.search.service import query_embedder

    embed = query_embedder(MODEL)
    by_voice = {v: g for g, v in archive["names"].items()}
    table = {}
    for mode in ("text", "semantic", "hybrid"):
        at1 = at5 = 0
        for q in QUERIES:
            speaker = q.get("speaker")
            if speaker is not None:
                assert speaker in by_voice, f"no global speaker was named {speaker}"
            out = search(wh, backend, q["query"], model=MODEL, embed=embed, mode=mode, speaker=speaker, limit=5)
            if speaker:
                assert all(r.speaker_name == speaker for r in out.results)
            hits = [hit_matches(r, q["expect"]) for r in out.results]
            at1 += bool(hits[:1] and hits[0])
            at5 += any(hits)
        table[mode] = (at1 / len(QUERIES), at5 / len(QUERIES))
    print(f"\nrecall on the sample query set ({len(QUERIES)} queries, tiny.en transcripts):")
    for mode, (r1, r5) in table.items():
        print(f"  {mode:9s} recall@1 {r1:.2f}  recall@5 {r5:.2f}")
    for mode, floor in RECALL_FLOOR.items():
        assert table[mode][1] >= floor, table
    paraphrases = [q for q in QUERIES if q["kind"] == "paraphrase"]
    semantic_found = sum(
        any(
            hit_matches(r, q["expect"])
            for r in search(wh, backend, q["query"], model=MODEL, embed=embed, mode="semantic", limit=5).results
        )
        for q in paraphrases
    )
    assert semantic_found >= len(paraphrases) - 1, "meaning, not words, finds the paraphrases"


def test_cli_search_prints_file_time_speaker_and_highlight(archive):
    root, home = str(archive["root"]), archive["home"]
    out = run_cli(["search", "planting tomatoes", "--warehouse", root, "--mode", "text"], home)  # the console script
    assert out.returncode == 0, out.stderr
    assert "podcast 04.m4a" in out.stdout.splitlines()[2]
    assert "*tomatoes*" in out.stdout and "00:0" in out.stdout
    assert any(v in out.stdout for v in ("awb", "spk-"))

    out = cli_in_process(["search", "the evening news", "--warehouse", root, "--json", "--limit", "3"], home)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert 1 <= len(rows) <= 3
    assert set(rows[0]) >= {
        "media_id",
        "source_uri",
        "start_s",
        "end_s",
        "speaker",
        "global_speaker_id",
        "speaker_name",
        "text",
        "score",
    }
    assert rows[0]["source_uri"].endswith("radio_show_03.mp3")

    out = cli_in_process(["search", "zzqxv", "--warehouse", root, "--mode", "text"], home)
    assert out.returncode == 0 and "no results" in out.stdout
    for odd in ("北京 ñandú ¿dónde?", '"AND OR (* ) [', "lluvia en la costa"):
        out = cli_in_process(["search", odd, "--warehouse", root], home)
        assert out.returncode == 0, out.stderr
    out = cli_in_process(["search", "rain", "--warehouse", root, "--speaker", "Nobody Such"], home)
    assert out.returncode == 2 and "no speaker named 'Nobody Such'" in out.stderr


def test_renaming_changes_results_without_touching_the_index(archive, tmp_path):
    wh = _copy(archive, tmp_path)  # its own copy: the rename never reaches another test
    home, root = archive["home"], str(wh.root)
    gid = next(g for g, v in archive["names"].items() if v == "esf")
    table = open_search_backend(wh)._table("chunks")
    version = table.version
    out = cli_in_process(["speakers", "name", gid, "Elena Ferrante", "--warehouse", root], home)
    assert out.returncode == 0, out.stderr
    out = cli_in_process(["search", "library", "--warehouse", root, "--speaker", "elena ferrante", "--json"], home)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert (
        rows
        and {r["speaker_name"] for r in rows} == {"Elena Ferrante"}
        and {r["global_speaker_id"] for r in rows} == {gid}
    )
    out = cli_in_process(["search", "library", "--warehouse", root, "--speaker", "esf"], home)
    assert out.returncode == 2  # the old name names nobody now
    assert open_search_backend(wh)._table("chunks").version == version, "no write to the index"


def test_speakers_similar_uses_the_speakers_index(archive):
    root, home = str(archive["root"]), archive["home"]
    gid = next(iter(archive["names"]))
    out = cli_in_process(["speakers", "similar", gid, "--warehouse", root, "--limit", "3"], home)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if "similarity" in line]
    assert len(lines) == min(3, len(archive["names"]) - 1) and gid not in out.stdout
    sims = [float(line.split("similarity")[1].split()[0]) for line in lines]
    assert sims == sorted(sims, reverse=True) and all(-1 <= s < 0.999 for s in sims)


def test_empty_warehouse_says_nothing_is_indexed(tmp_path):
    home = write_instance_yaml(tmp_path / "home")
    out = cli_in_process(["search", "anything", "--warehouse", str(tmp_path / "empty")], home)
    assert out.returncode == 0 and "nothing is indexed" in out.stdout


def _index_metadata(result) -> dict:
    """The ``search_index`` materialization's metadata (``publish_batch`` also writes ``exports``)."""
    (mat,) = [
        e.event_specific_data.materialization
        for e in result.get_asset_materialization_events()
        if e.event_specific_data.materialization.asset_key == dg.AssetKey("search_index")
    ]
    return mat.metadata


def _copy(archive, tmp_path) -> Warehouse:
    dst = tmp_path / "wh"
    shutil.copytree(archive["root"], dst)
    return Warehouse(str(dst))


def test_rechunked_file_replaces_its_passages_and_other_models_are_left_out(archive, tmp_path, caplog):
    from opentranscribe_pipeline.assets.search import embed_chunks
    from opentranscribe_pipeline.definitions import PUBLISH_JOB, defs
    from opentranscribe_pipeline.resources import WarehouseResource
    from opentranscribe_pipeline.resources.search import TextEmbeddingResource

    wh = _copy(archive, tmp_path)
    batch = archive["batch"]
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("batches", [batch])
    words = wh.read_table("words", batch)
    target = wh.read_table("chunk_files", batch)["media_id"][0]
    old_chunks = wh.read_table("chunks", batch)
    before = old_chunks.filter(pl.col("media_id") == target)
    last = words.filter(pl.col("media_id") == target)["segment_id"].max()
    # the file's words change upstream (as when it is transcribed again): its last sentence is gone
    wh.write_table("words", words.filter(~((pl.col("media_id") == target) & (pl.col("segment_id") == last))), batch)
    segs = wh.read_table("segments", batch)
    wh.write_table("segments", segs.filter(~((pl.col("media_id") == target) & (pl.col("segment_id") == last))), batch)
    res = dg.materialize(
        [embed_chunks],
        instance=instance,
        partition_key=batch,
        resources={"warehouse": WarehouseResource(root=wh.root_uri), "text_embedding": TextEmbeddingResource()},
    )
    assert res.success
    meta = next(
        m.event_specific_data.materialization.metadata
        for m in res.get_asset_materialization_events()
        if m.event_specific_data.materialization.asset_key == dg.AssetKey("chunk_files")
    )
    assert meta["files_chunked_this_run"].value == 1 and meta["files_changed_upstream"].value == 1
    new_chunks = wh.read_table("chunks", batch)
    after = new_chunks.filter(pl.col("media_id") == target)
    assert after["text"].to_list() != before["text"].to_list() and after.height <= before.height
    untouched = pl.col("media_id") != target
    assert new_chunks.filter(untouched).drop("embedding").equals(old_chunks.filter(untouched).drop("embedding"))

    # another model's chunks in the table: left out of the index, with a warning naming the batch
    chunks = wh.read_table("chunks", batch)
    other = chunks["media_id"].unique().sort()[1]
    wh.write_table(
        "chunks",
        chunks.with_columns(
            model=pl.when(pl.col("media_id") == other).then(pl.lit("hub:other-model")).otherwise(pl.col("model"))
        ),
        batch,
    )
    publish = defs.resolve_job_def(PUBLISH_JOB).execute_in_process(
        instance=instance,
        partition_key=batch,
        run_config={"resources": {"warehouse": {"config": {"root": wh.root_uri}}}},
    )
    assert publish.success
    checks = [e.event_specific_data for e in publish.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    index_checks = [c for c in checks if c.asset_key == dg.AssetKey("search_index")]
    assert [c.passed for c in index_checks] == [True]
    mat = _index_metadata(publish)
    n_other = chunks.filter(pl.col("media_id") == other).height
    assert mat["chunks_of_other_models_skipped"].value == n_other and mat["backend"].value == "lancedb"
    # the re-chunked file's passages past its new last one, and the other model's
    assert mat["leftovers_deleted"].value == (before.height - after.height) + n_other
    warnings = [e.user_message for e in instance.all_logs(publish.run_id) if "another model" in (e.user_message or "")]
    assert warnings and batch in warnings[0]
    assert open_search_backend(wh).count(Filters(model=MODEL, batch_id=batch)) == chunks.height - n_other


def test_opensearch_backend_on_the_same_warehouse(archive, tmp_path, osmem_clone):
    from opentranscribe_pipeline.definitions import PUBLISH_JOB, defs

    wh = _copy(archive, tmp_path)
    batch = archive["batch"]
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("batches", [batch])
    chunks_bytes = wh.get_bytes(wh.table_file("chunks", batch))

    def publish(url: str, password: str | None = None):
        search = {"backend": "opensearch", "opensearch_url": url, "index_prefix": "arch"}
        if password:
            search |= {"opensearch_user": "admin", "opensearch_password": password}
        return defs.resolve_job_def(PUBLISH_JOB).execute_in_process(
            instance=instance,
            partition_key=batch,
            run_config={"resources": {"warehouse": {"config": {"root": wh.root_uri}}, "search": {"config": search}}},
            raise_on_error=False,
        )

    dead = publish("http://127.0.0.1:9", password="pw-never-shown")
    assert not dead.success
    (failure,) = dead.get_step_failure_events()
    message = failure.step_failure_data.error.message
    assert "cannot reach OpenSearch at http://127.0.0.1:9" in message and "pw-never-shown" not in message
    assert wh.get_bytes(wh.table_file("chunks", batch)) == chunks_bytes, "tables untouched"

    ok = publish(osmem_clone.url)
    assert ok.success
    mat = _index_metadata(ok)
    n = wh.read_table("chunks", batch).height
    assert mat["dagster/row_count"].value == n and mat["alias"].value == "arch-chunks"
    assert mat["index"].value.startswith("arch-chunks-v1-")
    assert publish(osmem_clone.url).success  # idempotent
    env = {"OPENSEARCH_URL": osmem_clone.url, "OPENSEARCH_INDEX_PREFIX": "arch"}
    home = archive["home"]

    def searches():
        out = cli_in_process(
            ["search", "planting tomatoes", "--warehouse", wh.root_uri, "--mode", "text", "--json"], home
        )
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        assert rows and rows[0]["source_uri"].endswith("podcast 04.m4a")
        hybrid = cli_in_process(["search", "planting tomatoes", "--warehouse", wh.root_uri], home)
        assert hybrid.returncode == 0 and "podcast 04.m4a" in hybrid.stdout
        assert "no k-NN" in hybrid.stderr and "full text only" in hybrid.stderr

    _with_env(env, searches)
    backend = open_search_backend(wh, "opensearch", opensearch_url=osmem_clone.url, index_prefix="arch")
    assert backend.count(Filters(model=MODEL, batch_id=batch)) == n


def test_assignment_run_launches_publish_and_refreshes_the_speakers_index(archive, tmp_path):
    from opentranscribe_pipeline.definitions import ASSIGN_JOB, PUBLISH_JOB, clustering_run_config, defs

    wh = _copy(archive, tmp_path)
    batch = archive["batch"]
    shutil.rmtree(wh.root + "/_search/speakers.lance")
    instance = dg.DagsterInstance.ephemeral()
    assign = defs.resolve_job_def(ASSIGN_JOB).execute_in_process(
        instance=instance,
        run_config={
            **clustering_run_config("incremental", [batch]),
            "resources": {"warehouse": {"config": {"root": wh.root_uri}}},
        },
    )
    assert assign.success
    assert open_search_backend(wh).speaker_vector(next(iter(archive["names"]))) is not None
    sensor = defs.get_sensor_def("publish_after_assignment")
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_instance=instance,
        dagster_run=assign.dagster_run,
        dagster_event=assign.get_run_success_event(),
    )
    (request,) = sensor(context)
    assert request.partition_key == batch and request.job_name in (None, PUBLISH_JOB)


def test_a_split_moves_the_passages_of_the_split_off_files_to_their_new_id(archive, tmp_path):
    """Merges resolve at query time (the heir is in the speaker state); a split cannot: the
    split-off members' passages are re-indexed with their new id (nothing re-embedded), so
    filtering by the new id finds them and the old id no longer does."""
    from opentranscribe_pipeline.search.service import published_path, resync_speaker_ids

    wh = _copy(archive, tmp_path)
    home, root = archive["home"], str(wh.root)
    batch = archive["batch"]
    clusters = pl.read_parquet(f"{root}/speaker_clusters/*.parquet")
    chunks = wh.read_table("chunks", batch)
    spoken = chunks.join(clusters.select("media_id", "speaker", "global_speaker_id"), on=["media_id", "speaker"])
    per_id = spoken.group_by("global_speaker_id").agg(pl.col("media_id").n_unique().alias("files"))
    gid = per_id.sort("files", "global_speaker_id", descending=[True, False])["global_speaker_id"][0]
    assert per_id.filter(pl.col("global_speaker_id") == gid)["files"][0] >= 2
    backend = open_search_backend(wh)
    assert wh.exists(published_path(wh, backend, batch))
    assert resync_speaker_ids(wh, backend) == [], "nothing changed yet: nothing re-indexed"

    out = cli_in_process(["speakers", "split", gid, "--by-file", "--warehouse", root], home)
    assert out.returncode == 0, out.stderr
    assert "re-indexed the passages of 1 batch(es)" in out.stdout
    after = pl.read_parquet(f"{root}/speaker_clusters/*.parquet").select("media_id", "speaker", "global_speaker_id")
    moved = spoken.filter(pl.col("global_speaker_id") == gid).join(after, on=["media_id", "speaker"], suffix="_now")
    new_ids = set(moved["global_speaker_id_now"]) - {gid}
    assert new_ids, "the split gave some files a new id"
    kept_files = set(moved.filter(pl.col("global_speaker_id_now") == gid)["media_id"])
    for new in new_ids:
        files = set(moved.filter(pl.col("global_speaker_id_now") == new)["media_id"])
        passage = moved.filter(pl.col("global_speaker_id_now") == new)["text"][0]
        word = max(re.findall(r"[A-Za-z]+", passage), key=len)  # a word of one of its passages
        out = cli_in_process(["search", word, "--warehouse", root, "--speaker", new, "--mode", "text", "--json"], home)
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        assert rows and {r["media_id"] for r in rows} <= files and {r["global_speaker_id"] for r in rows} == {new}
        out = cli_in_process(["search", word, "--warehouse", root, "--speaker", gid, "--mode", "text", "--json"], home)
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        assert {r["media_id"] for r in rows} <= kept_files, "the old id no longer finds the split-off files"
    assert resync_speaker_ids(wh, backend) == [], "in step again: a second pass re-indexes nothing"


def _with_env(env: dict, fn):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return fn()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_reindex_rebuilds_a_lost_embedded_index_and_loads_an_archive_into_opensearch(archive, tmp_path, osmem_clone):
    """`opentranscribe reindex`: the index again from the tables alone. LanceDB: the
    `_search` folder deleted, search finds nothing, reindex, search finds the passage again.
    OpenSearch: an archive processed with the embedded index moves to OpenSearch; a second
    reindex loads a new index and swaps the alias (the old index is gone)."""
    wh = _copy(archive, tmp_path)
    home, root = archive["home"], wh.root_uri
    n = wh.read_table("chunks", archive["batch"]).height
    shutil.rmtree(wh.root + "/_search")
    out = cli_in_process(["search", "planting tomatoes", "--warehouse", root, "--mode", "text"], home)
    assert out.returncode == 0 and "nothing is indexed" in out.stdout
    out = cli_in_process(["reindex", "--warehouse", root], home)
    assert out.returncode == 0, out.stderr
    assert f"indexed {n} passages of 1 batch(es)" in out.stdout and "lancedb" in out.stdout
    out = cli_in_process(["search", "planting tomatoes", "--warehouse", root, "--mode", "text", "--json"], home)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert rows and rows[0]["source_uri"].endswith("podcast 04.m4a")

    env = {"OPENSEARCH_URL": osmem_clone.url, "OPENSEARCH_INDEX_PREFIX": "moved"}
    first = _with_env(env, lambda: cli_in_process(["reindex", "--warehouse", root], home))
    assert first.returncode == 0, first.stderr
    assert f"indexed {n} passages" in first.stdout and "behind alias moved-chunks" in first.stdout
    backend = open_search_backend(wh, "opensearch", opensearch_url=osmem_clone.url, index_prefix="moved")
    old_index = backend.index_name()
    assert backend.count(Filters(model=MODEL)) == n
    second = _with_env(env, lambda: cli_in_process(["reindex", "--warehouse", root], home))
    assert second.returncode == 0, second.stderr
    new_index = backend.index_name()
    assert new_index != old_index and backend.count(Filters(model=MODEL)) == n
    assert not backend.client.indices.exists(index=old_index), "the old index is deleted after the swap"
    out = _with_env(
        env,
        lambda: cli_in_process(["search", "planting tomatoes", "--warehouse", root, "--mode", "text", "--json"], home),
    )
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert rows and rows[0]["source_uri"].endswith("podcast 04.m4a")
    dead = _with_env(
        {"OPENSEARCH_URL": "http://127.0.0.1:9"}, lambda: cli_in_process(["reindex", "--warehouse", root], home)
    )
    assert dead.returncode == 2 and "cannot reach OpenSearch at http://127.0.0.1:9" in dead.stderr
