"""The review app over HTTP (a real uvicorn server, a real accounts store, a copy of the shared
warehouse): sessions, roles, CSRF, escaping, unknown ids, audio ranges and clips, paths kept
inside the warehouse, edits through the CLI's functions and audited."""

from __future__ import annotations

import io
import os
from pathlib import Path

import polars as pl
import pytest
import soundfile as sf

from opentranscribe_pipeline.app.security import OutsideWarehouse, inside_warehouse
from opentranscribe_pipeline.speakers.state import active_speakers
from opentranscribe_pipeline.storage import Warehouse

from .conftest import PASSWORD, Client, start_app

UNKNOWN = "0" * 64


def audio_rows(root: Path) -> pl.DataFrame:
    return pl.read_parquet(root / "audio" / "*" / "*.parquet")


def a_voice(root: Path, rank: int = 0) -> str:
    active, _ = active_speakers(Warehouse(str(root)))
    return active.sort("speech_s", descending=True)["global_speaker_id"][rank]


def test_nothing_without_a_session(review_app):
    media_id = audio_rows(review_app.root)["media_id"][0]
    anonymous = Client(review_app.url)
    for path in (
        "/",
        "/search?q=tomatoes",
        "/speakers",
        f"/media/{media_id}",
        f"/audio/{media_id}",
        f"/audio/{media_id}/clip?start=0&end=1",
        "/docs",
        f"/media/{media_id}/export.srt",
    ):
        got = anonymous.get(path)
        assert got.status == 303 and got.headers["location"].startswith("/signin?next="), path
    for path in ("/api/speakers", "/api/search?q=x", f"/api/media/{media_id}", "/openapi.json", "/api/me"):
        assert anonymous.get(path).status == 401, path
    forged = anonymous.post(f"/speakers/{a_voice(review_app.root)}/name", form={"name": "X", "csrf_token": "x"})
    assert forged.status == 401
    # a session cookie is HttpOnly and SameSite; a wrong password does not make one
    assert anonymous.sign_in("ada", "wrong password!").status == 401 and "ot_session" not in anonymous.cookies
    ok = anonymous.sign_in("ada")
    cookie = next(c for c in ok.headers["set-cookie-all"] if c.startswith("ot_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and ok.headers["location"] == "/search"
    assert anonymous.get("/speakers").status == 200
    # signing out ends the session on the server, not only in the browser
    token = anonymous.cookies["ot_session"]
    assert anonymous.post("/signout", form={"csrf_token": anonymous.csrf()}).status == 303
    replay = Client(review_app.url)
    replay.cookies["ot_session"] = token
    assert replay.get("/api/me").status == 401


def test_sign_in_needs_its_form_token_and_is_rate_limited(_shared_archive_built, tmp_path):
    store, served = start_app(_shared_archive_built.root, tmp_path / "accounts.sqlite")
    try:
        store.add_user("eve", PASSWORD, "viewer")
        c = Client(served.url)
        c.get("/signin")
        no_token = c.post("/signin", form={"name": "eve", "password": PASSWORD, "csrf_token": "forged"})
        assert no_token.status == 403 and "ot_session" not in c.cookies
        assert c.post("/signin", form={"name": "eve", "password": PASSWORD}).status in (403, 422)
        answers = [c.sign_in("eve", "not the password").status for _ in range(5)]
        assert answers[:4] == [401] * 4 and answers[4] in (401, 429)  # the fifth failure locks
        refused = c.sign_in("eve")  # the right password, but locked
        assert refused.status == 429 and int(refused.headers["retry-after"]) > 0
        assert "ot_session" not in c.cookies
    finally:
        served.stop()
        store.close()


def test_viewer_sees_no_edit_buttons_and_a_forged_edit_is_403(review_app):
    gid = a_voice(review_app.root)
    viewer, editor = review_app.client("vic"), review_app.client("ada")
    for path in (f"/speakers/{gid}", "/speakers"):
        page = viewer.get(path).text
        assert 'class="edit' not in page and '/name"' not in page and "split" not in page.lower().split("<main>")[1]
        assert 'class="edit' in editor.get(path).text or path == "/speakers"
    assert 'id="rename"' in editor.get(f"/speakers/{gid}").text
    before = active_speakers(Warehouse(str(review_app.root)))[0].filter(pl.col("global_speaker_id") == gid)["name"][0]
    csrf = viewer.csrf()
    assert viewer.post(f"/speakers/{gid}/name", form={"name": "Mallory", "csrf_token": csrf}).status == 403
    assert (
        viewer.post(f"/api/speakers/{gid}/name", body={"name": "Mallory"}, headers={"X-CSRF-Token": csrf}).status == 403
    )
    assert viewer.post(f"/speakers/{gid}/split", form={"by_file": "1", "csrf_token": csrf}).status == 403
    # an editor without the token, or with another session's token, is refused too
    assert editor.post(f"/speakers/{gid}/name", form={"name": "Mallory"}).status == 403
    assert editor.post(f"/speakers/{gid}/name", form={"name": "Mallory", "csrf_token": csrf}).status == 403
    assert editor.post(f"/api/speakers/{gid}/name", body={"name": "Mallory"}).status == 403
    after = active_speakers(Warehouse(str(review_app.root)))[0].filter(pl.col("global_speaker_id") == gid)["name"][0]
    assert after == before  # nothing was written


def test_names_and_text_are_escaped_everywhere(review_app):
    gid = a_voice(review_app.root, rank=1)
    editor = review_app.client("ada")
    evil = "<script>alert(1)</script> --> \" '"
    done = editor.post(f"/api/speakers/{gid}/name", body={"name": evil}, headers={"X-CSRF-Token": editor.csrf()})
    assert done.status == 200, done.text
    where = editor.get(f"/api/speakers/{gid}").json()
    assert where["name"] == "<script>alert(1)</script> --> \" '"
    media_id = where["files"][0]["media_id"]
    pages = [f"/speakers/{gid}", "/speakers", f"/media/{media_id}", f"/search?q=the&mode=text&speaker={gid}"]
    for path in pages:
        page = editor.get(path)
        assert page.status == 200, path
        assert "<script>alert" not in page.text and '--> "' not in page.text, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt; --&gt;" in editor.get(f"/speakers/{gid}").text
    # JSON embedded in the transcript page cannot close its script element
    page = editor.get(f"/media/{media_id}").text
    data = page.split('id="page-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and ">" not in data
    # the JSON API gives the name back as data
    assert any(s["name"] == evil for s in editor.get("/api/speakers?size=200").json()["speakers"])


def test_unknown_ids_are_404_pages_not_tracebacks(review_app):
    c = review_app.client("vic")
    for path in (
        f"/media/{UNKNOWN}",
        "/media/abc",
        f"/media/{'A' * 64}",
        "/speakers/spk-999999",
        "/speakers/nobody",
        f"/audio/{UNKNOWN}",
        f"/audio/{UNKNOWN}/clip?start=0&end=1",
        f"/media/{UNKNOWN}/export.srt",
        "/no/such/page",
        "/audio/..%2F..%2Fetc%2Fpasswd",
        "/audio/%2e%2e/%2e%2e/etc/passwd",
    ):
        got = c.get(path)
        assert got.status == 404, (path, got.status)
        assert "Traceback" not in got.text and "root:" not in got.text
    assert "Not found" in c.get(f"/media/{UNKNOWN}").text
    assert c.get(f"/api/media/{UNKNOWN}").json()["error"]


def test_audio_by_byte_range_and_as_a_cut_clip(review_app):
    rows = audio_rows(review_app.root).sort("duration_s", descending=True)
    media_id, flac = rows["media_id"][0], Path(rows["audio_uri"][0])
    data = flac.read_bytes()
    c = review_app.client("vic")
    whole = c.get(f"/audio/{media_id}")
    assert whole.status == 200 and whole.body == data and whole.headers["accept-ranges"] == "bytes"
    part = c.get(f"/audio/{media_id}", headers={"Range": "bytes=100-299"})
    assert part.status == 206 and part.body == data[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{len(data)}"
    assert c.get(f"/audio/{media_id}", headers={"Range": "bytes=-10"}).body == data[-10:]
    assert c.get(f"/audio/{media_id}", headers={"Range": f"bytes={len(data)}-"}).status == 416
    clip = c.get(f"/audio/{media_id}/clip?start=1.25&end=3.75")
    assert clip.status == 200 and clip.headers["content-type"] == "audio/wav"
    info = sf.info(io.BytesIO(clip.body))
    assert info.samplerate == 16000 and abs(info.duration - 2.5) < 0.01
    samples, _ = sf.read(io.BytesIO(clip.body), dtype="int16")
    full, _ = sf.read(str(flac), dtype="int16", start=20000, stop=60000)
    assert (samples == full).all()  # exactly that passage
    assert c.get(f"/audio/{media_id}/clip?start=5&end=2").status in (404, 422)


def test_audio_paths_cannot_leave_the_warehouse(review_app, tmp_path):
    wh = Warehouse(str(review_app.root))
    inside = audio_rows(review_app.root)["audio_uri"][0]
    assert inside_warehouse(wh, inside) == os.path.realpath(inside)
    outside = tmp_path / "secret.flac"
    outside.write_bytes(b"secret")
    link = review_app.root / "audio_16k" / "link-out.flac"
    link.symlink_to(outside)
    for bad in (
        str(link),  # a symlink leading out
        f"{review_app.root}/../{review_app.root.name}/../secret.flac",
        f"{review_app.root}/audio_16k/..%2F..%2Fsecret.flac",  # an encoded separator
        "/etc/passwd",
        "audio_16k/relative.flac",
        f"{review_app.root}/audio_16k/a\\..\\..\\secret.flac",
    ):
        with pytest.raises(OutsideWarehouse):
            inside_warehouse(wh, bad)
    # a row that names a file outside: the page says the audio is unavailable, /audio is 404
    rows = audio_rows(review_app.root)
    victim = rows.sort("duration_s")["media_id"][0]
    part = next((review_app.root / "audio").glob("batch_id=*/*.parquet"))
    frame = pl.read_parquet(part)
    frame.with_columns(
        audio_uri=pl.when(pl.col("media_id") == victim).then(pl.lit(str(link))).otherwise("audio_uri")
    ).write_parquet(part)
    try:
        c = review_app.client("vic")
        assert c.get(f"/audio/{victim}").status == 404
        page = c.get(f"/media/{victim}")
        assert (
            page.status == 200
            and "Audio unavailable" in page.text
            and "secret" not in page.text.split("<main>")[1].split("Audio unavailable")[0]
        )
    finally:
        frame.write_parquet(part)
        link.unlink()


def test_missing_audio_is_said_on_the_page(review_app):
    rows = audio_rows(review_app.root).sort("duration_s")
    media_id, flac = rows["media_id"][0], Path(rows["audio_uri"][0])
    moved = flac.with_suffix(".away")
    flac.rename(moved)
    try:
        c = review_app.client("vic")
        page = c.get(f"/media/{media_id}")
        assert page.status == 200 and 'id="audio-missing"' in page.text and "missing" in page.text
        assert c.get(f"/audio/{media_id}").status == 404
        assert c.get(f"/audio/{media_id}/clip?start=0&end=1").status == 404
    finally:
        moved.rename(flac)


def test_merge_split_and_suggestions_go_through_the_speaker_state_and_are_audited(review_app):
    from opentranscribe_pipeline.speakers.state import SpeakerState

    from .test_browser import suggest

    wh = Warehouse(str(review_app.root))
    editor = review_app.client("ada")
    csrf = {"X-CSRF-Token": editor.csrf()}
    voices = active_speakers(wh)[0].sort("speech_s", descending=True)["global_speaker_id"].to_list()
    big, small = voices[0], voices[-1]
    before = SpeakerState(wh).current().number
    refused = editor.post(f"/api/speakers/{big}/merge", body={"into": big}, headers=csrf)
    assert refused.status == 409 and "already one voice" in refused.json()["error"]
    assert SpeakerState(wh).current().number == before  # nothing written
    merged = editor.post(f"/api/speakers/{small}/merge", body={"into": big}, headers=csrf)
    assert merged.status == 200, merged.text
    centroids = SpeakerState(wh).read(SpeakerState(wh).current(), "speaker_centroids")
    assert centroids.filter(pl.col("global_speaker_id") == small)["merged_into"][0] == big
    files = editor.get(f"/api/speakers/{big}").json()["files"]
    assert len(files) >= 2
    split = editor.post(f"/speakers/{big}/split", form={"by_file": "1", "csrf_token": csrf["X-CSRF-Token"]})
    assert split.status == 303 and "new:" in urllib_unquote(editor.get(split.headers["location"]).text)
    assert len(active_speakers(wh)[0]) > len(voices) - 1  # the files became voices of their own
    # a suggestion rejected is never offered again; accepting an unknown one is 404
    now = active_speakers(wh)[0]
    named = now.filter(pl.col("name").is_null())["global_speaker_id"].to_list()
    suggest(review_app.root, named[0], named[1], "Somebody Else")
    assert [s["global_speaker_id"] for s in editor.get("/api/suggestions").json()["suggestions"]] == [named[0]]
    assert editor.post(f"/api/suggestions/{named[0]}/reject", headers=csrf).status == 200
    assert editor.get("/api/suggestions").json()["suggestions"] == []
    assert editor.post(f"/api/suggestions/{named[0]}/accept", headers=csrf).status == 404
    actions = [(e.action, e.target) for e in review_app.store.audit_log(limit=20, user="ada")]
    assert ("speaker.merge", small) in actions and ("speaker.split", big) in actions
    assert ("suggestion.reject", named[0]) in actions
    assert ("speaker.merge", big) not in actions  # the refused merge was not recorded


def urllib_unquote(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


def test_serve_exits_2_with_one_line_when_the_warehouse_cannot_be_reached(tmp_path):
    from tests.conftest import cli_in_process

    got = cli_in_process(["serve", "--warehouse", tmp_path / "nowhere"], tmp_path / "home")
    assert got.returncode == 2 and got.stdout == ""
    assert got.stderr.startswith("error: cannot reach the warehouse") and got.stderr.count("\n") == 1
    assert not (tmp_path / "nowhere").exists()  # nothing made on the way


def test_the_transcript_shows_the_summary_key_points_and_topics(review_app):
    """The summary step's row (issue 34) on the item's page: the summary, each key point linked
    to its time with its speaker's name, the topics; also in the JSON API."""
    import html

    rows = pl.read_parquet(review_app.root / "summaries" / "*" / "*.parquet").filter(
        (pl.col("status") == "ok") & (pl.col("key_points").list.len() > 0)
    )
    assert not rows.is_empty()
    row = rows.row(0, named=True)
    c = review_app.client("vic")
    page = c.get(f"/media/{row['media_id']}")
    assert page.status == 200
    shown = html.unescape(page.text)
    assert row["summary"] in shown
    first = row["key_points"][0]
    assert first["text"] in shown
    assert f'href="/media/{row["media_id"]}?t={first["start_s"]}"' in page.text
    assert all(t in shown for t in row["topics"])
    api = c.get(f"/api/media/{row['media_id']}").json()
    assert api["summary"]["summary"] == row["summary"] and api["summary"]["topics"] == row["topics"]
