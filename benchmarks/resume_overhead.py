"""What a re-run costs when there is nothing to do, and what the duplicate check costs as the
archive grows. Everything against a real S3 server (SeaweedFS ``weed mini`` on loopback).

1. **Re-run of a finished batch.** The sample archive (8 files) is registered as one batch
   in an S3 warehouse; job ``transcribe_batch``'s assets run once (baseline: the real work),
   then again on the same batch (nothing to do). Printed: wall seconds, S3 requests per
   operation, and the ratio re-run / first run. WhisperX's CLI has no resume: its re-run
   costs what its first run did (ratio 1.0).

2. **Is this file already in the archive?** For a new batch of ``--new`` files, with
   ``N`` earlier batches of ``--per-batch`` files each in the warehouse: the media index
   (one GET per new file) against the scan it replaced (read every batch's ``media`` table,
   the code ``ingest`` ran before the index, kept here as the baseline). Also the one-time
   cost of building the index for a warehouse written before it existed.

    .venv/bin/python benchmarks/resume_overhead.py                  # appends to RESULTS.md
    .venv/bin/python benchmarks/resume_overhead.py --batches 100 --no-write
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import logging
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.s3_requests import COUNTER, install_counter  # noqa: E402

SAMPLE = ROOT / "tests" / "data" / "sample_archive" / "drop-2026-11-24"


def fmt_ops(ops: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(ops.items(), key=lambda kv: -kv[1])) or "none"


# -- 1. re-run of a finished batch -----------------------------------------------------------
def rerun(server, model: str) -> dict:
    import dagster as dg

    from opentranscribe_pipeline.assets import attribute_speakers, diarize, ingest, transcribe
    from opentranscribe_pipeline.assets.versions import with_code_versions
    from opentranscribe_pipeline.drops.batches import register_drop
    from opentranscribe_pipeline.partitions import BATCHES
    from opentranscribe_pipeline.resources import AsrModelResource, DiarizationModelResource, WarehouseResource
    from opentranscribe_pipeline.storage import Warehouse

    bucket = server.make_bucket("resume")
    root = f"s3://{bucket}/warehouse"
    drop_bucket = server.make_bucket("incoming")
    client = server.client()
    for f in sorted(SAMPLE.iterdir()):
        client.upload_file(str(f), drop_bucket, f"drop/{f.name}")
    wh = Warehouse(root, server.s3_options())
    reg = register_drop(wh, f"s3://{drop_bucket}/drop", s3=server.s3_options())
    [batch_id] = reg.new_batch_ids
    resources = {
        "warehouse": WarehouseResource(
            root=root,
            s3_endpoint_url=server.endpoint,
            s3_access_key_id=server.access_key,
            s3_secret_access_key=server.secret_key,
            s3_region="us-east-1",
        ),
        "asr": AsrModelResource(model=model),
        "diarization": DiarizationModelResource(),
    }
    assets = with_code_versions([ingest, transcribe, diarize, attribute_speakers])
    AsrModelResource(model=model).resolved()  # join packaged weights before timing
    out = {"files": reg.new_files}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(BATCHES, [batch_id])
        for label in ("first run", "re-run, nothing to do"):
            with COUNTER.measure() as m:
                result = dg.materialize(assets, partition_key=batch_id, instance=instance, resources=resources)
            assert result.success
            steps = {}
            for ev in result.all_events:
                if ev.event_type_value == "STEP_SUCCESS":
                    steps[ev.step_key] = ev.event_specific_data.duration_ms / 1000
            out[label] = {"seconds": m["seconds"], "requests": m["requests"], "ops": m["ops"], "steps": steps}
    return out


# -- 2. the duplicate check ------------------------------------------------------------------
def scan_media_tables(wh, exclude_batch: str) -> dict[str, str]:
    """The pre-index duplicate check (baseline): every batch's ok media rows."""
    import polars as pl

    index: dict[str, str] = {}
    for b in wh.batch_ids("media"):
        if b == exclude_batch:
            continue
        df = wh.read_table("media", b)
        if df is None:
            continue
        for media_id, uri in df.filter(pl.col("status") == "ok").select("media_id", "source_uri").iter_rows():
            index.setdefault(media_id, uri)
    return index


def fake_media(batch_id: str, n: int, salt: str):
    import polars as pl

    from opentranscribe_pipeline.schemas import Media, conform

    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "batch_id": batch_id,
            "media_id": hashlib.sha256(f"{salt}/{batch_id}/{i}".encode()).hexdigest(),
            "source_uri": f"s3://incoming/{batch_id}/file-{i:05d}.wav",
            "size_bytes": 1000,
            "status": "ok",
            "ingest_version": "bench",
            "processed_at": now,
            "duration_s": 60.0,
        }
        for i in range(n)
    ]
    return conform(pl.DataFrame(rows), Media)


def duplicate_check(server, sizes: list[int], per_batch: int, new: int, workers: int) -> list[dict]:
    import json

    from opentranscribe_pipeline.storage import Warehouse
    from opentranscribe_pipeline.storage.media_index import MediaIndex

    bucket = server.make_bucket("dedupe")
    wh = Warehouse(f"s3://{bucket}/warehouse", server.s3_options())
    client = server.client(max_pool_connections=workers * 2)
    index = MediaIndex(wh)
    have = 0
    results = []
    new_ids = [hashlib.sha256(f"new/{i}".encode()).hexdigest() for i in range(new)]
    for size in sizes:
        # prime: media tables and index entries of `size` batches (not measured)
        def prime(b: int) -> None:
            batch_id = f"bench-{b:06d}"
            df = fake_media(batch_id, per_batch, "old")
            wh.write_table("media", df, batch_id)
            for media_id, uri in df.select("media_id", "source_uri").iter_rows():
                body = json.dumps({"batch_id": batch_id, "source_uri": uri}).encode()
                client.put_object(
                    Bucket=bucket, Key=f"warehouse/_index/media/{media_id[:2]}/{media_id}.json", Body=body
                )

        t0 = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(prime, range(have, size)))
        if not index.is_built():
            wh.put_bytes(wh.path("_index", "media", "_built"), b"1")
        prime_s = time.perf_counter() - t0
        have = size
        with COUNTER.measure() as scan:
            archive = scan_media_tables(wh, "new-batch")
            found_scan = sum(m in archive for m in new_ids)
        with COUNTER.measure() as look:
            found_index = sum(index.lookup(m) is not None for m in new_ids)
        assert found_scan == found_index == 0 and len(archive) == size * per_batch
        results.append(
            {
                "batches": size,
                "media": size * per_batch,
                "prime_s": prime_s,
                "scan": scan,
                "index": look,
            }
        )
        print(
            f"{size:>6} batches ({size * per_batch:,} media): scan {scan['requests']} requests "
            f"{scan['seconds']:.2f} s | index {look['requests']} requests {look['seconds']:.2f} s",
            flush=True,
        )
    return results


def build_cost(server, batches: int, per_batch: int) -> dict:
    """One-time build of the index for a warehouse written before it existed."""
    from opentranscribe_pipeline.storage import Warehouse
    from opentranscribe_pipeline.storage.media_index import MediaIndex

    bucket = server.make_bucket("migrate")
    wh = Warehouse(f"s3://{bucket}/warehouse", server.s3_options())
    for b in range(batches):
        wh.write_table("media", fake_media(f"old-{b:04d}", per_batch, "migrate"), f"old-{b:04d}")
    with COUNTER.measure() as m:
        written = MediaIndex(wh).ensure_built()
    return {"entries": written, **m}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="packaged:tiny.en")
    parser.add_argument("--batches", type=int, nargs="+", default=[100, 1000], help="earlier batches in the archive")
    parser.add_argument("--per-batch", type=int, default=100, help="files per earlier batch")
    parser.add_argument("--new", type=int, default=200, help="files in the new batch")
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--no-write", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args()
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
    logging.getLogger("dagster").setLevel(logging.WARNING)
    install_counter()

    from tests.seaweed import running

    with tempfile.TemporaryDirectory(prefix="resume-bench-") as tmp, running(Path(tmp)) as server:
        print("re-run of a finished batch ...", flush=True)
        rr = rerun(server, args.model)
        first, again = rr["first run"], rr["re-run, nothing to do"]
        for label in ("first run", "re-run, nothing to do"):
            r = rr[label]
            print(f"  {label}: {r['seconds']:.2f} s, {r['requests']} requests ({fmt_ops(r['ops'])})")
            print("    steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in r["steps"].items()))
        print(f"  ratio re-run / first run: {again['seconds'] / first['seconds']:.3f}")
        print("duplicate check ...", flush=True)
        dup = duplicate_check(server, sorted(args.batches), args.per_batch, args.new, args.workers)
        mig_batches = min(args.batches)
        mig = build_cost(server, mig_batches, args.per_batch)
        print(f"one-time index build: {mig['entries']} entries, {mig['requests']} requests, {mig['seconds']:.1f} s")

    lines = [
        "",
        "## `resume_overhead.py` (re-run with nothing to do; duplicate check at archive scale)",
        "",
        f"Measured {dt.date.today()} on {platform.node() or 'this machine'}: {os.cpu_count()} CPU cores, "
        "SeaweedFS `weed mini` on loopback, warehouse and drop on it; ASR "
        f"`{args.model}`, packaged diarization; Dagster in-process executor, ephemeral instance. "
        "Requests = S3 API calls (botocore + aiobotocore).",
        "",
        f"Re-run of a finished batch ({rr['files']} files of the sample archive, all four batch steps):",
        "",
        "| run | wall s | S3 requests | by operation | steps (s) |",
        "|---|---:|---:|---|---|",
    ]
    for label in ("first run", "re-run, nothing to do"):
        r = rr[label]
        steps = ", ".join(f"{k} {v:.2f}" for k, v in r["steps"].items())
        lines.append(f"| {label} | {r['seconds']:.2f} | {r['requests']} | {fmt_ops(r['ops'])} | {steps} |")
    lines += [
        "",
        f"Ratio re-run / first run: **{again['seconds'] / first['seconds']:.3f}** (WhisperX's CLI re-does "
        "everything: 1.0). No model is loaded on the re-run.",
        "",
        f"Duplicate check for a new batch of {args.new} files, earlier batches of {args.per_batch} files:",
        "",
        "| earlier batches | media in archive | scan requests | scan s | index requests | index s | time scan/index |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for d in dup:
        lines.append(
            f"| {d['batches']:,} | {d['media']:,} | {d['scan']['requests']:,} | {d['scan']['seconds']:.2f} | "
            f"{d['index']['requests']:,} | {d['index']['seconds']:.2f} | "
            f"{d['scan']['seconds'] / d['index']['seconds']:.1f} |"
        )
    lines += [
        "",
        f"The index costs one GET per new file whatever the archive's size; the scan reads every "
        f"batch's `media` table on every ingest. One-time index build for a warehouse written before "
        f"the index ({mig['entries']:,} media in {mig_batches} batches): {mig['requests']:,} requests, "
        f"{mig['seconds']:.1f} s ({fmt_ops(mig['ops'])}).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
