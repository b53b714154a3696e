"""The speaker-name rule (speakers/names.py): what a name may be, and what outputs show.

Examples of every kind of refusal, then properties over any text: a name is either refused
or comes back as one NFC line of visible text of at most 100 characters that the rule
accepts unchanged; whatever text reaches ``shown_name``, it prints as one bounded line.
"""

from __future__ import annotations

import unicodedata

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opentranscribe_pipeline.schemas import SpeakerProfiles, conform, utc_now
from opentranscribe_pipeline.speakers.names import (
    MAX_NAME_CHARS,
    InvalidName,
    check_profiles,
    markdown_name,
    shown_name,
    validate_name,
)

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BIDI = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)]
TRICKY = [
    "\n",
    "\r",
    "\t",
    "\x00",
    "\x1b",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    "\u200b",
    "\u200c",
    "\u200d",
    "\u2060",
    "\ufeff",
    "\u00ad",
    "\u00a0",
    "\u3000",
    " ",
    "\u0301",
    "e",
    "-->",
    "<",
    "&",
    "00:00:00,000",
    "\U0001f469",
    "\ud800",
    "\ue000",
    *BIDI,
]
names = (
    st.lists(st.one_of(st.characters(), st.sampled_from(TRICKY)), max_size=150).map("".join)
    | st.text(st.characters(categories=["Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs", "Mn", "Lo"]), max_size=120)
    | st.text(st.characters(categories=["L", "M", "N", "P", "S", "Zs"]), max_size=110)
)  # mostly accepted


def _is_breaking(ch: str) -> bool:
    """What must never be in a shown name: controls, line/paragraph separators, bidi."""
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Cs") or ch in BIDI or ch == "\ufeff"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("Ada\n00:00:00,000 --> 00:00:09,000", "U+000A (LINE FEED) at character 4"),
        ("Ada\r\nLovelace", "U+000D (CARRIAGE RETURN)"),
        ("Ada\tLovelace", "U+0009 (TAB)"),
        ("Ada\x00Lovelace", "U+0000 (NUL)"),
        ("Ada\x1b[2JLovelace", "U+001B (ESCAPE)"),
        ("Ada\u2028Lovelace", "U+2028 (LINE SEPARATOR)"),
        ("\u202eecalevoL adA", "U+202E (RIGHT-TO-LEFT OVERRIDE) at character 1"),
        ("Ada \u2066Lovelace\u2069", "U+2066 (LEFT-TO-RIGHT ISOLATE)"),
        ("Ada\u200bLovelace", "U+200B (ZERO WIDTH SPACE)"),
        ("Ada\ufeff", "U+FEFF"),
        ("Ada\u00adLovelace", "U+00AD (SOFT HYPHEN)"),
        ("\u200dAda", "U+200D (ZERO WIDTH JOINER)"),  # a joiner outside a word
        ("Ada\ue000", "U+E000"),  # private use
        ("", "cannot be empty"),
        (" \t\n ", "cannot be empty"),
        ("x" * (MAX_NAME_CHARS + 1), f"at most {MAX_NAME_CHARS} characters, this one has {MAX_NAME_CHARS + 1}"),
        ("A" * 10_000, "this one has 10000"),
    ],
)
def test_refused_names_say_why_in_one_line(raw, why):
    with pytest.raises(InvalidName) as caught:
        validate_name(raw)
    assert isinstance(caught.value, ValueError)
    reason = caught.value.reason
    assert why in reason
    assert str(caught.value) == reason
    assert len(reason.splitlines()) == 1 and not any(_is_breaking(c) for c in reason)
    assert len(reason) < 200  # never the raw name


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("Ada Lovelace", "Ada Lovelace"),
        ("  Ada   Lovelace \n", "Ada Lovelace"),  # surrounding whitespace, inner runs of spaces
        ("Ada\u00a0\u3000Lovelace", "Ada Lovelace"),
        ("Zoe\u0301 Dupont", "Zoé Dupont"),  # NFC
        ("Ada <Lovelace> --> & co", "Ada <Lovelace> --> & co"),  # markup is data: escaped by each output
        ("می\u200cخواهم", "می\u200cخواهم"),  # Persian: a non-joiner inside a word is spelling
        ("\U0001f469\u200d\U0001f52c Ada", "\U0001f469\u200d\U0001f52c Ada"),  # an emoji ZWJ sequence
        ("x" * MAX_NAME_CHARS, "x" * MAX_NAME_CHARS),
    ],
)
def test_accepted_names_are_normalised(raw, stored):
    assert validate_name(raw) == stored
    assert validate_name(stored) == stored


def test_only_text_is_a_name():
    with pytest.raises(InvalidName, match="must be text"):
        validate_name(None)
    with pytest.raises(InvalidName, match="must be text"):
        validate_name(42)


@SETTINGS
@given(names)
def test_any_text_is_refused_or_one_clean_nfc_line(raw):
    try:
        name = validate_name(raw)
    except InvalidName as exc:
        assert exc.reason and "\n" not in exc.reason
        return
    assert isinstance(name, str) and 0 < len(name) <= MAX_NAME_CHARS
    assert unicodedata.normalize("NFC", name) == name
    assert name == name.strip() and "  " not in name
    for i, ch in enumerate(name):
        cat = unicodedata.category(ch)
        assert cat not in ("Cc", "Cs", "Co", "Cn", "Zl", "Zp"), (name, i)
        if cat == "Cf":  # only a joiner, inside a word
            assert ch in "\u200c\u200d" and 0 < i < len(name) - 1, (name, i)
    assert validate_name(name) == name  # idempotent
    assert shown_name(name) == name  # a valid name is shown as it is


@SETTINGS
@given(names, st.integers(min_value=2, max_value=200))
def test_whatever_reaches_an_output_is_one_bounded_line(raw, limit):
    shown = shown_name(raw, limit)
    assert len(shown) <= limit
    assert not any(_is_breaking(c) for c in shown), repr(shown)
    assert len(shown.splitlines()) <= 1
    md = markdown_name(raw, limit)
    assert len(md.splitlines()) <= 1 and not any(_is_breaking(c) for c in md)


def test_shown_name_neutralises_what_would_break_a_line():
    assert shown_name("Ada\n00:00:00,000 --> 00:00:09,000") == "Ada 00:00:00,000 --> 00:00:09,000"
    assert shown_name("Ada\x00\u202eX") == "Ada\ufffd\ufffdX"
    long = shown_name("A" * 10_000)
    assert len(long) == MAX_NAME_CHARS and long.endswith("…")
    assert shown_name(None) == ""
    assert markdown_name("*Ada* [x](javascript:y)") == r"\*Ada\* \[x\]\(javascript:y\)"


def test_check_profiles_leaves_refused_rows_out_and_normalises_the_rest():
    rows = [
        ("spk-000001", "  Zoe\u0301  "),
        ("spk-000002", "Ada\n00:00:00,000 --> 00:00:09,000"),
        ("spk-000003", "Nul\x00"),
        ("spk-000004", "B" * 10_000),
        ("spk-000005", "Grace Hopper"),
    ]
    frame = conform(
        pl.DataFrame([{"global_speaker_id": g, "name": n, "named_at": utc_now()} for g, n in rows]), SpeakerProfiles
    )
    valid, refused = check_profiles(frame)
    assert dict(valid.select("global_speaker_id", "name").iter_rows()) == {
        "spk-000001": "Zoé",
        "spk-000005": "Grace Hopper",
    }
    assert valid.schema == frame.schema
    assert [r.global_speaker_id for r in refused] == ["spk-000002", "spk-000003", "spk-000004"]
    assert "LINE FEED" in refused[0].reason and "NUL" in refused[1].reason and "10000" in refused[2].reason
    assert all("\n" not in r.line() and "\x00" not in r.shown for r in refused)
    # a frame with nothing to refuse or change comes back as it is
    same, none = check_profiles(valid)
    assert same.equals(valid) and none == []
