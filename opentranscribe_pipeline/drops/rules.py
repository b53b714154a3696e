"""What the drop engine waits for and what it ignores: its settings and the rules on names.

A drop counts as complete when its marker exists (or, with a quiet period, nothing under it
changed for that long) and no object in it is still in progress: a temporary name
(:func:`is_temp_name`) written less than ``ABANDONED_S`` ago, or, in a local folder, a file
modified less than ``settle_s`` ago. Operating-system droppings (:func:`is_junk`) are never
media and never waited for.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from ..settings import DEFAULT_SETTLE_SECONDS, READY_MARKER
from ..storage import S3Options
from .batches import BatchLimits

LEDGER_DIR = "_drops"
# a temporary name untouched for this long is an abandoned upload: ignored, no longer waited for
ABANDONED_S = 3600.0
TEMP_SUFFIXES = (
    ".part",
    ".partial",
    ".tmp",
    ".temp",
    ".crdownload",
    ".download",
    ".filepart",
    ".upload",
    ".uploading",
    ".incomplete",
    "~",
)
# a registered drop with fewer keys than this is re-listed whole when checked (one page)
SMALL_DROP = 1000
# an incomplete drop waiting longer than this may give its pending slot to a newer one
EVICT_AFTER_S = 3600.0
# operating-system droppings: never media, never waited for
JUNK_NAMES = frozenset({".DS_Store", ".localized", "Thumbs.db", "desktop.ini"})


@dataclass(frozen=True)
class DropSettings:
    incoming: str
    s3: S3Options = S3Options()
    marker: str = READY_MARKER
    quiet_s: float | None = None  # None: the marker is required
    settle_s: float = DEFAULT_SETTLE_SECONDS  # local folders: a file modified more recently is still being written
    limits: BatchLimits = BatchLimits()
    max_files_per_tick: int = 1000
    max_pending_drops: int = 100
    sweep_per_tick: int = 1
    watch_s: float = 24 * 3600.0
    watch_max: int = 10
    tick_budget_s: float = 40.0  # start no new drop after this (Dagster kills a tick at 60 s)


def is_temp_name(rel: str) -> bool:
    name = posixpath.basename(rel)
    if name in JUNK_NAMES or name.startswith("._"):
        return False
    return name.startswith((".", "~$")) or name.lower().endswith(TEMP_SUFFIXES)


def is_junk(rel: str) -> bool:
    name = posixpath.basename(rel)
    return name in JUNK_NAMES or name.startswith("._")
