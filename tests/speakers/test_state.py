"""Archive-wide speaker state under faults: a kill at every write of a clustering run, two
writers on two Dagster instances at once (local folder and S3), compare-and-swap itself.

Voices are synthetic 256-d embeddings (well-separated centres plus noise), so the expected
global ids are known exactly and every assertion is about identity: no id ever names two
voices, no voice gets two ids, names stay on their voices, the next id is never reused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from opentranscribe_pipeline.schemas import EMBEDDING_DIM, SpeakerEmbeddings, conform
from opentranscribe_pipeline.speakers.edits import name_speaker
from opentranscribe_pipeline.speakers.params import ClusterParams
from opentranscribe_pipeline.speakers.runs import cluster_archive
from opentranscribe_pipeline.speakers.state import CENTROIDS, ConcurrentSpeakerWrite, SpeakerState, read_clusters
from opentranscribe_pipeline.speakers.voices import id_number
from opentranscribe_pipeline.storage import Warehouse
from opentranscribe_pipeline.storage.conditional import PreconditionFailed, probe, read_versioned, write_if

MODEL = "test-voices/1"
ROOT = Path(__file__).resolve().parents[2]
CENTRES = np.random.default_rng(7).standard_normal((40, EMBEDDING_DIM)).astype(np.float32)
CENTRES /= np.linalg.norm(CENTRES, axis=1, keepdims=True)


def write_batch(wh: Warehouse, batch_id: str, voices: list[int], seed: int) -> None:
    """A batch of one file per voice, each with one local speaker of that voice; ``VOICE_OF``
    remembers which voice each media id holds, so tests can check identities."""
    rng = np.random.default_rng(seed)
    vectors = CENTRES[voices] + 0.015 * rng.standard_normal((len(voices), EMBEDDING_DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    df = pl.DataFrame(
        {
            "batch_id": batch_id,
            "media_id": [media_of(v, batch_id) for v in voices],
            "speaker": "SPEAKER_00",
            "embedding": pl.Series(vectors, dtype=pl.Array(pl.Float32, EMBEDDING_DIM)),
            "speech_s": 30.0,
            "model": MODEL,
        }
    )
    wh.write_table("speaker_embeddings", conform(df, SpeakerEmbeddings), batch_id)


def assign(wh: Warehouse, *batch_ids: str):
    return cluster_archive(
        wh,
        mode="incremental",
        model=MODEL,
        params=ClusterParams(),
        accept_threshold=0.78,
        suggest_threshold=0.70,
        batch_ids=list(batch_ids),
    )


VOICE_OF: dict[str, int] = {}  # media id -> the voice it holds (filled by write_batch)


def media_of(voice: int, batch_id: str) -> str:
    media_id = hashlib.sha256(f"voice {voice} in {batch_id}".encode()).hexdigest()
    VOICE_OF[media_id] = voice
    return media_id


def voice_of(media_id: str) -> int:
    return VOICE_OF[media_id]


def check_identity(wh: Warehouse) -> dict[int, str]:
    """The committed state is consistent: one id per voice, one voice per id, every id of
    the clusters known to the centroids, ``next_number`` above every id; the tables analysts
    read show the same generation. Returns voice -> id."""
    state = SpeakerState(wh)
    gen = state.current()
    clusters = state.read_clusters(gen)
    pairs = {(voice_of(m), g) for m, g in clusters.select("media_id", "global_speaker_id").iter_rows()}
    by_voice: dict[int, set[str]] = {}
    by_id: dict[str, set[int]] = {}
    for voice, gid in pairs:
        by_voice.setdefault(voice, set()).add(gid)
        by_id.setdefault(gid, set()).add(voice)
    assert all(len(ids) == 1 for ids in by_voice.values()), by_voice
    assert all(len(voices) == 1 for voices in by_id.values()), by_id
    centroids = state.read(gen, CENTROIDS)
    assert set(by_id) <= set(centroids.filter(pl.col("status") == "active")["global_speaker_id"])
    assert gen.next_number > max(id_number(g) for g in centroids["global_speaker_id"])
    state.ensure_published(gen)
    visible = pl.read_parquet(f"{wh.root}/speaker_clusters/*.parquet") if wh.is_local else None
    if visible is not None:
        assert visible.sort("media_id").equals(clusters.sort("media_id"))
    return {voice: next(iter(ids)) for voice, ids in by_voice.items()}


# -- compare-and-swap ------------------------------------------------------------------------
@pytest.fixture(params=["local", "s3"])
def warehouse(request, tmp_path) -> Warehouse:
    if request.param == "local":
        return Warehouse(str(tmp_path / "wh"))
    request.applymarker(pytest.mark.s3)
    seaweed = request.getfixturevalue("seaweed")
    return Warehouse(f"s3://{seaweed.make_bucket('state')}/wh", seaweed.s3_options())


def test_conditional_writes_let_exactly_one_of_two_writers_win(warehouse):
    path = warehouse.path("_speakers", "manifest.json")
    assert probe(warehouse, warehouse.path("_speakers", "probe"))
    first = write_if(warehouse, path, b"generation 1", expect=None)
    with pytest.raises(PreconditionFailed):
        write_if(warehouse, path, b"someone else's generation 1", expect=None)
    results: list[str] = []

    def swap(body: bytes):
        try:
            write_if(warehouse, path, body, expect=first)
            results.append(body.decode())
        except PreconditionFailed:
            results.append("refused")

    threads = [threading.Thread(target=swap, args=(f"generation 2 by {i}".encode(),)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and results.count("refused") == 3
    winner = next(r for r in results if r != "refused")
    assert read_versioned(warehouse, path).data.decode() == winner


# -- generations -------------------------------------------------------------------------------
def test_each_run_commits_one_generation_and_publishes_it(tmp_path):
    wh = Warehouse(str(tmp_path / "wh"))
    write_batch(wh, "a", [0, 1, 2], seed=1)
    write_batch(wh, "b", [1, 2, 3], seed=2)
    assert assign(wh, "a").generation.number == 1
    run = assign(wh, "b")
    assert run.generation.number == 2 and run.attempts == 1
    ids = check_identity(wh)
    assert sorted(ids) == [0, 1, 2, 3] and len(set(ids.values())) == 4
    manifest = json.loads((tmp_path / "wh" / "_speakers" / "manifest.json").read_bytes())
    assert manifest["generation"] == 2 and set(manifest["clusters"]) == {"a", "b"}
    assert manifest["clusters"]["a"].startswith("_speakers/gen-000001/")  # unchanged part kept where it was
    assert json.loads((tmp_path / "wh" / "_speakers" / "published.json").read_bytes()) == {"generation": 2}
    assert not (tmp_path / "wh" / "_speakers" / "lease.json").exists()


def test_a_warehouse_written_before_generations_keeps_its_ids(tmp_path):
    """Visible tables without a manifest (an older version, or the reported broken state:
    clusters written, centroids empty) are generation 0; ids are minted above every id in
    them, so the next voice never gets an id the clusters already hold."""
    wh = Warehouse(str(tmp_path / "wh"))
    write_batch(wh, "a", [0, 1], seed=1)
    write_batch(wh, "b", [5], seed=2)
    assign(wh, "a")
    state = SpeakerState(wh)
    old = state.read_clusters(state.current())
    shutil.rmtree(tmp_path / "wh" / "_speakers")
    wh.write_table(CENTROIDS, state.read(state.current(), CENTROIDS).clear())  # the broken state
    wh.write_parquet(wh.path("speaker_clusters", "part-a.parquet"), old)
    assign(wh, "b")
    new = read_clusters(wh, ["b"])["global_speaker_id"].to_list()
    assert new and not set(new) & set(old["global_speaker_id"])


# -- a kill at every write ---------------------------------------------------------------------
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from opentranscribe_pipeline.storage import Warehouse
    from tests.speakers.test_state import assign
    kill_at = int(sys.argv[2])
    writes = 0
    original = Warehouse.put_bytes

    def put_bytes(self, path, data):
        global writes
        writes += 1
        if writes == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, path, data)

    Warehouse.put_bytes = put_bytes
    assign(Warehouse(sys.argv[1]), "b")
    print("writes", writes)
    """
)


def run_killer(root: Path, kill_at: int) -> subprocess.CompletedProcess:
    code = KILLER.format(root=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", code, str(root), str(kill_at)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


@pytest.mark.slow
def test_sigkill_at_every_write_of_a_clustering_run_never_loses_or_reuses_an_id(tmp_path):
    """Batch b is assigned by a process SIGKILLed at its 1st, 2nd, ... write (lease, gen files,
    manifest, published copies); after each kill a normal run assigns b again and a third
    batch with a new voice: the state is always consistent, a's voices keep their ids and
    name, and the new voice never gets an id already used."""
    base = tmp_path / "base"
    wh = Warehouse(str(base))
    write_batch(wh, "a", [0, 1, 2], seed=1)
    write_batch(wh, "b", [2, 3, 4], seed=2)  # voice 2 again, two new voices
    write_batch(wh, "c", [9], seed=3)
    assign(wh, "a")
    before = check_identity(wh)
    name_speaker(wh, before[0], "Ada")
    shutil.copytree(base, tmp_path / "count")
    counted = run_killer(tmp_path / "count", 0)
    assert counted.returncode == 0, counted.stderr
    total = int(counted.stdout.split()[-1])
    assert total >= 6  # lease, centroids, suggestions, part, manifest, published copies...
    for kill_at in range(1, total + 1):
        root = tmp_path / f"kill-{kill_at}"
        shutil.copytree(base, root)
        killed = run_killer(root, kill_at)
        assert killed.returncode == -signal.SIGKILL, (kill_at, killed.stdout, killed.stderr)
        wh_k = Warehouse(str(root))
        assign(wh_k, "b")  # takes over the dead process's lease at once
        assign(wh_k, "c")
        ids = check_identity(wh_k)
        assert {v: ids[v] for v in (0, 1, 2)} == {v: before[v] for v in (0, 1, 2)}, kill_at
        assert len(set(ids.values())) == 6, (kill_at, ids)
        names = SpeakerState(wh_k).read(SpeakerState(wh_k).current(), "speaker_profiles")
        assert dict(names.select("global_speaker_id", "name").iter_rows()) == {before[0]: "Ada"}


# -- two writers on two machines ----------------------------------------------------------------
WRITER = textwrap.dedent(
    """
    import os, sys, tempfile
    sys.path.insert(0, {root!r})
    import dagster as dg
    from opentranscribe_pipeline.definitions import ASSIGN_JOB, clustering_run_config, defs
    from tests.speakers.test_state import MODEL

    root, batches = sys.argv[1], sys.argv[2].split(",")
    os.environ["DAGSTER_HOME"] = tempfile.mkdtemp(prefix="dh-")  # a Dagster instance of its own
    job = defs.resolve_job_def(ASSIGN_JOB)
    with dg.DagsterInstance.ephemeral() as instance:
        for batch in batches:
            result = job.execute_in_process(
                run_config={{
                    **clustering_run_config("incremental", [batch]),
                    "resources": {{"warehouse": {{"config": {{"root": root, **{s3}}}}},
                                   "diarization": {{"config": {{"pipeline": "packaged"}}}}}},
                }},
                instance=instance,
                raise_on_error=True,
            )
    print("ok")
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "s3"])
def test_two_writers_with_their_own_dagster_instances_never_share_or_reuse_ids(backend, tmp_path, request, monkeypatch):
    """Two processes, each with its own Dagster instance (so no Dagster pool is shared), assign
    four batches each to one warehouse at the same time. Voices recur across both writers'
    batches. Afterwards every batch is assigned, each voice has one id and each id one voice."""
    from opentranscribe_pipeline.speech.diarize import embedding_model_name

    monkeypatch.setattr(sys.modules[__name__], "MODEL", embedding_model_name("packaged"))
    if backend == "local":
        root, s3_conf = str(tmp_path / "wh"), "{}"
        wh = Warehouse(root)
    else:
        seaweed = request.getfixturevalue("seaweed")
        root = f"s3://{seaweed.make_bucket('writers')}/wh"
        options = seaweed.s3_options()
        s3_conf = repr(
            {
                "s3_endpoint_url": options.endpoint_url,
                "s3_access_key_id": options.access_key_id,
                "s3_secret_access_key": options.secret_access_key,
            }
        )
        wh = Warehouse(root, options)
    rng = np.random.default_rng(11)
    batches = [f"b{i}" for i in range(8)]
    for i, batch in enumerate(batches):
        write_batch_model(wh, batch, sorted(rng.choice(12, size=4, replace=False).tolist()), seed=100 + i)
    code = WRITER.format(root=str(ROOT), s3=s3_conf)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, root, ",".join(part)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for part in (batches[:4], batches[4:])
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and out.strip().endswith("ok"), err[-3000:]
    gen = SpeakerState(wh).current()
    assert sorted(gen.clusters) == batches and gen.number == 8
    ids = check_identity(wh)
    assert len(ids) == len(set(ids.values()))


def write_batch_model(wh: Warehouse, batch_id: str, voices: list[int], seed: int) -> None:
    write_batch(wh, batch_id, voices, seed)
    df = wh.read_table("speaker_embeddings", batch_id).with_columns(model=pl.lit(MODEL))
    wh.write_table("speaker_embeddings", df, batch_id)


def test_a_commit_on_a_stale_generation_is_refused_and_changes_nothing(tmp_path):
    wh = Warehouse(str(tmp_path / "wh"))
    write_batch(wh, "a", [0, 1], seed=1)
    assign(wh, "a")
    state = SpeakerState(wh)
    stale = state.current()
    write_batch(wh, "b", [2], seed=2)
    assign(wh, "b")
    from opentranscribe_pipeline.speakers.state import Change

    with pytest.raises(ConcurrentSpeakerWrite, match="run it again"):
        state.commit(stale, Change(clusters={"a": None}))
    assert sorted(state.current().clusters) == ["a", "b"]


# -- compact clusters ----------------------------------------------------------------------------
def visible_clusters(root: Path) -> pl.DataFrame:
    return pl.read_parquet(str(root / "speaker_clusters" / "*.parquet"))


def test_incremental_runs_write_small_deltas_that_compaction_folds_into_one_part(tmp_path):
    """Each incremental run writes one delta part (O(batch)); past COMPACT_AFTER deltas a
    commit folds them into one compact part sorted by global id. Analysts' glob over
    speaker_clusters/ sees every batch exactly once at every generation, and
    speaker_locations finds a voice's batches from the compact part and the deltas."""
    from opentranscribe_pipeline.speakers.state import COMPACT_AFTER, speaker_locations

    root = tmp_path / "wh"
    wh = Warehouse(str(root))
    rng = np.random.default_rng(3)
    batches = [f"b{i:03d}" for i in range(COMPACT_AFTER + 6)]
    for i, batch in enumerate(batches):
        write_batch(wh, batch, sorted(rng.choice(10, size=2, replace=False).tolist()), seed=200 + i)
        assign(wh, batch)
        visible = visible_clusters(root)
        assert visible.select("media_id", "speaker").is_duplicated().sum() == 0
        assert sorted(set(visible["batch_id"])) == batches[: i + 1]
    gen = SpeakerState(wh).current()
    assert gen.base is not None and len(gen.base_batches) == COMPACT_AFTER + 1
    assert sorted(gen.clusters) == batches[COMPACT_AFTER + 1 :]
    names = sorted(p.name for p in (root / "speaker_clusters").iterdir())
    assert names[0].startswith("compact-") and len(names) == 1 + len(gen.clusters)
    compact = pl.read_parquet(root / "speaker_clusters" / names[0])
    assert compact["global_speaker_id"].is_sorted()
    ids = check_identity(wh)
    everything = read_clusters(wh)
    for voice in (0, 5):
        found = speaker_locations(wh, [ids[voice]])
        expected = everything.filter(pl.col("global_speaker_id") == ids[voice])
        assert sorted(found["media_id"]) == sorted(expected["media_id"]) and found.height > 0
    # re-assigning a batch the compact part holds rewrites the compact part, no duplicates
    assign(wh, batches[0])
    assert visible_clusters(root).select("media_id", "speaker").is_duplicated().sum() == 0
    assert check_identity(wh) == ids


def test_a_full_recluster_writes_one_compact_part(tmp_path):
    root = tmp_path / "wh"
    wh = Warehouse(str(root))
    for i in range(5):
        write_batch(wh, f"b{i}", [i, i + 1], seed=300 + i)
        assign(wh, f"b{i}")
    before = check_identity(wh)
    run = cluster_archive(
        wh, mode="full", model=MODEL, params=ClusterParams(), accept_threshold=0.78, suggest_threshold=0.70
    )
    assert run.generation.clusters == {} and len(run.generation.base_batches) == 5
    assert [p.name for p in (root / "speaker_clusters").iterdir()] == [Path(run.generation.base).name]
    assert check_identity(wh) == before
