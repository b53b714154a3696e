"""Suggestions a person rejected in the review app (Dagster-free).

The speaker state has no place for a "no" (its suggestions are recomputed by every
clustering), so the review app keeps one small JSON object beside it,
``<root>/_review/rejected_suggestions.json``: a list of ``[global_speaker_id,
named_global_speaker_id, suggested_name]``, written by compare-and-swap (``If-Match`` on S3,
``flock`` locally) so two reviewers never lose each other's answer. A rejected suggestion is
not offered again while the clustering keeps suggesting the same name from the same voice.
"""

from __future__ import annotations

import json

from ..storage import Warehouse
from ..storage.conditional import PreconditionFailed, read_versioned, write_if

REJECTED = ("_review", "rejected_suggestions.json")
ATTEMPTS = 8


def _path(wh: Warehouse) -> str:
    return wh.path(*REJECTED)


def rejected_suggestions(wh: Warehouse) -> set[tuple[str, str, str]]:
    stored = read_versioned(wh, _path(wh))
    if stored is None:
        return set()
    return {tuple(x) for x in json.loads(stored.data)}


def reject_suggestion(wh: Warehouse, global_speaker_id: str, named_global_speaker_id: str, name: str) -> bool:
    """Record the rejection; False if it was recorded already."""
    key = [global_speaker_id, named_global_speaker_id, name]
    for _ in range(ATTEMPTS):
        stored = read_versioned(wh, _path(wh))
        items = json.loads(stored.data) if stored is not None else []
        if key in items:
            return False
        data = json.dumps(sorted(items + [key]), ensure_ascii=False).encode()
        try:
            write_if(wh, _path(wh), data, expect=stored.version if stored is not None else None)
            return True
        except PreconditionFailed:
            continue
    raise PreconditionFailed(f"{_path(wh)} kept changing: the rejection was not recorded, try again")
