"""The review app in a real browser: Playwright driving Debian's chromium (``make browser``;
never a downloaded one) against the app served by uvicorn over a copy of the shared warehouse."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from opentranscribe_pipeline.schemas import SpeakerSuggestions, conform
from opentranscribe_pipeline.speakers import edits
from opentranscribe_pipeline.speakers.manifest import Change
from opentranscribe_pipeline.speakers.state import SpeakerState, active_speakers
from opentranscribe_pipeline.storage import Warehouse

from .conftest import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is missing: run `make browser`")
QUERY = "tomatoes"
NAME = "Grace Hopper"
DURATION = "() => { const a = document.getElementById('player'); return a && isFinite(a.duration) && a.duration > 0; }"


def suggest(root: Path, gid: str, like: str, name: str) -> None:
    """What a clustering run leaves when ``gid`` sounds like the named ``like``: a
    suggestion row, committed as a generation of the speaker state like any writer's."""
    state = SpeakerState(Warehouse(str(root)))
    row = pl.DataFrame(
        [
            {
                "global_speaker_id": gid,
                "suggested_name": name,
                "named_global_speaker_id": like,
                "similarity": 0.71,
                "confidence": "high",
            }
        ]
    )
    state.transact(lambda gen: (Change(suggestions=conform(row, SpeakerSuggestions)), None))


def sign_in(page, url: str, name: str) -> None:
    page.goto(url + "/speakers")
    assert "/signin" in page.url  # nothing without a session
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("#signin-submit")
    page.wait_for_url("**/speakers")


def test_search_listen_read_and_name_a_voice_in_a_browser(review_app):
    from playwright.sync_api import sync_playwright

    url, wh = review_app.url, Warehouse(str(review_app.root))
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--autoplay-policy=no-user-gesture-required", "--no-sandbox"]
        )
        try:
            page = browser.new_page()
            sign_in(page, url, "ada")
            # search, and the voice of the best hit gets a suggestion to accept
            hit = page.request.get(f"{url}/api/search?q={QUERY}&mode=text").json()["results"][0]
            voice = hit["global_speaker_id"]
            other = next(g for g in active_speakers(wh)[0]["global_speaker_id"].to_list() if g != voice)
            edits.name_speaker(wh, other, NAME)
            suggest(review_app.root, voice, other, NAME)

            page.goto(url + "/search")
            page.fill("#q", QUERY)
            page.select_option("#mode", "text")
            page.click("#search-submit")
            first = page.locator("li.hit").first
            assert first.locator(".speaker").inner_text() == voice
            seconds = float(first.locator("button.play").get_attribute("data-seconds"))
            first.locator("button.play").click()
            page.wait_for_function(DURATION)
            assert abs(page.evaluate("document.getElementById('player').duration") - seconds) < 0.02

            # the transcript: the audio loads (by byte range), a click on a word jumps there
            first.locator("a.source").click()
            page.wait_for_url("**/media/**")
            page.wait_for_function(DURATION)
            word = page.locator(".w").nth(12)
            start = float(word.get_attribute("data-start"))
            word.click()
            page.wait_for_function(f"() => Math.abs(document.getElementById('player').currentTime - {start}) < 0.5")
            assert page.locator(".seg.now").count() == 1

            # the suggestion queue: accept, and the name shows in search and in a fresh export
            page.goto(url + "/speakers")
            page.wait_for_function("() => document.querySelectorAll('td.clips button.play').length >= 2")  # clips load
            row = page.locator(f"tr.suggestion[data-gid='{voice}']")
            assert row.locator(".suggested").inner_text() == NAME
            row.locator("button.accept").click()
            page.wait_for_url("**/speakers")
            assert "named as suggested" in page.locator(".flash").inner_text()
            assert page.locator(f"tr.suggestion[data-gid='{voice}']").count() == 0
            page.goto(f"{url}/search?q={QUERY}&mode=text&speaker={NAME}")
            assert page.locator("li.hit").count() >= 1
            assert page.locator("li.hit .speaker").first.inner_text() == NAME
            srt = page.request.get(f"{url}/media/{hit['media_id']}/export.srt").text()
            assert f"{NAME}:" in srt
            actions = [e.action for e in review_app.store.audit_log(limit=10, user="ada")]
            assert "suggestion.accept" in actions

            # a viewer sees no edit buttons, and a forged edit gets 403
            viewer = browser.new_context().new_page()
            sign_in(viewer, url, "vic")
            viewer.goto(f"{url}/speakers/{voice}")
            assert viewer.locator("#speaker-name").inner_text() == NAME
            assert viewer.locator("button.edit").count() == 0 and viewer.locator("form.edit-form").count() == 0
            status = viewer.evaluate(
                """async (gid) => {
                    const me = await (await fetch('/api/me')).json();
                    const body = new URLSearchParams({name: 'Mallory', csrf_token: me.csrf_token});
                    return (await fetch(`/speakers/${gid}/name`, {method: 'POST', body})).status;
                }""",
                voice,
            )
            assert status == 403
        finally:
            browser.close()
    named = dict(active_speakers(wh)[0].select("global_speaker_id", "name").iter_rows())
    assert named[voice] == NAME  # the same state the CLI reads
