"""Issue 29, defect 3: registering drops is atomic.

Two registrars at once (real processes calling ``register_drop`` on one warehouse, local and
SeaweedFS): same-named drops from two sources -> exactly one registers, the other is refused
naming both sources and ``--drop``; the same source twice -> its files registered once. Also
the CLI's refusal and the drop sensor meeting a name the CLI gave to another folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from opentranscribe_pipeline.drops.batches import (
    BatchLimits,
    BatchTaken,
    DropConflict,
    claim_drop,
    drop_source_path,
    register_drop,
    register_planned,
    write_batches,
)
from opentranscribe_pipeline.storage import SourceObject, Warehouse

from .conftest import ROOT, run_cli

# one registrar: waits for the go file, registers, prints what happened as JSON
REGISTRAR = r"""
import json, os, sys, time
from opentranscribe_pipeline.drops.batches import BatchLimits, DropConflict, register_drop
from opentranscribe_pipeline.storage import S3Options, Warehouse
root, source, go = sys.argv[1:4]
wh = Warehouse(root, S3Options.from_env())
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
try:
    reg = register_drop(wh, source, s3=S3Options.from_env(), limits=BatchLimits(max_files=2))
    print(json.dumps({"new": reg.new_files, "known": reg.known_files, "batches": reg.batch_ids, "mine": reg.new_batch_ids}))
except DropConflict as exc:
    print(json.dumps({"refused": str(exc)}))
"""


def make_drop(folder: Path, tag: str, n: int = 3) -> Path:
    """``n`` small files named like media (registration probes headers and falls back to the
    size: no decoding here)."""
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"{tag}-{i}.wav").write_bytes(f"{tag} {i}".encode() * 100)
    return folder


def race(root: str, sources: list[str], tmp_path: Path, env: dict | None = None) -> list[dict]:
    """One registrar process per source, started together (they wait for one go file)."""
    go = tmp_path / f"go-{time.monotonic_ns()}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REGISTRAR, root, src, str(go)],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for src in sources
    ]
    try:
        for p in procs:  # every interpreter has imported everything before the start
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        go.write_text("go")
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]


def manifests(wh: Warehouse) -> pl.DataFrame:
    return wh.scan("batches")


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request, tmp_path):
    """A fresh warehouse root per call and where the drops' folders are (local or S3)."""
    if request.param == "local":
        counter = iter(range(1000))
        yield {"root": lambda: str(tmp_path / f"wh{next(counter)}"), "env": {}, "s3": None, "kind": "local"}
        return
    seaweed = request.getfixturevalue("seaweed")
    bucket = seaweed.make_bucket("race")
    counter = iter(range(1000))
    yield {
        "root": lambda: f"s3://{bucket}/wh{next(counter)}",
        "env": seaweed.env(),
        "s3": seaweed.s3_options(),
        "kind": "s3",
        "seaweed": seaweed,
        "bucket": bucket,
    }


def sources_for(store, tmp_path: Path) -> tuple[str, str]:
    """Two folders both named ``drop`` with different files: local, or uploaded to S3."""
    a = make_drop(tmp_path / "in-a" / "drop", "a")
    b = make_drop(tmp_path / "in-b" / "drop", "b")
    if store["kind"] == "local":
        return str(a), str(b)
    client = store["seaweed"].client()
    for folder, top in ((a, "in-a"), (b, "in-b")):
        for f in folder.iterdir():
            client.put_object(Bucket=store["bucket"], Key=f"{top}/drop/{f.name}", Body=f.read_bytes())
    return f"s3://{store['bucket']}/in-a/drop", f"s3://{store['bucket']}/in-b/drop"


ROUNDS = 3


def test_two_sources_one_name_at_once_one_registers_the_other_is_refused(store, tmp_path):
    a, b = sources_for(store, tmp_path)
    for _ in range(ROUNDS):
        root = store["root"]()
        results = race(root, [a, b], tmp_path, store["env"])
        won = [r for r in results if "refused" not in r]
        refused = [r["refused"] for r in results if "refused" in r]
        assert len(won) == 1 and len(refused) == 1, results
        winner = a if won[0] is results[0] else b
        loser = b if winner == a else a
        assert won[0]["new"] == 3 and won[0]["batches"] == ["drop-0000", "drop-0001"]
        msg = refused[0]
        assert winner.rstrip("/") in msg and loser in msg and "--drop" in msg, msg
        wh = Warehouse(root, store["s3"])
        rows = manifests(wh)
        # only the winner's files, each once; nothing of the other folder
        assert rows.height == 3 and rows["source_uri"].is_unique().all()
        assert all(u.startswith(winner + "/") for u in rows["source_uri"]), rows["source_uri"].to_list()
        assert json.loads(wh.get_bytes(drop_source_path(wh, "drop")))["source"] == winner


def test_the_same_source_twice_at_once_is_registered_once(store, tmp_path):
    a, _ = sources_for(store, tmp_path)
    for _ in range(ROUNDS):
        root = store["root"]()
        results = race(root, [a, a], tmp_path, store["env"])
        assert not any("refused" in r for r in results), results
        assert sum(r["new"] for r in results) == 3, results  # split between them or not: never twice
        assert all(r["new"] + r["known"] == 3 for r in results)
        assert all(r["batches"] == ["drop-0000", "drop-0001"] for r in results), results
        rows = manifests(Warehouse(root, store["s3"]))
        assert rows.height == 3 and rows["source_uri"].is_unique().all()
        assert sorted(rows["batch_id"].unique()) == ["drop-0000", "drop-0001"]


def test_manifests_are_never_replaced_and_claims_are_checked(store, tmp_path):
    """The two primitives under the race, called directly."""
    wh = Warehouse(store["root"](), store["s3"])
    members = [(SourceObject("/x/drop/f.wav", "f.wav", 10), 1.0)]
    assert write_batches(wh, "drop", [members], 0) == ["drop-0000"]
    other = [(SourceObject("/y/drop/g.wav", "g.wav", 10), 1.0)]
    with pytest.raises(BatchTaken):
        write_batches(wh, "drop", [other], 0)
    assert wh.read_table("batches", "drop-0000")["source_uri"].to_list() == ["/x/drop/f.wav"]
    # a drop registered before names were claimed: its first file tells its folder
    with pytest.raises(DropConflict, match="/x/drop"):
        claim_drop(wh, "drop", "/y/drop")
    assert claim_drop(wh, "drop", "/x/drop/") is True  # claimed now, trailing slash or not
    assert claim_drop(wh, "drop", "/x/drop") is False
    with pytest.raises(DropConflict):
        claim_drop(wh, "drop", "/y/drop")
    if wh.is_local:  # no lock files or temporaries left in the table folder
        assert sorted(os.listdir(Path(wh.root) / "batches" / "batch_id=drop-0000")) == ["part-0.parquet"]


def test_one_registration_path_leaves_out_a_batch_taken_meanwhile(tmp_path):
    """``register_planned``, the CLI's and the sensor's one way to register: a batch number
    another registrar took while this one planned is read, its file left out, the rest
    planned again from the next number; every file registered exactly once."""
    wh = Warehouse(str(tmp_path / "wh"))
    files = [(SourceObject(f"/in/drop/f{i}.wav", f"f{i}.wav", 10), 1.0) for i in range(3)]
    write_batches(wh, "drop", [[files[0]]], 0)  # the other registrar, first
    written = register_planned(wh, "drop", [files[:2], files[2:]], 0, BatchLimits(max_files=2))
    assert written.taken == ["drop-0000"] and written.new_batch_ids == ["drop-0001"]
    assert written.new_files == 2 and written.next_seq == 2
    registered = manifests(wh)["source_uri"].to_list()
    assert sorted(registered) == [o.uri for o, _ in files]  # each file once


def test_cli_refuses_another_source_under_a_registered_name(tmp_path):
    a = make_drop(tmp_path / "in-a" / "drop", "a")
    b = make_drop(tmp_path / "in-b" / "drop", "b")
    root = tmp_path / "wh"
    register_drop(Warehouse(str(root)), str(a))
    proc = run_cli(["process", str(b), "--warehouse", str(root)], tmp_path / "home", timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert err.startswith("error: drop 'drop' is already registered from ") and "Traceback" not in err
    assert str(a) in err and str(b) in err and "--drop" in err
    assert manifests(Warehouse(str(root))).height == 3  # nothing of b


def test_sensor_leaves_a_name_the_cli_gave_to_another_folder(tmp_path):
    from opentranscribe_pipeline.drops.rules import DropSettings
    from opentranscribe_pipeline.drops.scanner import DropScanner
    from opentranscribe_pipeline.drops.state import Cursor
    from opentranscribe_pipeline.storage.sources import LocalSource

    elsewhere = make_drop(tmp_path / "elsewhere" / "drop", "a")
    incoming = tmp_path / "incoming"
    make_drop(incoming / "drop", "b")
    (incoming / "drop" / "_READY").write_bytes(b"")
    wh = Warehouse(str(tmp_path / "wh"))
    register_drop(wh, str(elsewhere))
    scanner = DropScanner(DropSettings(incoming=str(incoming), settle_s=0), LocalSource(str(incoming)), wh)
    result = scanner.tick(Cursor())
    assert not result.batches
    assert any("already registered from" in e and str(elsewhere) in e for e in result.errors), result.errors
    assert manifests(wh).height == 3 and all(u.startswith(str(elsewhere)) for u in manifests(wh)["source_uri"])
