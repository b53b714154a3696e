"""Subtitle timing (issue 29): how far cues lag behind the words they show, old vs new.

For every cue: **start lag** = cue start - its first word's start, **end lag** = cue end - its
last word's end; per file, **overrun** = last cue end - media duration. Printed as max and p90
over all cues, for the cue builder of ``--old-rev`` (``git show REV:opentranscribe_pipeline/
deliver/subtitles.py`` loaded as a module; default: the last commit before the fix) and the
working tree's, on the same words:

- the sample archive's ``words`` table from a processed warehouse (``--warehouse W``; without
  it the sample archive is processed into a temporary one with ``opentranscribe process``,
  tiny.en, a few minutes on 2 cores). Speakers are shown as their global ids
  (``spk-000003: ``, 12 characters of prefix) as in the exports;
- a seeded messy drop (``tests/data/make_messy_drop.py``, ``--messy-seed``, ``--messy-files``):
  its truth turns (many voices, rapid turns, overlaps, long pauses), each turn's words spread
  over the turn's time in proportion to their length (``spread_words``), no ASR involved.
  ``--messy-seed -1`` skips it (needs espeak-ng and flite).

    .venv/bin/python benchmarks/subtitle_lag.py --warehouse /path/to/warehouse
    .venv/bin/python benchmarks/subtitle_lag.py              # processes the sample archive first
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opentranscribe_pipeline.deliver import subtitles as new  # noqa: E402

SAMPLE = ROOT / "tests" / "data" / "sample_archive" / "drop-2026-11-24"
OLD_REV = "de2a13d"  # the last commit before issue 29's fix


def load_old(rev: str):
    src = subprocess.run(
        ["git", "show", f"{rev}:opentranscribe_pipeline/deliver/subtitles.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="old-subtitles-")) / "old_subtitles.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("old_subtitles", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_subtitles"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def cue_lags(cues, words) -> tuple[list[float], list[float]]:
    """(start lags, end lags): each cue matched with the words it shows by their characters in
    time order (works for either version's cutting of long words)."""
    stream = sorted(((w.start_s, w.end_s, new.one_line(w.text).replace(" ", "")) for w in words), key=lambda x: x[:2])
    stream = [x for x in stream if x[2]]
    k, offset = 0, 0  # word index, characters of it already shown
    starts, ends = [], []
    for cue in cues:
        need = sum(len(line.replace(" ", "")) for line in cue.lines)
        first = last = None
        while need > 0:
            s, e, text = stream[k]
            take = min(need, len(text) - offset)
            piece_start = s + (e - s) * offset / len(text)
            piece_end = s + (e - s) * (offset + take) / len(text)
            first = piece_start if first is None else first
            last = piece_end if last is None else max(last, piece_end)
            need -= take
            offset += take
            if offset == len(text):
                k, offset = k + 1, 0
        starts.append(cue.start_s - first)
        ends.append(cue.end_s - last)
    assert k == len(stream), "cues and words do not match"
    return starts, ends


def measure(module, files: list[tuple[str, float, list]], new_api: bool) -> dict:
    start, end, overrun, n, relaxed = [], [], [], 0, 0
    for _name, duration, words in files:
        tw = [module.TimedWord(w.text, w.start_s, w.end_s, w.speaker) for w in words]
        cues = module.build_cues(tw, media_end_s=duration) if new_api else module.build_cues(tw)
        if not cues:
            continue
        s, e = cue_lags(cues, tw)
        start += s
        end += e
        overrun.append(cues[-1].end_s - duration)
        n += len(cues)
        for c in cues:
            shown = c.end_s - c.start_s
            need = min(new.MAX_CUE_S, max(new.MIN_CUE_S, new.shown_chars(c.lines, c.speaker) / new.MAX_CPS))
            relaxed += shown < need - 2e-3
    return {"start": np.array(start), "end": np.array(end), "overrun": np.array(overrun), "n": n, "relaxed": relaxed}


def report(title: str, files, old, n_words: int) -> list[str]:
    rows = [
        f"### {title}: {len(files)} files, {n_words} words",
        "",
        "| cue builder | cues | start lag max | start lag p90 | start lag min | end lag max | end lag p90 | "
        "last cue end - media end, max | cues under the reading rule |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, module, new_api in (("old (pushes cues later)", old, False), ("new (follows the words)", new, True)):
        m = measure(module, files, new_api)
        rows.append(
            f"| {label} | {m['n']} | {m['start'].max():+.2f} s | {np.percentile(m['start'], 90):+.2f} s | "
            f"{m['start'].min():+.2f} s | "
            f"{m['end'].max():+.2f} s | {np.percentile(m['end'], 90):+.2f} s | {m['overrun'].max():+.2f} s | "
            f"{m['relaxed']} |"
        )
    return rows


def sample_words(warehouse: str) -> list[tuple[str, float, list]]:
    import polars as pl

    from opentranscribe_pipeline.speakers.state import read_clusters
    from opentranscribe_pipeline.storage import Warehouse

    wh = Warehouse(warehouse)
    clusters = read_clusters(wh)
    gid = {(m, s): g for m, s, g in clusters.select("media_id", "speaker", "global_speaker_id").rows()}
    out = []
    for batch in wh.batch_ids("media"):
        media = wh.read_table("media", batch).filter(pl.col("status") == "ok")
        words = wh.read_table("words", batch)
        for row in media.sort("source_uri").iter_rows(named=True):
            mine = words.filter(pl.col("media_id") == row["media_id"]).sort("segment_id", "word_index")
            timed = [
                new.TimedWord(w, s, e, gid.get((row["media_id"], spk), spk))
                for w, s, e, spk in mine.select("word", "start_s", "end_s", "speaker").rows()
            ]
            if timed:
                out.append((row["source_uri"].rsplit("/", 1)[-1], row["duration_s"], timed))
    return out


def messy_words(seed: int, n_files: int) -> list[tuple[str, float, list]]:
    from tests.data.make_messy_drop import make_drop, missing_tools

    if missing_tools():
        print(f"messy drop skipped: missing {missing_tools()}")
        return []
    with tempfile.TemporaryDirectory(prefix="messy-") as tmp:
        truth = make_drop(Path(tmp) / "drop", seed, n_files=n_files)
    out = []
    for name, f in truth["files"].items():
        names = {spk: f"spk-{i:06d}" for i, spk in enumerate(f["speakers"], start=1)}
        words = [
            w
            for t in sorted(f["turns"], key=lambda t: t["start_s"])
            if t.get("text")
            for w in new.spread_words(t["text"], t["start_s"], t["end_s"], names.get(t["speaker"], "spk-000000"))
        ]
        if words:
            out.append((name, f["duration_s"], words))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--warehouse", help="a processed warehouse (default: process the sample archive)")
    p.add_argument("--old-rev", default=OLD_REV)
    p.add_argument("--messy-seed", type=int, default=29)
    p.add_argument("--messy-files", type=int, default=12)
    args = p.parse_args(argv)
    old = load_old(args.old_rev)
    out = []
    with tempfile.TemporaryDirectory(prefix="subtitle-lag-") as tmp:
        warehouse = args.warehouse
        if not warehouse:
            warehouse = str(Path(tmp) / "warehouse")
            home = Path(tmp) / "home"
            home.mkdir()
            (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
            env = {**os.environ, "DAGSTER_HOME": str(home)}
            env.setdefault("OPENTRANSCRIBE_ASR_MODEL", "packaged:tiny.en")
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "opentranscribe_pipeline.cli", "process", str(SAMPLE), "--warehouse", warehouse],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
            )
            print(f"processed the sample archive in {time.perf_counter() - t0:.0f} s")
        files = sample_words(warehouse)
        out += report("Sample archive (`words` table)", files, old, sum(len(w) for _, _, w in files))
    if args.messy_seed >= 0:
        files = messy_words(args.messy_seed, args.messy_files)
        if files:
            out += [
                "",
                *report(
                    f"Messy drop, seed {args.messy_seed} (truth turns)", files, old, sum(len(w) for _, _, w in files)
                ),
            ]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
