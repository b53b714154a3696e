"""Search at scale: embedding throughput, the embedded index at N chunks, bulk into OpenSearch.

Prints, each against a baseline measured in the same run:

1. **Embedding** (chunks/s): the pipeline's text step (``TextEmbeddingResource.load()`` ->
   ``TextEmbedder.encode``, what ``embed_chunks`` runs per file) against calling
   sentence-transformers directly (``SentenceTransformer(dir).encode``) on the same texts.
2. **Embedded index** at ``--chunks`` synthetic passages (default 1,000,000; random unit
   vectors, texts drawn from a 5,000-word vocabulary), written in publish-sized batches of
   ``--batch`` through ``LanceBackend.upsert_chunks`` (idempotent ``merge_insert``, index
   upkeep) against a plain ``table.add`` of the same rows into a second table; then query
   latency p50/p95 of text (BM25), vector (cosine k-NN, filtered by speaker too) and hybrid
   (both + RRF, what ``opentranscribe search`` does) against a linear scan (numpy cosine over
   every vector; polars ``str.contains`` over every text).
3. **Bulk into OpenSearch** (osmem-server, a real server process on loopback): documents/s
   through ``OpenSearchBackend.upsert_chunks`` (``helpers.bulk``, 500 a request) against one
   index request per document on a slice.

The shared development machine has 2 cores and other jobs: figures are noisy; the ratios
are what to read. Run: ``.venv/bin/python benchmarks/search_scale.py [--chunks 1000000]``
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opentranscribe_pipeline.search.backends import Filters, empty_docs  # noqa: E402
from opentranscribe_pipeline.search.ranking import reciprocal_rank_fusion  # noqa: E402

MODEL = "packaged:all-minilm-l6-v2"
DIM = 384


def vocabulary(n: int = 5000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return np.array(["".join(rng.choice(letters, rng.integers(3, 9))) for _ in range(n)])


def clustered_vectors(n: int, rng: np.random.Generator, topics: int = 2000) -> np.ndarray:
    """Unit vectors around ``topics`` fixed centres: text embeddings cluster by topic, and
    uniform random 384-d vectors (all nearly orthogonal) would make any ANN index look bad."""
    centres = np.random.default_rng(12345).normal(size=(topics, DIM)).astype(np.float32)
    vec = centres[rng.integers(0, topics, n)] + 0.6 * rng.normal(size=(n, DIM)).astype(np.float32)
    return vec / np.linalg.norm(vec, axis=1, keepdims=True)


def queries_near(vectors: np.ndarray, k: int, rng: np.random.Generator, sources: list | None = None) -> np.ndarray:
    """``k`` queries, each a stored vector plus noise (a paraphrase of that passage); the
    stored rows they come from are appended to ``sources`` when given."""
    rows = rng.integers(0, len(vectors), k)
    if sources is not None:
        sources.extend(int(r) for r in rows)
    # noise of norm about 0.6 on a unit vector: the query sits at cosine ~0.86 from its passage
    q = vectors[rows] + (0.6 / np.sqrt(DIM)) * rng.normal(size=(k, DIM)).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def synthetic_docs(start: int, n: int, vocab: np.ndarray, rng: np.random.Generator, words: int = 40) -> pl.DataFrame:
    vec = clustered_vectors(n, rng)
    # Zipf-like word choice so that BM25 has common and rare terms
    idx = np.minimum(rng.zipf(1.3, size=(n, words)) - 1, len(vocab) - 1)
    texts = [" ".join(vocab[row]) for row in idx]
    ids = np.arange(start, start + n)
    media = [f"{i // 20:064x}" for i in ids]
    return pl.DataFrame(
        {
            "id": [f"{m}:{i % 20}" for m, i in zip(media, ids)],
            "media_id": media,
            "chunk_index": (ids % 20).astype(np.int32),
            "batch_id": [f"b-{i // 4000:06d}" for i in ids],
            "drop": "bench",
            "source_uri": [f"s3://archive/bench/{m[-8:]}.wav" for m in media],
            "start_s": (ids % 20) * 60.0,
            "end_s": (ids % 20) * 60.0 + 55.0,
            "speaker": "SPEAKER_00",
            "global_speaker_id": [f"spk-{i % 5000:06d}" for i in ids],
            "language": "en",
            "text": texts,
            "model": MODEL,
            "vector": vec,
        }
    ).with_columns(vector=pl.col("vector").cast(empty_docs().schema["vector"]))


def pct(samples: list[float]) -> tuple[float, float]:
    a = np.asarray(samples) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))


# -- 1. embedding -------------------------------------------------------------------------------
def bench_embedding(n_texts: int) -> None:
    from sentence_transformers import SentenceTransformer

    from opentranscribe_pipeline.resources.search import TextEmbeddingResource

    vocab = vocabulary()
    rng = np.random.default_rng(1)
    texts = [" ".join(rng.choice(vocab, rng.integers(20, 200))) for _ in range(n_texts)]
    resource = TextEmbeddingResource(device="cpu")
    with resource.load() as embedder:
        embedder.encode(texts[:8])  # warm up
        t0 = time.perf_counter()
        ours = embedder.encode(texts)
        ours_s = time.perf_counter() - t0
    st = SentenceTransformer(resource.resolved().source, device="cpu", local_files_only=True)
    st.encode(texts[:8])
    t0 = time.perf_counter()
    direct = st.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    direct_s = time.perf_counter() - t0
    same = float(np.abs(ours - direct).max())
    print(f"\n1. embedding {n_texts} passages (20-200 words), CPU:")
    print(f"   pipeline step        {n_texts / ours_s:8.1f} chunks/s")
    print(f"   sentence-transformers {n_texts / direct_s:7.1f} chunks/s")
    print(f"   ratio (pipeline / direct) {direct_s / ours_s:.2f}x throughput; max |difference| {same:.2e}")


# -- 2. the embedded index ----------------------------------------------------------------------
def bench_lance(n: int, batch: int, queries: int) -> None:
    import lancedb

    from opentranscribe_pipeline.search.lance import LanceBackend, where_clause

    tmp = Path(tempfile.mkdtemp(prefix="search-bench-"))
    vocab = vocabulary()
    rng = np.random.default_rng(2)
    backend = LanceBackend(str(tmp / "ours"))
    plain = lancedb.connect(str(tmp / "plain"))
    plain_table = None
    ours_s = plain_s = 0.0
    all_vectors = np.zeros((n, DIM), np.float32)
    texts: list[str] = []
    done = 0
    while done < n:
        m = min(batch, n - done)
        docs = synthetic_docs(done, m, vocab, rng)
        all_vectors[done : done + m] = docs["vector"].to_numpy()
        texts.extend(docs["text"].to_list())
        t0 = time.perf_counter()
        backend.upsert_chunks(docs)
        ours_s += time.perf_counter() - t0
        arrow = docs.to_arrow()
        t0 = time.perf_counter()
        if plain_table is None:
            plain_table = plain.create_table("chunks", data=arrow)
        else:
            plain_table.add(arrow)
        plain_s += time.perf_counter() - t0
        done += m
        print(f"   ... {done:,} chunks written ({ours_s:.0f} s ours, {plain_s:.0f} s plain add)", flush=True)
    table = backend._table("chunks")
    print(f"\n2. embedded index (LanceDB) at {n:,} synthetic chunks, batches of {batch:,}:")
    print(f"   indexing, ours (merge_insert + index upkeep): {n / ours_s:10.0f} chunks/s  ({ours_s:.1f} s)")
    print(f"   indexing, plain table.add (no upsert, no index): {n / plain_s:7.0f} chunks/s  ({plain_s:.1f} s)")
    print(f"   ratio plain / ours: {ours_s / plain_s:.2f}x the time for idempotent writes with indexes")
    print(f"   indices: {[i.name for i in table.list_indices()]}")

    filters = Filters(model=MODEL)
    sources: list[int] = []
    qv = queries_near(all_vectors, queries, rng, sources)
    speaker_of = np.arange(n) % 5000  # synthetic_docs: global_speaker_id spk-{i % 5000}
    recall = {"vector": [], "vector+speaker": [], "vector, the paraphrased passage in the top 10": []}
    qwords = [" ".join(rng.choice(vocab[:2000], 3)) for _ in range(queries)]
    lat = {"text": [], "vector": [], "vector+speaker": [], "hybrid": [], "scan vector": [], "scan text": []}
    frame = pl.DataFrame({"text": texts})
    for i in range(queries):
        t0 = time.perf_counter()
        th = backend.text_search(qwords[i], filters, 50)
        lat["text"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        vh = backend.vector_search(qv[i], filters, 50)
        lat["vector"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sh = backend.vector_search(qv[i], Filters(model=MODEL, global_speaker_ids=[f"spk-{i:06d}"]), 10)
        lat["vector+speaker"].append(time.perf_counter() - t0)
        exact = np.argsort(-(all_vectors @ qv[i]))[:10]
        recall["vector"].append(
            len({f"{int(j) // 20:064x}:{int(j) % 20}" for j in exact} & {h.id for h in vh[:10]}) / 10
        )
        source_id = f"{sources[i] // 20:064x}:{sources[i] % 20}"
        recall["vector, the paraphrased passage in the top 10"].append(float(source_id in {h.id for h in vh[:10]}))
        mine = np.flatnonzero(speaker_of == i)
        exact_spk = mine[np.argsort(-(all_vectors[mine] @ qv[i]))[:10]]
        ids_spk = {f"{int(j) // 20:064x}:{int(j) % 20}" for j in exact_spk}
        recall["vector+speaker"].append(len(ids_spk & {h.id for h in sh}) / len(ids_spk))
        t0 = time.perf_counter()
        reciprocal_rank_fusion(
            {
                "text": backend.text_search(qwords[i], filters, 50),
                "semantic": backend.vector_search(qv[i], filters, 50),
            },
            10,
        )
        lat["hybrid"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        np.argpartition(-(all_vectors @ qv[i]), 50)[:50]
        lat["scan vector"].append(time.perf_counter() - t0)
        if i < 5:
            t0 = time.perf_counter()
            frame.filter(pl.col("text").str.contains(qwords[i].split()[0], literal=True)).head(50)
            lat["scan text"].append(time.perf_counter() - t0)
        assert th is not None and vh
    print(f"   query latency over {queries} queries (ms, p50 / p95); where filter {where_clause(filters)!r}:")
    for name, samples in lat.items():
        p50, p95 = pct(samples)
        print(f"     {name:16s} {p50:8.1f} / {p95:8.1f}")
    for name, values in recall.items():
        print(
            f"   recall@10 against an exact scan, {name}: {np.mean(values):.3f}"
            if "paraphrased" not in name
            else f"   {name}: {np.mean(values):.3f} of the queries"
        )
    ratio = pct(lat["scan vector"])[0] / pct(lat["vector"])[0]
    print(f"   vector search vs numpy linear scan (p50): {ratio:.2f}x (>1: the index is faster)")
    shutil.rmtree(tmp, ignore_errors=True)


# -- 2b. which vector index ------------------------------------------------------------------
def bench_index_kinds(n: int, queries: int = 30) -> None:
    """Build time, latency and recall@10 of LanceDB's vector index kinds on the same rows."""
    import lancedb
    import pyarrow as pa
    from lancedb.index import HnswSq, IvfFlat, IvfPq

    rng = np.random.default_rng(4)
    vectors = clustered_vectors(n, rng)
    qv = queries_near(vectors, queries, rng)
    truth = [set(np.argsort(-(vectors @ q))[:10].tolist()) for q in qv]
    tmp = Path(tempfile.mkdtemp(prefix="index-kinds-"))
    table = lancedb.connect(str(tmp)).create_table(
        "c",
        data=pa.table({"i": np.arange(n), "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM)}),
    )

    def measure() -> tuple[float, float]:
        lat, rec = [], []
        for q, t in zip(qv, truth):
            t0 = time.perf_counter()
            rows = table.search(q, vector_column_name="vector").distance_type("cosine").limit(10).to_list()
            lat.append(time.perf_counter() - t0)
            rec.append(len(t & {r["i"] for r in rows}) / 10)
        return pct(lat)[0], float(np.mean(rec))

    print(f"\n2b. vector index kinds at {n:,} clustered 384-d vectors ({queries} queries, limit 10):")
    p50, rec = measure()
    print(f"   {'none (exact scan)':34s} build {0:6.1f} s   p50 {p50:7.1f} ms   recall@10 {rec:.3f}")
    kinds = {
        "IVF-flat (the pipeline's)": IvfFlat(distance_type="cosine"),
        "IVF-PQ, defaults": IvfPq(distance_type="cosine"),
        f"IVF-HNSW-SQ, {max(1, n // 8192)} partitions": HnswSq(
            distance_type="cosine", num_partitions=max(1, n // 8192)
        ),
    }
    for name, config in kinds.items():
        t0 = time.perf_counter()
        table.create_index("vector", config=config, replace=True)
        build = time.perf_counter() - t0
        p50, rec = measure()
        print(f"   {name:34s} build {build:6.1f} s   p50 {p50:7.1f} ms   recall@10 {rec:.3f}", flush=True)
    print("   (IVF-HNSW-SQ with LanceDB's default partitions ran for more than 10 minutes at 100,000 rows here)")
    shutil.rmtree(tmp, ignore_errors=True)


# -- 3. bulk into OpenSearch --------------------------------------------------------------------
def bench_osmem(n: int) -> None:
    from osmem_server import OsmemServer

    from opentranscribe_pipeline.search.opensearch import OpenSearchBackend

    vocab = vocabulary()
    rng = np.random.default_rng(3)
    docs = synthetic_docs(0, n, vocab, rng)
    with OsmemServer.start(freeze=False, japanese=False) as server:
        ours = OpenSearchBackend(server.url, prefix="bench")
        t0 = time.perf_counter()
        ours.upsert_chunks(docs)
        bulk_s = time.perf_counter() - t0
        single = OpenSearchBackend(server.url, prefix="single")
        single.upsert_chunks(docs.head(1))
        m = min(n, 1000)
        rows = docs.head(m).iter_rows(named=True)
        t0 = time.perf_counter()
        for r in rows:
            src = {k: v for k, v in r.items() if k != "id"}
            src["vector"] = [float(x) for x in src["vector"]]
            single.client.index(index=single.alias, id=r["id"], body=src)
        one_s = time.perf_counter() - t0
        assert ours.count() == n
    print(
        f"\n3. bulk into OpenSearch (osmem-server {server.version or ''} on loopback), {n:,} documents with 384-d vectors:"
    )
    print(f"   helpers.bulk (500 a request): {n / bulk_s:8.0f} docs/s ({bulk_s:.1f} s)")
    print(f"   one request per document:     {m / one_s:8.0f} docs/s (on {m:,})")
    print(f"   ratio: {(n / bulk_s) / (m / one_s):.1f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chunks", type=int, default=1_000_000, help="synthetic chunks in the embedded index")
    p.add_argument("--batch", type=int, default=50_000, help="chunks per write (one publish of a big batch)")
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--texts", type=int, default=500, help="passages to embed")
    p.add_argument("--bulk", type=int, default=20_000, help="documents bulk-loaded into osmem-server")
    p.add_argument("--index-rows", type=int, default=100_000, help="rows for the vector index comparison")
    p.add_argument("--skip", nargs="*", default=[], choices=["embedding", "lance", "kinds", "osmem"])
    a = p.parse_args()
    if "embedding" not in a.skip:
        bench_embedding(a.texts)
    if "lance" not in a.skip:
        bench_lance(a.chunks, a.batch, a.queries)
    if "kinds" not in a.skip:
        bench_index_kinds(a.index_rows)
    if "osmem" not in a.skip:
        bench_osmem(a.bulk)


if __name__ == "__main__":
    main()
