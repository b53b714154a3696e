"""A reviewer's edits: name, merge, split by file, accept or reject a suggestion (Dagster-free).

Each goes through the same function ``opentranscribe speakers ...`` calls
(:mod:`..speakers.edits`: a new generation of the speaker state under the writer lease, so the
app and the CLI never fight), then refreshes the search index the same way the CLI does
(passages whose voice changed id are re-indexed; the speakers index follows), and is recorded
in the accounts store's audit table (who, what, when). What the CLI adds beyond that, a
runless materialization telling the Dagster UI that ``exports`` are stale, needs the Dagster
instance and is left to the CLI and the next run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..speakers import edits
from ..speakers.names import InvalidName, validate_name
from ..storage import Warehouse
from .rejections import reject_suggestion

log = logging.getLogger(__name__)


class EditError(ValueError):
    """An edit refused before or by the speaker state: the message is for the reviewer."""


@dataclass
class Outcome:
    message: str
    target: str | None = None
    warnings: list[str] = field(default_factory=list)


def refresh_search(wh: Warehouse, backend) -> list[str]:
    """As ``cli.speakers.refresh_speakers_index``: re-index passages whose global id changed
    and rewrite the speakers index; a failure is a warning, never a lost edit."""
    from ..search.backends import SearchUnavailable
    from ..search.service import refresh_speakers, resync_speaker_ids

    try:
        b = backend()
        resync_speaker_ids(wh, b)
        refresh_speakers(wh, b)
        return []
    except (SearchUnavailable, ValueError, OSError) as exc:
        log.warning("the search index was not refreshed after an edit: %s", exc)
        return [f"the search index was not refreshed: {exc}"]


def _refused(exc: Exception) -> EditError:
    return EditError(exc.args[0] if exc.args else str(exc))


def name(wh: Warehouse, backend, store, user: str, gid: str, new_name: str) -> Outcome:
    try:
        clean = validate_name(new_name)
        target = edits.name_speaker(wh, gid, clean)
    except InvalidName as exc:
        raise EditError(f"name refused: {exc.reason}") from None
    except edits.UnknownSpeaker as exc:
        raise _refused(exc) from None
    store.record(user, "speaker.name", target, {"name": clean, "asked": gid})
    warnings = refresh_search(wh, backend)
    via = f" ({gid} was merged into {target})" if target != gid else ""
    return Outcome(f"{target} is now named{via}", target, warnings)


def merge(wh: Warehouse, backend, store, user: str, gid: str, into: str) -> Outcome:
    try:
        target = edits.merge_speakers(wh, gid, into)
    except (edits.UnknownSpeaker, edits.EditRefused) as exc:
        raise _refused(exc) from None
    store.record(user, "speaker.merge", gid, {"into": target})
    return Outcome(f"{gid} is now part of {target}", target, refresh_search(wh, backend))


def split(wh: Warehouse, backend, store, user: str, gid: str, media_ids: list[str], by_file: bool) -> Outcome:
    try:
        result = edits.split_speaker(wh, gid, media_ids=media_ids or None, by_file=by_file)
    except (edits.UnknownSpeaker, edits.EditRefused) as exc:
        raise _refused(exc) from None
    parts = {g: sorted({m for m, _ in members}) for g, members in result.parts.items()}
    store.record(
        user,
        "speaker.split",
        gid,
        {"by_file": by_file, "media_ids": media_ids, "new_ids": sorted(parts), "generation": result.generation},
    )
    made = ", ".join(f"{g} ({len(files)} file(s))" for g, files in parts.items())
    return Outcome(f"{gid} keeps {len(result.kept)} member(s); new: {made}", gid, refresh_search(wh, backend))


def accept(wh: Warehouse, backend, store, user: str, suggestion: dict) -> Outcome:
    """Accept a suggestion: the voice takes the suggested name (what ``speakers name`` does)."""
    gid, suggested = suggestion["global_speaker_id"], suggestion["suggested_name"]
    try:
        target = edits.name_speaker(wh, gid, suggested)
    except (edits.UnknownSpeaker, InvalidName) as exc:
        raise _refused(exc) from None
    store.record(
        user,
        "suggestion.accept",
        target,
        {"name": suggested, "like": suggestion["named_global_speaker_id"], "similarity": suggestion["similarity"]},
    )
    return Outcome(f"{target} is now named as suggested", target, refresh_search(wh, backend))


def reject(wh: Warehouse, store, user: str, suggestion: dict) -> Outcome:
    gid = suggestion["global_speaker_id"]
    reject_suggestion(wh, gid, suggestion["named_global_speaker_id"], suggestion["suggested_name"])
    store.record(
        user,
        "suggestion.reject",
        gid,
        {"name": suggestion["suggested_name"], "like": suggestion["named_global_speaker_id"]},
    )
    return Outcome(f"suggestion for {gid} rejected", gid)
