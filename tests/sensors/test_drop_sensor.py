"""The drop sensor through Dagster's sensor context, on real listings: a local folder and a real
S3 server (SeaweedFS on loopback). No listing is patched; quiet periods use an injected clock.
(Its state and its walk's steps alone: test_drop_state.py, test_walk_steps.py.)"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from opentranscribe_pipeline.drops.batches import batch_prefix, register_drop
from opentranscribe_pipeline.drops.rules import is_temp_name
from opentranscribe_pipeline.drops.state import Cursor
from opentranscribe_pipeline.partitions import BATCHES
from opentranscribe_pipeline.resources import WarehouseResource
from opentranscribe_pipeline.sensors import DropSensorConfig, build_drop_sensor
from opentranscribe_pipeline.storage import S3Options, StorageUnavailable, Warehouse, s3_call, s3_client
from opentranscribe_pipeline.storage.sources import safe_relative

from .. import seaweed as seaweed_server
from ..conftest import SAMPLE_DROP

SAMPLES = ("call-07.flac", "interview 01.wav", "lecture_05.ogg")


class Clock:
    """Real time plus an offset tests move forward (quiet periods, watch expiry)."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Tick:
    """What one evaluation returned, in a shape tests can assert on."""

    def __init__(self, result, cursor_in):
        if isinstance(result, dg.SkipReason):
            self.skip, self.runs, self.added, self.cursor = result.skip_message, [], [], cursor_in
        else:
            self.skip = result.skip_reason.skip_message if result.skip_reason else None
            self.runs = list(result.run_requests or [])
            self.added = [k for r in result.dynamic_partitions_requests for k in r.partition_keys]
            self.cursor = result.cursor
        self.keys = [r.partition_key for r in self.runs]
        self.state = json.loads(self.cursor) if self.cursor else None


class Harness:
    """One sensor with its config, warehouse, instance and cursor, ticked like the daemon does."""

    def __init__(self, incoming, warehouse_root, instance, *, s3: S3Options | None = None, clock=None, **config):
        self.clock = clock or Clock()
        self.sensor = build_drop_sensor(name="drop_sensor_test", clock=self.clock)
        s3 = s3 or S3Options()
        s3cfg = {
            "s3_endpoint_url": s3.endpoint_url,
            "s3_access_key_id": s3.access_key_id,
            "s3_secret_access_key": s3.secret_access_key,
            "s3_region": s3.region,
        }
        config.setdefault("settle_seconds", 0)
        self.config = DropSensorConfig(incoming=str(incoming), **s3cfg, **config)
        self.warehouse_resource = WarehouseResource(root=str(warehouse_root), **s3cfg)
        self.warehouse = Warehouse(str(warehouse_root), s3)
        self.instance = instance
        self.cursor = None

    def tick(self, *, apply=True) -> Tick:
        ctx = dg.build_sensor_context(
            cursor=self.cursor,
            instance=self.instance,
            resources={"drop_sensor_config": self.config, "warehouse": self.warehouse_resource},
        )
        t = Tick(self.sensor(ctx), self.cursor)
        if apply:  # what the daemon does with the result
            self.cursor = t.cursor
            if t.added:
                self.instance.add_dynamic_partitions(BATCHES, t.added)
        return t

    def manifest(self) -> pl.DataFrame:
        df = self.warehouse.scan("batches")
        return df.sort("batch_id", "source_uri") if df is not None else pl.DataFrame()

    def members(self, batch_id: str) -> list[str]:
        m = self.manifest()
        return sorted(m.filter(pl.col("batch_id") == batch_id)["source_uri"].to_list())


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def make_drop(folder: Path, names=SAMPLES, marker=True, extra=()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(SAMPLE_DROP / name, folder / name)
    for name in extra:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"not media")
    if marker:
        (folder / "_READY").write_bytes(b"")
    return folder


def touch_later(path: Path, seconds: float = 5.0) -> None:
    """Re-write a file so that its mtime certainly changes (marker re-write convention)."""
    path.write_bytes(b"")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + int(seconds * 1e9)))


# -- local folders -------------------------------------------------------------------------
def test_marker_completes_a_drop_into_bounded_batches(tmp_path, instance):
    incoming = tmp_path / "incoming"
    make_drop(incoming / "drop-1", extra=("README.txt",))
    make_drop(incoming / "drop-2", names=SAMPLES[:1], marker=False)
    h = Harness(incoming, tmp_path / "wh", instance, max_files=2)

    t = h.tick()
    assert t.keys == ["drop-1-0000", "drop-1-0001"]
    assert t.added == ["drop-1-0000", "drop-1-0001"]
    assert {r.run_key for r in t.runs} == {"drop-1-0000", "drop-1-0001"}
    assert all(r.tags["opentranscribe/drop"] == "drop-1" for r in t.runs)
    m = h.manifest()
    assert m.height == 3 and set(m["drop"]) == {"drop-1"}
    assert sorted(Path(u).name for u in m["source_uri"]) == sorted(SAMPLES)  # README.txt, _READY: not media
    assert all(u.startswith(str(incoming / "drop-1") + "/") for u in m["source_uri"])
    # drop-2 has no marker: pending, not registered; drop-1 is watched for late files
    assert set(t.state["pending"]) == {"drop-2"} and set(t.state["watch"]) == {"drop-1"}
    assert t.state["hwm"] == "drop-2"

    t2 = h.tick()  # nothing new: nothing registered again
    assert t2.runs == [] and t2.skip and h.manifest().height == 3

    (incoming / "drop-2" / "_READY").write_bytes(b"")
    t3 = h.tick()
    assert t3.keys == ["drop-2-0000"] and t3.state["pending"] == {}
    assert h.members("drop-2-0000") == [str(incoming / "drop-2" / SAMPLES[0])]


def test_quiet_period_completes_a_drop_without_marker(tmp_path, instance):
    incoming = tmp_path / "incoming"
    drop = make_drop(incoming / "quiet", names=SAMPLES[:2], marker=False)
    clock = Clock()
    h = Harness(incoming, tmp_path / "wh", instance, clock=clock, quiet_minutes=10)

    assert h.tick().runs == []  # first seen now: quiet for 0 s
    clock.offset += 6 * 60
    shutil.copy(SAMPLE_DROP / SAMPLES[2], drop / SAMPLES[2])  # still arriving
    assert h.tick().runs == []  # changed: the quiet period starts again
    clock.offset += 9 * 60
    assert h.tick().runs == []  # 9 min quiet < 10
    clock.offset += 2 * 60
    t = h.tick()
    assert t.keys == ["quiet-0000"] and len(h.members("quiet-0000")) == 3

    # late files in quiet mode, sorting after and before the last key: a new batch once the
    # drop is quiet again (a small drop is re-listed whole when checked)
    shutil.copy(SAMPLE_DROP / "panel_08.wav", drop / "panel_08.wav")
    shutil.copy(SAMPLE_DROP / "radio_show_03.mp3", drop / "a first.mp3")
    assert h.tick().runs == []
    clock.offset += 11 * 60
    t = h.tick()
    assert t.keys == ["quiet-0001"]
    assert h.members("quiet-0001") == [str(drop / "a first.mp3"), str(drop / "panel_08.wav")]
    assert h.manifest()["source_uri"].is_unique().all()


def test_marker_required_by_default(tmp_path, instance):
    make_drop(tmp_path / "incoming" / "nomarker", marker=False)
    clock = Clock()
    h = Harness(tmp_path / "incoming", tmp_path / "wh", instance, clock=clock)
    assert h.tick().runs == []
    clock.offset += 7 * 24 * 3600
    t = h.tick()
    assert t.runs == [] and "nomarker" in t.state["pending"] and h.manifest().height == 0


def test_files_in_progress_are_never_read(tmp_path, instance):
    incoming = tmp_path / "incoming"
    drop = make_drop(incoming / "partial", names=SAMPLES[:2])
    part = drop / "late take.wav.part"
    part.write_bytes(b"half an upload")
    h = Harness(incoming, tmp_path / "wh", instance, settle_seconds=60)
    old = time.time() - 3600
    for f in drop.iterdir():
        os.utime(f, (old, old))
    os.utime(part, None)  # the .part is being written right now

    t = h.tick()
    assert t.runs == [] and "in progress" in t.skip and "partial" in t.state["pending"]

    # the upload finishes: renamed, but modified seconds ago -> still settling
    final = drop / "late take.wav"
    shutil.copy(SAMPLE_DROP / "panel_08.wav", part)
    part.rename(final)
    assert h.tick().runs == []
    os.utime(final, (old, old))
    t = h.tick()
    assert t.keys == ["partial-0000"]
    assert h.members("partial-0000") == sorted(str(drop / n) for n in (*SAMPLES[:2], "late take.wav"))


def test_late_files_need_a_rewritten_marker_and_become_a_new_batch(tmp_path, instance):
    incoming = tmp_path / "incoming"
    drop = make_drop(incoming / "d", names=("interview 01.wav", "lecture_05.ogg"))
    h = Harness(incoming, tmp_path / "wh", instance)
    assert h.tick().keys == ["d-0000"]

    shutil.copy(SAMPLE_DROP / "radio_show_03.mp3", drop / "radio_show_03.mp3")  # sorts after the last key
    shutil.copy(SAMPLE_DROP / "call-07.flac", drop / "call-07.flac")  # sorts before it
    t = h.tick()
    assert t.runs == [] and "d" in t.state["pending"]  # seen, waits for the marker to be re-written

    touch_later(drop / "_READY")
    t = h.tick()
    assert t.keys == ["d-0001"]
    assert h.members("d-0001") == sorted(str(drop / n) for n in ("call-07.flac", "radio_show_03.mp3"))
    m = h.manifest()
    assert m["source_uri"].is_unique().all() and m.height == 4
    assert h.tick().runs == []


def test_same_key_is_never_registered_twice(tmp_path, instance):
    incoming = tmp_path / "incoming"
    drop = make_drop(incoming / "dup", names=SAMPLES)
    h = Harness(incoming, tmp_path / "wh", instance)
    first = h.tick(apply=False)  # manifests written, but the cursor and partitions are lost (tick died)
    assert first.keys == ["dup-0000"]
    again = h.tick()  # same old cursor: the walk finds batch dup-0000 and its files
    assert again.keys == ["dup-0000"]  # re-requested (same run_key: Dagster runs it once), not re-registered
    assert h.manifest().height == 3
    assert h.tick().runs == []

    h.cursor = None  # cursor reset: the ledger knows the drop
    t = h.tick()
    assert t.runs == [] and h.manifest().height == 3
    assert t.state["pending"] == {} and t.state["hwm"] == "dup"

    # a drop the CLI registered earlier: the sensor only adds what the CLI did not
    other = make_drop(incoming / "by-cli", names=SAMPLES[:2])
    reg = register_drop(h.warehouse, str(other))
    instance.add_dynamic_partitions(BATCHES, reg.new_batch_ids)
    shutil.copy(SAMPLE_DROP / "panel_08.wav", other / "panel_08.wav")
    t = h.tick()
    assert t.keys == ["by-cli-0001"] and h.members("by-cli-0001") == [str(other / "panel_08.wav")]
    assert h.manifest()["source_uri"].is_unique().all()
    assert drop.exists()


def test_empty_drop_and_non_media_drop(tmp_path, instance):
    incoming = tmp_path / "incoming"
    (incoming / "empty").mkdir(parents=True)
    (incoming / "empty" / "_READY").write_bytes(b"")
    make_drop(incoming / "docs", names=(), extra=("README.txt", "notes/minutes.pdf", ".DS_Store"))
    (incoming / "no-marker-empty").mkdir()
    h = Harness(incoming, tmp_path / "wh", instance)
    t = h.tick()
    assert t.runs == [] and h.manifest().height == 0
    assert set(t.state["watch"]) == {"empty", "docs"} and set(t.state["pending"]) == {"no-marker-empty"}
    assert json.loads(h.warehouse.get_bytes(h.warehouse.path("_drops", "docs.json")))["seq"] == 0
    # an empty drop that later gets media: a late file like any other
    shutil.copy(SAMPLE_DROP / "call-07.flac", incoming / "empty" / "call-07.flac")
    touch_later(incoming / "empty" / "_READY")
    assert h.tick().keys == ["empty-0000"]


def test_odd_names_and_links_never_escape_the_prefix(tmp_path, instance):
    incoming = tmp_path / "incoming"
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(SAMPLE_DROP / "call-07.flac", outside / "secret.flac")
    drop = make_drop(incoming / "dröp ünï 北京", names=())
    for name in ("a b ü 北京.wav", "dots...wav", "x..y.wav", "sub/.../z.wav"):
        (drop / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE_DROP / "call-07.flac", drop / name)
    (drop / "link.flac").symlink_to(outside / "secret.flac")
    (drop / "linkdir").symlink_to(outside, target_is_directory=True)
    (incoming / "linked-drop").symlink_to(outside, target_is_directory=True)
    h = Harness(incoming, tmp_path / "wh", instance)
    t = h.tick()
    assert t.keys == [f"{batch_prefix(drop.name)}-0000"] and "~" in t.keys[0]  # slug plus hash
    uris = h.manifest()["source_uri"].to_list()
    assert sorted(uris) == sorted(str(drop / n) for n in ("a b ü 北京.wav", "dots...wav", "x..y.wav", "sub/.../z.wav"))
    assert not any("outside" in u or "secret" in u for u in uris)
    assert "linked-drop" not in t.state["pending"] and "linked-drop" not in t.state["watch"]


def test_key_safety_rules():
    assert not safe_relative("../../etc/x.wav")
    assert not safe_relative("a/../b.wav") and not safe_relative("./a.wav") and not safe_relative("a//b.wav")
    assert not safe_relative("/abs.wav") and not safe_relative("")
    assert safe_relative("..dots.wav") and safe_relative("x..y.wav") and safe_relative(".../z.wav")
    assert is_temp_name("a.wav.part") and is_temp_name("dir/.a.wav.Xy12Zq") and is_temp_name("x.TMP")
    assert not is_temp_name("a.wav") and not is_temp_name(".DS_Store") and not is_temp_name("._a.wav")


def test_walk_spans_ticks_and_survives_a_lost_cursor(tmp_path, instance):
    names = ("call-07.flac", "interview 01.wav", "lecture_05.ogg", "panel_08.wav", "radio_show_03.mp3")
    make_drop(tmp_path / "incoming" / "big", names=names)
    h = Harness(tmp_path / "incoming", tmp_path / "wh", instance, max_files=2, max_files_per_tick=2)
    assert h.tick().keys == ["big-0000"]
    assert h.tick().keys == ["big-0001"]
    ledger = json.loads(h.warehouse.get_bytes(h.warehouse.path("_drops", "big.json")))
    assert ledger["open"] and ledger["seq"] == 2
    h.cursor = None  # lost mid-walk: the ledger's open walk is resumed, nothing registered twice
    t = h.tick()
    assert t.keys == ["big-0002"] and len(h.members("big-0002")) == 1
    m = h.manifest()
    assert m.height == 5 and m["source_uri"].is_unique().all()
    assert json.loads(h.warehouse.get_bytes(h.warehouse.path("_drops", "big.json")))["open"] is None


def test_sweep_finds_drops_sorting_before_the_high_water_mark(tmp_path, instance):
    incoming = tmp_path / "incoming"
    make_drop(incoming / "2026-11-24", names=SAMPLES[:1])
    clock = Clock()
    h = Harness(incoming, tmp_path / "wh", instance, clock=clock, watch_hours=1)
    assert h.tick().keys == ["2026-11-24-0000"]
    make_drop(incoming / "2026-01-01-backfill", names=SAMPLES[1:2])  # sorts before hwm
    t = h.tick()
    assert t.keys == ["2026-01-01-backfill-0000"]
    # an old drop (no longer watched) with a late file and a re-written marker: found by the sweep
    clock.offset += 2 * 3600
    shutil.copy(SAMPLE_DROP / "panel_08.wav", incoming / "2026-11-24" / "panel_08.wav")
    touch_later(incoming / "2026-11-24" / "_READY")
    keys = h.tick().keys + h.tick().keys
    assert keys == ["2026-11-24-0001"]


def test_unset_incoming_skips(tmp_path, instance, monkeypatch):
    monkeypatch.delenv("OPENTRANSCRIBE_INCOMING", raising=False)
    sensor = build_drop_sensor(name="drop_sensor_test")
    ctx = dg.build_sensor_context(
        instance=instance,
        resources={"drop_sensor_config": DropSensorConfig(), "warehouse": WarehouseResource(root=str(tmp_path))},
    )
    result = sensor(ctx)
    assert "OPENTRANSCRIBE_INCOMING" in result.skip_message
    # the environment is read when the sensor runs, not at import
    monkeypatch.setenv("OPENTRANSCRIBE_INCOMING", str(tmp_path / "nowhere"))
    result = sensor(ctx)
    assert str(tmp_path / "nowhere") in result.skip_message and "does not exist" in result.skip_message


def test_cursor_stays_small(tmp_path, instance):
    incoming = tmp_path / "incoming"
    for i in range(30):
        (incoming / f"drop-{i:03d}").mkdir(parents=True)
        (incoming / f"drop-{i:03d}" / "_READY").write_bytes(b"")
    h = Harness(incoming, tmp_path / "wh", instance, max_pending_drops=5, watch_max=3)
    for _ in range(8):
        t = h.tick()
        assert len(t.state["pending"]) <= 5 and len(t.state["watch"]) <= 3
    assert t.state["hwm"] == "drop-029" and len(t.cursor) < 2000
    assert len(h.warehouse.list_names(h.warehouse.path("_drops"))) == 30


def test_abandoned_incomplete_drops_do_not_block_new_ones(tmp_path, instance):
    incoming = tmp_path / "incoming"
    make_drop(incoming / "a-abandoned", names=SAMPLES[:1], marker=False)
    make_drop(incoming / "b-abandoned", names=SAMPLES[1:2], marker=False)
    clock = Clock()
    h = Harness(incoming, tmp_path / "wh", instance, clock=clock, max_pending_drops=2)
    assert set(h.tick().state["pending"]) == {"a-abandoned", "b-abandoned"}
    make_drop(incoming / "c-new", names=SAMPLES[2:3])
    t = h.tick()
    assert t.runs == [] and "wait" in t.skip  # the two slots are taken, and not for long yet
    clock.offset += 2 * 3600
    t = h.tick()
    assert t.keys == ["c-new-0000"] and "a-abandoned" not in t.state["pending"]  # the oldest gave way
    (incoming / "a-abandoned" / "_READY").write_bytes(b"")
    keys = [k for _ in range(4) for k in h.tick().keys]
    assert keys == ["a-abandoned-0000"]  # back through the sweep


# -- S3 ------------------------------------------------------------------------------------
@contextlib.contextmanager
def count_calls(s3: S3Options):
    """The sensor's own S3 calls (listings, HEADs), seen through a botocore event hook."""
    calls = []

    def record(params, model, **_):
        calls.append((model.name, params))

    events = s3_client(s3).meta.events
    events.register("before-parameter-build.s3", record)
    try:
        yield calls
    finally:
        events.unregister("before-parameter-build.s3", record)


@pytest.mark.s3
def test_s3_drops_multipart_late_files_and_cost(seaweed, instance):
    bucket = seaweed.make_bucket()
    c = seaweed.client()
    s3 = seaweed.s3_options()
    for name in SAMPLES:
        c.upload_file(str(SAMPLE_DROP / name), bucket, f"incoming/drop-a/{name}")
    c.put_object(
        Bucket=bucket,
        Key="incoming/drop-a/sub dir/ünï cödé 北京.flac",
        Body=(SAMPLE_DROP / "call-07.flac").read_bytes(),
    )
    c.put_object(Bucket=bucket, Key="incoming/drop-a/README.txt", Body=b"notes")
    # an upload in progress: parts sent, never completed
    mpu = c.create_multipart_upload(Bucket=bucket, Key="incoming/drop-a/big.wav")
    part = c.upload_part(
        Bucket=bucket, Key="incoming/drop-a/big.wav", UploadId=mpu["UploadId"], PartNumber=1, Body=b"\0" * (5 << 20)
    )
    # keys whose path reading leaves the prefix: S3 servers may refuse them (SeaweedFS does)
    for key in ("incoming/drop-a/../../etc/x.wav", "incoming/../escape/x.wav"):
        with contextlib.suppress(Exception):
            c.put_object(Bucket=bucket, Key=key, Body=b"x")
    c.put_object(Bucket=bucket, Key="incoming/drop-a/_READY", Body=b"")
    h = Harness(f"s3://{bucket}/incoming", f"s3://{bucket}/warehouse", instance, s3=s3)

    t = h.tick()
    assert t.keys == ["drop-a-0000"]
    uris = h.members("drop-a-0000")
    assert sorted(u.rsplit("/", 1)[-1] for u in uris) == sorted([*SAMPLES, "ünï cödé 北京.flac"])
    assert all(u.startswith(f"s3://{bucket}/incoming/drop-a/") and "/../" not in u for u in uris)
    assert not any(u.endswith("big.wav") for u in uris)  # invisible until completed

    # idle tick: new top-level folders, the watched drop (marker HEAD, StartAfter listing), the
    # sweep's top-level page; never a listing of a drop from its start
    with count_calls(s3) as calls:
        assert h.tick().runs == []
    ops = [(name, p.get("Prefix"), p.get("Delimiter"), p.get("StartAfter")) for name, p in calls]
    assert ops == [
        ("ListObjectsV2", "incoming/", "/", "incoming/drop-a/\U0010ffff"),
        ("HeadObject", None, None, None),
        ("ListObjectsV2", "incoming/drop-a/", None, None),  # small drop: one page, whole
        ("ListObjectsV2", "incoming/", "/", None),
    ], ops

    # the multipart upload completes (a late file), then the marker is re-written
    c.complete_multipart_upload(
        Bucket=bucket,
        Key="incoming/drop-a/big.wav",
        UploadId=mpu["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )
    assert h.tick().runs == []  # marker not re-written yet
    c.put_object(Bucket=bucket, Key="incoming/drop-a/_READY", Body=b"again")
    t = h.tick()
    assert t.keys == ["drop-a-0001"] and h.members("drop-a-0001") == [f"s3://{bucket}/incoming/drop-a/big.wav"]
    assert h.manifest()["source_uri"].is_unique().all()
    assert h.tick().runs == []


@pytest.mark.s3
def test_s3_new_drop_in_a_big_bucket_lists_only_what_is_new(seaweed, instance, tmp_path):
    bucket = seaweed.make_bucket()
    c = seaweed.client()
    s3 = seaweed.s3_options()
    for d in range(3):  # drops named by date: a new one sorts after the high-water mark
        for i in range(40):
            c.put_object(Bucket=bucket, Key=f"incoming/2026-10-0{d}/f{i:03d}.wav", Body=b"x")
        c.put_object(Bucket=bucket, Key=f"incoming/2026-10-0{d}/_READY", Body=b"")
    clock = Clock()
    h = Harness(f"s3://{bucket}/incoming", tmp_path / "wh", instance, s3=s3, clock=clock, sweep_drops_per_tick=0)
    assert len(h.tick().keys) == 3
    clock.offset += 2 * 24 * 3600  # the archive is old: nothing watched any more
    for i in range(5):
        c.put_object(Bucket=bucket, Key=f"incoming/2026-11-24/f{i}.wav", Body=b"x")
    c.put_object(Bucket=bucket, Key="incoming/2026-11-24/_READY", Body=b"")
    with count_calls(s3) as calls:
        t = h.tick()
    assert t.keys == ["2026-11-24-0000"] and len(h.members("2026-11-24-0000")) == 5
    # one top-level page, the new drop's marker and listing: no old drop is listed
    assert [(n, p.get("Prefix")) for n, p in calls] == [
        ("ListObjectsV2", "incoming/"),
        ("HeadObject", None),
        ("ListObjectsV2", "incoming/2026-11-24/"),
    ]


@pytest.mark.s3
def test_s3_missing_bucket_is_a_clear_skip(seaweed, instance, tmp_path):
    h = Harness("s3://no-such-bucket-here/incoming", tmp_path / "wh", instance, s3=seaweed.s3_options())
    h.cursor = Cursor(hwm="x").dump()
    t = h.tick()
    assert "no-such-bucket-here" in t.skip and seaweed.endpoint in t.skip and "does not exist" in t.skip
    assert t.cursor == Cursor(hwm="x").dump()


def test_unreachable_endpoint_is_a_clear_skip(instance, tmp_path):
    endpoint = "http://127.0.0.1:9"  # discard port: nothing listens
    h = Harness("s3://bucket/incoming", tmp_path / "wh", instance, s3=S3Options(endpoint, "x", "y", "us-east-1"))
    t = h.tick()
    assert endpoint in t.skip and "bucket" in t.skip and t.cursor is None


@pytest.fixture(scope="module")
def seaweed_with_auth(tmp_path_factory):
    """A second SeaweedFS that checks credentials (the shared one accepts any)."""
    try:
        server = seaweed_server.start(
            tmp_path_factory.mktemp("seaweed-auth"), access_key="right-key", secret_key="right-secret"
        )
    except seaweed_server.SeaweedUnavailable as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


@pytest.mark.s3
def test_s3_wrong_credentials_then_right_ones(seaweed_with_auth, instance, tmp_path):
    server = seaweed_with_auth
    bucket = server.make_bucket()
    server.client().put_object(Bucket=bucket, Key="incoming/d/a.wav", Body=b"x")
    server.client().put_object(Bucket=bucket, Key="incoming/d/_READY", Body=b"")
    wrong = S3Options(server.endpoint, "right-key", "wrong-secret", "us-east-1")
    h = Harness(f"s3://{bucket}/incoming", tmp_path / "wh", instance, s3=wrong)
    t = h.tick()
    assert t.runs == [] and t.cursor is None
    assert "access denied" in t.skip and server.endpoint in t.skip and bucket in t.skip
    h2 = Harness(f"s3://{bucket}/incoming", tmp_path / "wh", instance, s3=server.s3_options())
    h2.cursor = h.cursor
    assert h2.tick().keys == ["d-0000"]


def test_transient_errors_are_retried_with_backoff():
    from botocore.exceptions import ClientError, EndpointConnectionError

    attempts = []

    def flaky():
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"}}, "ListObjectsV2")
        if len(attempts) == 2:
            raise EndpointConnectionError(endpoint_url="http://s3.example")
        return "listed"

    assert s3_call(flaky, what="listing", endpoint="http://s3.example", base_delay=0.01) == "listed"
    assert len(attempts) == 3

    def denied():
        attempts.append(1)
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "ListObjectsV2")

    attempts.clear()
    with pytest.raises(StorageUnavailable, match=r"access denied to bucket 'b' at http://s3.example"):
        s3_call(denied, what="listing", endpoint="http://s3.example", bucket="b", base_delay=0.01)
    assert len(attempts) == 1  # not transient: no retry
