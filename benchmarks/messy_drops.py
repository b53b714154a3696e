"""Messy drops through the whole pipeline: what becomes of each file, per stage.

Generates ``--files`` media files (default 100) as ``--drops`` drops (default 4 of 25) with
the seeded generator ``tests/data/make_messy_drop.py`` (fixed seeds ``--seed``, ``--seed``+1,
...: 1-6 speakers per file, synthetic and real voices, overlaps, rapid turns, long pauses,
noise beds, silence, hum, stereo, a video without audio, every container), runs
``opentranscribe process DROP --warehouse W`` on each in a subprocess (one throwaway
DAGSTER_HOME seeded from ./dagster.yaml, one warehouse for all drops, as an archive grows),
then reads the warehouse tables and prints per drop:

- the exit code and the CLI's own ``files:`` line, generation and processing time;
- ``media``: files ok / failed / skipped, against what the truth expects (``ok`` speech,
  ``no_speech`` silence/noise, ``skipped`` video without audio);
- failures per stage: ``(stage, reason)`` with a count, from ``media`` (stage ``ingest``) and
  every per-step state table with a ``status`` column (transcripts, diarization, ...), plus
  speech files a stage never wrote a row for (``no row``);
- of the speech files that ingest accepted: how many got words, ``speaker_embeddings``,
  ``speaker_clusters`` rows (global ids), export files, ``chunks`` (search passages);
- console lines worth a look (tracebacks, warnings, "PyAV library exception being dropped").

    .venv/bin/python benchmarks/messy_drops.py                        # 4 drops of 25 files
    .venv/bin/python benchmarks/messy_drops.py --files 8 --drops 1     # a quick look
    .venv/bin/python benchmarks/messy_drops.py --long-file-minutes 30 --model packaged:tiny.en --keep
    .venv/bin/python benchmarks/messy_drops.py --real-speech --drops 1 --seed 7  # real speech, pauses

Needs espeak-ng and flite (``apt-get install espeak-ng flite``). The seeds are printed; the
same seeds give the same drops (``tests/data/make_messy_drop.py OUT --seed N --files N``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.data.make_messy_drop import make_drop, missing_tools  # noqa: E402


def make_real_drop(target: Path, seed: int) -> dict:
    sys.path.insert(0, str(ROOT / "tests" / "data"))
    from make_real_speech_drop import make_drop as make

    return make(target, seed)


# console lines worth reporting (counted, the first of each kind shown)
NOTEWORTHY = re.compile(
    r"Traceback|Exception|exception|Error|error:|WARNING|Warning|warning|failed|FAILED|dropped|Killed",
)
# the CLI's own summary (files: N total, N ok, N failed ...; one line per skipped/failed file)
SUMMARY_LINE = re.compile(
    r"^\s*(files:|audio:|words:|speakers:|wall time:|warehouse:|batches:|(ok|failed|skipped)\s+\S)"
)
WIDTH = 110


def split_files(total: int, drops: int) -> list[int]:
    base, extra = divmod(total, drops)
    return [base + (1 if i < extra else 0) for i in range(drops)]


def write_instance(home: Path) -> Path:
    """A throwaway DAGSTER_HOME seeded from ./dagster.yaml (as the Makefile and the tests do)."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def run_process(drop: Path, warehouse: Path, home: Path, model: str | None, timeout: float, log: Path):
    cmd = [sys.executable, "-m", "opentranscribe_pipeline.cli", "process", str(drop), "--warehouse", str(warehouse)]
    if model:
        cmd += ["--model", model]
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYANNOTE_METRICS_ENABLED": "0"}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code = "timeout"
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    wall = time.perf_counter() - t0
    log.write_text(f"$ {' '.join(cmd)}\n# exit {code}, {wall:.1f} s\n--- stdout\n{out}\n--- stderr\n{err}")
    return code, out, err, wall


def read_log(log: Path):
    """(exit code, stdout, stderr, wall seconds) of a run, from the log :func:`run_process` wrote."""
    text = log.read_text()
    head, _, rest = text.partition("\n--- stdout\n")
    out, _, err = rest.partition("\n--- stderr\n")
    m = re.search(r"# exit (\S+), ([\d.]+) s", head)
    code = (int(m.group(1)) if m.group(1).lstrip("-").isdigit() else m.group(1)) if m else "?"
    return code, out, err, float(m.group(2)) if m else 0.0


def short(reason: str | None, n: int = 90) -> str:
    """A failure reason without what differs per file (hashes, paths, numbers)."""
    if reason is None:
        return "(no reason recorded)"
    text = " ".join(str(reason).split())
    text = re.sub(r"[0-9a-f]{64}", "<id>", text)
    text = re.sub(r"/[^\s:'\"]+", "<path>", text)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text if len(text) <= n else text[: n - 3] + "..."


def state_tables() -> list[str]:
    """Per-batch tables of the contract that record a per-file status (the model steps' state)."""
    from opentranscribe_pipeline.schemas import TABLES, polars_schema

    out = []
    for name, model in TABLES.items():
        cols = polars_schema(model)
        if name not in ("media", "batches") and "status" in cols and "media_id" in cols and "error" in cols:
            out.append(name)
    return out


def read_batches(wh, table: str, batch_ids: list[str], problems: list[str]):
    import polars as pl

    frames = []
    for b in batch_ids:
        try:
            df = wh.read_table(table, b)
        except Exception as exc:  # a part that cannot be read is itself a finding
            problems.append(f"{table} batch {b}: {type(exc).__name__}: {exc}")
            continue
        if df is not None:
            frames.append(df)
    return pl.concat(frames, how="vertical_relaxed") if frames else None


def analyse(warehouse: Path, drop: Path, truth: dict) -> dict:
    import polars as pl

    from opentranscribe_pipeline.drops.batches import batch_prefix
    from opentranscribe_pipeline.storage import Warehouse

    wh = Warehouse(str(warehouse))
    problems: list[str] = []
    prefix = batch_prefix(drop.name)
    batch_ids = [b for b in wh.batch_ids("media") if b.startswith(prefix + "-") or b == prefix]
    media = read_batches(wh, "media", batch_ids, problems)
    files = truth["files"]
    rows = {}  # file name -> media row
    if media is not None:
        for r in media.iter_rows(named=True):
            name = Path(str(r["source_uri"]).removeprefix("file://")).name
            if name in files:
                rows[name] = r
    expected = {name: f["expected"] for name, f in files.items()}
    outcome = Counter()
    for name, exp in expected.items():
        r = rows.get(name)
        got = "missing" if r is None else r["status"]
        if r is not None and r["status"] == "ok" and r.get("silent"):
            got = "ok (silent)"
        outcome[(exp, got)] += 1
    failures = Counter()
    stage_examples: dict[tuple[str, str], str] = {}
    for name, r in rows.items():
        if r["status"] == "failed":
            key = ("ingest", short(r["error"]))
            failures[key] += 1
            stage_examples.setdefault(key, name)
    # speech files ingest accepted (not silent): every later stage should have them
    speech_ids = {
        r["media_id"]: name
        for name, r in rows.items()
        if expected[name] == "ok" and r["status"] == "ok" and r["media_id"] and not r.get("silent")
    }
    accepted_ids = {r["media_id"] for r in rows.values() if r["status"] == "ok" and r["media_id"]}
    per_stage_ok: dict[str, set[str]] = {}
    for table in state_tables():
        df = read_batches(wh, table, batch_ids, problems)
        seen: set[str] = set()
        ok: set[str] = set()
        if df is not None:
            df = df.filter(pl.col("media_id").is_in(list(accepted_ids)))
            for r in df.iter_rows(named=True):
                seen.add(r["media_id"])
                if r["status"] == "ok":
                    ok.add(r["media_id"])
                else:
                    key = (table, short(r["error"]))
                    failures[key] += 1
                    stage_examples.setdefault(key, speech_ids.get(r["media_id"], r["media_id"][:12]))
        per_stage_ok[table] = ok
        missing = [m for m in speech_ids if m not in seen]
        if missing and table != "translations":  # English speech is never translated
            key = (table, "no row (stage never recorded the file)")
            failures[key] += len(missing)
            stage_examples.setdefault(key, speech_ids[missing[0]])

    def ids_of(table: str) -> set[str]:
        df = read_batches(wh, table, batch_ids, problems)
        return set(df["media_id"].unique()) if df is not None and "media_id" in df.columns else set()

    words = read_batches(wh, "words", batch_ids, problems)
    with_words = set(words["media_id"].unique()) if words is not None else set()
    n_words = dict(words.group_by("media_id").len().iter_rows()) if words is not None else {}
    emb = read_batches(wh, "speaker_embeddings", batch_ids, problems)
    n_local = dict(emb.group_by("media_id").len().iter_rows()) if emb is not None else {}
    embeddings = set(n_local)
    # local speakers found against the truth's, per speech file (a voice with under ~1 s of
    # speech may rightly get no embedding)
    speakers_found = sorted((len(files[name]["speakers"]), n_local.get(m, 0), name) for m, name in speech_ids.items())
    no_speech = [
        (name, r["status"], bool(r.get("silent")), n_words.get(r["media_id"], 0), n_local.get(r["media_id"], 0))
        for name, r in sorted(rows.items())
        if expected[name] == "no_speech"
    ]
    chunks = ids_of("chunks")
    try:
        from opentranscribe_pipeline.speakers.state import read_clusters

        clusters = read_clusters(wh, batch_ids)
        clustered = set(clusters["media_id"].unique()) if clusters is not None and clusters.height else set()
    except Exception as exc:
        problems.append(f"speaker_clusters: {type(exc).__name__}: {exc}")
        clustered = set()
    exports: dict[str, set[str]] = {}
    for b in batch_ids:
        for path in (warehouse / "exports").glob(f"*/batch_id={b}/*"):
            exports.setdefault(path.parent.parent.name, set()).add(path.stem)
    any_export = set().union(*exports.values()) if exports else set()
    s = set(speech_ids)
    return {
        "batches": batch_ids,
        "media_rows": len(rows),
        "status": Counter(r["status"] for r in rows.values()),
        "outcome": outcome,
        "failures": failures,
        "examples": stage_examples,
        "speech_accepted": len(s),
        "speech_expected": sum(e == "ok" for e in expected.values()),
        "stage_ok": {t: len(ok & s) for t, ok in per_stage_ok.items()},
        "words": len(with_words & s),
        "embeddings": len(embeddings & s),
        "clusters": len(clustered & s),
        "exports": len(any_export & s),
        "exports_by_format": {fmt: len(ids & s) for fmt, ids in sorted(exports.items())},
        "chunks": len(chunks & s),
        "speakers_found": speakers_found,
        "no_speech": no_speech,
        "missing_outputs": {
            name: [
                what
                for what, have in (
                    ("words", with_words),
                    ("clusters", clustered),
                    ("exports", any_export),
                    ("chunks", chunks),
                )
                if m not in have
            ]
            for m, name in speech_ids.items()
        },
        "problems": problems,
    }


def console_findings(out: str, err: str) -> Counter:
    found = Counter()
    for line in (out + "\n" + err).splitlines():
        if NOTEWORTHY.search(line) and not SUMMARY_LINE.match(line):
            found[short(line.strip(), 140)] += 1
    return found


def report(seed: int, drop: Path, n: int, gen_s: float, code, wall: float, out: str, err: str, a: dict) -> None:
    print("=" * WIDTH)
    print(f"drop {drop.name} (seed {seed}): {n} files generated in {gen_s:.1f} s; process: exit {code} in {wall:.1f} s")
    summary = [
        line.strip()
        for line in out.splitlines()
        if line.strip().startswith(("files:", "audio:", "words:", "speakers:"))
    ]
    for line in summary:
        print(f"  CLI     {line}")
    if not summary:
        print("  CLI     (no summary printed)")
    st = a["status"]
    print(
        f"  media   {a['media_rows']} rows in {len(a['batches'])} batch(es): ok {st.get('ok', 0)}, "
        f"failed {st.get('failed', 0)}, skipped {st.get('skipped', 0)}"
    )
    print("  truth -> media: " + ", ".join(f"{e}->{g} {c}" for (e, g), c in sorted(a["outcome"].items())))
    if a["failures"]:
        print("  failures per stage (stage, reason, files, e.g.):")
        for (stage, reason), count in sorted(a["failures"].items(), key=lambda kv: (kv[0][0], -kv[1])):
            print(f"    {stage:18s} {count:3d}  {reason}  [{a['examples'].get((stage, reason), '')}]")
    else:
        print("  failures per stage: none")
    s = a["speech_accepted"]
    stages = ", ".join(f"{t} ok {c}" for t, c in a["stage_ok"].items())
    print(f"  speech files: {a['speech_expected']} in the truth, {s} accepted by ingest; {stages}")
    fmts = ", ".join(f"{k} {v}" for k, v in a["exports_by_format"].items()) or "none"
    print(
        f"  of those {s}: words {a['words']}, speaker_embeddings {a['embeddings']}, speaker_clusters {a['clusters']}, "
        f"exports {a['exports']} ({fmts}), chunks {a['chunks']}"
    )
    if a["speakers_found"]:
        pairs = " ".join(f"{found}/{true}" for true, found, _ in a["speakers_found"])
        exact = sum(found == true for true, found, _ in a["speakers_found"])
        print(f"  local speakers found/truth per speech file: {pairs} ({exact} of {len(a['speakers_found'])} exact)")
    for name, status, silent, words, speakers in a["no_speech"]:
        what = "silent (models skipped)" if silent else f"{words} words, {speakers} speakers"
        print(f"  no speech: {name}: {status}, {what}")
    missing = {k: v for k, v in a["missing_outputs"].items() if v}
    for name, what in sorted(missing.items())[:10]:
        print(f"    missing {', '.join(what)}: {name}")
    if len(missing) > 10:
        print(f"    ... and {len(missing) - 10} more files with missing outputs")
    for p in a["problems"]:
        print(f"  unreadable: {p}")
    if code != 0:
        tail = [line for line in err.strip().splitlines() if line.strip()][-8:]
        if tail:
            print("  stderr (last lines):")
            for line in tail:
                print(f"    {line[:WIDTH]}")
    found = console_findings(out, err)
    if found:
        print(f"  console lines worth a look ({sum(found.values())}, {len(found)} kinds):")
        for line, count in found.most_common(12):
            print(f"    {count:4d}x {line}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=100, help="files in all (default 100)")
    p.add_argument("--drops", type=int, default=4, help="drops to split them into (default 4)")
    p.add_argument("--seed", type=int, default=2811, help="seed of the first drop; the next get +1, +2, ...")
    p.add_argument("--long-file-minutes", type=float, default=None, help="add one long file of M minutes per drop")
    p.add_argument("--model", default=None, help="ASR model for `process` (default: the CLI's)")
    p.add_argument(
        "--workdir", type=Path, default=None, help="where drops, warehouse and logs go (default: a temp dir)"
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument(
        "--real-speech",
        action="store_true",
        help="drops of real speech with pauses instead (tests/data/make_real_speech_drop.py: the AMI"
        " excerpts as recorded, monologues with pauses, alternating and answering strangers; --files ignored)",
    )
    p.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per `process` run")
    p.add_argument(
        "--analyse-only",
        action="store_true",
        help="generate and process nothing: read the drops, logs and warehouse of --workdir again",
    )
    args = p.parse_args(argv)
    if args.analyse_only and not args.workdir:
        p.error("--analyse-only needs --workdir")
    missing = [] if args.real_speech else missing_tools()
    if missing:
        print(f"error: {', '.join(missing)} not on PATH (apt-get install espeak-ng flite)", file=sys.stderr)
        return 2
    seeds = [args.seed + i for i in range(args.drops)]
    sizes = split_files(args.files, args.drops) if not args.real_speech else [0] * args.drops
    work = args.workdir or Path(tempfile.mkdtemp(prefix="messy-drops-"))
    work.mkdir(parents=True, exist_ok=True)
    home = write_instance(work / "dagster_home")
    warehouse = work / "warehouse"
    long_s = args.long_file_minutes * 60 if args.long_file_minutes else None
    print(f"seeds: {', '.join(map(str, seeds))} ({' + '.join(map(str, sizes))} files); work dir {work}", flush=True)
    totals = Counter()
    codes = []
    try:
        for seed, n in zip(seeds, sizes):
            drop = work / (f"real-{seed}" if args.real_speech else f"messy-{seed}")
            if args.analyse_only:
                truth = json.loads((drop / "truth.json").read_text())
                gen_s = 0.0
                code, out, err, wall = read_log(work / f"{drop.name}.log")
            else:
                t0 = time.perf_counter()
                truth = make_real_drop(drop, seed) if args.real_speech else make_drop(drop, seed, n, long_s)
                gen_s = time.perf_counter() - t0
                print(
                    f"generated {drop.name}: {len(truth['files'])} files in {gen_s:.1f} s; processing ...", flush=True
                )
                code, out, err, wall = run_process(
                    drop, warehouse, home, args.model, args.timeout, work / f"{drop.name}.log"
                )
            a = analyse(warehouse, drop, truth)
            report(seed, drop, len(truth["files"]), gen_s, code, wall, out, err, a)
            codes.append(code)
            totals["files"] += len(truth["files"])
            totals["speech expected"] += a["speech_expected"]
            totals["speech accepted"] += a["speech_accepted"]
            for key in ("words", "embeddings", "clusters", "exports", "chunks"):
                totals[key] += a[key]
            totals["failures"] += sum(a["failures"].values())
            totals["wall_s"] += wall
            print(flush=True)
    finally:
        print("=" * WIDTH)
        print(f"seeds: {', '.join(map(str, seeds))}; exit codes: {codes}")
        print(
            f"total: {totals['files']} files, {totals['speech expected']} with speech, "
            f"{totals['speech accepted']} accepted; of those: words {totals['words']}, "
            f"speaker_embeddings {totals['embeddings']}, speaker_clusters {totals['clusters']}, "
            f"exports {totals['exports']}, chunks {totals['chunks']}; {totals['failures']} stage failures; "
            f"process wall {totals['wall_s']:.0f} s"
        )
        if args.keep or args.workdir:
            print(f"kept: {work} (logs: {work}/messy-<seed>.log)")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if codes and all(c == 0 for c in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
