"""The per-file model step (assets/modelstep.py) without a speech model.

A tiny stage measures each file's audio bytes (one segment per file, one word per 1,000
bytes) and refuses files whose bytes start with ``BAD``. It writes the real contract tables
of transcription (``transcripts`` state, ``asr_segments`` / ``asr_words`` rows) into a
warehouse in ``tmp_path`` and runs as a real partitioned Dagster asset, so what is checked
here is what every model stage inherits: the to-do list, forcing, the one model load, failure
rows, staging and the fold, and the standard metadata and checks.
"""

import datetime as dt
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dagster as dg
import polars as pl
import pytest

from opentranscribe_pipeline.assets.modelstep import (
    FileOutput,
    ModelStage,
    ReprocessConfig,
    run_model_step,
    usable_audio,
)
from opentranscribe_pipeline.partitions import BATCHES, batch_partitions
from opentranscribe_pipeline.resources import WarehouseResource
from opentranscribe_pipeline.schemas import AsrSegments, AsrWords, Audio, Media, Transcripts, conform
from opentranscribe_pipeline.storage import Warehouse

BATCH = "drop-0000"
STAGE = ModelStage(
    name="measurement",
    state_table="transcripts",
    row_tables=("asr_segments", "asr_words"),
    sort_keys={
        "transcripts": ("media_id",),
        "asr_segments": ("media_id", "segment_id"),
        "asr_words": ("media_id", "segment_id", "word_index"),
    },
    verb="measured",
    failed_state={"n_segments": 0, "n_words": 0},
)
STATE_COLUMNS = {"asr_model": "byte-counter", "timing_method": "none"}
# name in the drop -> the bytes of its 16 kHz audio (what the stage measures)
AUDIO = {
    "a.wav": b"\x01" * 3_500,
    "b.flac": b"\x02" * 2_200,
    "c.ogg": b"\x03" * 1_100,
    "bad.mp3": b"BAD" + b"\x04" * 500,
}
NOT_USABLE = "broken.wav"  # media status failed: never handed to the stage


def media_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


@dataclass
class ByteCounter:
    """The test stage's model: counts its loads and the files it was given."""

    loads: int = 0
    attempted: list[str] = field(default_factory=list)
    # per file: was a state row staged for it while the stage worked on it?
    staged_state_seen: dict[str, bool] = field(default_factory=dict)

    version: str = "bytes/1"
    # with prefetching: the files whose input was prepared, in order, and per processed file
    # whether the next file's preparation had started while it was processed
    prepared: list[str] = field(default_factory=list)
    next_was_prepared: list[bool] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    # files whose rows come out breaking the contract (a word that ends before it starts)
    bad_rows_for: set[str] = field(default_factory=set)
    events: dict[str, threading.Event] = field(default_factory=dict)

    def prepared_event(self, media_id: str) -> threading.Event:
        return self.events.setdefault(media_id, threading.Event())

    def wait_for_next(self, media_id: str) -> bool:
        i = self.order.index(media_id)
        if i + 1 == len(self.order):
            return True  # the last file: nothing after it
        return self.prepared_event(self.order[i + 1]).wait(timeout=30)  # a guard, not a timing

    def with_version(self, version: str) -> "ByteCounter":
        self.version = version
        return self

    # the StageModel protocol: version, columns naming the model, loader
    def model_version(self) -> str:
        return self.version

    def model_columns(self) -> dict[str, str]:
        return dict(STATE_COLUMNS)

    @contextmanager
    def load(self) -> Iterator["ByteCounter"]:
        self.loads += 1
        yield self


class MeasureConfig(ReprocessConfig):
    model_version: str = "bytes/1"


def measured_rows(batch_id: str, item: dict, data: bytes) -> dict[str, pl.DataFrame]:
    """The rows the test stage writes for one file: one segment, one word per 1,000 bytes."""
    duration = item["duration_s"]
    segments = pl.DataFrame(
        [
            {
                "batch_id": batch_id,
                "media_id": item["media_id"],
                "segment_id": 0,
                "start_s": 0.0,
                "end_s": duration,
                "text": f"{len(data)} bytes",
            }
        ]
    )
    n_words = len(data) // 1000
    words = pl.DataFrame(
        [
            {
                "batch_id": batch_id,
                "media_id": item["media_id"],
                "segment_id": 0,
                "word_index": i,
                "word": str(i),
                "start_s": duration * i / n_words,
                "end_s": duration * (i + 1) / n_words,
                "timing_source": "interpolated",
            }
            for i in range(n_words)
        ]
    )
    return {"asr_segments": conform(segments, AsrSegments), "asr_words": conform(words, AsrWords)}


def measuring_asset(counter: ByteCounter, prefetch: bool = False) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name="measure",
        specs=[dg.AssetSpec(table) for table in STAGE.tables],
        check_specs=STAGE.check_specs(),
        partitions_def=batch_partitions,
    )
    def measure(context: dg.AssetExecutionContext, config: MeasureConfig, warehouse: WarehouseResource):
        wh = warehouse.get()
        batch_id = context.partition_key

        def read(item: dict) -> dict:
            counter.prepared.append(item["media_id"])
            counter.prepared_event(item["media_id"]).set()
            return {"data": wh.get_bytes(item["audio_uri"])}

        def measure_file(model: ByteCounter, item: dict) -> FileOutput:
            model.attempted.append(item["media_id"])
            model.staged_state_seen[item["media_id"]] = item["media_id"] in wh.staged("transcripts", batch_id)
            if prefetch:
                # the next file's input is read while this one is worked on: wait for it to start
                model.next_was_prepared.append(model.wait_for_next(item["media_id"]))
            data = item["data"] if prefetch else wh.get_bytes(item["audio_uri"])
            if data.startswith(b"BAD"):
                raise ValueError(f"not audio ({len(data)} bytes)")
            rows = measured_rows(batch_id, item, data)
            if item["media_id"] in model.bad_rows_for:
                rows["asr_words"] = rows["asr_words"].with_columns(end_s=pl.col("start_s") - 1.0)
            return FileOutput(
                rows=rows,
                state={"n_segments": rows["asr_segments"].height, "n_words": rows["asr_words"].height},
                summary=f"{len(data)} bytes",
            )

        step = run_model_step(
            context,
            wh,
            STAGE,
            model=counter.with_version(config.model_version),
            wanted=usable_audio(wh, batch_id, "transcripts"),
            force=config.force,
            process=measure_file,
            prepare=read if prefetch else None,
        )
        yield from step.results()

    return measure


@dataclass
class Batch:
    instance: dg.DagsterInstance
    root: str
    wh: Warehouse
    counter: ByteCounter = field(default_factory=ByteCounter)
    prefetch: bool = False

    def run(self, **config) -> dg.ExecuteInProcessResult:
        result = dg.materialize(
            [measuring_asset(self.counter, self.prefetch)],
            partition_key=BATCH,
            instance=self.instance,
            resources={"warehouse": WarehouseResource(root=self.root)},
            run_config={"ops": {"measure": {"config": config}}},
        )
        assert result.success
        return result

    def state(self) -> pl.DataFrame:
        return self.wh.read_table("transcripts", BATCH)

    def status(self) -> dict[str, str]:
        return dict(self.state().select("media_id", "status").iter_rows())


def write_batch(wh: Warehouse) -> None:
    """The `media` and `audio` tables of one batch, as ingest leaves them, and the audio bytes."""
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    media, audio = [], []
    for name, data in AUDIO.items():
        mid = media_id(name)
        path = wh.audio_path(mid)
        wh.put_bytes(path, data)
        duration = len(data) / 1000
        media.append(
            {
                "batch_id": BATCH,
                "media_id": mid,
                "source_uri": f"/drops/one/{name}",
                "size_bytes": len(data),
                "duration_s": duration,
                "status": "ok",
                "ingest_version": "test",
                "processed_at": now,
            }
        )
        audio.append(
            {
                "batch_id": BATCH,
                "media_id": mid,
                "audio_uri": wh.uri(path),
                "sample_rate": 16_000,
                "num_samples": int(duration * 16_000),
                "duration_s": duration,
            }
        )
    media.append(
        {
            "batch_id": BATCH,
            "media_id": None,
            "source_uri": f"/drops/one/{NOT_USABLE}",
            "size_bytes": 10,
            "status": "failed",
            "error": "not a readable media file",
            "ingest_version": "test",
            "processed_at": now,
        }
    )
    wh.write_table("media", conform(pl.DataFrame(media), Media), BATCH)
    wh.write_table("audio", conform(pl.DataFrame(audio), Audio), BATCH)


@pytest.fixture
def batch(tmp_path) -> Iterator[Batch]:
    root = str(tmp_path / "warehouse")
    wh = Warehouse(root)
    write_batch(wh)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(BATCHES, [BATCH])
        yield Batch(instance, root, wh)


def state_metadata(result: dg.ExecuteInProcessResult) -> dict:
    [mat] = [m for m in result.asset_materializations_for_node("measure") if m.asset_key.path == ["transcripts"]]
    return {k: v.value for k, v in mat.metadata.items()}


def processed_at(state: pl.DataFrame) -> dict[str, dt.datetime]:
    return dict(state.select("media_id", "processed_at").iter_rows())


GOOD = [media_id(n) for n in ("a.wav", "b.flac", "c.ogg")]
BAD = media_id("bad.mp3")


def test_one_load_a_failure_row_for_the_bad_file_and_the_standard_report(batch):
    result = batch.run()
    assert batch.counter.loads == 1
    assert sorted(batch.counter.attempted) == sorted([*GOOD, BAD])  # not the unusable media row

    state = batch.state()
    assert batch.status() == {**dict.fromkeys(GOOD, "ok"), BAD: "failed"}
    bad = state.filter(pl.col("media_id") == BAD).row(0, named=True)
    assert bad["error"] == "ValueError: not audio (503 bytes)"
    assert (bad["n_segments"], bad["n_words"], bad["model_version"]) == (0, 0, "bytes/1")
    ok = state.filter(pl.col("status") == "ok")
    assert ok["error"].null_count() == ok.height
    assert dict(ok.select("media_id", "n_words").iter_rows()) == dict(zip(GOOD, [3, 2, 1]))
    assert set(state["asr_model"]) == {"byte-counter"} and set(state["batch_id"]) == {BATCH}
    words = batch.wh.read_table("asr_words", BATCH)
    assert words.height == 6 and BAD not in set(words["media_id"])
    assert batch.wh.read_table("asr_segments", BATCH)["media_id"].to_list() == sorted(GOOD)

    md = state_metadata(result)
    assert md["files_measured_this_run"] == 3
    assert md["files_current_kept"] == 0
    assert md["files_failed"] == 1
    assert md["dagster/row_count"] == 4
    assert md["model_version"] == "bytes/1"
    assert md["model_load_s"] >= 0
    assert md["audio_hours_this_run"] == round(ok["audio_s"].sum() / 3600, 4)
    assert md["real_time_factor"] == round(ok["elapsed_s"].sum() / ok["audio_s"].sum(), 4)
    assert BAD in md["failures"]

    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert set(checks) == {
        "transcripts_matches_schema",
        "asr_segments_matches_schema",
        "asr_words_matches_schema",
        "transcripts_no_failed_files",
    }
    assert all(checks[f"{t}_matches_schema"].passed for t in STAGE.tables)
    failed_check = checks["transcripts_no_failed_files"]
    assert not failed_check.passed and failed_check.severity == dg.AssetCheckSeverity.ERROR
    assert failed_check.metadata["failed_files"].value == 1 and BAD in failed_check.metadata["failed"].value
    for table in STAGE.tables:
        assert batch.wh.staged(table, BATCH) == {}  # folded: nothing left in staging


def test_rerun_keeps_current_files_and_redoes_failed_ones(batch):
    batch.run()
    first = processed_at(batch.state())

    again = batch.run()  # the bad file is still bad: tried again, alone
    assert batch.counter.loads == 2 and batch.counter.attempted[-1:] == [BAD] and len(batch.counter.attempted) == 5
    md = state_metadata(again)
    assert (md["files_measured_this_run"], md["files_current_kept"], md["files_failed"]) == (0, 3, 1)
    assert {m: t for m, t in processed_at(batch.state()).items() if m != BAD} == {m: first[m] for m in GOOD}

    batch.wh.put_bytes(batch.wh.audio_path(BAD), b"\x05" * 4_000)  # the file is repaired
    repaired = batch.run()
    assert batch.counter.loads == 3 and batch.counter.attempted[-1:] == [BAD]
    assert batch.status() == dict.fromkeys([*GOOD, BAD], "ok")
    md = state_metadata(repaired)
    assert (md["files_measured_this_run"], md["files_current_kept"], md["files_failed"]) == (1, 3, 0)
    checks = {c.check_name: c for c in repaired.get_asset_check_evaluations()}
    assert checks["transcripts_no_failed_files"].passed
    state = batch.state()
    words = batch.wh.read_table("asr_words", BATCH)

    # everything current: the model is not loaded, nothing changes
    idle = batch.run()
    assert batch.counter.loads == 3 and len(batch.counter.attempted) == 6
    md = state_metadata(idle)
    assert (md["files_measured_this_run"], md["files_current_kept"], md["model_load_s"]) == (0, 4, 0)
    assert md["real_time_factor"] == 0.0
    assert batch.state().equals(state)
    assert batch.wh.read_table("asr_words", BATCH).equals(words)


def test_another_model_version_redoes_every_file(batch):
    batch.run()
    words_v1 = batch.wh.read_table("asr_words", BATCH)
    batch.counter.attempted.clear()
    result = batch.run(model_version="bytes/2")
    assert batch.counter.loads == 2 and sorted(batch.counter.attempted) == sorted([*GOOD, BAD])
    state = batch.state()
    assert state.height == 4 and set(state["model_version"]) == {"bytes/2"}
    md = state_metadata(result)
    assert (md["files_measured_this_run"], md["files_current_kept"], md["files_failed"]) == (3, 0, 1)
    words = batch.wh.read_table("asr_words", BATCH)
    assert words.equals(words_v1)  # redone, not appended: same rows, no duplicates
    # and back to the first version: redone again
    batch.run()
    assert batch.counter.loads == 3 and set(batch.state()["model_version"]) == {"bytes/1"}


@pytest.mark.parametrize(
    ("force", "redone"),
    [
        ([media_id("a.wav")], [media_id("a.wav")]),  # a media id
        ([media_id("b.flac")[:8]], [media_id("b.flac")]),  # a prefix of at least 8 characters
        (["c.ogg"], [media_id("c.ogg")]),  # a source file name
        (["/drops/one/a.wav", "c.ogg"], [media_id("a.wav"), media_id("c.ogg")]),  # a source uri, and two at once
    ],
)
def test_force_redoes_just_the_named_files(batch, force, redone):
    batch.wh.put_bytes(batch.wh.audio_path(BAD), b"\x05" * 4_000)  # every file current after one run
    batch.run()
    before = processed_at(batch.state())
    batch.counter.attempted.clear()
    result = batch.run(force=force)
    assert batch.counter.loads == 2 and sorted(batch.counter.attempted) == sorted(redone)
    after = processed_at(batch.state())
    assert {m for m in after if after[m] != before[m]} == set(redone)
    md = state_metadata(result)
    assert (md["files_measured_this_run"], md["files_current_kept"]) == (len(redone), 4 - len(redone))


def test_force_with_a_short_prefix_or_an_unknown_name_redoes_nothing(batch):
    batch.wh.put_bytes(batch.wh.audio_path(BAD), b"\x05" * 4_000)
    batch.run()
    state = batch.state()
    batch.run(force=[media_id("a.wav")[:7], "missing.wav", NOT_USABLE])
    assert batch.counter.loads == 1  # nothing to do: no load
    assert batch.state().equals(state)


def test_staged_files_of_a_killed_run_are_picked_up_and_staging_is_cleared(batch):
    """A run killed midway left a.wav complete (rows, then its state row) and b.flac with its
    rows staged but no state row: a.wav is kept, b.flac and the rest are done now."""
    wh = batch.wh
    audio = wh.read_table("audio", BATCH)
    a, b = media_id("a.wav"), media_id("b.flac")
    item = {r["media_id"]: r for r in audio.iter_rows(named=True)}
    killed_at = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    for mid in (a, b):
        rows = measured_rows(BATCH, item[mid], wh.get_bytes(item[mid]["audio_uri"]))
        for table, df in rows.items():
            wh.stage(table, BATCH, mid, df)
    a_state = pl.DataFrame(
        [
            {
                **STATE_COLUMNS,
                "batch_id": BATCH,
                "media_id": a,
                "status": "ok",
                "n_segments": 1,
                "n_words": 3,
                "audio_s": item[a]["duration_s"],
                "elapsed_s": 0.5,
                "model_version": "bytes/1",
                "processed_at": killed_at,
            }
        ]
    )
    wh.stage("transcripts", BATCH, a, conform(a_state, Transcripts))

    result = batch.run()
    assert batch.counter.loads == 1
    assert sorted(batch.counter.attempted) == sorted([b, media_id("c.ogg"), BAD])  # not a.wav
    state = batch.state()
    assert processed_at(state)[a] == killed_at  # the staged state row is the visible one
    assert processed_at(state)[b] != killed_at and state.height == 4
    md = state_metadata(result)
    assert (md["files_measured_this_run"], md["files_current_kept"], md["files_failed"]) == (2, 1, 1)
    words = wh.read_table("asr_words", BATCH)
    assert words.group_by("media_id").len().sort("media_id").rows() == sorted([(a, 3), (b, 2), (media_id("c.ogg"), 1)])
    assert words.select("media_id", "segment_id", "word_index").is_duplicated().sum() == 0
    for table in STAGE.tables:
        assert wh.staged(table, BATCH) == {}


def test_staged_rows_without_a_state_row_never_reach_the_tables_when_the_file_now_fails(batch):
    """bad.mp3's rows were staged by a run killed before its state row; now it fails: the
    orphaned rows are dropped, not published under a failed state."""
    wh = batch.wh
    audio = wh.read_table("audio", BATCH).filter(pl.col("media_id") == BAD).row(0, named=True)
    for table, df in measured_rows(BATCH, audio, b"\x04" * 2_000).items():
        wh.stage(table, BATCH, BAD, df)
    batch.run()
    assert batch.status()[BAD] == "failed"
    assert BAD not in set(wh.read_table("asr_words", BATCH)["media_id"])
    assert BAD not in set(wh.read_table("asr_segments", BATCH)["media_id"])


def test_rows_staged_without_a_state_row_never_replace_a_current_files_rows(batch):
    """A forced run of a.wav was killed after staging its segments, before its words and its
    state row: a.wav stays current (visible state row), so its visible rows must stay too,
    not be mixed with half of the killed run's."""
    batch.wh.put_bytes(batch.wh.audio_path(BAD), b"\x05" * 4_000)
    batch.run()
    a = media_id("a.wav")
    before = batch.wh.read_table("asr_segments", BATCH).filter(pl.col("media_id") == a)
    batch.wh.stage("asr_segments", BATCH, a, before.with_columns(text=pl.lit("from the killed run")))
    batch.run()
    after = batch.wh.read_table("asr_segments", BATCH).filter(pl.col("media_id") == a)
    assert after["text"].to_list() == before["text"].to_list() == ["3500 bytes"]


def test_a_killed_runs_staged_state_row_never_vouches_for_a_redone_files_new_rows(batch):
    """A run killed after staging bad.mp3's (failed) state row left it staged; the next run
    redoes bad.mp3 (failed files are retried). While it works on the file, no staged state row
    may exist for it: were this run killed after staging the new rows and before the new state
    row, the old state row would otherwise be taken as the record of those rows."""
    wh = batch.wh
    batch.run()  # bad.mp3 failed, visible
    stale = batch.state().filter(pl.col("media_id") == BAD)
    wh.stage("transcripts", BATCH, BAD, stale)  # what a killed retry would have left behind
    wh.put_bytes(wh.audio_path(BAD), b"\x05" * 2_000)  # repaired
    batch.counter.staged_state_seen.clear()
    batch.run()
    assert batch.counter.staged_state_seen == {BAD: False}
    assert batch.status()[BAD] == "ok"
    assert wh.staged("transcripts", BATCH) == {}


def test_prefetch_reads_the_next_file_while_this_one_is_processed(batch):
    """``prepare`` (the input work: read the audio) runs for file k+1 while the model works on
    file k, and its result is what ``process`` gets; same tables as without it."""
    batch.run()
    plain = {t: batch.wh.read_table(t, BATCH).drop("processed_at", "elapsed_s", strict=False) for t in STAGE.tables}

    batch.prefetch = True
    batch.counter.attempted.clear()
    batch.counter.order = sorted([*GOOD, BAD])  # the to-do list's order (media_id)
    batch.run(model_version="bytes/2")
    assert batch.counter.prepared == batch.counter.attempted == batch.counter.order
    assert batch.counter.next_was_prepared == [True] * 4
    for table in STAGE.tables:
        again = batch.wh.read_table(table, BATCH).drop("processed_at", "elapsed_s", strict=False)
        if table == "transcripts":
            assert set(again["model_version"]) == {"bytes/2"}
            again = again.drop("model_version")
            plain[table] = plain[table].drop("model_version")
        assert again.equals(plain[table]), table


def test_an_error_preparing_a_file_is_that_files_failure(batch):
    batch.prefetch = True
    gone = media_id("b.flac")
    batch.counter.order = sorted([*GOOD, BAD])
    batch.wh.remove(batch.wh.audio_path(gone))
    batch.run()
    status = batch.status()
    assert status[gone] == "failed" and status[BAD] == "failed"
    assert {m for m, s in status.items() if s == "ok"} == set(GOOD) - {gone}
    error = batch.state().filter(pl.col("media_id") == gone)["error"][0]
    assert error.startswith("FileNotFoundError")


def test_a_file_whose_rows_break_the_contract_fails_alone_and_its_rows_are_never_written(batch):
    broken = media_id("b.flac")
    batch.counter.bad_rows_for = {broken}
    result = batch.run()
    status = batch.status()
    assert status[broken] == "failed" and {m for m, s in status.items() if s == "ok"} == set(GOOD) - {broken}
    error = batch.state().filter(pl.col("media_id") == broken)["error"][0]
    assert error.startswith("RowsRejected: `asr_words` rows break") and "end_s" in error  # the rule and the values
    assert broken not in set(batch.wh.read_table("asr_words", BATCH)["media_id"])
    assert broken not in set(batch.wh.read_table("asr_segments", BATCH)["media_id"])  # none of its rows
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert all(checks[f"{t}_matches_schema"].passed for t in STAGE.tables)  # what was written is valid
    assert not checks["transcripts_no_failed_files"].passed  # the WARN check lists it
    assert batch.wh.staged("asr_words", BATCH) == {}


def test_storage_lost_while_preparing_fails_the_step_not_the_file(batch, monkeypatch):
    """An outage is no file's fault: the step fails (a re-run resumes from what was staged)
    and no file is recorded as failed for it."""
    from opentranscribe_pipeline.storage import StorageUnreachable

    batch.prefetch = True
    batch.counter.order = sorted([*GOOD, BAD])
    lost = media_id("c.ogg")
    own = Warehouse.get_bytes

    def get_bytes(self, path):
        if lost in path:
            raise StorageUnreachable(f"reading {path}: cannot reach the store after 3 attempts over 2.0 s")
        return own(self, path)

    monkeypatch.setattr(Warehouse, "get_bytes", get_bytes)
    result = dg.materialize(
        [measuring_asset(batch.counter, prefetch=True)],
        partition_key=BATCH,
        instance=batch.instance,
        resources={"warehouse": WarehouseResource(root=batch.root)},
        raise_on_error=False,
    )
    assert not result.success
    staged = batch.wh.staged("transcripts", BATCH)
    assert lost not in staged and all(df["status"][0] != "failed" or m == BAD for m, df in staged.items())
