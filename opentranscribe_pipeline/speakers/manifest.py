"""The speaker state's manifest: which files make up one generation (Dagster-free).

``<root>/_speakers/manifest.json`` is the commit point of the archive-wide speaker state
(:mod:`.state` writes it by compare-and-swap): it names the generation's file of every small
table, the ``speaker_clusters`` parts (one compact base plus delta parts per batch) and
``next_number``, the next global id to mint. A :class:`Generation` is that manifest read; a
:class:`Change` is what one writer puts in the next one. The names of the archive-wide tables
and of the copies analysts read are here too.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field

import polars as pl

from ..schemas import SpeakerCentroids, SpeakerClusters, SpeakerProfiles, SpeakerSuggestions, utc_now

CLUSTERS = "speaker_clusters"
CENTROIDS = "speaker_centroids"
PROFILES = "speaker_profiles"
SUGGESTIONS = "speaker_suggestions"
ARCHIVE_TABLES = (CLUSTERS, CENTROIDS, PROFILES, SUGGESTIONS)
SMALL_TABLES = (CENTROIDS, PROFILES, SUGGESTIONS)
MODELS = {
    CLUSTERS: SpeakerClusters,
    CENTROIDS: SpeakerCentroids,
    PROFILES: SpeakerProfiles,
    SUGGESTIONS: SpeakerSuggestions,
}
STATE_DIR = "_speakers"
FORMAT = 1
PART_PREFIX, PART_SUFFIX = "part-", ".parquet"


@dataclass(frozen=True)
class Generation:
    """One consistent state: where each table's file is (relative to the warehouse root)."""

    number: int
    next_number: int  # the next global id number to mint
    tables: dict[str, str] = field(default_factory=dict)  # centroids/profiles/suggestions -> path
    clusters: dict[str, str] = field(default_factory=dict)  # batch_id -> its delta part (since the base)
    base: str | None = None  # the compact part: every other batch's rows, sorted by global id
    base_batches: tuple[str, ...] = ()  # the batches the base holds
    version: str | None = None  # the manifest's storage version this was read with (None: none)

    @property
    def batches(self) -> set[str]:
        return set(self.base_batches) | set(self.clusters)

    def to_json(self) -> bytes:
        body = {
            "format": FORMAT,
            "generation": self.number,
            "next_number": self.next_number,
            "tables": self.tables,
            "clusters": dict(sorted(self.clusters.items())),
            "base": self.base,
            "base_batches": sorted(self.base_batches),
            "written_at": utc_now().isoformat(),
            "writer": f"{socket.gethostname()}:{os.getpid()}",
        }
        return json.dumps(body, ensure_ascii=False, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes, version: str) -> Generation:
        body = json.loads(raw)
        if body.get("format") != FORMAT:
            raise ValueError(f"speaker state manifest format {body.get('format')!r}, expected {FORMAT}")
        return cls(
            number=int(body["generation"]),
            next_number=int(body["next_number"]),
            tables=dict(body.get("tables", {})),
            clusters=dict(body.get("clusters", {})),
            base=body.get("base"),
            base_batches=tuple(body.get("base_batches", ())),
            version=version,
        )


def visible_table_path(table: str) -> str:
    return f"{table}/part-0.parquet"


def visible_cluster_path(batch_id: str) -> str:
    return f"{CLUSTERS}/{PART_PREFIX}{batch_id}{PART_SUFFIX}"


@dataclass(frozen=True)
class Change:
    """What one writer changes: new rows per table (None: unchanged)."""

    clusters: dict[str, pl.DataFrame | None] = field(default_factory=dict)  # batch -> rows (None: drop the part)
    replace_all_clusters: bool = False  # batches not in ``clusters`` lose their part
    centroids: pl.DataFrame | None = None
    profiles: pl.DataFrame | None = None
    suggestions: pl.DataFrame | None = None
    next_number: int | None = None
