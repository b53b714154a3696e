"""Both search backends through one interface: LanceDB (local and on SeaweedFS S3) and
OpenSearch (osmem-server, a real server process speaking OpenSearch's REST API; k-NN only
against a real OpenSearch given by OPENSEARCH_URL)."""

from __future__ import annotations

import http.server
import os
import threading
import uuid

import numpy as np
import polars as pl
import pytest

from opentranscribe_pipeline.search.backends import Filters, SearchUnavailable, VectorSearchUnsupported, empty_docs
from opentranscribe_pipeline.search.lance import LanceBackend
from opentranscribe_pipeline.search.opensearch import OpenSearchBackend
from opentranscribe_pipeline.storage import Warehouse

MODEL = "packaged:all-minilm-l6-v2"
TEXTS = [
    ("Heavy rain is expected across the northern coast tonight.", "spk-000001", "en", "radio"),
    ("Today we talk about planting tomatoes in small spaces.", "spk-000002", "en", "garden"),
    ("The council meeting is now open.", "spk-000001", "en", "radio"),
    ("Llueve mucho en la costa norte esta noche.", "spk-000003", "es", "radio"),
]


def unit(seed: int, dim: int = 384) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def docs(batch_id: str = "b-0000", n_per_media: int = 2, model: str = MODEL) -> pl.DataFrame:
    rows = []
    for m, (text, gid, lang, drop) in enumerate(TEXTS):
        media_id = f"{m:064x}"
        for c in range(n_per_media):
            rows.append(
                {
                    "id": f"{media_id}:{c}",
                    "media_id": media_id,
                    "chunk_index": c,
                    "batch_id": batch_id,
                    "drop": drop,
                    "source_uri": f"/archive/{drop}/file{m}.wav",
                    "start_s": 10.0 * c,
                    "end_s": 10.0 * c + 5,
                    "speaker": "SPEAKER_00",
                    "global_speaker_id": gid,
                    "language": lang,
                    "text": text if c == 0 else f"part {c} of file {m}",
                    "model": model,
                    "vector": unit(m * 10 + c),
                }
            )
    template = empty_docs()
    return pl.DataFrame(rows).with_columns(vector=pl.col("vector").cast(template.schema["vector"]))


def lance_local(tmp_path):
    return LanceBackend(str(tmp_path / "_search"))


@pytest.fixture(params=["lancedb-local", "lancedb-s3", "opensearch-osmem"])
def backend(request, tmp_path):
    if request.param == "lancedb-local":
        return lance_local(tmp_path)
    if request.param == "lancedb-s3":
        seaweed = request.getfixturevalue("seaweed")
        wh = Warehouse(f"s3://{seaweed.make_bucket()}/wh", seaweed.s3_options())
        return LanceBackend(f"{wh.root_uri}/_search", wh.s3)
    clone = request.getfixturevalue("osmem_clone")
    return OpenSearchBackend(clone.url, prefix=f"t{uuid.uuid4().hex[:6]}")


def test_write_search_filter_and_delete_leftovers(backend):
    assert backend.count() == 0 and backend.text_search("rain", Filters(model=MODEL), 5) == []
    d = docs()
    assert backend.upsert_chunks(d) == d.height
    assert backend.upsert_chunks(d) == d.height  # same ids: overwritten, not duplicated
    assert backend.count() == d.height
    assert backend.count(Filters(model=MODEL, batch_id="b-0000")) == d.height
    assert backend.count(Filters(model="another-model")) == 0

    hits = backend.text_search("heavy rains on the coast", Filters(model=MODEL), 5)
    assert hits and hits[0].doc["text"].startswith("Heavy rain"), [h.doc["text"] for h in hits]
    assert hits[0].id == f"{0:064x}:0" and hits[0].doc["source_uri"] == "/archive/radio/file0.wav"
    only_2 = backend.text_search("tomatoes", Filters(model=MODEL, global_speaker_ids=["spk-000002"]), 5)
    assert [h.doc["global_speaker_id"] for h in only_2] == ["spk-000002"]
    assert backend.text_search("tomatoes", Filters(model=MODEL, global_speaker_ids=["spk-000001"]), 5) == []
    assert backend.text_search("council", Filters(model=MODEL, drop="garden"), 5) == []
    spanish = backend.text_search("costa", Filters(model=MODEL, language="es"), 5)
    assert [h.doc["language"] for h in spanish] == ["es"]
    for odd in ('"unbalanced (quote', "AND OR NOT *", "北京 ñandú", "?!", "rain:: [x] {y}"):
        assert isinstance(backend.text_search(odd, Filters(model=MODEL), 5), list)

    # file 1 re-chunked into one passage, file 3 has none now: the leftovers go
    kept = {f"{0:064x}": 2, f"{1:064x}": 1, f"{2:064x}": 2}
    assert backend.delete_leftovers("b-0000", kept) == 3
    assert backend.count() == d.height - 3
    assert backend.delete_leftovers("other-batch", {}) == 0
    assert backend.count() == d.height - 3


def test_vector_search_where_the_backend_has_knn(backend):
    backend.upsert_chunks(docs())
    if isinstance(backend, OpenSearchBackend):
        with pytest.raises(VectorSearchUnsupported, match="k-NN"):
            backend.vector_search(unit(0), Filters(model=MODEL), 3)
        return
    hits = backend.vector_search(unit(10), Filters(model=MODEL), 3)
    assert hits[0].id == f"{1:064x}:0" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    filtered = backend.vector_search(unit(10), Filters(model=MODEL, global_speaker_ids=["spk-000003"]), 3)
    assert {h.doc["global_speaker_id"] for h in filtered} == {"spk-000003"}


def test_speakers_index_finds_the_nearest_voice(tmp_path):
    backend = lance_local(tmp_path)
    base = unit(1, 256)
    near = base + 0.1 * unit(2, 256)
    near /= np.linalg.norm(near)
    vectors = [base, near, unit(3, 256)]
    df = pl.DataFrame(
        {
            "global_speaker_id": ["spk-000001", "spk-000002", "spk-000003"],
            "model": ["resemblyzer"] * 3,
            "vector": [v.tolist() for v in vectors],
            "n_files": [3, 1, 2],
            "speech_s": [30.0, 5.0, 12.0],
        }
    )
    assert backend.replace_speakers(df) == 3
    vector, model = backend.speaker_vector("spk-000001")
    hits = backend.similar_speakers(vector, model, 2)
    assert [h.id for h in hits] == ["spk-000001", "spk-000002"]
    assert backend.similar_speakers(vector, "another-model", 2) == []
    assert backend.replace_speakers(df.head(1)) == 1  # retired voices disappear
    assert backend.speaker_vector("spk-000002") is None


def test_opensearch_mapping_alias_and_rebuild(osmem_clone):
    backend = OpenSearchBackend(osmem_clone.url, prefix="arch")
    backend.upsert_chunks(docs())
    first = backend.index_name()
    assert first.startswith("arch-chunks-v1-")
    mapping = backend.client.indices.get_mapping(index="arch-chunks")[first]["mappings"]["properties"]
    assert mapping["text"]["analyzer"] == "english" and mapping["text"]["fields"]["exact"]["type"] == "text"
    for keyword in ("speaker", "global_speaker_id", "language", "drop", "batch_id", "model"):
        assert mapping[keyword]["type"] == "keyword"
    method = mapping["vector"]["method"]
    assert (mapping["vector"]["type"], method["name"], method["engine"], method["space_type"]) == (
        "knn_vector",
        "hnsw",
        "lucene",
        "cosinesimil",
    )
    assert backend.text_search("heavy rain", Filters(model=MODEL), 3)[0].highlight.startswith("<em>Heavy</em>")

    name, n = backend.rebuild([docs(n_per_media=1)], dim=384)
    assert n == len(TEXTS) and name != first and backend.index_name() == name
    assert backend.count() == len(TEXTS)
    assert not backend.client.indices.exists(index=first)


def test_opensearch_unreachable_or_refusing_names_the_url_never_the_password(tmp_path):
    dead = OpenSearchBackend("http://admin:s3cret-pw@127.0.0.1:9", password="s3cret-pw")
    with pytest.raises(SearchUnavailable) as exc:
        dead.check()
    assert "http://127.0.0.1:9" in str(exc.value) and "s3cret" not in str(exc.value)

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "Unauthorized", "status": 401}')

        do_POST = do_PUT = do_HEAD = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        refused = OpenSearchBackend(url, user="admin", password="wrong-pw")
        with pytest.raises(SearchUnavailable, match="refused the credentials") as exc:
            refused.upsert_chunks(docs())
        assert url in str(exc.value) and "wrong-pw" not in str(exc.value)
    finally:
        server.shutdown()


@pytest.mark.skipif(not os.environ.get("OPENSEARCH_URL"), reason="k-NN needs a real OpenSearch: set OPENSEARCH_URL")
def test_knn_on_a_real_opensearch():
    backend = OpenSearchBackend(
        os.environ["OPENSEARCH_URL"],
        os.environ.get("OPENSEARCH_USER"),
        os.environ.get("OPENSEARCH_PASSWORD"),
        prefix=f"ot-test-{uuid.uuid4().hex[:6]}",
        verify_certs=False,
    )
    try:
        backend.upsert_chunks(docs())
        hits = backend.vector_search(unit(10), Filters(model=MODEL), 3)
        assert hits[0].id == f"{1:064x}:0" and hits[0].score == pytest.approx(1.0, abs=1e-3)
        filtered = backend.vector_search(unit(10), Filters(model=MODEL, global_speaker_ids=["spk-000003"]), 3)
        assert {h.doc["global_speaker_id"] for h in filtered} == {"spk-000003"}
    finally:
        for index in backend._indices_of(backend.alias):
            backend.client.indices.delete(index=index)


def many_docs(start: int, n: int, centres: np.ndarray, rng: np.random.Generator) -> pl.DataFrame:
    """``n`` passages with vectors around topic centres; passage i is spoken by spk-{i % 500}."""
    vec = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.normal(size=(n, 384)).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    ids = np.arange(start, start + n)
    return pl.DataFrame(
        {
            "id": [f"m{i:07d}:0" for i in ids],
            "media_id": [f"m{i:07d}" for i in ids],
            "chunk_index": np.zeros(n, np.int32),
            "batch_id": "b-0000",
            "drop": "bulk",
            "source_uri": [f"/archive/bulk/{i}.wav" for i in ids],
            "start_s": 0.0,
            "end_s": 5.0,
            "speaker": "SPEAKER_00",
            "global_speaker_id": [f"spk-{i % 500:06d}" for i in ids],
            "language": "en",
            "text": [f"passage number {i}" for i in ids],
            "model": MODEL,
            "vector": vec,
        }
    ).with_columns(vector=pl.col("vector").cast(empty_docs().schema["vector"]))


def test_the_vector_index_is_built_once_big_enough_and_narrow_filters_stay_exact(tmp_path, monkeypatch):
    """Past ``VECTOR_INDEX_MIN_ROWS`` the table gets its IVF index (lowered here to 3,000 rows
    so that the test builds one in seconds); rows written before and after it are found, and a
    speaker filter matching a handful of rows returns all of them, not only those in the
    partitions nearest the query (LanceDB probes further partitions until the limit is met)."""
    from opentranscribe_pipeline.search import lance

    monkeypatch.setattr(lance, "VECTOR_INDEX_MIN_ROWS", 3000)
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(60, 384)).astype(np.float32)
    backend = lance_local(tmp_path)
    parts = [many_docs(0, 2000, centres, rng), many_docs(2000, 2000, centres, rng), many_docs(4000, 400, centres, rng)]
    backend.upsert_chunks(parts[0])
    table = backend._table("chunks")
    assert "vector_idx" not in {i.name for i in table.list_indices()}
    backend.upsert_chunks(parts[1])
    assert "vector_idx" in {i.name for i in backend._table("chunks").list_indices()}
    backend.upsert_chunks(parts[2])  # after the index: folded in by optimize(), still searched
    assert backend.count() == 4400

    for part in parts:
        for row in part.head(5).iter_rows(named=True):
            hits = backend.vector_search(np.asarray(row["vector"], np.float32), Filters(model=MODEL), 5)
            assert hits[0].id == row["id"] and hits[0].score == pytest.approx(1.0, abs=1e-3)

    query = parts[0]["vector"][0].to_numpy()
    everything = pl.concat(parts)
    for speaker in ("spk-000007", "spk-000123", "spk-000499"):
        members = set(everything.filter(pl.col("global_speaker_id") == speaker)["id"])
        assert len(members) in (8, 9)
        hits = backend.vector_search(query, Filters(model=MODEL, global_speaker_ids=[speaker]), 20)
        assert {h.id for h in hits} == members, f"{speaker}: {len(hits)} of {len(members)}"
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)


def test_a_speaker_filtered_knn_query_on_an_indexed_table_is_exact(tmp_path, monkeypatch):
    """A query for one speaker's passages on an IVF-indexed table returns the speaker's truly
    nearest ones. Through the index alone it returns the best of those in the few partitions
    nearest the query; so a filter that narrows the query to ``EXACT_SEARCH_MAX_ROWS`` rows or
    fewer is answered exactly, and a query over the whole table still goes through the index.
    60,000 passages in partitions of 256 (234 partitions, 20 probed): the proportions of a
    million passages in LanceDB's default partitions of 2,048, at a test's cost."""
    from opentranscribe_pipeline.search import lance

    monkeypatch.setattr(lance, "VECTOR_INDEX_MIN_ROWS", 50_000)
    monkeypatch.setattr(lance, "VECTOR_INDEX_PARTITION_ROWS", 256)
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(400, 384)).astype(np.float32)
    data = many_docs(0, 60_000, centres, rng)
    backend = lance_local(tmp_path)
    backend.upsert_chunks(data)
    assert "vector_idx" in {i.name for i in backend._table("chunks").list_indices()}
    vectors = np.stack(data["vector"].to_numpy())
    speakers = data["global_speaker_id"].to_numpy()
    ids = data["id"].to_numpy()
    for k, speaker in enumerate(("spk-000003", "spk-000250", "spk-000499")):
        query = vectors[k * 7]
        mine = np.flatnonzero(speakers == speaker)
        exact = ids[mine[np.argsort(-(vectors[mine] @ query))[:5]]].tolist()
        hits = backend.vector_search(query, Filters(model=MODEL, global_speaker_ids=[speaker]), 5)
        assert [h.id for h in hits] == exact
    whole = backend.vector_search(vectors[0], Filters(model=MODEL), 5)
    assert whole[0].id == ids[0]


def test_a_speakers_index_write_that_loses_a_race_reads_the_state_again_and_retries(tmp_path, monkeypatch):
    """Two clustering runs finishing together both replace the speakers table; Lance commits
    one and answers the other with a retryable commit conflict (seen in CI: two writers with
    their own instances). The loser reads the committed generation again and writes it."""
    from opentranscribe_pipeline.search import service
    from opentranscribe_pipeline.search.lance import WriteConflict

    monkeypatch.setattr(service.time, "sleep", lambda s: None)
    reads = []
    monkeypatch.setattr(service, "speaker_documents", lambda wh: reads.append(wh) or pl.DataFrame({"n": [1, 2]}))

    class Racing:
        attempts = 0

        def check(self):
            pass

        def replace_speakers(self, docs):
            self.attempts += 1
            if self.attempts < 3:
                raise WriteConflict("Retryable commit conflict for version 2")
            return docs.height

    backend = Racing()
    assert service.refresh_speakers(Warehouse(str(tmp_path / "w")), backend) == 2
    assert backend.attempts == 3 and len(reads) == 3  # the state read again before each attempt

    class AlwaysLoses(Racing):
        def replace_speakers(self, docs):
            raise WriteConflict("Retryable commit conflict")

    with pytest.raises(WriteConflict):
        service.refresh_speakers(Warehouse(str(tmp_path / "w")), AlwaysLoses())
