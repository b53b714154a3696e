"""What a speaker's name may be: the one rule, and the cleaning every output applies.

A name is data, never markup or layout: it is shown in subtitle cues, TXT and JSON
transcripts, terminal tables, search results and Dagster metadata, and must not be able to
add a line, a cue, a timestamp, an escape sequence or a right-to-left override to any of
them. So:

- :func:`validate_name` is the rule for every name that enters the speaker state, from
  ``opentranscribe speakers name`` and from a hand-written ``speaker_profiles`` file alike:
  Unicode NFC, surrounding whitespace removed and inner runs of spaces made one space, then
  refused (:class:`InvalidName`, one line saying why) when empty, longer than
  :data:`MAX_NAME_CHARS` characters, or holding a control or format character: C0/C1
  controls (NUL, tab, newline, escape, ...), line and paragraph separators, bidirectional
  embeddings, overrides, isolates and marks (U+202A-202E, U+2066-2069, U+200E/200F, U+061C),
  zero-width spaces, word joiners, soft hyphens, byte-order marks, surrogates, private-use
  and unassigned code points. Zero-width joiner and non-joiner (U+200D, U+200C) are part of
  how Persian, Indic scripts and emoji are written; they are kept between two letters, marks
  or symbols and refused anywhere else.
- :func:`check_profiles` applies the rule to a profiles frame (hand-written files included):
  refused rows are left out and returned with their reason, valid names come back normalised.
- :func:`shown_name` is defence in depth for the outputs: a valid name comes back unchanged;
  anything else (a name that reached a table some other way) is made one bounded line
  without controls. Escaping for a format (SRT, WebVTT, Markdown) comes on top of it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MAX_NAME_CHARS = 100  # code points, after normalisation
_JOINERS = frozenset("\u200c\u200d")  # ZWNJ, ZWJ: allowed inside a word only
_JOINABLE = ("L", "M", "S")  # major categories a joiner may sit between
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_SPACES = re.compile(r"[^\S\n\r\t\v\f\x1c-\x1f\x85\u2028\u2029]+")  # runs of Zs (incl. ' ', NBSP)


class InvalidName(ValueError):
    """A speaker name the rule refuses; ``reason`` is one line saying why (never the raw
    name, which may hold what would break that line)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, None)
    if name is None:
        name = {"\n": "LINE FEED", "\r": "CARRIAGE RETURN", "\t": "TAB", "\x00": "NUL", "\x1b": "ESCAPE"}.get(
            ch, unicodedata.category(ch)
        )
    return f"U+{ord(ch):04X} ({name})"


def _refused_positions(text: str) -> list[int]:
    """Where ``text`` holds a character the rule refuses."""
    found = []
    for i, ch in enumerate(text):
        if unicodedata.category(ch) not in _REFUSED_CATEGORIES:
            continue
        if ch in _JOINERS and 0 < i < len(text) - 1:
            before, after = unicodedata.category(text[i - 1]), unicodedata.category(text[i + 1])
            if before[0] in _JOINABLE and after[0] in _JOINABLE:
                continue
        found.append(i)
    return found


def _normalise(raw: str) -> str:
    text = unicodedata.normalize("NFC", raw).strip()
    text = _SPACES.sub(" ", text)
    return unicodedata.normalize("NFC", text)


def validate_name(raw: object) -> str:
    """The name as stored: NFC, trimmed, inner spaces single. Raises :class:`InvalidName`
    when it is empty, over :data:`MAX_NAME_CHARS` characters, or holds a control or format
    character (see the module docstring)."""
    if not isinstance(raw, str):
        raise InvalidName(f"a speaker name must be text, not {type(raw).__name__}")
    name = _normalise(raw)
    if not name:
        raise InvalidName("a speaker name cannot be empty")
    bad = _refused_positions(name)
    if bad:
        pos = bad[0]
        ch = name[pos]
        if ch in _LINE_BREAKS:
            kind = "a line break or tab"
        elif unicodedata.category(ch) == "Cc":
            kind = "a control character"
        else:
            kind = "an invisible format character"
        raise InvalidName(
            f"a speaker name cannot contain {kind}: {_describe(ch)} at character {pos + 1} "
            "(names are one line of visible text)"
        )
    if len(name) > MAX_NAME_CHARS:
        raise InvalidName(f"a speaker name can have at most {MAX_NAME_CHARS} characters, this one has {len(name)}")
    return name


def is_valid_name(raw: object) -> bool:
    try:
        validate_name(raw)
    except InvalidName:
        return False
    return True


@dataclass(frozen=True)
class RefusedName:
    """A row of a profiles table whose name the rule refuses."""

    global_speaker_id: str
    reason: str
    shown: str  # the name made harmless (:func:`shown_name`), for reports

    def line(self) -> str:
        return f"{self.global_speaker_id}: {self.reason}"


def check_profiles(profiles):
    """``(valid, refused)``: the rows of a ``speaker_profiles`` frame whose names pass
    :func:`validate_name` (names normalised), and a :class:`RefusedName` per other row."""
    import polars as pl

    if profiles.is_empty():
        return profiles, []
    keep, names, refused = [], [], []
    for gid, name in zip(profiles["global_speaker_id"].to_list(), profiles["name"].to_list()):
        try:
            names.append(validate_name(name))
            keep.append(True)
        except InvalidName as exc:
            keep.append(False)
            refused.append(RefusedName(str(gid), exc.reason, shown_name(name if isinstance(name, str) else "")))
    if not refused and names == profiles["name"].to_list():
        return profiles, []
    valid = profiles.filter(pl.Series(keep, dtype=pl.Boolean))
    return valid.with_columns(name=pl.Series(names, dtype=pl.Utf8)), refused


_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x1f\x85\u2028\u2029\t")


def shown_name(name: str | None, limit: int = MAX_NAME_CHARS) -> str:
    """``name`` safe to print on one line of any output: unchanged when valid; otherwise
    line breaks and tabs become spaces, every other control or format character becomes
    U+FFFD, spaces are collapsed and the result is cut to ``limit`` characters (``…``).
    Escaping for a format (SRT, WebVTT, Markdown, JSON) is applied on top."""
    if name is None:
        return ""
    if not isinstance(name, str):
        name = str(name)
    try:
        valid = validate_name(name)
    except InvalidName:
        pass
    else:
        if len(valid) <= limit:
            return valid
        return valid[: limit - 1].rstrip("".join(_JOINERS) + " ") + "…"
    text = unicodedata.normalize("NFC", name)
    bad = set(_refused_positions(text))
    out = [" " if ch in _LINE_BREAKS else "\ufffd" if i in bad else ch for i, ch in enumerate(text)]
    text = _SPACES.sub(" ", "".join(out)).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip("".join(_JOINERS) + " ") + "…"
    return text


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~])")


def markdown_name(name: str | None, limit: int = MAX_NAME_CHARS) -> str:
    """A name (or a line holding names) inside Dagster Markdown metadata: :func:`shown_name`,
    with Markdown's punctuation backslash-escaped, so it shows as the text it is."""
    return _MARKDOWN.sub(r"\\\1", shown_name(name, limit))
