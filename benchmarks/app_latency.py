"""Review-app page latencies at N hours of archive, against the bare call each page makes.

1. **The synthetic warehouse of** ``analyst_queries.py`` (20 h per batch, ~9,000 words per
   hour, incremental clustering after every batch, three voices named), cached under
   ``benchmarks/results/warehouse-<hours>h/``. Added here, once: 16 kHz FLAC audio (10 minutes,
   an ``audio`` table row) for the media item every transcript/audio route opens, and a LanceDB
   index of ``--passages`` synthetic passages (``search_scale.synthetic_docs``) under
   ``benchmarks/results/app-search-<n>/`` for the search routes (text mode: no model load).
2. **The app** (``create_app``) served by uvicorn on loopback, one signed-in editor, each route
   asked ``--repeat`` times over HTTP after one warm-up call; p50/p95 in ms.
3. **The baseline, in the same run and process**: the service call the page is built on
   (``search.service.search``, ``query.transcript``, the speaker state's reads, ``deliver``'s
   export, a soundfile cut), timed the same way; the ratio is page / baseline.

    .venv/bin/python benchmarks/app_latency.py                 # 10,000 hours
    .venv/bin/python benchmarks/app_latency.py --hours 100
"""

from __future__ import annotations

import argparse
import http.cookies
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import analyst_queries as aq  # noqa: E402
import search_scale as ss  # noqa: E402

from opentranscribe_pipeline.storage import Warehouse  # noqa: E402

PASSWORD = "benchmark password"
TARGET_MS = 300.0


# -- what the routes need beyond the analysts' warehouse ---------------------------------------
def ensure_audio(root: Path, media_id: str, batch_id: str, seconds: float = 600.0) -> Path:
    """A FLAC for ``media_id`` and its ``audio`` row (the synthetic archive has none)."""
    from opentranscribe_pipeline.schemas import Audio, conform
    from opentranscribe_pipeline.speech.decode import encode_flac

    wh = Warehouse(str(root))
    path = Path(wh.audio_path(media_id))
    if not path.exists():
        rng = np.random.default_rng(5)
        t = np.arange(int(16000 * seconds)) / 16000
        samples = (0.1 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_flac(samples))
    row = {
        "batch_id": batch_id,
        "media_id": media_id,
        "audio_uri": wh.uri(str(path)),
        "sample_rate": 16000,
        "num_samples": int(16000 * seconds),
        "duration_s": seconds,
    }
    wh.write_table("audio", conform(pl.DataFrame([row]), Audio), batch_id)
    return path


def ensure_index(n: int):
    from opentranscribe_pipeline.search.lance import LanceBackend

    where = ROOT / "benchmarks" / "results" / f"app-search-{n}"
    done = where / "_complete"
    backend = LanceBackend(str(where))
    if not done.exists():
        rng, vocab = np.random.default_rng(2), ss.vocabulary()
        for start in range(0, n, 50_000):
            backend.upsert_chunks(ss.synthetic_docs(start, min(50_000, n - start), vocab, rng))
            print(f"  indexed {min(start + 50_000, n):,} passages", file=sys.stderr)
        done.write_text("ok")
    return backend, [" ".join(ss.vocabulary()[[5 + k, 40 + 3 * k]]) for k in range(8)]


# -- a signed-in client ------------------------------------------------------------------------
class Client:
    def __init__(self, base: str):
        self.base, self.cookies = base, {}

    def get(self, path: str, data: dict | None = None, headers: dict | None = None) -> bytes:
        hdrs = dict(headers or {})
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body, headers=hdrs)
        opener = urllib.request.build_opener(_NoRedirect())
        try:
            r = opener.open(req, timeout=120)
        except urllib.error.HTTPError as e:
            r = e
        payload = r.read()
        for raw in r.headers.get_all("Set-Cookie") or []:
            for k, m in http.cookies.SimpleCookie(raw).items():
                self.cookies[k] = m.value
        if r.status >= 400 and r.status != 416:
            raise RuntimeError(f"{path}: {r.status} {payload[:300]!r}")
        return payload


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


def timed(fn, repeat: int) -> list[float]:
    fn()  # warm-up: imports, first reads
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def pct(samples: list[float]) -> tuple[float, float]:
    a = np.asarray(samples) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=10000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--passages", type=int, default=200_000, help="synthetic passages in the search index")
    args = ap.parse_args()

    import uvicorn

    from opentranscribe_pipeline.accounts import AccountStore
    from opentranscribe_pipeline.app import create_app
    from opentranscribe_pipeline.app.audio import clip_wav, locate
    from opentranscribe_pipeline.deliver.documents import documents, gather
    from opentranscribe_pipeline.query import find_media, scan, table_files, transcript
    from opentranscribe_pipeline.search.service import search
    from opentranscribe_pipeline.speakers.manifest import CENTROIDS, SUGGESTIONS
    from opentranscribe_pipeline.speakers.state import SpeakerState, active_speakers

    root, info = aq.cached_archive(args.hours)
    wh = Warehouse(str(root))
    media_id, _ = aq.pick_media(root)
    batch_id = find_media(wh, media_id)["batch_id"]
    ensure_audio(root, media_id, batch_id)
    backend, queries = ensure_index(args.passages)
    state = SpeakerState(wh)
    active, _ = active_speakers(wh)
    top = active.sort("n_members", descending=True)["global_speaker_id"][0]
    n_voices = active.height

    tmp = Path(tempfile.mkdtemp(prefix="app-bench-"))
    store = AccountStore.open(str(tmp / "accounts.sqlite"))
    store.add_user("bench", PASSWORD, "editor")
    app = create_app(wh, store, backend=backend)
    app.state.services.model = ss.MODEL  # the synthetic passages' model
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    c = Client(f"http://127.0.0.1:{port}")
    token = c.get("/signin").decode().split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    c.get("/signin", {"name": "bench", "password": PASSWORD, "csrf_token": token, "next": "/search"})
    q = iter(queries * 1000)

    def words_of(mid, bid):
        return scan(wh, table_files(wh, "words", [bid]), "words").filter(pl.col("media_id") == mid).collect()

    audio = locate(wh, media_id)
    pages = max(1, -(-n_voices // 25))
    routes = [  # (name, page call, baseline name, baseline call)
        (
            "search (text)",
            lambda: c.get(f"/search?mode=text&q={urllib.parse.quote(next(q))}"),
            "search.service.search",
            lambda: search(wh, backend, next(q), model=ss.MODEL, mode="text"),
        ),
        (
            "/api/search",
            lambda: c.get(f"/api/search?mode=text&q={urllib.parse.quote(next(q))}"),
            "search.service.search",
            lambda: search(wh, backend, next(q), model=ss.MODEL, mode="text"),
        ),
        (
            "transcript page",
            lambda: c.get(f"/media/{media_id}"),
            "query.transcript + words",
            lambda: (transcript(wh, media_id).collect(), words_of(media_id, batch_id)),
        ),
        (
            "/api/media/<id>",
            lambda: c.get(f"/api/media/{media_id}"),
            "query.transcript + words",
            lambda: (transcript(wh, media_id).collect(), words_of(media_id, batch_id)),
        ),
        (
            "speakers, page 1",
            lambda: c.get("/speakers?page=1"),
            "centroids+profiles+suggestions",
            lambda: (state.read(g := state.current(), CENTROIDS), state.profiles(g), state.read(g, SUGGESTIONS)),
        ),
        (
            f"speakers, page {pages}",
            lambda: c.get(f"/speakers?page={pages}"),
            "centroids+profiles+suggestions",
            lambda: (state.read(g := state.current(), CENTROIDS), state.profiles(g), state.read(g, SUGGESTIONS)),
        ),
        (
            "speaker page (most files)",
            lambda: c.get(f"/speakers/{top}"),
            "speaker_locations",
            lambda: state.locations(state.current(), [top]),
        ),
        (
            "/api/speakers/<id>/clips",
            lambda: c.get(f"/api/speakers/{top}/clips"),
            "speaker_locations",
            lambda: state.locations(state.current(), [top]),
        ),
        (
            "clip 15 s (WAV)",
            lambda: c.get(f"/audio/{media_id}/clip?start=120&end=135"),
            "soundfile cut",
            lambda: clip_wav(wh, audio, 120, 135),
        ),
        (
            "audio, 64 KiB range",
            lambda: c.get(f"/audio/{media_id}", headers={"Range": "bytes=65536-131071"}),
            "file read 64 KiB",
            lambda: open(audio.path, "rb").read(65536),
        ),
        (
            "export .srt (fresh)",
            lambda: c.get(f"/media/{media_id}/export.srt"),
            "deliver gather+documents",
            lambda: documents(gather(wh, batch_id, [media_id]), media_id),
        ),
    ]
    cli_list = timed(lambda: active_speakers(wh), 3)
    print(
        f"\n{args.hours:g} hours ({info['batches']} batches, {n_voices} active voices = {pages} pages of 25), "
        f"search index {args.passages:,} synthetic passages; {args.repeat} calls each after one warm-up"
    )
    print(
        f"{'route':28s} {'p50 ms':>8s} {'p95 ms':>8s}   {'baseline':32s} {'p50 ms':>8s} {'p95 ms':>8s}  {'ratio p50':>9s}"
    )
    worst = {}
    for name, call, base_name, base in routes:
        page = pct(timed(call, args.repeat))
        bare = pct(timed(base, args.repeat))
        if not name.startswith("export"):  # a download rendered by deliver, not a page
            worst[name] = page[1]
        ratio = f"{page[0] / bare[0]:9.2f}" if bare[0] >= 0.5 else f"{'-':>9s}"  # a bare read of ~0 ms: no ratio
        print(f"{name:28s} {page[0]:8.1f} {page[1]:8.1f}   {base_name:32s} {bare[0]:8.1f} {bare[1]:8.1f}  {ratio}")
    print(
        f"\n`speakers list`'s own read (active_speakers: every cluster row), for reference: p50 {pct(cli_list)[0]:.0f} ms"
    )
    slowest = max(worst, key=worst.get)
    verdict = "met" if worst[slowest] <= TARGET_MS else "NOT met"
    print(f"slowest page p95: {slowest} {worst[slowest]:.0f} ms (target {TARGET_MS:.0f} ms): {verdict}")
    server.should_exit = True
    thread.join(5)


if __name__ == "__main__":
    main()
